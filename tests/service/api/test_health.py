import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ready(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_without_migrations(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "detail": "registry has no schema yet. Run `loraplex migrate`.",
    }


def test_readyz_database_unreachable(settings: Settings, tmp_path) -> None:
    # sqlite3 cannot open a folder as a database file.
    (tmp_path / "folder.db").mkdir()
    settings.database_url = f"sqlite:///{tmp_path / 'folder.db'}"

    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["detail"].startswith("registry database is unreachable: ")


def test_unexpected_error_returns_500(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    app: FastAPI = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app) as client:
        response = client.get("/boom", headers={"X-Request-ID": "req-123"})

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error", "request_id": "req-123"}
    assert response.headers["X-Request-ID"] == "req-123"
    assert "request req-123 failed: GET /boom" in caplog.text
    assert "RuntimeError: boom" in caplog.text


def test_request_id_generated(client: TestClient) -> None:
    response = client.get("/healthz")

    assert len(response.headers["X-Request-ID"]) == 32
