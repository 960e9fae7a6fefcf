"""Evaluation of a trained model, and of the form in which its delta will be served."""

from collections.abc import Callable

import torch

from service.metrics import classification_metrics
from service.modeling.base import BaseModelSpec, build_encoder
from service.modeling.delta import Delta
from service.modeling.dense import build_dedicated_encoder
from service.modeling.lora import AdapterRoute
from service.modeling.slots import write_delta_to_slot
from worker.trainer.batches import PaddedBatch
from worker.trainer.model import TaskModel
from worker.trainer.precision import Precision

SERVED_SLOT = 1

Logits = Callable[[PaddedBatch], torch.Tensor]


@torch.inference_mode()
def evaluate(
    logits_of: Logits, batches: list[PaddedBatch], num_rows: int, num_labels: int
) -> dict[str, float]:
    """Return accuracy and macro-F1 of the logits `[B, C]` that `logits_of` gives per batch."""
    predictions = [0] * num_rows
    references = [0] * num_rows
    for batch in batches:
        predicted = logits_of(batch).argmax(dim=-1).tolist()
        for row, prediction, target in zip(
            batch.rows, predicted, batch.targets.tolist(), strict=True
        ):
            predictions[row] = prediction
            references[row] = target
    return classification_metrics(predictions, references, num_labels)


def build_served_model(spec: BaseModelSpec, delta: Delta, device: torch.device) -> TaskModel:
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
    model = TaskModel(encoder, delta.pooling, len(delta.labels))
    model.head.load_state_dict(delta.head)
    return model.to(device).eval()


def served_route(delta: Delta, batch_size: int, device: torch.device) -> AdapterRoute | None:
    if delta.dense or not delta.has_encoder_update:
        return None
    return AdapterRoute.for_rows([SERVED_SLOT] * batch_size, device=device)


def evaluate_served(
    spec: BaseModelSpec,
    delta: Delta,
    batches: list[PaddedBatch],
    num_rows: int,
    precision: Precision,
) -> dict[str, float]:
    """Return the metrics of `delta` as served, under the same precision as training.

    The residual stream takes the training dtype too, so that the difference from the metrics
    before compression is the compression's alone.
    """
    model = build_served_model(spec, delta, precision.device)
    model.encoder.residual_dtype = precision.dtype

    def logits_of(batch: PaddedBatch) -> torch.Tensor:
        route = served_route(delta, len(batch.rows), precision.device)
        with precision.autocast():
            return model(batch.input_ids, batch.attention_mask, route)

    return evaluate(logits_of, batches, num_rows, len(delta.labels))
