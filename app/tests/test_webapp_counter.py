from __future__ import annotations

import socket

from flask.testing import FlaskClient

from webapp import create_app
from webapp.counter import RedisCounter
from webapp.settings import Settings


def test_counter_increments(client: FlaskClient) -> None:
    first = client.get("/counter")
    second = client.get("/counter")
    assert first.status_code == 200
    assert first.get_json() == {"visits": 1}
    assert second.get_json() == {"visits": 2}
    assert first.headers["Cache-Control"] == "no-store"


def test_counter_accepts_post_like_get(client: FlaskClient) -> None:
    # One counter for both methods; the body (the load probe sends a small JSON) is ignored.
    first = client.post("/counter", json={"source": "loadprobe"})
    second = client.get("/counter")
    third = client.post("/counter")
    assert first.status_code == 200
    assert first.get_json() == {"visits": 1}
    assert second.get_json() == {"visits": 2}
    assert third.get_json() == {"visits": 3}
    assert first.headers["Cache-Control"] == "no-store"
    assert client.put("/counter").status_code == 405


def test_counter_post_degrades_when_backend_unavailable(broken_client: FlaskClient) -> None:
    response = broken_client.post("/counter", json={"source": "loadprobe"})
    assert response.status_code == 200
    assert response.get_json() == {"visits": None, "error": "counter unavailable"}


def test_counter_degrades_when_backend_unavailable(broken_client: FlaskClient) -> None:
    response = broken_client.get("/counter")
    assert response.status_code == 200
    assert response.get_json() == {"visits": None, "error": "counter unavailable"}
    assert response.headers["Cache-Control"] == "no-store"


def _closed_port() -> int:
    """A local port nobody listens on, so connecting is refused immediately."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_real_redis_client_degrades_when_redis_is_down() -> None:
    # Exercises the real redis-py error path rather than a fake.
    settings = Settings(redis_host="127.0.0.1", redis_port=_closed_port())
    app = create_app({"COUNTER": RedisCounter.from_settings(settings)})
    response = app.test_client().get("/counter")
    assert response.status_code == 200
    assert response.get_json() == {"visits": None, "error": "counter unavailable"}


def test_redis_client_uses_configured_timeouts_and_password() -> None:
    settings = Settings(redis_password="s3cret", redis_timeout_seconds=0.25)
    counter = RedisCounter.from_settings(settings)
    kwargs = counter._client.connection_pool.connection_kwargs
    assert kwargs["host"] == "redis"
    assert kwargs["port"] == 6379
    assert kwargs["password"] == "s3cret"
    assert kwargs["socket_connect_timeout"] == 0.25
    assert kwargs["socket_timeout"] == 0.25
