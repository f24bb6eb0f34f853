#!/usr/bin/python
"""Drive HAProxy's Runtime API over its admin stats socket (see DOCUMENTATION)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: haproxy_runtime
short_description: Manage HAProxy backend servers through the Runtime API
description:
  - Talks to HAProxy 2.6 (or later) through its Runtime API unix socket, which must be
    declared with C(level admin) in the C(stats socket) line of the global section.
  - Adds, enables, drains, puts in maintenance and deletes servers of a backend at run time,
    without a reload, so that app servers can be swapped with no request lost.
  - Watches the answers of some servers for a while (O(state=watch)) and judges their share
    of 5xx, so that a release that serves errors can be reverted.
  - Each Runtime API command is sent on its own connection, as HAProxy expects in its
    non-interactive mode.
  - Every state is idempotent. The administrative state of a server (ready, drain or maint) is
    read from C(show servers state), its health and sessions from C(show stat).
  - Servers added here are dynamic servers. HAProxy forgets them on reload or restart, and
    ignores C(default-server) lines for them, so put every server option in O(server_options)
    and write the same servers to the configuration file too.
options:
  socket:
    description:
      - Path of the Runtime API unix socket, for example C(/run/haproxy/admin.sock).
    type: path
    required: true
  backend:
    description:
      - Name of the backend the server belongs to.
      - Required unless O(state=command). With O(state=command) it only selects which
        backend RV(servers) lists.
    type: str
  server:
    description:
      - Name of the server inside O(backend).
      - Required for every O(state) except V(stats) and V(command).
    type: str
  state:
    description:
      - V(stats) only reads the backend and never reports a change.
      - V(present) adds the server with C(add server) if it is missing, then enables its
        health checks (when O(server_options) contains C(check)) and the server. A server
        that already exists at the same address is left as it is, except that a server in
        maintenance is enabled. A server that exists at another address is moved to the
        given one (C(set server ... addr)), keeping its name and state.
        A server found in drain is left in drain and not waited for; use V(ready) for it.
      - V(ready) sets the server's administrative state to ready.
      - V(drain) stops sending it new connections; established sessions go on.
      - V(maint) stops sending it any traffic and stops its health checks.
      - V(absent) drains the server first (with O(wait), until it has no session left, as
        V(drain) does), then puts it in maintenance, disables its health checks, and deletes
        it as soon as HAProxy accepts to, that is once its last connection has closed. The
        deletion is retried until O(timeout), whatever O(wait) says. One call retires a
        server gracefully; a server already in maintenance is not drained.
      - V(command) sends O(command) as it is and returns the reply in RV(stdout).
      - V(watch) only reads. It takes the answer counters (C(hrsp_1xx) to C(hrsp_other)) of
        O(watch_servers) as a baseline, polls them every O(poll_interval) seconds for
        O(watch_seconds), and returns what they answered meanwhile in RV(watch). It ends early
        once at least O(watch_min_requests) answers were seen and their share of 5xx exceeds
        O(watch_max_error_ratio). The task itself does not fail on that; the verdict is
        returned. Health checks are not counted by HAProxy in these counters.
    type: str
    choices: [stats, present, ready, drain, maint, absent, command, watch]
    default: stats
  address:
    description:
      - Address of the server (IP address or host name), without the port.
      - Required with O(state=present).
    type: str
  port:
    description:
      - TCP port of the server. Required with O(state=present).
    type: int
  server_options:
    description:
      - Server keywords appended to C(add server), as on a C(server) line of the
        configuration, for example C(check inter 1s rise 2 fall 3 weight 10).
      - Health checks are enabled after the add only when this contains the C(check) keyword.
    type: str
    default: check
  command:
    description:
      - Runtime API command to send with O(state=command), for example C(show info).
      - Reported as a change unless it starts with C(show) (every part of it, when several
        commands are separated by C(;)); use C(changed_when) for other read-only commands.
      - In check mode, only such a C(show) command is sent.
    type: str
  wait:
    description:
      - With V(present) and V(ready), wait until C(show stat) reports the server C(UP)
        (or C(no check) for a server without health checks). A status such as C(UP 1/2) means
        that its checks have not passed yet, and is waited through.
      - With V(drain), V(maint) and V(absent), wait until the server has no session left
        (C(scur) + C(qcur) = 0).
      - Never waits in check mode.
    type: bool
    default: true
  timeout:
    description:
      - Seconds the task may spend waiting in total, for O(wait) and for the retries of
        C(del server) with O(state=absent). When it runs out the task fails, and its message
        gives the last status and session counts seen.
    type: float
    default: 60
  poll_interval:
    description:
      - Seconds between two polls of the server while waiting, or of the counters while
        watching.
    type: float
    default: 0.5
  watch_servers:
    description:
      - With O(state=watch), the servers of O(backend) whose answers are counted together.
        A server missing from the backend counts nothing.
    type: list
    elements: str
  watch_seconds:
    description:
      - With O(state=watch), how long to watch. V(0) takes one reading and judges nothing.
    type: float
    default: 30
  watch_min_requests:
    description:
      - With O(state=watch), the fewest answers on which a verdict of V(failed) may rest; with
        fewer, the verdict is V(too_few).
    type: int
    default: 20
  watch_max_error_ratio:
    description:
      - With O(state=watch), the highest share of 5xx answers (0 to 1) that still passes.
    type: float
    default: 0.05
notes:
  - The socket is usually owned by root, or by the haproxy group; use C(become) as needed.
  - HAProxy 2.6 reports a server that has just been enabled as up but not yet confirmed
    (C(UP 1/2)), and sends it traffic before its first health check has passed. Waiting for
    C(UP) makes the task end only once the checks confirm it, but the traffic starts sooner.
  - C(del server) is refused while the server still has connections, idle ones included, so
    O(state=absent) may take up to the longest in-flight request.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: No command that changes HAProxy is sent; RV(changed) and RV(commands) are
      predicted from the state read.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Add the new app container to the backend and wait until its checks pass
  haproxy_runtime:
    socket: /run/haproxy-admin/admin.sock
    backend: app
    server: app-blue
    address: 172.18.0.7
    port: 8000
    server_options: check inter 1s rise 2 fall 3
    state: present
    timeout: 60

- name: Drain the old container and wait until its last session is gone
  haproxy_runtime:
    socket: /run/haproxy-admin/admin.sock
    backend: app
    server: app-green
    state: drain
    timeout: 90

- name: Remove the old container from the backend
  haproxy_runtime:
    socket: /run/haproxy-admin/admin.sock
    backend: app
    server: app-green
    state: absent

- name: Read the backend's servers
  haproxy_runtime:
    socket: /run/haproxy-admin/admin.sock
    backend: app
  register: app_backend

- name: Check that every server of the backend is UP
  ansible.builtin.assert:
    that: app_backend.servers | rejectattr('status', 'equalto', 'UP') | list | length == 0

- name: Watch the new servers' answers for 30 seconds, stopping early above 5% of 5xx
  haproxy_runtime:
    socket: /run/haproxy-admin/admin.sock
    backend: app
    state: watch
    watch_servers: [app-blue]
    watch_seconds: 30
    watch_min_requests: 20
    watch_max_error_ratio: 0.05
  register: guard

- name: Send a raw Runtime API command
  haproxy_runtime:
    socket: /run/haproxy-admin/admin.sock
    state: command
    command: show info
  register: haproxy_info
"""

