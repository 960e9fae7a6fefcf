"""The serving engine: one frozen base model per process serving every task.

A request first acquires its task's live adapter (`acquire`). That resolves the live version in
the registry, so a newly promoted version is served from the next request on without a
restart, and keeps the adapter in the cache until `release`. Rows of any number of tasks then go
through `run_rows`: one tokenizer call, batches sorted by length, one encoder pass per batch
with a per-row `AdapterRoute`, and each adapter's head on its own rows.
"""

import logging
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.modeling.base import BaseModel, load_base_model
from service.modeling.delta import DeltaFormatError, deserialize_delta, sha256_hex
from service.modeling.heads import pool
from service.modeling.lora import AdapterRoute
from service.registry.models import Adapter, Task
from service.serving.cache import AdapterCache, LoadedAdapter
from service.serving.errors import AdapterCorrupt, AdapterIncompatible, TaskNotFound, TaskNotReady
from service.serving.tasktypes import EncodedRow, get_serving_task_type
from service.serving.tasktypes.text_classification import TextClassification

logger = logging.getLogger(__name__)

TEXT_CLASSIFICATION = TextClassification()

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class PredictionResult:
    task: str
    adapter_version: int
    predictions: list[dict]


def resolve_device_and_dtype(settings: Settings) -> tuple[torch.device, torch.dtype]:
    """Pick the serving device and weight dtype from the settings and the hardware."""
    if settings.serve_device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(settings.serve_device)
    if settings.serve_dtype == "auto":
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    elif settings.serve_dtype in DTYPES:
        dtype = DTYPES[settings.serve_dtype]
    else:
        raise ValueError(
            f"LORAPLEX_SERVE_DTYPE={settings.serve_dtype!r} is invalid; "
            f"use auto or one of {sorted(DTYPES)}."
        )
    return device, dtype


