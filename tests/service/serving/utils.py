"""Random deltas and registry rows for serving tests."""

import torch
from sqlalchemy.orm import Session

from service.modeling.delta import Delta
from service.modeling.encoder import Encoder
from service.registry.adapters import add_adapter_version, get_or_create_task
from service.registry.models import Adapter


def make_delta(
    encoder: Encoder,
    rank: int = 4,
    seed: int = 0,
    labels: tuple[str, ...] = ("a", "b"),
    targets: tuple[str, ...] = ("query", "value"),
    fingerprint: str = "f" * 64,
    scale: float = 1.0,
) -> Delta:
    """Return a LoRA delta with random weights large enough to change predictions."""
    generator = torch.Generator().manual_seed(seed)
    lora = {}
    for path, layer in encoder.adapted_layers(list(targets)).items():
        lora[path] = (
            torch.randn(rank, layer.in_features, generator=generator) * 0.2,
            torch.randn(layer.out_features, rank, generator=generator) * 0.2,
        )
    hidden = encoder.config.hidden_size
    head = {
        "classifier.weight": torch.randn(len(labels), hidden, generator=generator),
        "classifier.bias": torch.zeros(len(labels)),
    }
    return Delta(
        "lora", "text_classification", list(labels), fingerprint, "mean", 32, scale, lora, head
    )


def register_delta(session: Session, task_name: str, delta: Delta, *, live: bool = True) -> Adapter:
    """Store `delta` as the task's next version (creating the task), live by default."""
    task = get_or_create_task(session, task_name, delta.task_type, delta.labels)
    return add_adapter_version(session, task, delta, make_live=live)