RETURN = r"""
servers:
  description:
    - The servers of O(backend), as C(show stat) lists them after the task, with their
      administrative state from C(show servers state).
    - Empty when O(backend) is not given.
    - Values are kept as the strings HAProxy sends; a field that this HAProxy version does
      not report is an empty string.
  returned: always
  type: list
  elements: dict
  contains:
    pxname:
      description: Backend name.
      type: str
    svname:
      description: Server name.
      type: str
    status:
      description: Health status, for example C(UP), C(UP 1/2), C(DOWN), C(DRAIN), C(MAINT),
        C(no check).
      type: str
    admin_state:
      description: Administrative state, one of C(ready), C(drain), C(maint).
      type: str
    scur:
      description: Current sessions.
      type: str
    qcur:
      description: Requests waiting in the server's queue.
      type: str
    addr:
      description: Address and port HAProxy connects to.
      type: str
    weight:
      description: Effective weight.
      type: str
    check_status:
      description: Result of the last health check, for example C(L7OK), C(L4CON).
      type: str
  sample:
    - pxname: app
      svname: app-blue
      status: UP
      admin_state: ready
      scur: "3"
      smax: "12"
      qcur: "0"
      qmax: "0"
      stot: "4210"
      weight: "1"
      act: "1"
      bck: "0"
      chkfail: "0"
      chkdown: "0"
      lastchg: "372"
      downtime: "0"
      check_status: L7OK
      check_code: "200"
      check_desc: Layer7 check passed
      last_chk: ""
      addr: 172.18.0.7:8000
      iid: "3"
      sid: "2"
server:
  description:
    - The row of O(server) in RV(servers), or null when it does not exist (after
      O(state=absent), or before O(state=present) in check mode).
  returned: always
  type: dict
stdout:
  description: HAProxy's reply to O(command), empty when check mode did not send it.
  returned: when O(state=command)
  type: str
  sample: "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\n"
commands:
  description:
    - The commands that change HAProxy which were sent, in order; in check mode, the ones
      that would have been sent first (a wait may add retries of C(del server)).
  returned: always
  type: list
  elements: str
  sample:
    - add server app/app-blue 172.18.0.7:8000 check inter 1s rise 2 fall 3
    - enable health app/app-blue
    - enable server app/app-blue
watch:
  description: What O(watch_servers) answered while O(state=watch) watched them.
  returned: when O(state=watch)
  type: dict
  contains:
    requests:
      description: Answers counted (every status class).
      type: int
    errors:
      description: Of those, answers with a 5xx status.
      type: int
    ratio:
      description: errors / requests, 0 when there was no answer.
      type: float
    seconds:
      description: Time watched; less than O(watch_seconds) when it ended early.
      type: float
    verdict:
      description:
        - V(passed) when the share of 5xx stayed at or below O(watch_max_error_ratio) over at
          least O(watch_min_requests) answers.
        - V(failed) when it went above it over at least O(watch_min_requests) answers.
        - V(too_few) when fewer answers came than O(watch_min_requests).
      type: str
  sample:
    requests: 412
    errors: 0
    ratio: 0.0
    seconds: 30.0
    verdict: passed
elapsed_seconds:
  description: Time the task took, waits included.
  returned: always
  type: float
  sample: 4.62
"""

