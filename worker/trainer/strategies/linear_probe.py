"""Linear probe: only the head trains, on frozen encoder features computed once per job."""

import torch
from torch import nn

from service.modeling.base import BaseModelSpec
from service.modeling.delta import Delta
from service.modeling.dense import merge_delta_into_encoder
from service.modeling.encoder import Encoder
from service.modeling.lora import AdapterRoute
from service.modeling.slots import write_delta_to_slot
from worker.trainer.strategies.base import EncoderUpdate, Strategy

# The slot of the trainer's encoder copy that an init_from delta is written into.
INIT_SLOT = 1


class LinearProbeStrategy(Strategy):
    """With init_from, features come from that version's encoder and its update is kept."""

    name = "linear_probe"
    uses_cached_features = True

    def __init__(self, hyperparameters) -> None:
        super().__init__(hyperparameters)
        self.init_delta: Delta | None = None
        self.init_in_slot = False

    def prepare(self, encoder: Encoder) -> None:
        encoder.requires_grad_(False)

    def trainable_parameters(self, encoder: Encoder) -> dict[str, nn.Parameter]:
        return {}

    def load_init(self, encoder: Encoder, delta: Delta) -> None:
        self.init_delta = delta
        if delta.dense:
            merge_delta_into_encoder(encoder, delta)
        elif delta.has_encoder_update:
            write_delta_to_slot(encoder.adapted_layers(), INIT_SLOT, delta, INIT_SLOT + 1)
            self.init_in_slot = True

    def route(self, batch_size: int, device: torch.device) -> AdapterRoute | None:
        if not self.init_in_slot:
            return None
        return AdapterRoute.for_rows([INIT_SLOT] * batch_size, device=device)

    def export(self, encoder: Encoder, spec: BaseModelSpec) -> EncoderUpdate:
        if self.init_delta is None:
            return EncoderUpdate()
        return EncoderUpdate.from_delta(self.init_delta)
