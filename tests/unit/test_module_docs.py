"""Every module of the project documents itself in YAML that Ansible can read.

ansible-doc and ansible-lint read DOCUMENTATION, EXAMPLES and RETURN as YAML; a stray ": " in a
description makes the whole block unreadable, and ansible-lint then fails on the module.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted([*ROOT.glob("plugins/modules/*.py"), *ROOT.glob("roles/*/library/*.py")])


def block(source: str, name: str) -> str:
    match = re.search(rf'^{name} = r"""(.*?)"""', source, re.S | re.M)
    assert match, f"no {name}"
    return match.group(1)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_the_documentation_is_yaml_and_names_every_option(path: Path) -> None:
    source = path.read_text()
    documentation = yaml.safe_load(block(source, "DOCUMENTATION"))
    yaml.safe_load(block(source, "EXAMPLES"))
    yaml.safe_load(block(source, "RETURN"))

    assert documentation["module"] == path.stem
    assert documentation["short_description"]
    for option in documentation.get("options") or {}:
        # Each documented option is one the module's argument spec reads.
        assert f'"{option}"' in source, option


def test_every_module_is_found() -> None:
    assert {path.stem for path in MODULES} >= {
        "haproxy_runtime",
        "webstack_files",
        "release_wait_ready",
    }
