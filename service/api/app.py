"""The FastAPI application: routers, request ids and the handler of unexpected errors.

Run it with `loraplex api`, or `uvicorn --factory service.api.app:create_app`.
"""

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from kombu.utils.url import maybe_sanitize_url

from service.api.routes import datasets, health, jobs, tasks
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
    yield
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
    app.include_router(health.router)
    for module in (datasets, jobs, tasks):
        app.include_router(module.router, prefix="/v1")
    return app
