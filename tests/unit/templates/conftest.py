"""Renders a role's template the way the role does: Ansible's template module, with the
role's defaults and vars (and the webstack role's, which they build on), and the test's
variables as extra vars. Also the HAProxy image, to check a rendered haproxy.cfg with the
haproxy binary the stack runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK_BIN = Path(sys.executable).parent / "ansible-playbook"
HAPROXY_IMAGE = "webstack/haproxy:local"
# Built here from the role's Dockerfile only when the stack's own image is not on this machine.
HAPROXY_TEST_IMAGE = "webstack/haproxy:unit-test"


class RenderError(Exception):
    """Ansible refused to render the template; the message is its output."""


Render = Callable[..., Path]


@pytest.fixture
def render(tmp_path: Path) -> Render:
    def _render(
        role: str,
        template: str,
        variables: dict[str, object] | None = None,
        *,
        dest: str | None = None,
        newline_sequence: str = "\n",
    ) -> Path:
        out = tmp_path / "out" / (dest or template.removesuffix(".j2"))
        out.parent.mkdir(parents=True, exist_ok=True)
        vars_files = [
            ROOT / "roles" / "webstack" / "defaults" / "main.yml",
            ROOT / "roles" / role / "defaults" / "main.yml",
            ROOT / "roles" / role / "vars" / "main.yml",
        ]
        play = [
            {
                "name": "Render a template",
                "hosts": "localhost",
                "connection": "local",
                "gather_facts": False,
                "vars_files": [str(p) for p in vars_files if p.exists()],
                "tasks": [
                    {
                        "name": "Render",
                        "ansible.builtin.template": {
                            "src": str(ROOT / "roles" / role / "templates" / template),
                            "dest": str(out),
                            "mode": "0644",
                            "newline_sequence": newline_sequence,
                        },
                    }
                ],
            }
        ]
        playbook = tmp_path / f"render-{out.name}.yml"
        playbook.write_text(yaml.safe_dump(play))
        extra = tmp_path / f"render-{out.name}.json"
        extra.write_text(
            json.dumps({"ansible_python_interpreter": sys.executable, **(variables or {})})
        )
        result = subprocess.run(
            [str(PLAYBOOK_BIN), "-i", "localhost,", str(playbook), "-e", f"@{extra}"],
            cwd=ROOT,
            env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RenderError(result.stdout + result.stderr)
        return out

    return _render


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def haproxy_image() -> str:
    """The HAProxy image of the stack; built from the role's Dockerfile when missing."""
    if shutil.which("docker") is None or _docker("info").returncode != 0:
        pytest.skip("Docker is not available to run haproxy -c")
    for image in (HAPROXY_IMAGE, HAPROXY_TEST_IMAGE):
        if _docker("image", "inspect", image).returncode == 0:
            return image
    build = _docker(
        "build",
        "-q",
        "-t",
        HAPROXY_TEST_IMAGE,
        str(ROOT / "roles/haproxy/files/image"),
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    return HAPROXY_TEST_IMAGE


@pytest.fixture
def docker() -> Callable[..., subprocess.CompletedProcess[str]]:
    return _docker
