"""The micro-batcher: rows of every request and task share the engine's forward passes.

Requests put their rows on one queue. A collector takes the first row, keeps taking rows until
the batch reaches `max_batch_rows`, its estimated tokens reach `max_batch_tokens`, or
`max_wait_ms` has passed, and runs the batch on the engine in a single worker thread, off the
event loop. While a batch runs, the next one fills. Each row's result goes back to its
request, which reassembles its rows in input order.
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from service.serving.cache import LoadedAdapter
from service.serving.engine import ServingEngine

logger = logging.getLogger(__name__)


@dataclass
class PendingRow:
    loaded: LoadedAdapter
    item: Any
    future: asyncio.Future


def estimate_tokens(item: Any, max_length: int) -> int:
    """Estimate an input's token count without tokenising: about 4 characters per token.

    An input is a text or a dict of texts (a pair, a question and its context). A long input
    may become several windows of `max_length`, counted up to four. The estimate only closes
    batches early: the engine pads and splits exactly afterwards.
    """
    characters = len(item) if isinstance(item, str) else sum(len(str(v)) for v in item.values())
    return min(4 * max_length, characters // 4 + 2)


class MicroBatcher:
    """Collects rows from concurrent requests into batches for `engine.run_items`."""

    def __init__(
        self,
        engine: ServingEngine,
        max_batch_rows: int,
        max_batch_tokens: int,
        max_wait_ms: float,
    ) -> None:
        self.engine = engine
        self.max_batch_rows = max_batch_rows
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_ms / 1000
        self.queue: asyncio.Queue[PendingRow] = asyncio.Queue()
        # One thread: forward passes run one at a time and torch uses its own threads inside.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self.collector: asyncio.Task | None = None
        self.carried: PendingRow | None = None
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        if self.collector is None:
            self.collector = asyncio.get_running_loop().create_task(self._collect_forever())

    async def stop(self) -> None:
        if self.collector is not None:
            self.collector.cancel()
            try:
                await self.collector
            except asyncio.CancelledError:
                pass
            self.collector = None
        self.executor.shutdown(wait=True)

    async def submit(self, rows: list[tuple[LoadedAdapter, Any]]) -> list[dict]:
        """Queue (adapter, parsed input) rows and return their predictions in the same order."""
        self.start()
        loop = asyncio.get_running_loop()
        pending = [PendingRow(loaded, item, loop.create_future()) for loaded, item in rows]
        for row in pending:
            self.queue.put_nowait(row)
        return list(await asyncio.gather(*(row.future for row in pending)))

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            try:
                outputs = await loop.run_in_executor(
                    self.executor, self.engine.run_items, [(row.loaded, row.item) for row in batch]
                )
            except Exception as exc:
                logger.exception("serving batch of %d rows failed", len(batch))
                for row in batch:
                    if not row.future.done():
                        row.future.set_exception(exc)
                continue
            self.batches += 1
            self.rows += len(batch)
            for row, output in zip(batch, outputs, strict=True):
                if not row.future.done():  # the request may have been cancelled
                    row.future.set_result(output)

    async def _collect(self) -> list[PendingRow]:
        first = self.carried or await self.queue.get()
        self.carried = None
        batch = [first]
        tokens = estimate_tokens(first.item, first.loaded.max_length)
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_rows:
            if self.queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    row = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                row = self.queue.get_nowait()
            row_tokens = estimate_tokens(row.item, row.loaded.max_length)
            if tokens + row_tokens > self.max_batch_tokens:
                # The row opens the next batch instead.
                self.carried = row
                break
            batch.append(row)
            tokens += row_tokens
        return batch
