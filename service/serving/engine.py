"""The serving engine: one frozen base model per process serving every task.

Each request resolves its task's live version in the registry, so a newly promoted version is
served from the next request on without a restart. The delta is loaded into the adapter cache
on first use; every forward call passes a per-row `AdapterRoute`, so concurrent calls for
different tasks never see each other's adapter.
"""

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.modeling.base import BaseModel, load_base_model
from service.modeling.delta import DeltaFormatError, deserialize_delta, sha256_hex
from service.modeling.heads import pool
from service.modeling.lora import AdapterRoute
from service.registry.models import Adapter, Task
from service.serving.cache import AdapterCache, LoadedAdapter
from service.serving.errors import AdapterCorrupt, AdapterIncompatible, TaskNotFound, TaskNotReady

logger = logging.getLogger(__name__)

BATCH_SIZE = 64


@dataclass(frozen=True)
class PredictionResult:
    task: str
    adapter_version: int
    predictions: list[dict]


class ServingEngine:
    """Holds the shared base model and the adapter cache, and runs predictions."""

    def __init__(self, settings: Settings, base: BaseModel | None = None) -> None:
        self.settings = settings
        self.base = base or load_base_model(settings.resolved_base_model_dir)
        self.cache = AdapterCache(self.base.encoder, budget_bytes=settings.adapter_cache_mb << 20)
        # Forward passes and slot writes both touch the slot tables, so they take turns.
        self.lock = threading.Lock()
        self.tokenizer_lock = threading.Lock()

    def predict(self, session: Session, task_name: str, inputs: list[str]) -> PredictionResult:
        """Return one prediction per input, from the task's live version."""
        loaded = self.load_live_adapter(session, task_name)
        try:
            probabilities = self.classify([(loaded, text) for text in inputs])
        finally:
            self.release(loaded)
        predictions = [
            {
                "label": loaded.labels[int(row.argmax())],
                "scores": {
                    label: float(p) for label, p in zip(loaded.labels, row.tolist(), strict=True)
                },
            }
            for row in probabilities
        ]
        return PredictionResult(task_name, loaded.version, predictions)

    def load_live_adapter(self, session: Session, task_name: str) -> LoadedAdapter:
        """Return the task's live version, loaded into the cache and held until `release`."""
        task = session.scalar(select(Task).where(Task.name == task_name))
        if task is None:
            raise TaskNotFound(task_name)
        if task.live_version is None:
            raise TaskNotReady(
                f"Task {task_name!r} has no trained version yet; wait for its job to succeed."
            )
        row = session.execute(
            select(Adapter.id, Adapter.version, Adapter.sha256, Adapter.base_fingerprint).where(
                Adapter.task_id == task.id, Adapter.version == task.live_version
            )
        ).one()

        with self.lock:
            loaded = self.cache.get(row.id)
            if loaded is not None:
                loaded.in_use += 1
                return loaded

        if row.base_fingerprint != self.base.fingerprint:
            logger.warning(
                "task %s v%d: delta base %s differs from loaded base %s",
                task_name,
                row.version,
                row.base_fingerprint[:12],
                self.base.fingerprint[:12],
            )
            raise AdapterIncompatible(
                f"Task {task_name!r} version {row.version} was trained on base model "
                f"{row.base_fingerprint[:12]}, but this server runs {self.base.fingerprint[:12]}; "
                "retrain the task on this base or serve it with its own base model."
            )
        data = session.scalar(select(Adapter.delta).where(Adapter.id == row.id))
        if sha256_hex(data) != row.sha256:
            logger.error("task %s v%d: stored delta fails its sha256 check", task_name, row.version)
            raise AdapterCorrupt(
                f"Task {task_name!r} version {row.version}: stored delta fails its sha256 check."
            )
        try:
            delta = deserialize_delta(data)
        except DeltaFormatError as exc:
            logger.error("task %s v%d: %s", task_name, row.version, exc)
            raise AdapterCorrupt(f"Task {task_name!r} version {row.version}: {exc}") from exc

        with self.lock:
            # Another thread may have loaded it while this one read the registry.
            loaded = self.cache.get(row.id) or self.cache.put(row.id, task_name, row.version, delta)
            loaded.in_use += 1
        return loaded

    def release(self, loaded: LoadedAdapter) -> None:
        """End a request's hold on `loaded`, so the cache may evict it again."""
        with self.lock:
            loaded.in_use -= 1

    @torch.inference_mode()
    def classify(self, items: list[tuple[LoadedAdapter, str]]) -> list[torch.Tensor]:
        """Return label probabilities for (adapter, text) pairs, in input order.

        Rows of different adapters may share a batch: the encoder pass routes each row to its
        own slot, then each adapter's head runs on its own rows.
        """
        tokenizer = self.base.tokenizer
        max_length = max(loaded.max_length for loaded, _ in items)
        # A fast tokenizer's truncation setting is shared state: calls from several request
        # threads with different settings fail with "Already borrowed" unless they take turns.
        with self.tokenizer_lock:
            token_ids = tokenizer(
                [text for _, text in items], truncation=True, max_length=max_length
            )["input_ids"]
        order = sorted(range(len(items)), key=lambda i: len(token_ids[i]))
        results: list[torch.Tensor | None] = [None] * len(items)

        for start in range(0, len(order), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            width = max(len(token_ids[i]) for i in rows)
            input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for position, row in enumerate(rows):
                ids = token_ids[row]
                input_ids[position, : len(ids)] = torch.tensor(ids)
                attention_mask[position, : len(ids)] = 1

            with self.lock:
                route = AdapterRoute.for_rows([items[row][0].slot for row in rows])
                hidden = self.base.encoder(input_ids, attention_mask, route=route)

            by_adapter: dict[int, list[int]] = defaultdict(list)
            for position, row in enumerate(rows):
                by_adapter[id(items[row][0])].append(position)
            for positions in by_adapter.values():
                loaded = items[rows[positions[0]]][0]
                index = torch.tensor(positions)
                pooled = pool(
                    hidden[index], attention_mask[index], loaded.pooling, self.base.encoder
                )
                probabilities = loaded.head(pooled).softmax(dim=-1)
                for position, row_probabilities in zip(positions, probabilities, strict=True):
                    results[rows[position]] = row_probabilities
        return results  # type: ignore[return-value]


_engine: ServingEngine | None = None
_engine_lock = threading.Lock()


def get_serving_engine(settings: Settings) -> ServingEngine:
    """Return the process-wide engine, loading the base model on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            if settings.torch_threads:
                torch.set_num_threads(settings.torch_threads)
            _engine = ServingEngine(settings)
        return _engine
