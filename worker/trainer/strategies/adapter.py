"""Bottleneck adapters after the attention and feed-forward sublayers (Houlsby placement)."""

import torch

from service.hyperparameters import AdapterHyperparameters
from service.modeling.base import BaseModelSpec
from service.modeling.bottleneck import BottleneckAdapter
from service.modeling.delta import Delta
from service.modeling.encoder import Encoder
from service.modeling.lora import AdaptedLinear
from worker.trainer.strategies.base import (
    EncoderUpdate,
    Strategy,
    check_same_paths,
    reject_other_kinds,
)

# The projections back to the hidden size that end the attention and feed-forward sublayers.
ADAPTER_TARGETS = ("attention_output", "output")


def adapter_layers(encoder: Encoder) -> dict[str, AdaptedLinear]:
    return encoder.adapted_layers(list(ADAPTER_TARGETS))


class AdapterStrategy(Strategy):
    name = "adapter"
    hp: AdapterHyperparameters

    def prepare(self, encoder: Encoder) -> None:
        encoder.requires_grad_(False)
        for layer in adapter_layers(encoder).values():
            layer.output_adapter = BottleneckAdapter(layer.out_features)
            layer.output_adapter.attach_trainable(self.hp.bottleneck_size, layer.weight.device)

    @torch.no_grad()
    def load_init(self, encoder: Encoder, delta: Delta) -> None:
        reject_other_kinds(delta, self.name, {"adapters"})
        layers = adapter_layers(encoder)
        check_same_paths("adapter", set(layers), set(delta.adapters))
        for path, tensors in delta.adapters.items():
            adapter = layers[path].output_adapter
            assert adapter is not None and adapter.down is not None and adapter.up is not None
            width = tensors["down_bias"].shape[0]
            if width != self.hp.bottleneck_size:
                raise ValueError(
                    f"init_from version has bottleneck size {width}, but this job has "
                    f"{self.hp.bottleneck_size}. Set bottleneck_size to {width}."
                )
            adapter.down.weight.copy_(tensors["down_weight"])
            adapter.down.bias.copy_(tensors["down_bias"])
            adapter.up.weight.copy_(tensors["up_weight"])
            adapter.up.bias.copy_(tensors["up_bias"])

    def export(self, encoder: Encoder, spec: BaseModelSpec) -> EncoderUpdate:
        update = EncoderUpdate()
        for path, layer in adapter_layers(encoder).items():
            assert layer.output_adapter is not None
            update.adapters[path] = layer.output_adapter.trained_tensors()
        return update
