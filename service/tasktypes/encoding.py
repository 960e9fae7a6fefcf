"""Tokenisation of single texts and text pairs, shared by the trainer and the serving engine.

Both sides call the same function, so a pair is cut the same way in training and at
prediction time: with truncation=True, a fast tokenizer removes tokens from the longer of
the two texts until the pair fits (the "longest_first" strategy).
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


def encode_texts(
    tokenizer: "PreTrainedTokenizerFast",
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    max_length: int,
) -> tuple[list[list[int]], list[list[int]] | None]:
    """Tokenise texts, or (text, text_pair) pairs, into token ids without padding.

    Args:
        tokenizer: the base model's fast tokenizer.
        texts: the texts, or the first texts of the pairs.
        text_pairs: the second texts, one per text, or None for single texts.
        max_length: maximum tokens per row, special tokens included.

    Returns:
        (input_ids, token_type_ids): one list per text. token_type_ids is None for single
        texts, whose segment ids are all 0, and for tokenizers without segment ids (RoBERTa).
    """
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise ValueError(f"got {len(texts)} texts for {len(text_pairs)} text pairs")
    if not texts:
        return [], None
    encoding = tokenizer(
        list(texts),
        list(text_pairs) if text_pairs is not None else None,
        truncation=True,
        max_length=max_length,
        padding=False,
    )
    input_ids = [list(ids) for ids in encoding["input_ids"]]
    token_type_ids = encoding.get("token_type_ids") if text_pairs is not None else None
    if token_type_ids is None:
        return input_ids, None
    return input_ids, [list(types) for types in token_type_ids]
