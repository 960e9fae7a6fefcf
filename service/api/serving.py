"""Glue between the routes and the serving engine: one engine and micro-batcher per app."""

import asyncio
import logging

from fastapi import FastAPI, HTTPException
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.db import session_scope
from service.schemas import PredictResponse
from service.serving.batcher import MicroBatcher
from service.serving.engine import get_serving_engine
from service.serving.errors import AdapterCorrupt, AdapterIncompatible, TaskNotFound, TaskNotReady
from service.serving.tasktypes import get_serving_task_type

logger = logging.getLogger(__name__)

USAGE_FLUSH_INTERVAL_S = 30.0


async def get_batcher(app: FastAPI) -> MicroBatcher:
    """Return the app's micro-batcher, loading the base model on first use."""
    async with app.state.batcher_lock:
        if app.state.batcher is None:
            settings = app.state.settings
            engine = await run_in_threadpool(get_serving_engine, settings)
            app.state.batcher = MicroBatcher(
                engine, settings.max_batch_rows, settings.max_batch_tokens, settings.max_wait_ms
            )
        return app.state.batcher


async def predict_tasks(
    app: FastAPI, session: Session, task_names: list[str], inputs: list[str]
) -> list[PredictResponse]:
    """Run every input through every task in shared batches; one response per task."""
    batcher = await get_batcher(app)
    engine = batcher.engine
    try:
        held = await run_in_threadpool(engine.acquire_many, session, task_names)
    except TaskNotFound as exc:
        logger.info("prediction rejected: task %s not found", exc)
        raise HTTPException(status_code=404, detail=f"Task not found: {str(exc)[:200]!r}") from exc
    except (TaskNotReady, AdapterIncompatible) as exc:
        logger.info("prediction for tasks %s rejected: %s", task_names, exc)
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except AdapterCorrupt as exc:
        # The engine has logged the details; the message names the task and version to fix.
        raise HTTPException(status_code=500, detail=str(exc)) from exc

    try:
        rows = []
        for loaded in held:
            task_type = get_serving_task_type(loaded.task_type)
            try:
                rows.extend((loaded, task_type.parse_input_for(loaded, item)) for item in inputs)
            except ValueError as exc:
                logger.info("prediction for task %s rejected: %s", loaded.task_name, exc)
                raise HTTPException(
                    status_code=422, detail=f"Invalid input for task {loaded.task_name!r}: {exc}"
                ) from exc
        outputs = await batcher.submit(rows)
    finally:
        for loaded in held:
            engine.release(loaded, len(inputs))

    responses = []
    for index, loaded in enumerate(held):
        predictions = outputs[index * len(inputs) : (index + 1) * len(inputs)]
        responses.append(
            PredictResponse(
                task=loaded.task_name, adapter_version=loaded.version, predictions=predictions
            )
        )
    return responses


async def run_serving_background(app: FastAPI) -> None:
    """Preload the busiest tasks, then flush prediction counts to the registry periodically."""
    settings = app.state.settings
    try:
        if settings.preload_tasks > 0:
            batcher = await get_batcher(app)
            with session_scope(settings.database_url) as session:
                await run_in_threadpool(batcher.engine.preload, session, settings.preload_tasks)
        while True:
            await asyncio.sleep(USAGE_FLUSH_INTERVAL_S)
            await flush_usage(app)
    except asyncio.CancelledError:
        await flush_usage(app)
        raise
    except Exception:
        logger.exception("serving background task failed; preloading and usage counts stop")


async def flush_usage(app: FastAPI) -> None:
    batcher = app.state.batcher
    if batcher is None:
        return
    try:
        with session_scope(app.state.settings.database_url) as session:
            await run_in_threadpool(batcher.engine.flush_usage, session)
    except Exception:
        logger.exception("writing prediction counts failed; they are dropped")
