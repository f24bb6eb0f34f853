from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

from webapp import routes


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    calls: list[float] = []
    monkeypatch.setattr(routes.time, "sleep", calls.append)
    return calls


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0.5", 0.5), ("2", 2.0), ("0", 0.0), ("-3", 0.0), ("99", 10.0)],
)
def test_slow_sleeps_clamped(
    client: FlaskClient, slept: list[float], raw: str, expected: float
) -> None:
    response = client.get(f"/slow?seconds={raw}")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == f"slept {expected:g}"
    assert slept == [expected]


@pytest.mark.parametrize("raw", ["abc", "", "nan", "inf", "1e999"])
def test_slow_rejects_bad(client: FlaskClient, slept: list[float], raw: str) -> None:
    response = client.get(f"/slow?seconds={raw}")
    assert response.status_code == 400
    assert slept == []


def test_slow_really_waits(client: FlaskClient) -> None:
    start = time.monotonic()
    response = client.get("/slow?seconds=0.2")
    assert response.status_code == 200
    assert time.monotonic() - start >= 0.2
