"""LoRA: a trainable low-rank update B·A on chosen linear layers of the frozen base."""

import torch

from service.hyperparameters import LoraHyperparameters
from service.modeling.base import BaseModelSpec
from service.modeling.delta import Delta
from service.modeling.encoder import Encoder
from worker.trainer.strategies.base import (
    EncoderUpdate,
    Strategy,
    check_same_paths,
    reject_other_kinds,
)


class LoraStrategy(Strategy):
    name = "lora"
    hp: LoraHyperparameters

    def prepare(self, encoder: Encoder) -> None:
        encoder.requires_grad_(False)
        for layer in encoder.adapted_layers(self.hp.target_modules).values():
            layer.attach_lora(
                self.hp.lora_rank, self.hp.lora_alpha, self.hp.lora_dropout, self.hp.use_rslora
            )

    @torch.no_grad()
    def load_init(self, encoder: Encoder, delta: Delta) -> None:
        reject_other_kinds(delta, self.name, {"lora"})
        layers = encoder.adapted_layers(self.hp.target_modules)
        check_same_paths("LoRA", set(layers), set(delta.lora))
        for path, (lora_A, lora_B) in delta.lora.items():
            layer = layers[path]
            assert layer.lora_A is not None and layer.lora_B is not None
            if lora_A.shape != layer.lora_A.shape:
                raise ValueError(
                    f"init_from version has LoRA rank {lora_A.shape[0]}, but this job has "
                    f"{self.hp.lora_rank}. Set lora_rank to {lora_A.shape[0]}."
                )
            layer.lora_A.copy_(lora_A)
            # Keep the product scale·B·A of the earlier version under this job's scale.
            layer.lora_B.copy_(lora_B * (delta.lora_scale / layer.lora_scale))

    def export(self, encoder: Encoder, spec: BaseModelSpec) -> EncoderUpdate:
        update = EncoderUpdate()
        for path, layer in encoder.adapted_layers(self.hp.target_modules).items():
            assert layer.lora_A is not None and layer.lora_B is not None
            update.lora[path] = (layer.lora_A.detach().clone(), layer.lora_B.detach().clone())
            update.lora_scale = layer.lora_scale
        return update
