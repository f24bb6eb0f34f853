"""The release role's controller_process.py, against real processes of this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = (
    Path(__file__).resolve().parents[2] / "roles" / "release" / "files" / "controller_process.py"
)


def run(*args: str) -> str:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def fake_playbook(tmp_path: Path) -> Path:
    """A program named ansible-playbook that asks, through a shell as a pipe lookup does."""
    program = tmp_path / "ansible-playbook"
    program.write_text(
        "import os, subprocess, sys\n"
        f"out = subprocess.run(['sh', '-c', '{sys.executable} {SCRIPT} whoami'],"
        " capture_output=True, text=True).stdout.strip()\n"
        "print(os.getpid(), out)\n"
    )
    return program


def test_whoami_names_the_ansible_playbook_process_and_its_start(tmp_path: Path) -> None:
    output = subprocess.run(
        [sys.executable, str(fake_playbook(tmp_path))], capture_output=True, text=True, check=True
    ).stdout.split()
    own_pid, found_pid, start = output
    assert found_pid == own_pid
    assert start.isdigit()


def test_whoami_outside_ansible_playbook_is_unknown() -> None:
    assert run("whoami") == "unknown"


def test_a_running_process_with_its_start_time_is_alive() -> None:
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    start = stat.rpartition(")")[2].split()[19]
    assert run("alive", str(os.getpid()), start) == "alive"


def test_the_same_pid_with_another_start_time_is_another_process() -> None:
    assert run("alive", str(os.getpid()), "1") == "dead"


def test_a_finished_process_is_dead() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert run("alive", str(child.pid), "0") == "dead"


def test_bad_arguments_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "alive", "x"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
