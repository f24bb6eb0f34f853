from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

import webapp
from webapp.greeting import GREETING


@pytest.mark.parametrize("path", ["/", "/index", "/home"])
def test_greeting_pages(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == f"{GREETING}\n"
    assert response.headers["Cache-Control"] == "no-cache"


def test_greeting_literal_lives_only_in_greeting_module() -> None:
    # The release test rewrites the literal in greeting.py; a second copy would go stale.
    package_dir = Path(webapp.__file__).parent
    sources = {p.name: p.read_text("utf-8") for p in package_dir.rglob("*.py")}
    hits = [name for name, text in sources.items() if GREETING in text]
    assert hits == ["greeting.py"]


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "ok"
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_ignores_redis_outage(broken_client: FlaskClient) -> None:
    assert broken_client.get("/healthz").status_code == 200


def test_version(client: FlaskClient, version: str) -> None:
    response = client.get("/version")
    assert response.status_code == 200
    assert response.get_json() == {"version": version}


@pytest.mark.parametrize(
    "path",
    ["/", "/healthz", "/version", "/counter", "/about", "/slow?seconds=0", "/nope"],
)
def test_every_response_carries_version_header(
    client: FlaskClient, version: str, path: str
) -> None:
    assert client.get(path).headers["X-App-Version"] == version


def test_about_is_cacheable_html(client: FlaskClient, version: str) -> None:
    response = client.get("/about")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "public, max-age=60"
    body = response.get_data(as_text=True)
    assert 'href="/static/style.css"' in body
    assert version in body


def test_about_escapes_version(counter: object) -> None:
    app = webapp.create_app({"APP_VERSION": "<b>x</b>", "COUNTER": counter})
    body = app.test_client().get("/about").get_data(as_text=True)
    assert "<b>x</b>" not in body
    assert "&lt;b&gt;x&lt;/b&gt;" in body


STATIC_FILES = [("style.css", "text/css"), ("robots.txt", "text/plain")]


@pytest.mark.parametrize(("name", "mimetype"), STATIC_FILES)
def test_static_in_dev(client: FlaskClient, name: str, mimetype: str) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.data
    response.close()
