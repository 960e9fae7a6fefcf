"""Frozen pooled encoder features for the linear probe, computed once per job."""

from collections.abc import Callable

import torch

from service.modeling.lora import AdapterRoute
from worker.trainer.data import pad_batch, sorted_batches
from worker.trainer.model import TaskModel
from worker.trainer.precision import Precision
from worker.trainer.tasktypes import Features

FEATURE_BATCH_SIZE = 128


@torch.inference_mode()
def compute_features(
    model: TaskModel,
    features: Features,
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
    pooled_rows = torch.empty(
        len(features), model.encoder.config.hidden_size, dtype=torch.float32, device=device
    )
    for rows in sorted_batches(features.lengths, FEATURE_BATCH_SIZE):
        input_ids, attention_mask = pad_batch([features.token_ids[i] for i in rows], pad_id)
        token_type_ids = features.batch_token_type_ids(rows, input_ids.shape[1])
        if token_type_ids is not None:
            token_type_ids = token_type_ids.to(device)
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        with precision.autocast():
            pooled = model.features(input_ids, attention_mask, route_for(len(rows)), token_type_ids)
        pooled_rows[torch.tensor(rows, device=device)] = pooled.float()
    return pooled_rows
