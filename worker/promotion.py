"""Promotion policies: whether a job's new adapter version becomes the task's live version."""

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.metrics import classification_metrics
from service.modeling.delta import deserialize_delta
from service.registry.models import Adapter, PromotionPolicy, Task
from service.serving.engine import ServingEngine

logger = logging.getLogger(__name__)

# The metric that `if_better` compares, per task type.
PROMOTION_METRIC = {"text_classification": "accuracy"}


def decide_promotion(
    session: Session,
    task: Task,
    candidate_metrics: dict[str, float],
    eval_examples: list[dict],
    settings: Settings,
) -> tuple[bool, str]:
    """Return whether the new version goes live, and the reason, under the task's policy.

    `if_better` evaluates the live version on the new job's eval examples, exactly as the
    serving engine would run it, and promotes when the new metric is at least as high.
    """
    policy = task.promotion_policy
    if policy == PromotionPolicy.always or task.live_version is None:
        return True, f"policy {policy}" if task.live_version is not None else "first version"
    if policy == PromotionPolicy.manual:
        return False, "policy manual: promote the version to make it live"

    metric = PROMOTION_METRIC.get(task.task_type, "accuracy")
    live = session.scalar(
        select(Adapter).where(Adapter.task_id == task.id, Adapter.version == task.live_version)
    )
    if live is None:
        return True, "live version missing; promoted"
    live_metric = evaluate_adapter(settings, live.delta, eval_examples)[metric]
    new_metric = candidate_metrics[metric]
    if new_metric >= live_metric:
        return True, f"{metric} {new_metric:.4f} >= live version's {live_metric:.4f}"
    return False, f"{metric} {new_metric:.4f} < live version's {live_metric:.4f}; not promoted"


def evaluate_adapter(
    settings: Settings, delta_bytes: bytes, examples: list[dict]
) -> dict[str, float]:
    """Return the classification metrics of a stored delta on `examples`, served from a slot.

    A fresh serving engine (its own copy of the base) runs the rows, so the figure is the one
    that clients would see.
    """
    engine = ServingEngine(settings.model_copy(update={"preload_tasks": 0}))
    delta = deserialize_delta(delta_bytes)
    loaded = engine.cache.put("evaluation", "evaluation", 0, delta)
    logits = engine.run_rows([(loaded, example["text"]) for example in examples])

    label_index = {label: index for index, label in enumerate(delta.labels)}
    predictions = [int(row.argmax()) for row in logits]
    # A label the delta does not know counts as a miss.
    references = [label_index.get(example["label"], -1) for example in examples]
    return classification_metrics(predictions, references, len(delta.labels))
