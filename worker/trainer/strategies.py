"""Fine-tuning strategies: which parameters train, and what goes into the delta."""

from torch import nn

from service.hyperparameters import LoraHyperparameters, TrainingHyperparameters
from service.modeling.encoder import Encoder


class Strategy:
    """Prepares an encoder copy for training and extracts its delta afterwards."""

    name: str

    def prepare(self, encoder: Encoder) -> list[nn.Parameter]:
        """Make the strategy's encoder parameters trainable and return them."""
        raise NotImplementedError

    def export(self, encoder: Encoder) -> tuple[dict, float]:
        """Return the trained LoRA tensors by module path and their scale."""
        raise NotImplementedError


class LoraStrategy(Strategy):
    """LoRA on the chosen linear layers; the base weights stay frozen."""

    name = "lora"

    def __init__(self, hyperparameters: LoraHyperparameters) -> None:
        self.hp = hyperparameters

    def prepare(self, encoder: Encoder) -> list[nn.Parameter]:
        encoder.requires_grad_(False)
        parameters = []
        for layer in encoder.adapted_layers(self.hp.target_modules).values():
            layer.attach_lora(self.hp.lora_rank, self.hp.lora_alpha, self.hp.lora_dropout)
            parameters.extend([layer.lora_A, layer.lora_B])
        return parameters

    def export(self, encoder: Encoder) -> tuple[dict, float]:
        lora, scale = {}, 1.0
        for path, layer in encoder.adapted_layers(self.hp.target_modules).items():
            lora[path] = (layer.lora_A.detach().clone(), layer.lora_B.detach().clone())
            scale = layer.lora_scale
        return lora, scale


def build_strategy(strategy: str, hyperparameters: TrainingHyperparameters) -> Strategy:
    if strategy == "lora" and isinstance(hyperparameters, LoraHyperparameters):
        return LoraStrategy(hyperparameters)
    raise ValueError(f"Strategy {strategy!r} is not supported (yet); supported: ['lora'].")
