"""scripts/bootstrap.sh byte-compiles the venv the tests run in.

Where PYTHONDONTWRITEBYTECODE is set (as on the test machines), Python writes no bytecode of
its own: without the bootstrap's compileall, every ansible-playbook of a test run compiled its
~350 imports again (0.35 s of CPU a run). Nothing else fails when the bytecode is missing, so
this test is what notices.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

# Modules every ansible-playbook run imports, from the packages a run spends its start in.
MODULES = (
    "ansible.cli.playbook",
    "ansible.executor.task_executor",
    "ansible.playbook.base",
    "ansible._internal._templating._engine",
    "jinja2.compiler",
    "yaml.constructor",
)


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="only the venv bootstrap made is checked")
@pytest.mark.parametrize("name", MODULES)
def test_the_modules_a_run_imports_have_bytecode(name: str) -> None:
    source = importlib.import_module(name).__file__
    assert source is not None
    cached = Path(importlib.util.cache_from_source(source))
    assert cached.is_file(), f"no bytecode for {source}: `make bootstrap` compiles the venv"
