"""The adapter cache: deltas resident in the encoder's slot tables, evicted LRU by bytes.

Slot 0 is never assigned: it is the zero delta that rows without an adapter use. The cache is
not thread-safe on its own; the engine calls it under its lock.
"""

import ctypes
import ctypes.util
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from service.modeling.delta import Delta
from service.modeling.encoder import Encoder
from service.modeling.heads import ClassificationHead
from service.modeling.slots import (
    clear_slot,
    grow_slot_tables,
    slot_table_bytes,
    write_delta_to_slot,
)

logger = logging.getLogger(__name__)

INITIAL_SLOTS = 8
# Task types whose head runs on every token rather than on the pooled row.
TOKEN_LEVEL_TASK_TYPES = frozenset({"token_classification", "extractive_qa"})


@dataclass
class LoadedAdapter:
    """A delta written into a slot, with its head ready to run."""

    adapter_id: str
    task_name: str
    version: int
    slot: int
    task_type: str
    labels: list[str]
    pooling: str
    max_length: int
    head: ClassificationHead
    nbytes: int  # the delta's bytes, head included
    head_nbytes: int = 0
    pinned: bool = False
    # True when the head runs on every token (NER, QA) instead of on the pooled row.
    token_level: bool = False
    # The delta's task-type settings, such as a multi-label threshold or a QA stride.
    extra: dict[str, str] = field(default_factory=dict)
    # Requests between lookup and the end of their forward pass; a slot in use is never evicted.
    in_use: int = 0
    last_used: float = field(default_factory=time.monotonic)


