#!/usr/bin/env python3
"""Identify the ansible-playbook run that holds the deploy lock, and tell whether it still runs.

Runs on the controller (a pipe lookup of the release role), with Linux's /proc:

    controller_process.py whoami          -> "PID START": the ansible-playbook process running
                                             this lookup and its start time (clock ticks since
                                             boot), which tells it apart from a later process
                                             that got the same PID
    controller_process.py alive PID START -> "alive" or "dead"

Elsewhere (no /proc) it answers "unknown": a lock is then never taken for dead on its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: split after its closing one.
    head, _, rest = raw.rpartition(")")
    return [head.split(" (", 1)[0], "comm", *rest.split()]


def _is_playbook(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(os.path.basename(arg) == b"ansible-playbook" for arg in argv[:2])


def whoami() -> str:
    """The outermost ansible-playbook process above this one (its workers are its forks)."""
    pid, found = os.getppid(), None
    while pid > 1:
        fields = _stat(pid)
        if fields is None:
            break
        if _is_playbook(pid):
            found = (pid, fields[21])
        elif found is not None:
            break
        pid = int(fields[3])
    return "unknown" if found is None else f"{found[0]} {found[1]}"


def alive(pid: int, start: str) -> str:
    if not Path("/proc/self/stat").exists():
        return "unknown"
    fields = _stat(pid)
    return "alive" if fields is not None and fields[21] == start else "dead"


def main(argv: list[str]) -> int:
    if argv[:1] == ["whoami"]:
        print(whoami())
        return 0
    if len(argv) == 3 and argv[0] == "alive" and argv[1].isdigit():
        print(alive(int(argv[1]), argv[2]))
        return 0
    print("usage: controller_process.py whoami | alive PID START", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
