"""Normalised examples: the report that carries them, their storage encoding, their overlap key.

Every task type turns an upload into a list of example dicts (for text_classification
{"text": str, "label": str}). They are stored as compact JSON Lines in UTF-8, one example
per line, so that the trainer can read them back without knowing the original format.
"""

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DatasetReport:
    """Result of parsing and validating one uploaded file."""

    task_type: str
    format: str  # resolved format: "csv", "tsv", "jsonl", "conll" or "squad"
    examples: list[dict]  # normalised examples, in file order
    labels: list[str]  # the task type's label list (see its module), empty for regression
    label_counts: dict[str, int]  # examples per label, or entities per type for NER
    warnings: list[str]  # human-readable sentences about data quality
    num_rows: int  # number of examples, so len(examples)
    # Summary figures that are not warnings, such as a regression target's "min", "max"
    # and "mean", or the "articles" of a SQuAD file. JSON-serialisable values only.
    stats: dict[str, Any] = field(default_factory=dict)


def encode_examples(examples: list[dict]) -> bytes:
    """Encode examples as compact JSON Lines in UTF-8."""
    lines = [
        json.dumps(example, ensure_ascii=False, separators=(",", ":")) + "\n"
        for example in examples
    ]
    return "".join(lines).encode("utf-8")


def decode_examples(content: bytes) -> list[dict]:
    """Decode what encode_examples produced. Raise ValueError naming the line if it is corrupt."""
    examples = []

    # Only b"\n" separates records: json.dumps escapes every newline inside a string, while
    # characters such as U+2028 are kept raw and must not split a line.
    for number, line in enumerate(content.split(b"\n"), start=1):
        if not line:
            continue
        try:
            example = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"stored examples are corrupt at line {number}: {exc}") from exc
        if not isinstance(example, dict):
            raise ValueError(
                f"stored examples are corrupt at line {number}: expected a JSON object, "
                f"found {type(example).__name__}"
            )
        examples.append(example)

    return examples


def normalise_text(text: str) -> str:
    """Return the comparison key of a text: stripped, case-folded, whitespace runs as one space."""
    return " ".join(text.casefold().split())


def overlap_key(example: dict) -> str:
    """Return the comparison key of an example's input, of any task type.

    The key is the normalised "text", followed by a tab and the normalised "text_pair" when
    the example has one. Token classification examples use their "tokens" joined by spaces,
    and extractive QA examples their "question" and "context".
    """
    if "tokens" in example:
        return normalise_text(" ".join(example["tokens"]))
    if "question" in example:
        return normalise_text(example["question"]) + "\t" + normalise_text(example["context"])
    key = normalise_text(example["text"])
    if "text_pair" in example:
        key += "\t" + normalise_text(example["text_pair"])
    return key


def find_overlap(train: list[dict], eval: list[dict]) -> int:
    """Count the eval examples whose input (see overlap_key) also occurs in train."""
    train_keys = {overlap_key(example) for example in train}
    return sum(1 for example in eval if overlap_key(example) in train_keys)
