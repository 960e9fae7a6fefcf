"""The FastAPI application: routers, request ids and the handler of unexpected errors.

Run it with `loraplex api`, or `uvicorn --factory service.api.app:create_app`.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy.exc import OperationalError

from service.api.routes import datasets, health, jobs, metrics, predictions, tasks
from service.api.serving import run_serving_background
from service.config import Settings, get_settings

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    logger.info(
        "API starting: registry %s, broker %s, queue %s",
        maybe_sanitize_url(settings.database_url),
        maybe_sanitize_url(settings.broker_url),
        settings.queue,
    )
    app.state.batcher = None
    app.state.batcher_lock = asyncio.Lock()
    background = asyncio.get_running_loop().create_task(run_serving_background(app))
    yield
    background.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await background
    if app.state.batcher is not None:
        await app.state.batcher.stop()
    logger.info("API stopped")


async def handle_request(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Tag the request with an id, and turn an unexpected exception into a logged 500."""
    request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    request.state.request_id = request_id
    try:
        response = await call_next(request)
    except Exception:
        logger.exception("request %s failed: %s %s", request_id, request.method, request.url.path)
        response = JSONResponse(
            status_code=500,
            content={"detail": "Internal server error", "request_id": request_id},
        )
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


async def reject_oversized_bodies(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Return a 413 response, without reading the body, when Content-Length is over the limit."""
    # Without this, the multipart parser would spool the whole body to disk before the
    # dataset route could measure the file. Allow 1 MiB for the form's other fields.
    max_upload_mb = request.app.state.settings.max_upload_mb
    content_length = request.headers.get("content-length", "")
    if content_length.isdigit() and int(content_length) > (max_upload_mb + 1) * 1024 * 1024:
        logger.info(
            "request %s rejected: body of %s bytes", request.state.request_id, content_length
        )
        return JSONResponse(
            status_code=413, content={"detail": datasets.upload_too_large_detail(max_upload_mb)}
        )
    return await call_next(request)


async def handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Return FastAPI's 422 shape without echoing the rejected input, which can be huge."""
    errors = [
        {key: value for key, value in error.items() if key not in ("input", "ctx", "url")}
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": errors})


async def handle_registry_error(request: Request, exc: OperationalError) -> JSONResponse:
    """Turn a registry that cannot be reached or is not migrated into a 503 with the reason."""
    request_id = getattr(request.state, "request_id", "-")
    logger.error("request %s: registry unavailable: %s", request_id, exc.orig)
    return JSONResponse(
        status_code=503,
        content={
            "detail": "The registry database is unavailable or not migrated; see /readyz, "
            "and run `loraplex migrate` if the schema is missing.",
            "request_id": request_id,
        },
    )


class BodySizeLimit:
    """ASGI middleware that answers 413 once a streamed request body passes `max_bytes`.

    The Content-Length check in `reject_oversized_bodies` cannot see chunked bodies, which
    would otherwise be spooled to disk whole before the route measures them. Past the limit
    the app reads a client disconnect, and whatever it answers is dropped.
    """

    def __init__(self, app, max_bytes_of: Callable[[], int]) -> None:
        self.app = app
        self.max_bytes_of = max_bytes_of

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.max_bytes_of()
        received = 0
        rejected = False

        async def limited_receive():
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    rejected = True
                    logger.info("request rejected: streamed body passed %d bytes", max_bytes)
                    response = JSONResponse(
                        status_code=413,
                        content={"detail": f"Request body is larger than {max_bytes} bytes."},
                    )
                    await response(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API app. `settings` defaults to the LORAPLEX_* environment."""
    app = FastAPI(
        title="Loraplex",
        summary="Fine-tune encoders on labelled text and serve every task from one base model.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings or get_settings()

    # The middleware added last runs first, so handle_request wraps every request.
    app.middleware("http")(reject_oversized_bodies)
    app.middleware("http")(handle_request)
    # Outermost: a streamed body over the upload limit (plus 1 MiB for the other form fields)
    # stops being read at the limit.
    app.add_middleware(
        BodySizeLimit, max_bytes_of=lambda: (app.state.settings.max_upload_mb + 1) * 1024 * 1024
    )
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(OperationalError, handle_registry_error)
    app.include_router(health.router)
    app.include_router(metrics.router)
    for module in (datasets, jobs, tasks, predictions):
        app.include_router(module.router, prefix="/v1")
    return app