# Ansible's convention puts the documentation above the imports (ansible-test checks it).
import csv  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

# Fields of `show stat` worth returning; the full row has over a hundred.
STAT_FIELDS = (
    "pxname",
    "svname",
    "status",
    "scur",
    "smax",
    "qcur",
    "qmax",
    "stot",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "check_status",
    "check_code",
    "check_desc",
    "last_chk",
    "addr",
    "iid",
    "sid",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
)
# The answer counters of a server, by status class; health checks are not counted in them.
ANSWER_FIELDS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")

# srv_admin_state bits of `show servers state` (enum srv_admin in HAProxy's server-t.h).
# The status text of `show stat` cannot stand in: a drained server whose checks fail shows DOWN.
ADMIN_FMAINT = 0x01
ADMIN_IMAINT = 0x02
ADMIN_CMAINT = 0x04
ADMIN_FDRAIN = 0x08
ADMIN_IDRAIN = 0x10
ADMIN_RMAINT = 0x20
ADMIN_MAINT_MASK = ADMIN_FMAINT | ADMIN_IMAINT | ADMIN_CMAINT | ADMIN_RMAINT
ADMIN_DRAIN_MASK = ADMIN_FDRAIN | ADMIN_IDRAIN

# HAProxy rejects other characters in proxy and server names; checking them here also keeps a
# name from smuggling a second command (HAProxy splits command lines on ";").
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]+$")

