"""Forgetting control in a run: which penalties apply, and the Fisher of the init version."""

import logging
import random
from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedTokenizerFast

from service.hyperparameters import EncoderTrainingHyperparameters
from service.modeling.delta import Delta
from service.modeling.lora import AdapterRoute
from worker.trainer.data import tokenize
from worker.trainer.model import TaskModel
from worker.trainer.precision import Precision
from worker.trainer.regularizers import AnchorPenalty, estimate_fisher, ewc_penalty, l2sp_penalty

logger = logging.getLogger(__name__)

Fisher = dict[str, torch.Tensor]


def build_penalties(
    hp: EncoderTrainingHyperparameters,
    parameters: dict[str, nn.Parameter],
    fisher_of: Callable[[dict[str, nn.Parameter]], Fisher],
) -> list[AnchorPenalty]:
    """Return the L2-SP and EWC penalties that `hp` turns on, anchored at `parameters` now.

    `fisher_of` computes EWC's Fisher; it is called only when EWC is on.
    """
    if not parameters:
        return []
    penalties = []
    if hp.l2sp_lambda > 0:
        penalties.append(l2sp_penalty(parameters, hp.l2sp_lambda))
    if hp.ewc_lambda > 0:
        penalties.append(ewc_penalty(parameters, hp.ewc_lambda, fisher_of(parameters)))
    return penalties


def init_version_fisher(
    model: TaskModel,
    parameters: dict[str, nn.Parameter],
    init_delta: Delta | None,
    init_examples: list[dict],
    tokenizer: PreTrainedTokenizerFast,
    hp: EncoderTrainingHyperparameters,
    precision: Precision,
    route_for: Callable[[int], AdapterRoute | None],
) -> Fisher:
    """Return the init_from version's diagonal Fisher on its own training rows.

    The version's model is `model.encoder`, still at its starting weights, with the version's
    own head and labels. Up to `hp.ewc_fisher_samples` rows are drawn with `hp.seed`.

    Raises:
        ValueError: the init version's training rows are unknown.
    """
    assert init_delta is not None, "EWC needs init_from"
    if not init_examples:
        raise ValueError(
            "ewc_lambda needs the training rows of the init_from version, but none were found. "
            "Set ewc_lambda to 0, or continue from a version trained by a job."
        )
    label_index = {label: i for i, label in enumerate(init_delta.labels)}
    sample = random.Random(hp.seed).sample(
        init_examples, min(hp.ewc_fisher_samples, len(init_examples))
    )
    sample = [e for e in sample if e["label"] in label_index]
    token_ids = tokenize(tokenizer, [e["text"] for e in sample], hp.max_length)

    # the earlier version's model: this encoder at its start and that version's head
    source_model = TaskModel(model.encoder, model.pooling, len(init_delta.labels))
    source_model.head.load_state_dict(init_delta.head)
    source_model.to(precision.device).eval()
    was_trainable = {name: p.requires_grad for name, p in parameters.items()}
    for parameter in parameters.values():
        parameter.requires_grad_(True)

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with precision.autocast():
            return source_model(input_ids, attention_mask, route_for(1))

    def rows():
        for ids, example in zip(token_ids, sample, strict=True):
            input_ids = torch.tensor([ids], device=precision.device)
            yield input_ids, torch.ones_like(input_ids), label_index[example["label"]]

    fisher = estimate_fisher(parameters, forward, rows())
    for name, parameter in parameters.items():
        parameter.requires_grad_(was_trainable[name])
    logger.info("EWC Fisher estimated on %d rows of the init_from version", len(sample))
    return fisher
