"""Dependencies shared by the routes: the process settings and a registry session."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.config import Settings
from service.db import get_sessionmaker


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    """Open a registry session that commits when the route returns and rolls back if it raises."""
    session = get_sessionmaker(settings.database_url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function" ends the session before the response is sent, so a client never receives a
# response for a change that has not been committed, and a failed commit becomes a 500.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
