"""Liveness and readiness probes."""

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.api.deps import SettingsDep
from service.config import Settings
from service.db import get_engine
from service.migrate import check_schema_at_head
from service.modeling.base import BaseModelError, read_base_model_spec

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


def check_base_model_folder(settings: Settings) -> str | None:
    """Return why the configured base model folder cannot be loaded, or None if it can."""
    try:
        read_base_model_spec(settings.resolved_base_model_dir)
    except (BaseModelError, OSError) as exc:
        return f"base model folder is unusable: {exc}"
    return None


@router.get("/healthz")
def read_health() -> dict[str, str]:
    """Report that the process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "Database down, schema not at head or base model missing"}},
)
def read_readiness(request: Request, settings: SettingsDep) -> JSONResponse:
    """Report whether the registry responds at the latest migration and the base model loads."""
    try:
        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
            reason = check_schema_at_head(connection)
    except SQLAlchemyError as exc:
        reason = f"registry database is unreachable: {getattr(exc, 'orig', None) or exc}"
    if reason is None:
        reason = check_base_model_folder(settings)

    # Probes repeat every few seconds, so a reason is logged when it changes, not each time.
    previous_reason = getattr(request.app.state, "readiness_reason", None)
    request.app.state.readiness_reason = reason
    if reason != previous_reason:
        if reason is None:
            logger.info("service is ready")
        else:
            logger.warning("service is not ready: %s", reason)

    if reason is not None:
        return JSONResponse(status_code=503, content={"status": "not ready", "detail": reason})
    return JSONResponse(content={"status": "ready"})