class AdapterCache:
    """Maps adapter ids to slots in `encoder`'s adapted layers, under a byte budget.

    An adapter is charged the memory it occupies: its delta, or, when larger, one slot of every
    slot table (a rank-4 delta in a rank-16 table occupies a rank-16 slot), plus its head.
    """

    def __init__(self, encoder: Encoder, budget_bytes: int, max_slots: int = 4096) -> None:
        self.encoder = encoder
        self.budget_bytes = budget_bytes
        self.max_slots = max_slots
        self.layers = encoder.adapted_layers()
        self.device = encoder.embeddings.word_embeddings.weight.device
        self.entries: OrderedDict[str, LoadedAdapter] = OrderedDict()
        self.num_slots = INITIAL_SLOTS
        self.free_slots = list(range(INITIAL_SLOTS - 1, 0, -1))

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, adapter_id: str) -> LoadedAdapter | None:
        loaded = self.entries.get(adapter_id)
        if loaded is not None:
            self.entries.move_to_end(adapter_id)
            loaded.last_used = time.monotonic()
        return loaded

    def put(self, adapter_id: str, task_name: str, version: int, delta: Delta) -> LoadedAdapter:
        """Write `delta` into a free slot, evicting least-recently-used adapters as needed."""
        head_nbytes = sum(t.nbytes for t in delta.head.values())
        estimate = max(delta.nbytes, head_nbytes + self.slot_nbytes())
        self._make_room(estimate if delta.has_encoder_update else delta.nbytes)
        # A head-only delta changes nothing in the encoder: its rows use the zero slot and
        # share encoder passes with every other head-only task.
        slot = self._take_slot() if delta.has_encoder_update else 0
        try:
            write_delta_to_slot(self.layers, slot, delta, self.num_slots)
        except ValueError:
            if slot:
                clear_slot(self.layers, slot)
                self.free_slots.append(slot)
            raise

        num_outputs = delta.head["classifier.weight"].shape[0]
        head = ClassificationHead(self.encoder.config.hidden_size, num_outputs, dropout=0.0)
        head.load_state_dict(delta.head)
        head.requires_grad_(False).eval().to(self.device)
        loaded = LoadedAdapter(
            adapter_id=adapter_id,
            task_name=task_name,
            version=version,
            slot=slot,
            task_type=delta.task_type,
            token_level=delta.task_type in TOKEN_LEVEL_TASK_TYPES,
            labels=delta.labels,
            pooling=delta.pooling,
            max_length=delta.max_length,
            head=head,
            nbytes=delta.nbytes,
            head_nbytes=head_nbytes,
            extra=dict(delta.extra),
        )
        self.entries[adapter_id] = loaded
        # A wider table (a higher rank) costs every adapter more: trim to the budget again.
        loaded.in_use += 1
        try:
            self._make_room(0)
        finally:
            loaded.in_use -= 1
        logger.info(
            "adapter %s (task %s v%d) loaded into slot %d, %d bytes; %d resident",
            adapter_id,
            task_name,
            version,
            slot,
            loaded.nbytes,
            len(self.entries),
        )
        return loaded

    def evict(self, adapter_id: str) -> None:
        loaded = self.entries.pop(adapter_id)
        if loaded.slot:
            clear_slot(self.layers, loaded.slot)
            self.free_slots.append(loaded.slot)
        logger.info(
            "adapter %s (task %s v%d) evicted from slot %d",
            adapter_id,
            loaded.task_name,
            loaded.version,
            loaded.slot,
        )

    def evict_other_versions(self, task_name: str, keep: str) -> None:
        """Evict the task's other cached versions that no request is using."""
        for key, loaded in list(self.entries.items()):
            if key != keep and loaded.task_name == task_name and not loaded.in_use:
                self.evict(key)

    def _make_room(self, nbytes: int) -> None:
        while self.entries and self.used_bytes + nbytes > self.budget_bytes:
            victim = self._find_victim()
            if victim is None:
                break
            self.evict(victim)

    def _find_victim(self) -> str | None:
        """Return the least recently used adapter that is neither pinned nor in use."""
        return next((k for k, v in self.entries.items() if not v.pinned and not v.in_use), None)

    def _take_slot(self) -> int:
        if not self.free_slots:
            if self.num_slots >= self.max_slots:
                victim = self._find_victim()
                if victim is None:
                    raise RuntimeError(
                        f"All {self.max_slots} adapter slots hold pinned or in-use adapters."
                    )
                self.evict(victim)
            else:
                # Grow by a quarter (at least 8 slots), so that unused slots cost at most
                # about 25% of the resident deltas' memory.
                grown = min(max(self.num_slots + 8, self.num_slots * 5 // 4), self.max_slots)
                self.free_slots.extend(range(grown - 1, self.num_slots - 1, -1))
                self.num_slots = grown
                grow_slot_tables(self.layers, self.num_slots)
                release_free_heap()
        return self.free_slots.pop()

    def slot_nbytes(self) -> int:
        """Return the bytes of one slot across every slot table (rank padding included)."""
        return slot_table_bytes(self.layers) // self.num_slots

    @property
    def used_bytes(self) -> int:
        """Return the bytes charged to the resident adapters."""
        slot_nbytes = self.slot_nbytes() if self.entries else 0
        return sum(
            max(v.nbytes, v.head_nbytes + slot_nbytes) if v.slot else v.nbytes
            for v in self.entries.values()
        )

    @torch.no_grad()
    def resident_bytes(self) -> int:
        """Return the bytes held by slot tables and heads."""
        tables = sum(
            layer.slot_A.nbytes + layer.slot_B.nbytes
            for layer in self.layers.values()
            if layer.slot_A is not None and layer.slot_B is not None
        )
        heads = sum(sum(p.nbytes for p in v.head.parameters()) for v in self.entries.values())
        return tables + heads


def _load_malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None  # not glibc: musl and macOS have no malloc_trim


_MALLOC_TRIM = _load_malloc_trim()


def release_free_heap() -> None:
    """Return the heap memory that the process freed to the OS, where glibc allows it.

    Growing the slot tables frees the old ones. glibc keeps freed blocks of that size in the
    heap (its mmap threshold rises after the first large free), so without a trim the
    process kept about 0.7 bytes of garbage per resident delta byte at 256 adapters.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
