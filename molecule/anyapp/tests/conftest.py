"""Makes the shared helpers (molecule/resources/tests/stackcheck.py) importable, and runs each
test's checks on the server through sudo: this scenario logs in as `admin`, a user with sudo
(molecule.yml), and the checks read root's files and ask the Docker engine."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources" / "tests"))


@pytest.fixture(autouse=True)
def _checks_through_sudo(host) -> Iterator[None]:  # type: ignore[no-untyped-def]
    with host.sudo():
        yield
