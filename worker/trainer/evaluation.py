"""Evaluation of a trained model, and of the form in which its delta will be served."""

from collections.abc import Callable, Sequence

import torch

from service.modeling.base import BaseModelSpec, build_encoder
from service.modeling.delta import Delta
from service.modeling.dense import build_dedicated_encoder
from service.modeling.lora import AdapterRoute
from service.modeling.slots import write_delta_to_slot
from worker.trainer.model import TaskModel
from worker.trainer.precision import Precision
from worker.trainer.tasktypes import Features, TrainingTaskType

SERVED_SLOT = 1

Outputs = Callable[[object], torch.Tensor]


@torch.inference_mode()
def evaluate(
    outputs_of: Outputs,
    batches: Sequence,
    features: Features,
    task_type: TrainingTaskType,
) -> dict[str, float]:
    """Return the task type's metrics of the outputs that `outputs_of` gives per batch.

    Each batch has `rows`, indexes into `features`. A token-level output is cut to the row's
    own tokens before the task type decodes it.
    """
    outputs: list[torch.Tensor | None] = [None] * len(features)
    lengths = features.lengths
    for batch in batches:
        batch_outputs = outputs_of(batch).float().cpu()
        for position, row in enumerate(batch.rows):
            output = batch_outputs[position]
            outputs[row] = output[: lengths[row]] if task_type.token_level else output
    return task_type.compute_metrics(features, outputs)  # type: ignore[arg-type]


def build_served_model(
    spec: BaseModelSpec, delta: Delta, device: torch.device, token_level: bool = False
) -> TaskModel:
    """Return the model the serving engine runs for `delta`, to run with `served_route`.

    A slot-served delta is written into slot 1 of a fresh base encoder, and a dense one gets
    its dedicated encoder.
    """
    if delta.dense:
        encoder = build_dedicated_encoder(spec, delta).to(device)
    else:
        # Slot tables are plain tensors that `.to()` does not move, so they are written after
        # the encoder is on its device.
        encoder = build_encoder(spec).to(device)
        write_delta_to_slot(encoder.adapted_layers(), SERVED_SLOT, delta, SERVED_SLOT + 1)
    num_outputs = delta.head["classifier.weight"].shape[0]
    model = TaskModel(encoder, delta.pooling, num_outputs, token_level=token_level)
    model.head.load_state_dict(delta.head)
    return model.to(device).eval()


def served_route(delta: Delta, batch_size: int, device: torch.device) -> AdapterRoute | None:
    if delta.dense or not delta.has_encoder_update:
        return None
    return AdapterRoute.for_rows([SERVED_SLOT] * batch_size, device=device)


def evaluate_served(
    spec: BaseModelSpec,
    delta: Delta,
    batches: Sequence,
    features: Features,
    task_type: TrainingTaskType,
    precision: Precision,
) -> dict[str, float]:
    """Return the metrics of `delta` as served, under the same precision as training.

    The residual stream takes the training dtype too, so that the difference from the metrics
    before compression is the compression's alone.
    """
    model = build_served_model(spec, delta, precision.device, task_type.token_level)
    model.encoder.residual_dtype = precision.dtype

    def outputs_of(batch) -> torch.Tensor:
        route = served_route(delta, len(batch.rows), precision.device)
        with precision.autocast():
            return model(batch.input_ids, batch.attention_mask, route, batch.token_type_ids)

    return evaluate(outputs_of, batches, features, task_type)
