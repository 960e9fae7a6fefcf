"""(IA)³: learned scales of the keys, the values and the feed-forward activation.

Liu et al. (2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning", section 3.3) rescale keys and values in attention and the activation
inside the feed-forward network. Scaling that activation equals scaling the input of the
feed-forward output projection, which is where Loraplex applies it.
"""

import torch

from service.hyperparameters import IA3Hyperparameters
from service.modeling.base import BaseModelSpec
from service.modeling.delta import Delta
from service.modeling.encoder import Encoder
from service.modeling.vectors import ScaleVector
from worker.trainer.strategies.base import (
    EncoderUpdate,
    Strategy,
    check_same_paths,
    reject_other_kinds,
)

OUTPUT_SCALE_TARGETS = ("key", "value")
INPUT_SCALE_TARGETS = ("output",)


class IA3Strategy(Strategy):
    name = "ia3"
    hp: IA3Hyperparameters

    def prepare(self, encoder: Encoder) -> None:
        encoder.requires_grad_(False)
        for layer in encoder.adapted_layers(list(OUTPUT_SCALE_TARGETS)).values():
            layer.output_scale = ScaleVector(layer.out_features)
            layer.output_scale.attach_trainable(layer.weight.device, torch.float32)
        for layer in encoder.adapted_layers(list(INPUT_SCALE_TARGETS)).values():
            layer.input_scale = ScaleVector(layer.in_features)
            layer.input_scale.attach_trainable(layer.weight.device, torch.float32)

    @torch.no_grad()
    def load_init(self, encoder: Encoder, delta: Delta) -> None:
        reject_other_kinds(delta, self.name, {"input_scale", "output_scale"})
        outputs = encoder.adapted_layers(list(OUTPUT_SCALE_TARGETS))
        inputs = encoder.adapted_layers(list(INPUT_SCALE_TARGETS))
        check_same_paths("(IA)³ output-scale", set(outputs), set(delta.output_scale))
        check_same_paths("(IA)³ input-scale", set(inputs), set(delta.input_scale))
        for path, vector in delta.output_scale.items():
            scale = outputs[path].output_scale
            assert scale is not None and scale.trainable is not None
            scale.trainable.copy_(vector)
        for path, vector in delta.input_scale.items():
            scale = inputs[path].input_scale
            assert scale is not None and scale.trainable is not None
            scale.trainable.copy_(vector)

    def export(self, encoder: Encoder, spec: BaseModelSpec) -> EncoderUpdate:
        update = EncoderUpdate()
        for path, layer in encoder.adapted_layers(list(OUTPUT_SCALE_TARGETS)).items():
            assert layer.output_scale is not None and layer.output_scale.trainable is not None
            update.output_scale[path] = layer.output_scale.trainable.detach().clone()
        for path, layer in encoder.adapted_layers(list(INPUT_SCALE_TARGETS)).items():
            assert layer.input_scale is not None and layer.input_scale.trainable is not None
            update.input_scale[path] = layer.input_scale.trainable.detach().clone()
        return update
