"""Fixtures for the haproxy_runtime module: the module itself, and a fake HAProxy; and the
docker CLI, for the tests that use this machine's own engine.

The fake answers the Runtime API on a real unix socket, one command per connection, with the
replies and formats that HAProxy 2.6.12 (Debian 12) gives, captured from a real instance.
"""

from __future__ import annotations

import importlib.util
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

MODULE_PATH = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "haproxy_runtime.py"

# The `show stat` header of HAProxy 2.6, cut after uweight (the order is HAProxy's own).
STAT_HEADER_LINE = (
    "pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,"
    "wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,"
    "lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,"
    "hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,"
    "cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,"
    "ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,"
    "check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,"
    "conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,"
    "srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,"
    "safe_conn_cur,used_conn_cur,need_conn_est,uweight"
)
STAT_HEADER = STAT_HEADER_LINE.split(",")
HRSP_FIELDS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")

SERVERS_STATE_HEADER = (
    "be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
    "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
    "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"
)

FMAINT = 0x01
FDRAIN = 0x08
RMAINT = 0x20

# Replies copied from HAProxy 2.6.12.
ADDED = "New server registered.\n\n"
DELETED = "Server deleted.\n"
BUSY = "Server still has connections attached to it, cannot remove it.\n"
NOT_IN_MAINT = "Only servers in maintenance mode can be deleted.\n"
DUPLICATE = "Already exists a server with the same name in backend.\n"
NO_BACKEND = "No such backend.\n"
NO_SERVER = "No such server.\n"
NO_PROXY = "No such proxy.\n\n"
NO_STATE_BACKEND = "Can't find backend.\n\n"
STATIC_BACKEND = "Backend must use a dynamic load balancing to support dynamic servers.\n"
NO_CHECK = "Health check was not configured on this server, cannot enable.\n\n"
BAD_STATE = "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
DONE = "\n"
UNRESOLVED_ADDR = (
    "Update for the current server address family is only supported through configuration file.\n\n"
)


@dataclass
class FakeServer:
    name: str
    address: str
    port: int
    sid: int
    admin: int = 0
    checks: bool = False
    health_enabled: bool = False
    healthy: bool = True
    confirmed_at: float = 0.0
    session_ends: list[float] = field(default_factory=list)
    queued: int = 0
    refuse_deletes: int = 0
    # Answers by status class (hrsp_2xx, hrsp_5xx, ...) and how many each `show stat` adds,
    # as traffic flowing between two reads would.
    answers: dict[str, int] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)

    def scur(self) -> int:
        now = time.monotonic()
        return sum(1 for end in self.session_ends if end > now)

    def status(self) -> str:
        if self.admin & 0x27:
            return "MAINT"
        drain = bool(self.admin & 0x18)
        if not (self.checks and self.health_enabled):
            return "DRAIN" if drain else "no check"
        if not self.healthy:
            return "DOWN"
        word = "DRAIN" if drain else "UP"
        # Like HAProxy, a server leaving maintenance counts as up before any check passed.
        return word if time.monotonic() >= self.confirmed_at else f"{word} 1/2"


@dataclass
class FakeBackend:
    name: str
    iid: int
    dynamic: bool = True
    servers: dict[str, FakeServer] = field(default_factory=dict)