REPLY_ADDED = "New server registered."
REPLY_DELETED = "Server deleted."
REPLY_BUSY = "Server still has connections attached to it"
REPLY_NO_SERVER = "No such server."

STATES_FOR_SERVER = ("present", "ready", "drain", "maint", "absent")


class RuntimeAPIError(Exception):
    """HAProxy could not be reached, refused a command, or did not get there in time."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def parse_stat_csv(text: str, fields: tuple[str, ...] = STAT_FIELDS) -> list[dict[str, str]]:
    """Server rows of a `show stat` reply, keyed by the names of its header line.

    Column positions change between HAProxy versions, so only the header names are trusted.
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError("no CSV header")
    header = next(csv.reader([lines[0][2:]]))
    rows = []
    for record in csv.reader(line for line in lines[1:] if line.strip()):
        # Not strict: HAProxy ends every line with a comma, and may add columns over time.
        values = dict(zip(header, record, strict=False))
        if values.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        rows.append({name: values.get(name, "") for name in fields})
    return rows


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """Rows of a `show servers state` reply: a version line, a "# " header, then rows."""
    lines = text.splitlines()
    header_index = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if header_index is None:
        raise ValueError("no header line")
    header = lines[header_index][2:].split()
    rows = (line.split() for line in lines[header_index + 1 :] if line.strip())
    return [dict(zip(header, row, strict=False)) for row in rows]


def admin_state(flags: int) -> str:
    """ready, drain or maint, from srv_admin_state; maintenance wins as it does in HAProxy."""
    if flags & ADMIN_MAINT_MASK:
        return "maint"
    if flags & ADMIN_DRAIN_MASK:
        return "drain"
    return "ready"


def is_up(status: str) -> bool:
    """Whether `show stat` reports the server fully up.

    "UP 1/2" is a server whose checks have not confirmed it yet, so it does not count;
    "no check" is the best HAProxy can say of a server without health checks.
    """
    return status in ("UP", "no check")


class RuntimeClient:
    """A client of HAProxy's Runtime API: one connection per command, read until EOF."""

    def __init__(self, socket_path: str, io_timeout_seconds: float = 10.0) -> None:
        self.socket_path = socket_path
        self.io_timeout_seconds = io_timeout_seconds

    def execute(self, command: str) -> str:
        """Send one command and return HAProxy's whole reply, errors included, as text."""
        if "\n" in command or "\r" in command:
            raise RuntimeAPIError(f"refusing a command with a line break: {command!r}")
        chunks: list[bytes] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            # A wedged HAProxy must fail the task, not hang it.
            sock.settimeout(self.io_timeout_seconds)
            try:
                sock.connect(self.socket_path)
            except FileNotFoundError:
                raise RuntimeAPIError(
                    f"HAProxy Runtime API socket {self.socket_path} does not exist"
                ) from None
            except PermissionError:
                raise RuntimeAPIError(
                    f"no permission to use HAProxy Runtime API socket {self.socket_path} "
                    "(it is usually root's or the haproxy group's: become?)"
                ) from None
            except OSError as err:
                raise RuntimeAPIError(
                    f"cannot connect to HAProxy Runtime API socket {self.socket_path}: "
                    f"{err.strerror or err}"
                ) from None
            try:
                sock.sendall(command.encode() + b"\n")
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as err:
                raise RuntimeAPIError(
                    f"HAProxy Runtime API socket {self.socket_path} failed during "
                    f"'{command}': {err}",
                    command=command,
                ) from None
        return b"".join(chunks).decode("utf-8", errors="replace")

    def show_stat(self, backend: str) -> list[dict[str, str]]:
        """The servers of a backend from `show stat BACKEND 4 -1` (4: server rows only)."""
        return self._show(f"show stat {backend} 4 -1", parse_stat_csv)

    def show_servers_state(self, backend: str) -> list[dict[str, str]]:
        """The servers of a backend from `show servers state BACKEND`."""
        return self._show(f"show servers state {backend}", parse_servers_state)

    def _show(
        self, command: str, parse: Callable[[str], list[dict[str, str]]]
    ) -> list[dict[str, str]]:
        # An unknown backend answers with a message instead of a table.
        reply = self.execute(command)
        try:
            return parse(reply)
        except ValueError:
            raise RuntimeAPIError(
                f"HAProxy refused '{command}': {reply.strip()}", command=command, reply=reply
            ) from None


