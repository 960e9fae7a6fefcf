"""Strategies that train the base's own weights: freeze_bottom, gradual_unfreeze and full.

Their update is dense. It is compressed into LoRA pairs (truncated SVD) plus bias and
LayerNorm changes that the shared base's slots serve, or kept dense for a dedicated copy of
the encoder (`keep_dense`). The embeddings stay frozen except in `full`; the slots cannot
carry embedding changes, so a compressed `full` delta drops them and reports how much.
"""

from abc import abstractmethod

import torch
from torch import nn

from service.hyperparameters import DenseHyperparameters, FreezeBottomHyperparameters
from service.modeling.base import BaseModelSpec, build_encoder
from service.modeling.delta import Delta
from service.modeling.dense import merge_delta_into_encoder
from service.modeling.encoder import Encoder
from service.modeling.svd import compress_dense_update
from worker.trainer.strategies.base import EncoderUpdate, Strategy


def block_parameters(encoder: Encoder, blocks: range) -> dict[str, nn.Parameter]:
    """Return the parameters of the given blocks by name, plus the pooler's with the top one."""
    parameters: dict[str, nn.Parameter] = {}
    num_blocks = encoder.config.num_hidden_layers
    for name, parameter in encoder.named_parameters():
        if name.startswith("encoder.layer."):
            if int(name.split(".")[2]) in blocks:
                parameters[name] = parameter
        elif name.startswith("pooler.") and (num_blocks - 1) in blocks:
            parameters[name] = parameter
    return parameters


class DenseStrategy(Strategy):
    hp: DenseHyperparameters

    @abstractmethod
    def trainable_parameters(self, encoder: Encoder) -> dict[str, nn.Parameter]:
        """Return the encoder parameters that this strategy trains in some epoch, by name."""

    def prepare(self, encoder: Encoder) -> None:
        encoder.requires_grad_(False)
        self.start_epoch(encoder, 0)

    def start_epoch(self, encoder: Encoder, epoch: int) -> None:
        for parameter in self.trainable_parameters(encoder).values():
            parameter.requires_grad_(True)

    def load_init(self, encoder: Encoder, delta: Delta) -> None:
        merge_delta_into_encoder(encoder, delta)

    @torch.no_grad()
    def export(self, encoder: Encoder, spec: BaseModelSpec) -> EncoderUpdate:
        trained = {
            name: p.detach().float().cpu() for name, p in self.trainable_parameters(encoder).items()
        }
        if self.hp.keep_dense:
            return EncoderUpdate(dense={name: t.clone() for name, t in trained.items()})

        base = build_encoder(spec).state_dict()
        compressed = compress_dense_update(
            trained, base, set(encoder.adapted_layers()), self.hp.svd_rank
        )
        return EncoderUpdate(
            lora=compressed.lora,
            lora_scale=1.0,
            bias=compressed.bias,
            layer_norm=compressed.layer_norm,
            report={
                "compression_rank": float(self.hp.svd_rank),
                "compression_relative_frobenius_error": compressed.relative_error,
                "compression_dropped_fraction": compressed.dropped_fraction,
                "compression_dropped_tensors": float(len(compressed.dropped)),
            },
        )


class FreezeBottomStrategy(DenseStrategy):
    """The embeddings and the bottom `frozen_blocks` blocks stay frozen, and the rest trains."""

    name = "freeze_bottom"
    hp: FreezeBottomHyperparameters

    def frozen_blocks(self, encoder: Encoder) -> int:
        num_blocks = encoder.config.num_hidden_layers
        if self.hp.frozen_blocks is None:
            return num_blocks // 2
        if self.hp.frozen_blocks > num_blocks:
            raise ValueError(
                f"frozen_blocks is {self.hp.frozen_blocks}, but the base model has only "
                f"{num_blocks} blocks; choose at most {num_blocks}."
            )
        return self.hp.frozen_blocks

    def trainable_parameters(self, encoder: Encoder) -> dict[str, nn.Parameter]:
        num_blocks = encoder.config.num_hidden_layers
        return block_parameters(encoder, range(self.frozen_blocks(encoder), num_blocks))


class GradualUnfreezeStrategy(DenseStrategy):
    """Epoch 0 trains the head alone, and epoch e also trains the top e blocks.

    Howard and Ruder (2018, section 3.2) unfreeze from the top because the top layers hold
    the most task-specific knowledge. Once every block trains, the embeddings stay frozen.
    """

    name = "gradual_unfreeze"

    def unfrozen_blocks(self, encoder: Encoder, epoch: int) -> range:
        num_blocks = encoder.config.num_hidden_layers
        return range(max(0, num_blocks - epoch), num_blocks)

    def trainable_parameters(self, encoder: Encoder) -> dict[str, nn.Parameter]:
        return block_parameters(encoder, self.unfrozen_blocks(encoder, self.hp.epochs - 1))

    def start_epoch(self, encoder: Encoder, epoch: int) -> None:
        training = block_parameters(encoder, self.unfrozen_blocks(encoder, epoch))
        for name, parameter in self.trainable_parameters(encoder).items():
            parameter.requires_grad_(name in training)


class FullStrategy(DenseStrategy):
    """Every encoder parameter trains, the embeddings included."""

    name = "full"

    def trainable_parameters(self, encoder: Encoder) -> dict[str, nn.Parameter]:
        return dict(encoder.named_parameters())