class ServingEngine:
    """Holds the shared base model and the adapter cache, and runs predictions."""

    def __init__(self, settings: Settings, base: BaseModel | None = None) -> None:
        self.settings = settings
        self.base = base or load_base_model(settings.resolved_base_model_dir)
        self.device, self.dtype = resolve_device_and_dtype(settings)
        self.base.encoder.to(device=self.device, dtype=self.dtype)
        self.cache = AdapterCache(self.base.encoder, budget_bytes=settings.adapter_cache_mb << 20)
        # Forward passes and slot writes both touch the slot tables, so they take turns.
        self.lock = threading.Lock()
        # A fast tokenizer's truncation setting is shared state: calls from several threads
        # with different settings fail with "Already borrowed" unless they take turns.
        self.tokenizer_lock = threading.Lock()
        self.usage: Counter[str] = Counter()
        logger.info("serving engine ready on %s in %s", self.device, self.dtype)

    # adapters

    def acquire(self, session: Session, task_name: str) -> LoadedAdapter:
        """Return the task's live adapter, loaded into the cache and held until `release`."""
        task = session.scalar(select(Task).where(Task.name == task_name))
        if task is None:
            raise TaskNotFound(task_name)
        if task.live_version is None:
            raise TaskNotReady(
                f"Task {task_name!r} has no live version yet; wait for its job to succeed "
                "or promote a version."
            )
        row = session.execute(
            select(Adapter.id, Adapter.version, Adapter.sha256, Adapter.base_fingerprint).where(
                Adapter.task_id == task.id, Adapter.version == task.live_version
            )
        ).one()
        key = f"{row.id}:{row.sha256}"

        with self.lock:
            loaded = self.cache.get(key)
            if loaded is not None:
                loaded.in_use += 1
                loaded.pinned = task.pinned
                return loaded

        delta = self._read_delta(session, task_name, row)
        with self.lock:
            # Another thread may have loaded it while this one read the registry.
            loaded = self.cache.get(key) or self.cache.put(key, task_name, row.version, delta)
            loaded.in_use += 1
            loaded.pinned = task.pinned
            # An older version of the task is never needed again once a newer one is live.
            self.cache.evict_other_versions(task_name, keep=key)
        return loaded

    def acquire_many(self, session: Session, task_names: list[str]) -> list[LoadedAdapter]:
        """Acquire the live adapters of several tasks; on any error, release those held."""
        held: list[LoadedAdapter] = []
        try:
            for name in task_names:
                held.append(self.acquire(session, name))
        except BaseException:
            for loaded in held:
                self.release(loaded)
            raise
        return held

    def release(self, loaded: LoadedAdapter, rows: int = 0) -> None:
        """End a request's hold on `loaded`, counting `rows` served predictions."""
        with self.lock:
            loaded.in_use -= 1
            self.usage[loaded.task_name] += rows

    def _read_delta(self, session: Session, task_name: str, row):
        if row.base_fingerprint != self.base.fingerprint:
            logger.warning(
                "task %s v%d rejected: delta base %s, loaded base %s",
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
            return deserialize_delta(data)
        except DeltaFormatError as exc:
            logger.error("task %s v%d: %s", task_name, row.version, exc)
            raise AdapterCorrupt(f"Task {task_name!r} version {row.version}: {exc}") from exc

    # inference

    def predict(self, session: Session, task_name: str, inputs: list) -> PredictionResult:
        """Return one prediction per input from the task's live version, without batching."""
        loaded = self.acquire(session, task_name)
        try:
            task_type = get_serving_task_type(loaded.task_type)
            items = [task_type.parse_input_for(loaded, item) for item in inputs]
            predictions = self.run_items([(loaded, item) for item in items])
        finally:
            self.release(loaded, len(inputs))
        return PredictionResult(task_name, loaded.version, predictions)

    def run_items(self, items: list[tuple[LoadedAdapter, Any]]) -> list[dict]:
        """Return one prediction per (adapter, parsed input) item, in input order.

        Items of every task type share the encoder passes: each type encodes its items (in
        one tokenizer call), all encoder rows run together, and each type decodes its own.
        """
        by_type: dict[str, list[int]] = defaultdict(list)
        for index, (loaded, _) in enumerate(items):
            by_type[loaded.task_type].append(index)

        plans = []
        encoder_rows: list[tuple[LoadedAdapter, EncodedRow]] = []
        for task_type_name, indexes in by_type.items():
            task_type = get_serving_task_type(task_type_name)
            rows = [items[i] for i in indexes]
            with self.tokenizer_lock:
                encoded, plan = task_type.encode(self.base.tokenizer, rows)
            start = len(encoder_rows)
            encoder_rows.extend((rows[row.item][0], row) for row in encoded)
            plans.append((task_type, indexes, rows, encoded, plan, start))

        outputs = self.run_encoded(encoder_rows)

        predictions: list[dict | None] = [None] * len(items)
        for task_type, indexes, rows, encoded, plan, start in plans:
            decoded = task_type.decode(rows, encoded, plan, outputs[start : start + len(encoded)])
            for index, prediction in zip(indexes, decoded, strict=True):
                predictions[index] = prediction
        return predictions  # type: ignore[return-value]

    def run_rows(self, rows: list[tuple[LoadedAdapter, str]]) -> list[torch.Tensor]:
        """Return the head outputs `[num_outputs]` of single-text rows of pooled task types."""
        with self.tokenizer_lock:
            encoded, _ = TEXT_CLASSIFICATION.encode(self.base.tokenizer, rows)
        return self.run_encoded([(rows[row.item][0], row) for row in encoded])

    @torch.inference_mode()
    def run_encoded(self, rows: list[tuple[LoadedAdapter, EncodedRow]]) -> list[torch.Tensor]:
        """Return the head output of each (adapter, encoder row), in input order.

        Pooled task types get `[num_outputs]` per row, token-level ones `[num_tokens,
        num_outputs]`. Rows with the same slot and tokens share one encoder row, so several
        head-only tasks on one input cost one row.
        """
        if not rows:
            return []
        unique: dict[tuple, int] = {}
        for loaded, row in rows:
            key = (loaded.slot, tuple(row.input_ids), tuple(row.token_type_ids or ()))
            unique.setdefault(key, len(unique))
        keys = list(unique)
        needs: dict[int, set[str]] = defaultdict(set)
        for loaded, row in rows:
            key = unique[loaded.slot, tuple(row.input_ids), tuple(row.token_type_ids or ())]
            needs[key].add("tokens" if loaded.token_level else loaded.pooling)

        features: list[dict[str, torch.Tensor]] = [{} for _ in keys]
        for batch in self._batches([len(key[1]) for key in keys]):
            input_ids, attention_mask, token_type_ids = self._pad([keys[i] for i in batch])
            route = AdapterRoute.for_rows([keys[i][0] for i in batch], device=self.device)
            with self.lock:
                hidden = self.base.encoder(input_ids, attention_mask, token_type_ids, route=route)
            hidden = hidden.float()
            for kind in set().union(*(needs[i] for i in batch)):
                if kind == "tokens":
                    for position, key in enumerate(batch):
                        if "tokens" in needs[key]:
                            features[key]["tokens"] = hidden[position, : len(keys[key][1])]
                    continue
                pooled = pool(hidden, attention_mask, kind, self.base.encoder)
                for position, key in enumerate(batch):
                    features[key][kind] = pooled[position]

        row_features = []
        for loaded, row in rows:
            key = unique[loaded.slot, tuple(row.input_ids), tuple(row.token_type_ids or ())]
            row_features.append(features[key]["tokens" if loaded.token_level else loaded.pooling])
        return self._apply_heads(rows, row_features)

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Split row indexes, sorted by length, under the row and padded-token budgets."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            width = lengths[index]  # the maximum so far, because rows are sorted by length
            if current and (
                len(current) >= self.settings.max_batch_rows
                or (len(current) + 1) * width > self.settings.max_batch_tokens
            ):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def _pad(self, keys: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Pad (slot, input ids, token type ids) keys into `[B, T]` tensors on the device."""
        width = max(len(key[1]) for key in keys)
        input_ids = torch.full((len(keys), width), self.base.tokenizer.pad_token_id)
        attention_mask = torch.zeros((len(keys), width), dtype=torch.long)
        with_types = any(key[2] for key in keys)
        token_type_ids = torch.zeros((len(keys), width), dtype=torch.long) if with_types else None
        for row, (_, ids, types) in enumerate(keys):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
            if token_type_ids is not None and types:
                token_type_ids[row, : len(types)] = torch.tensor(types)
        if token_type_ids is not None:
            token_type_ids = token_type_ids.to(self.device)
        return input_ids.to(self.device), attention_mask.to(self.device), token_type_ids

    def _apply_heads(
        self, rows: list[tuple[LoadedAdapter, EncodedRow]], features: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        by_adapter: dict[int, list[int]] = defaultdict(list)
        for index, (loaded, _) in enumerate(rows):
            by_adapter[id(loaded)].append(index)

        outputs: list[torch.Tensor | None] = [None] * len(rows)
        for indexes in by_adapter.values():
            loaded = rows[indexes[0]][0]
            if loaded.token_level:
                for index in indexes:
                    outputs[index] = loaded.head(features[index]).cpu()
                continue
            logits = loaded.head(torch.stack([features[i] for i in indexes])).cpu()
            for index, row_logits in zip(indexes, logits, strict=True):
                outputs[index] = row_logits
        return outputs  # type: ignore[return-value]

    # usage counts, for preloading the busiest tasks at start

    def flush_usage(self, session: Session) -> None:
        """Add the predictions counted since the last flush to `tasks.predictions_count`."""
        with self.lock:
            counts, self.usage = self.usage, Counter()
        for task_name, count in counts.items():
            session.execute(
                update(Task)
                .where(Task.name == task_name)
                .values(predictions_count=Task.predictions_count + count)
            )

    def preload(self, session: Session, limit: int) -> list[str]:
        """Load the live adapters of the pinned tasks, then of the busiest, up to `limit`."""
        names = session.scalars(
            select(Task.name)
            .where(Task.live_version.is_not(None))
            .order_by(Task.pinned.desc(), Task.predictions_count.desc(), Task.name)
            .limit(limit)
        ).all()
        loaded_names = []
        for name in names:
            try:
                self.release(self.acquire(session, name))
                loaded_names.append(name)
            except (AdapterIncompatible, AdapterCorrupt) as exc:
                logger.warning("preloading task %s skipped: %s", name, exc)
        logger.info("preloaded %d tasks", len(loaded_names))
        return loaded_names


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