@dataclass(frozen=True)
class ServerView:
    """One server as seen by `show stat`, joined with `show servers state`."""

    stat: dict[str, str]
    admin: str
    address: str = ""
    port: str = ""
    fqdn: str = ""

    @property
    def status(self) -> str:
        return self.stat.get("status", "")

    @property
    def sessions(self) -> int:
        return _count(self.stat.get("scur")) + _count(self.stat.get("qcur"))

    def as_dict(self) -> dict[str, str]:
        return {**self.stat, "admin_state": self.admin}

    def describe(self) -> str:
        return (
            f"status={self.status!r} scur={self.stat.get('scur', '')!r} "
            f"qcur={self.stat.get('qcur', '')!r} admin_state={self.admin!r}"
        )


def _count(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _strip_brackets(address: str) -> str:
    return address[1:-1] if address.startswith("[") and address.endswith("]") else address


def read_backend(client: RuntimeClient, backend: str) -> list[ServerView]:
    """Every server of a backend, with its administrative state."""
    states = {row.get("srv_name"): row for row in client.show_servers_state(backend)}
    views = []
    for stat in client.show_stat(backend):
        state = states.get(stat["svname"])
        if state is None:
            # Deleted between the two reads: the status text is then the only hint left.
            status = stat["status"].lower()
            admin = next((name for name in ("maint", "drain") if status.startswith(name)), "ready")
            views.append(ServerView(stat, admin))
            continue
        views.append(
            ServerView(
                stat,
                admin_state(_count(state.get("srv_admin_state"))),
                address=state.get("srv_addr", ""),
                port=state.get("srv_port", ""),
                fqdn=state.get("srv_fqdn", ""),
            )
        )
    return views


@dataclass
class ServerController:
    """Brings one server of one backend to a wanted state; the logic behind the module."""

    client: RuntimeClient
    backend: str
    server: str
    timeout_seconds: float
    poll_interval_seconds: float
    check_mode: bool = False
    commands: list[str] = field(default_factory=list)
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout_seconds

    @property
    def ref(self) -> str:
        return f"{self.backend}/{self.server}"

    def current(self) -> ServerView | None:
        views = read_backend(self.client, self.backend)
        return next((view for view in views if view.stat["svname"] == self.server), None)

    def require(self) -> ServerView:
        view = self.current()
        if view is None:
            raise RuntimeAPIError(f"server {self.ref} does not exist")
        return view

    def send(self, command: str, accept: Callable[[str], bool] | None = None) -> str:
        """Send a command that changes HAProxy, unless in check mode; fail on an unexpected reply.

        Most such commands answer nothing on success, and an error message otherwise.
        """
        self.commands.append(command)
        if self.check_mode:
            return ""
        reply = self.client.execute(command)
        if not (accept or _is_silent)(reply):
            raise RuntimeAPIError(
                f"HAProxy refused '{command}': {reply.strip()}", command=command, reply=reply
            )
        return reply

    def wait_for(self, goal: str, done: Callable[[ServerView], bool]) -> None:
        while True:
            view = self.require()
            if done(view):
                return
            if time.monotonic() >= self.deadline:
                raise RuntimeAPIError(
                    f"timed out after {self.timeout_seconds:g}s waiting for {self.ref} to "
                    f"{goal}; last seen: {view.describe()}",
                    server=view.as_dict(),
                )
            time.sleep(min(self.poll_interval_seconds, max(self.deadline - time.monotonic(), 0)))

    def wait_up(self) -> None:
        self.wait_for("be UP", lambda view: is_up(view.status))

    def wait_idle(self) -> None:
        self.wait_for("have no session (scur + qcur = 0)", lambda view: view.sessions == 0)

    def ensure_present(self, address: str, port: int, options: str, wait: bool) -> bool:
        with_checks = "check" in options.split()
        view = self.current()
        if view is None:
            self.send(
                f"add server {self.ref} {address}:{port} {options}".rstrip(),
                lambda reply: REPLY_ADDED in reply,
            )
            changed = enable = True
        elif view.address in ("", "-"):
            self._add_again(view, address, port, options)
            changed = enable = True
        else:
            enable = view.admin == "maint"
            changed = self._move_if_elsewhere(view, address, port) or enable
        if enable:
            if with_checks:
                self.send(f"enable health {self.ref}")
            self.send(f"enable server {self.ref}")
        if wait and not self.check_mode and self.require().admin != "drain":
            self.wait_up()
        return changed

    def _add_again(self, view: ServerView, address: str, port: int, options: str) -> None:
        """Give an address to a server that has none: delete it and add it again.

        A server whose name did not resolve when HAProxy started (init-addr none) sits in
        maintenance with no address, and HAProxy 2.6 refuses `set server ... addr` for it
        ("only supported through configuration file"). It comes back as a dynamic server in
        maintenance, with the backend's health check; the caller enables it.
        """
        if view.admin != "maint":
            self.send(f"set server {self.ref} state maint")
        self.delete()
        self.send(
            f"add server {self.ref} {address}:{port} {options}".rstrip(),
            lambda reply: REPLY_ADDED in reply,
        )

    def _move_if_elsewhere(self, view: ServerView, address: str, port: int) -> bool:
        """Point an existing server at address:port; True if it was elsewhere.

        A container that restarts may come back with another address; the server keeps its
        name and state and only its address changes.
        """
        if _strip_brackets(address) == view.address and view.port == str(port):
            return False
        self.send(
            f"set server {self.ref} addr {address} port {port}",
            lambda reply: "changed from" in reply or "no need to change" in reply,
        )
        return True

    def ensure_admin(self, target: str, wait: bool) -> bool:
        changed = self.require().admin != target
        if changed:
            self.send(f"set server {self.ref} state {target}")
        if wait and not self.check_mode:
            if target == "ready":
                self.wait_up()
            else:
                self.wait_idle()
        return changed

    def ensure_absent(self, wait: bool = True) -> bool:
        view = self.current()
        if view is None:
            return False
        if view.admin != "maint":
            # Drain first: requests in flight and queued ones finish on it, new ones go
            # elsewhere; maintenance then only stops what is left (idle connections, checks).
            if view.admin != "drain":
                self.send(f"set server {self.ref} state drain")
            if wait and not self.check_mode:
                self.wait_idle()
            self.send(f"set server {self.ref} state maint")
        # Best effort: a server without checks answers that none are configured.
        self.send(f"disable health {self.ref}", accept=lambda _reply: True)
        self.delete()
        return True

    def delete(self) -> None:
        command = f"del server {self.ref}"
        self.commands.append(command)
        if self.check_mode:
            return
        while True:
            reply = self.client.execute(command)
            if REPLY_DELETED in reply or REPLY_NO_SERVER in reply:
                return
            if REPLY_BUSY not in reply:
                raise RuntimeAPIError(
                    f"HAProxy refused '{command}': {reply.strip()}", command=command, reply=reply
                )
            if time.monotonic() >= self.deadline:
                view = self.current()
                last = view.describe() if view else "gone"
                raise RuntimeAPIError(
                    f"timed out after {self.timeout_seconds:g}s deleting {self.ref}, which "
                    f"still has connections; last seen: {last}",
                    command=command,
                    reply=reply,
                    server=view.as_dict() if view else None,
                )
            time.sleep(min(self.poll_interval_seconds, max(self.deadline - time.monotonic(), 0)))


@dataclass(frozen=True)
class Answers:
    """Answers counted by HAProxy: all of them, and those with a 5xx status."""

    requests: int = 0
    errors: int = 0

    def __add__(self, other: Answers) -> Answers:
        return Answers(self.requests + other.requests, self.errors + other.errors)

    def __sub__(self, other: Answers) -> Answers:
        return Answers(self.requests - other.requests, self.errors - other.errors)

    @property
    def ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def count_answers(rows: list[dict[str, str]], servers: list[str]) -> dict[str, Answers]:
    """The answers of each named server found in `show stat` rows."""
    return {
        row["svname"]: Answers(
            requests=sum(_count(row.get(name)) for name in ANSWER_FIELDS),
            errors=_count(row.get("hrsp_5xx")),
        )
        for row in rows
        if row.get("svname") in servers
    }


def answers_since(baseline: dict[str, Answers], now: dict[str, Answers]) -> Answers:
    """The answers given since the baseline, summed over the servers.

    A server whose counters went down was deleted and added again: all it counts is new.
    A server added since the baseline counts from zero; one gone counts nothing.
    """
    total = Answers()
    for server, answers in now.items():
        before = baseline.get(server, Answers())
        since = answers if answers.requests < before.requests else answers - before
        total += since
    return total


def verdict(answers: Answers, min_requests: int, max_error_ratio: float) -> str:
    """passed, failed, or too_few when there are fewer answers than a verdict needs."""
    if answers.requests < max(min_requests, 1):
        return "too_few"
    return "failed" if answers.ratio > max_error_ratio else "passed"


def watch(
    client: RuntimeClient,
    backend: str,
    servers: list[str],
    seconds: float,
    min_requests: int,
    max_error_ratio: float,
    poll_interval_seconds: float,
) -> dict[str, Any]:
    """Count the servers' answers from now on for `seconds`; stop at the first failed verdict."""
    started = time.monotonic()
    deadline = started + seconds
    baseline = count_answers(client.show_stat(backend), servers)
    seen = Answers()
    while time.monotonic() < deadline:
        time.sleep(min(poll_interval_seconds, max(deadline - time.monotonic(), 0)))
        seen = answers_since(baseline, count_answers(client.show_stat(backend), servers))
        if verdict(seen, min_requests, max_error_ratio) == "failed":
            break
    return {
        "requests": seen.requests,
        "errors": seen.errors,
        "ratio": round(seen.ratio, 4),
        "seconds": round(time.monotonic() - started, 1),
        "verdict": verdict(seen, min_requests, max_error_ratio),
    }


def _is_silent(reply: str) -> bool:
    return not reply.strip()


def validate(params: dict[str, Any]) -> None:
    """Reject what HAProxy would misparse, before anything is sent."""
    for key in ("backend", "server"):
        value = params.get(key)
        if value is not None and not NAME_PATTERN.match(value):
            raise RuntimeAPIError(
                f"{key} {value!r} may only contain letters, digits and '_', '.', ':', '-'"
            )
    address = params.get("address")
    if address is not None and (not address or re.search(r"[\s;#]", address)):
        raise RuntimeAPIError(f"address {address!r} must be a single word")
    if re.search(r"[\r\n;#]", params.get("server_options") or ""):
        raise RuntimeAPIError("server_options may not contain line breaks, ';' or '#'")
    port = params.get("port")
    if port is not None and not 0 < port < 65536:
        raise RuntimeAPIError(f"port {port} is not between 1 and 65535")
    for key in ("timeout", "poll_interval"):
        if params[key] <= 0:
            raise RuntimeAPIError(f"{key} must be greater than 0")
    if params.get("state") == "watch":
        for name in params.get("watch_servers") or []:
            if not NAME_PATTERN.match(name):
                raise RuntimeAPIError(
                    f"watch_servers: {name!r} may only contain letters, digits and '_', '.', "
                    "':', '-'"
                )
        if not 0 <= params["watch_max_error_ratio"] <= 1:
            raise RuntimeAPIError(
                f"watch_max_error_ratio must be between 0 and 1 "
                f"(got {params['watch_max_error_ratio']:g})"
            )
        if params["watch_seconds"] < 0 or params["watch_min_requests"] < 0:
            raise RuntimeAPIError("watch_seconds and watch_min_requests must not be negative")


def run(params: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """Carry out one task; returns the module result, raises RuntimeAPIError on failure."""
    started = time.monotonic()
    validate(params)
    state = params["state"]
    backend = params.get("backend")
    client = RuntimeClient(params["socket"])
    result: dict[str, Any] = {"changed": False, "commands": []}

    if state == "command":
        command = params["command"]
        # HAProxy runs each ";"-separated part as a command of its own.
        read_only = all(part.strip().startswith("show") for part in command.split(";"))
        result["changed"] = not read_only
        result["stdout"] = client.execute(command) if read_only or not check_mode else ""
        if not read_only:
            result["commands"] = [command]
    elif state in STATES_FOR_SERVER:
        controller = ServerController(
            client,
            backend,
            params["server"],
            timeout_seconds=params["timeout"],
            poll_interval_seconds=params["poll_interval"],
            check_mode=check_mode,
        )
        if state == "present":
            result["changed"] = controller.ensure_present(
                params["address"], params["port"], params["server_options"], params["wait"]
            )
        elif state == "absent":
            result["changed"] = controller.ensure_absent(params["wait"])
        else:
            result["changed"] = controller.ensure_admin(state, params["wait"])
        result["commands"] = controller.commands
    elif state == "watch":
        result["watch"] = watch(
            client,
            backend,
            params["watch_servers"],
            seconds=params["watch_seconds"],
            min_requests=params["watch_min_requests"],
            max_error_ratio=params["watch_max_error_ratio"],
            poll_interval_seconds=params["poll_interval"],
        )

    views = read_backend(client, backend) if backend else []
    result["servers"] = [view.as_dict() for view in views]
    server = params.get("server")
    result["server"] = next(
        (view.as_dict() for view in views if server and view.stat["svname"] == server), None
    )
    result["elapsed_seconds"] = round(time.monotonic() - started, 3)
    return result


def main() -> None:
    # Imported here, not at the top: the healer (roles/healer) imports this file on a server
    # that has no Ansible, to reuse the Runtime API client.
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "socket": {"type": "path", "required": True},
            "backend": {"type": "str"},
            "server": {"type": "str"},
            "state": {
                "type": "str",
                "default": "stats",
                "choices": ["stats", *STATES_FOR_SERVER, "command", "watch"],
            },
            "address": {"type": "str"},
            "port": {"type": "int"},
            "server_options": {"type": "str", "default": "check"},
            "command": {"type": "str"},
            "wait": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 60.0},
            "poll_interval": {"type": "float", "default": 0.5},
            "watch_servers": {"type": "list", "elements": "str"},
            "watch_seconds": {"type": "float", "default": 30.0},
            "watch_min_requests": {"type": "int", "default": 20},
            "watch_max_error_ratio": {"type": "float", "default": 0.05},
        },
        required_if=[
            ("state", "stats", ["backend"]),
            ("state", "present", ["backend", "server", "address", "port"]),
            ("state", "ready", ["backend", "server"]),
            ("state", "drain", ["backend", "server"]),
            ("state", "maint", ["backend", "server"]),
            ("state", "absent", ["backend", "server"]),
            ("state", "command", ["command"]),
            ("state", "watch", ["backend", "watch_servers"]),
        ],
        supports_check_mode=True,
    )
    started = time.monotonic()
    try:
        result = run(module.params, module.check_mode)
    except RuntimeAPIError as err:
        module.fail_json(
            msg=str(err), elapsed_seconds=round(time.monotonic() - started, 3), **err.details
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
