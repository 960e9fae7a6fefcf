"""Liveness and readiness probes."""

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.api.deps import SettingsDep
from service.db import get_engine
from service.migrate import check_schema_at_head

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
def read_health() -> dict[str, str]:
    """Report that the process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Database down or schema not at head"}})
def read_readiness(request: Request, settings: SettingsDep) -> JSONResponse:
    """Report whether the registry database responds and its schema is at the latest migration."""
    try:
        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
            reason = check_schema_at_head(connection)
    except SQLAlchemyError as exc:
        reason = f"registry database is unreachable: {getattr(exc, 'orig', None) or exc}"

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
