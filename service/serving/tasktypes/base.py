"""The interface between the serving engine and one task type."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from service.serving.cache import LoadedAdapter


@dataclass(frozen=True)
class EncodedRow:
    """One encoder input: the token ids of a text, a pair or a window of a long text.

    Attributes:
        item: index of the input, among the rows given to `encode`, that this row belongs to.
        input_ids: token ids, special tokens included.
        token_type_ids: segment ids for pairs, or None for single texts.
    """

    item: int
    input_ids: list[int]
    token_type_ids: list[int] | None = None


class ServingTaskType(ABC):
    """Encoding and decoding for one task type; subclasses set `name` and `token_level`."""

    name: str
    # True when the head runs on every token (NER, QA), False when it runs on the pooled row.
    token_level: bool = False

    @abstractmethod
    def parse_input(self, item: Any) -> Any:
        """Return `item` in the form `encode` expects; raise ValueError with a user message."""

    def parse_input_for(self, loaded: LoadedAdapter, item: Any) -> Any:
        """Return `item` parsed for the adapter `loaded`; raise ValueError with a user message.

        Task types whose accepted inputs depend on how the adapter was trained (a regression
        task trained on pairs needs pairs) check that here. The default is `parse_input`.
        """
        return self.parse_input(item)

    @abstractmethod
    def encode(
        self, tokenizer: PreTrainedTokenizerFast, rows: list[tuple[LoadedAdapter, Any]]
    ) -> tuple[list[EncodedRow], Any]:
        """Return the encoder rows of (adapter, input) rows, and a plan that `decode` reads."""

    @abstractmethod
    def decode(
        self,
        rows: list[tuple[LoadedAdapter, Any]],
        encoded: list[EncodedRow],
        plan: Any,
        outputs: list[torch.Tensor],
    ) -> list[dict]:
        """Return one prediction per row from the head outputs of its encoder rows.

        `outputs[i]` belongs to `encoded[i]`: `[num_outputs]` for pooled task types, and
        `[num_tokens, num_outputs]` for token-level ones.
        """
