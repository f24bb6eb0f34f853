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
import tempfile
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


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What was rendered in this session, by what was asked: the same template with the same
    variables is rendered once (a run of ansible-playbook costs a second or two of CPU), and
    each test gets its own copy."""
    return {"": tmp_path_factory.mktemp("rendered")}


@pytest.fixture
def render(tmp_path: Path, rendered: dict[str, Path]) -> Render:
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
        key = json.dumps([role, template, variables, newline_sequence], sort_keys=True)
        if key not in rendered:
            first = Path(tempfile.mkdtemp(dir=rendered[""])) / out.name
            _render_with_ansible(role, template, variables, first, newline_sequence)
            rendered[key] = first
        shutil.copyfile(rendered[key], out)
        return out

    return _render


def _render_with_ansible(
    role: str,
    template: str,
    variables: dict[str, object] | None,
    out: Path,
    newline_sequence: str,
) -> None:
    """The template rendered to out by Ansible's template module, with the role's defaults and
    vars (and the webstack role's) and the variables as extra vars."""
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
    playbook = out.parent / f"render-{out.name}.yml"
    playbook.write_text(yaml.safe_dump(play))
    extra = out.parent / f"render-{out.name}.json"
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


@pytest.fixture(scope="session")
def haproxy_image(docker: Callable[..., subprocess.CompletedProcess[str]]) -> str:
    """The HAProxy image of the stack; built from the role's Dockerfile when missing."""
    for image in (HAPROXY_IMAGE, HAPROXY_TEST_IMAGE):
        if docker("image", "inspect", image).returncode == 0:
            return image
    build = docker(
        "build",
        "-q",
        "-t",
        HAPROXY_TEST_IMAGE,
        str(ROOT / "roles/haproxy/files/image"),
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    return HAPROXY_TEST_IMAGE
