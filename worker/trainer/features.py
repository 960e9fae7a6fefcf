"""Frozen encoder features for the linear probe, computed once per job."""

from collections.abc import Callable, Sequence

import torch

from service.modeling.lora import AdapterRoute
from worker.trainer.data import pad_batch, sorted_batches
from worker.trainer.model import TaskModel
from worker.trainer.precision import Precision

FEATURE_BATCH_SIZE = 128


@torch.inference_mode()
def compute_features(
    model: TaskModel,
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    precision: Precision,
    route_for: Callable[[int], AdapterRoute | None],
) -> torch.Tensor:
    """Return the pooled features `[N, hidden]` (fp32, on the device) of every row.

    Rows are sorted by length and batched, so padding stays small. The encoder runs in eval
    mode (no dropout), so the features are the same in every epoch.
    """
    model.eval()
    device = precision.device
    features = torch.empty(
        len(token_ids), model.encoder.config.hidden_size, dtype=torch.float32, device=device
    )
    for rows in sorted_batches([len(ids) for ids in token_ids], FEATURE_BATCH_SIZE):
        input_ids, attention_mask = pad_batch([token_ids[i] for i in rows], pad_id)
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        with precision.autocast():
            pooled = model.features(input_ids, attention_mask, route_for(len(rows)))
        features[torch.tensor(rows, device=device)] = pooled.float()
    return features
