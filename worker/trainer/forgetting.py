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
from worker.trainer.batches import make_batch
from worker.trainer.model import TaskModel
from worker.trainer.precision import Precision
from worker.trainer.regularizers import AnchorPenalty, estimate_fisher, ewc_penalty, l2sp_penalty
from worker.trainer.tasktypes import TaskOptions, TrainingTaskType, build_task_type

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
    task_type: TrainingTaskType,
    tokenizer: PreTrainedTokenizerFast,
    hp: EncoderTrainingHyperparameters,
    precision: Precision,
    route_for: Callable[[int], AdapterRoute | None],
) -> Fisher:
    """Return the init_from version's diagonal Fisher on its own training rows.

    The version's model is `model.encoder`, still at its starting weights, with the version's
    own head and labels. Up to `hp.ewc_fisher_samples` examples are drawn with `hp.seed`, and
    each encoder row of theirs gives one gradient of the task type's loss.

    Raises:
        ValueError: the init version is of another task type, or its training rows are
            unknown.
    """
    assert init_delta is not None, "EWC needs init_from"
    if init_delta.task_type != task_type.name:
        raise ValueError(
            f"ewc_lambda needs an init_from version of this job's task type {task_type.name}, "
            f"but it is a {init_delta.task_type} version. Set ewc_lambda to 0."
        )
    if not init_examples:
        raise ValueError(
            "ewc_lambda needs the training rows of the init_from version, but none were found. "
            "Set ewc_lambda to 0, or continue from a version trained by a job."
        )
    # the version's own task type: its labels, and its target scaling for regression
    source_type = build_task_type(
        init_delta.task_type, init_delta.labels, TaskOptions.from_hyperparameters(hp)
    )
    source_type.fit(init_examples)
    sample = random.Random(hp.seed).sample(
        init_examples, min(hp.ewc_fisher_samples, len(init_examples))
    )
    sample = [e for e in sample if not source_type.unknown_labels([e])]
    rows = source_type.featurize(tokenizer, sample)

    # the earlier version's model: this encoder at its start and that version's head
    num_outputs = init_delta.head["classifier.weight"].shape[0]
    source_model = TaskModel(
        model.encoder, model.pooling, num_outputs, token_level=source_type.token_level
    )
    source_model.head.load_state_dict(init_delta.head)
    source_model.to(precision.device).eval()
    was_trainable = {name: p.requires_grad for name, p in parameters.items()}
    for parameter in parameters.values():
        parameter.requires_grad_(True)

    def row_losses():
        pad_id = tokenizer.pad_token_id
        for row in range(len(rows)):
            if rows.units[row] == 0:
                continue  # a window without a labelled token has no loss
            batch = make_batch([row], rows, pad_id, precision.device)
            with precision.autocast():
                outputs = source_model(
                    batch.input_ids, batch.attention_mask, route_for(1), batch.token_type_ids
                )
            yield (
                source_type.loss_sum(outputs, batch.targets, batch.attention_mask) / rows.units[row]
            )

    fisher = estimate_fisher(parameters, row_losses())
    for name, parameter in parameters.items():
        parameter.requires_grad_(was_trainable[name])
    logger.info("EWC Fisher estimated on %d rows of the init_from version", len(rows))
    return fisher
