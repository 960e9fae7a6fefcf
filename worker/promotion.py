"""Promotion policies: whether a job's new adapter version becomes the task's live version."""

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.modeling.delta import deserialize_delta
from service.registry.models import Adapter, PromotionPolicy, Task
from service.serving.engine import ServingEngine
from service.serving.tasktypes import get_serving_task_type
from service.tasktypes.options import SELECTION_METRICS
from worker.trainer.tasktypes import build_task_type_of_delta

logger = logging.getLogger(__name__)


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

    # The task type's default selection metric: accuracy, micro-F1, Pearson, entity F1, F1.
    metric = SELECTION_METRICS[task.task_type][0]
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
    """Return the task type's metrics of a stored delta on `examples`, served from a slot.

    A fresh serving engine (its own copy of the base) answers each example as a predict
    request, so the figure is the one that clients would see.
    """
    engine = ServingEngine(settings.model_copy(update={"preload_tasks": 0}))
    delta = deserialize_delta(delta_bytes)
    loaded = engine.cache.put("evaluation", "evaluation", 0, delta)
    task_type = build_task_type_of_delta(delta)
    serving_type = get_serving_task_type(delta.task_type)
    items = [
        (loaded, serving_type.parse_input_for(loaded, task_type.serving_input(example)))
        for example in examples
    ]
    return task_type.prediction_metrics(examples, engine.run_items(items))
