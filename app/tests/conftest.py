"""Shared fixtures.

Puts app/ on sys.path so the package imports as `webapp`, exactly as in the image
(gunicorn runs from /app). Test modules are collected after this file runs, so they
can import `webapp` at top level; here it is imported inside the fixtures only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEST_VERSION = "1.2.3-test"


class FakeCounter:
    """In-memory stand-in for Redis."""

    def __init__(self) -> None:
        self.visits = 0

    def increment(self) -> int:
        self.visits += 1
        return self.visits


class BrokenCounter:
    """Behaves like Redis being down or rejecting our password."""

    def increment(self) -> int:
        from webapp.counter import CounterUnavailable

        raise CounterUnavailable("connection refused")


def _make_app(counter: object) -> Flask:
    from webapp import create_app

    config = {"TESTING": True, "APP_VERSION": TEST_VERSION, "COUNTER": counter}
    return create_app(config)


@pytest.fixture
def version() -> str:
    return TEST_VERSION


@pytest.fixture
def counter() -> FakeCounter:
    return FakeCounter()


@pytest.fixture
def client(counter: FakeCounter) -> FlaskClient:
    return _make_app(counter).test_client()


@pytest.fixture
def broken_client() -> FlaskClient:
    return _make_app(BrokenCounter()).test_client()


@pytest.fixture(autouse=True)
def drain_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The drain and activity files of webapp.draining, in the test's own directory."""
    from webapp import draining

    monkeypatch.setattr(draining, "DRAIN_FILE", tmp_path / "draining")
    monkeypatch.setattr(draining, "ACTIVITY_FILE", tmp_path / "last-request")
    return tmp_path