class FakeHAProxy:
    """A tiny HAProxy: the server state machine behind the Runtime API commands used here."""

    def __init__(self, socket_path: str, rise_seconds: float = 0.1) -> None:
        self.socket_path = socket_path
        self.rise_seconds = rise_seconds
        self.backends: dict[str, FakeBackend] = {}
        self.received: list[str] = []
        self.lock = threading.Lock()
        self._next_sid = 1

    # Set-up helpers for the tests.

    def add_backend(self, name: str, *, dynamic: bool = True) -> FakeBackend:
        backend = FakeBackend(name, iid=len(self.backends) + 3, dynamic=dynamic)
        self.backends[name] = backend
        return backend

    def add_server(
        self, backend: str, name: str, address: str, port: int, **state: Any
    ) -> FakeServer:
        server = FakeServer(name, address, port, sid=self._next_sid, **state)
        self._next_sid += 1
        self.backends[backend].servers[name] = server
        return server

    def hold_sessions(self, backend: str, server: str, count: int, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.backends[backend].servers[server].session_ends.extend([end] * count)

    def server(self, backend: str, name: str) -> FakeServer | None:
        return self.backends[backend].servers.get(name)

    def mutating(self) -> list[str]:
        return [cmd for cmd in self.received if not cmd.startswith("show")]

    # The Runtime API.

    def handle(self, command: str) -> str:
        with self.lock:
            self.received.append(command)
            words = command.split()
            verb = " ".join(words[:2])
            handlers = {
                "show stat": self._show_stat,
                "show servers": self._show_servers_state,
                "show info": lambda _words: "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\n\n",
                "add server": self._add_server,
                "del server": self._del_server,
                "enable server": self._enable_server,
                "disable server": self._disable_server,
                "enable health": self._enable_health,
                "disable health": self._disable_health,
                "set server": self._set_server,
            }
            handler = handlers.get(verb)
            if handler is None:
                return "Unknown command, but maybe one of the following ones is a better match:\n"
            return handler(words)

    def _locate(self, ref: str) -> tuple[FakeBackend | None, FakeServer | None, str]:
        backend_name, _, server_name = ref.partition("/")
        backend = self.backends.get(backend_name)
        if backend is None:
            return None, None, NO_BACKEND
        server = backend.servers.get(server_name)
        if server is None:
            return backend, None, NO_SERVER
        return backend, server, ""

    def _show_stat(self, words: list[str]) -> str:
        backend = self.backends.get(words[2])
        if backend is None:
            return NO_PROXY
        mask = int(words[3])
        for server in backend.servers.values():
            for name, count in server.traffic.items():
                server.answers[name] = server.answers.get(name, 0) + count
        lines = ["# " + ",".join(STAT_HEADER) + ","]
        if mask & 4:
            lines += [self._stat_line(backend, s) for s in backend.servers.values()]
        if mask & 2:
            lines.append(self._stat_line(backend, None))
        return "\n".join(lines) + "\n\n"

    def _stat_line(self, backend: FakeBackend, server: FakeServer | None) -> str:
        values = {"pxname": backend.name, "pid": "1", "iid": str(backend.iid), "mode": "http"}
        if server is None:
            values.update(svname="BACKEND", status="UP", type="1", sid="0")
        else:
            checked = server.checks and server.health_enabled
            values.update(
                svname=server.name,
                status=server.status(),
                scur=str(server.scur()),
                qcur=str(server.queued),
                weight="1",
                uweight="1",
                act="1",
                bck="0",
                type="2",
                sid=str(server.sid),
                addr=f"{server.address}:{server.port}",
                check_status="L7OK" if checked else "",
                # HAProxy quotes a CSV field that holds a comma.
                check_desc='"Layer7 check passed, code: 200"' if checked else "",
                **{name: str(server.answers.get(name, 0)) for name in HRSP_FIELDS},
            )
        return ",".join(values.get(name, "") for name in STAT_HEADER) + ","

    def _show_servers_state(self, words: list[str]) -> str:
        backend = self.backends.get(words[3])
        if backend is None:
            return NO_STATE_BACKEND
        rows = [
            f"{backend.iid} {backend.name} {s.sid} {s.name} {s.address} 2 {s.admin} 1 1 5 "
            f"15 3 3 6 0 0 0 - {s.port} - 0 0 - - 0"
            for s in backend.servers.values()
        ]
        return "\n".join(["1", "# " + SERVERS_STATE_HEADER, *rows]) + "\n\n"

    def _add_server(self, words: list[str]) -> str:
        backend_name, _, name = words[2].partition("/")
        backend = self.backends.get(backend_name)
        if backend is None:
            return NO_BACKEND
        if not backend.dynamic:
            return STATIC_BACKEND
        if name in backend.servers:
            return DUPLICATE
        address, _, port = words[3].rpartition(":")
        self.add_server(backend_name, name, address, int(port), admin=FMAINT)
        backend.servers[name].checks = "check" in words[4:]
        return ADDED

    def _del_server(self, words: list[str]) -> str:
        backend, server, error = self._locate(words[2])
        if backend is None or server is None:
            return error
        # Any maintenance will do, the one of a name that did not resolve at start included.
        if not server.admin & (FMAINT | RMAINT):
            return NOT_IN_MAINT
        if server.refuse_deletes or server.scur() or server.queued:
            server.refuse_deletes = max(server.refuse_deletes - 1, 0)
            return BUSY
        del backend.servers[server.name]
        return DELETED

    def _leave_maint(self, server: FakeServer) -> None:
        if server.admin & FMAINT:
            server.confirmed_at = time.monotonic() + self.rise_seconds
        server.admin &= ~(FMAINT | FDRAIN)

    def _enable_server(self, words: list[str]) -> str:
        _, server, error = self._locate(words[2])
        if server is None:
            return error
        self._leave_maint(server)
        return DONE

    def _disable_server(self, words: list[str]) -> str:
        _, server, error = self._locate(words[2])
        if server is None:
            return error
        server.admin = (server.admin | FMAINT) & ~FDRAIN
        return DONE

    def _enable_health(self, words: list[str]) -> str:
        _, server, error = self._locate(words[2])
        if server is None:
            return error
        if not server.checks:
            return NO_CHECK
        server.health_enabled = True
        return DONE

    def _disable_health(self, words: list[str]) -> str:
        _, server, error = self._locate(words[2])
        if server is None:
            return error
        server.health_enabled = False
        return DONE

    def _set_server(self, words: list[str]) -> str:
        _, server, error = self._locate(words[2])
        if server is None:
            return error + "\n"
        if words[3:4] == ["addr"] and len(words) >= 7 and words[5] == "port":
            if server.address == "-":
                # HAProxy 2.6 on a server whose name did not resolve at start (init-addr none):
                # refused, yet it leaves the resolution maintenance.
                server.admin &= ~RMAINT
                return UNRESOLVED_ADDR
            old, server.address, server.port = server.address, words[4], int(words[6])
            if old == server.address:
                return "no need to change the addr, no need to change the port\n\n"
            return f"IP changed from '{old}' to '{server.address}', no need to change the port\n\n"
        if words[3:4] != ["state"] or len(words) < 5:
            return "'set server' only supports 'state' here.\n\n"
        target = words[4]
        if target == "ready":
            self._leave_maint(server)
        elif target == "drain":
            self._leave_maint(server)
            server.admin |= FDRAIN
        elif target == "maint":
            server.admin = (server.admin | FMAINT) & ~FDRAIN
        else:
            return BAD_STATE
        return DONE


class _Handler(socketserver.StreamRequestHandler):
    server: _UnixServer

    def handle(self) -> None:
        command = self.rfile.readline().decode().rstrip("\n")
        self.wfile.write(self.server.fake.handle(command).encode())


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, fake: FakeHAProxy) -> None:
        self.fake = fake
        super().__init__(fake.socket_path, _Handler)


@pytest.fixture
def socket_dir(tmp_path: Path) -> Iterator[Path]:
    # sun_path holds 108 bytes: a long pytest base directory would not fit.
    if len(str(tmp_path / "admin.sock")) < 100:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="hap-"))
    yield short
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def haproxy(socket_dir: Path) -> Iterator[FakeHAProxy]:
    """A fake HAProxy with backend "app" holding server "web1", UP with checks."""
    fake = FakeHAProxy(str(socket_dir / "admin.sock"))
    fake.add_backend("app")
    fake.add_server("app", "web1", "10.0.0.11", 8000, checks=True, health_enabled=True)
    server = _UnixServer(fake)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="session")
def hr() -> ModuleType:
    """The module under test, loaded from its file as Ansible would find it."""
    spec = importlib.util.spec_from_file_location("haproxy_runtime", MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def docker() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs the docker CLI on this machine's engine (make bootstrap starts it); skips the test
    when there is none."""
    if shutil.which("docker") is None or _docker("info").returncode != 0:
        pytest.skip("no Docker engine on this machine")
    return _docker
