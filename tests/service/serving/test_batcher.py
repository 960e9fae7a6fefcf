import asyncio

import pytest

from service.serving.batcher import MicroBatcher
from tests.service.serving.utils import make_delta, register_delta

TEXTS = [f"review number {i} says {'great' if i % 2 else 'awful'} things" for i in range(10)]


def test_large_request_split_and_reassembled_in_order(engine, session):
    register_delta(
        session, "task", make_delta(engine.base.encoder, fingerprint=engine.base.fingerprint)
    )
    loaded = engine.acquire(session, "task")
    rows = [(loaded, text) for text in TEXTS]
    expected = engine.run_items(rows)
    batcher = MicroBatcher(engine, max_batch_rows=4, max_batch_tokens=10_000, max_wait_ms=1)

    async def run():
        try:
            return await batcher.submit(rows)
        finally:
            await batcher.stop()

    outputs = asyncio.run(run())

    assert batcher.batches == 3
    for output, reference in zip(outputs, expected, strict=True):
        assert output["label"] == reference["label"]
        assert output["scores"] == pytest.approx(reference["scores"], abs=1e-5)


def test_concurrent_requests_of_many_tasks_share_batches(engine, session):
    fingerprint = engine.base.fingerprint
    for seed in range(4):
        register_delta(
            session,
            f"task{seed}",
            make_delta(engine.base.encoder, seed=seed, fingerprint=fingerprint),
        )
    held = [engine.acquire(session, f"task{seed}") for seed in range(4)]
    requests = [[(held[i % 4], TEXTS[i])] for i in range(8)]
    alone = [engine.run_items(rows)[0] for rows in requests]
    batcher = MicroBatcher(engine, max_batch_rows=64, max_batch_tokens=10_000, max_wait_ms=50)

    async def run():
        try:
            return await asyncio.gather(*(batcher.submit(rows) for rows in requests))
        finally:
            await batcher.stop()

    answers = asyncio.run(run())

    assert batcher.batches == 1
    assert batcher.rows == 8
    for answer, reference in zip(answers, alone, strict=True):
        assert answer[0]["scores"] == pytest.approx(reference["scores"], abs=1e-5)


def test_token_budget_closes_a_batch(engine, session):
    register_delta(
        session, "task", make_delta(engine.base.encoder, fingerprint=engine.base.fingerprint)
    )
    loaded = engine.acquire(session, "task")
    long_text = "word " * 100
    batcher = MicroBatcher(engine, max_batch_rows=64, max_batch_tokens=40, max_wait_ms=50)

    async def run():
        try:
            return await batcher.submit([(loaded, long_text)] * 3)
        finally:
            await batcher.stop()

    asyncio.run(run())

    assert batcher.batches == 3
