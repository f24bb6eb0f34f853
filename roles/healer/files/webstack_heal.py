#!/usr/bin/python3
"""Bring the web stack's containers back to their recorded state (webstack-heal).

Docker 20.10 never restarts a container stopped or killed by hand, whatever its restart policy,
and a container removed by hand is gone. A systemd timer runs this program every few seconds;
each run compares the wanted containers (the JSON file given with --config, written by Ansible's
healer role) with what Docker has, and:

- a running container: its spec is saved (a snapshot: the body of a create call, rebuilt from
  `docker inspect`) when it changed;
- a stopped one is started, a paused one unpaused (one restarting is left to Docker);
- a missing one is created again from its snapshot through the Engine API, then started; without
  a snapshot it cannot be, and the run says so (site.yml makes it again);
- an app replica (a container with "haproxy" in the config) is pointed at by its HAProxy server
  through the Runtime API, without a reload (see haproxy_commands for what HAProxy 2.6 needs).

Every action is one line on stdout (the journal); a run that changes nothing prints nothing. The
exit code is 1 when something could not be healed, else 0. With --snapshot-only, only the
snapshots of the running wanted containers are refreshed and those of containers no longer
wanted removed; "changed" is printed last when a snapshot file changed. With --want REQUEST
(JSON, see wanted_config), the config file is first written from the request, then the
snapshots are refreshed: the healer role's one call when a set changes.

Locking, so that a heal never fights a deploy:

1. Every run takes an exclusive flock on <state_dir>/heal.lock, waiting for it.
2. Holding it, a heal run looks for the deploy lock (the directory lock_dir, made with mkdir by
   deploy.yml and rollback.yml). If it exists, the run logs who holds it and exits 0 without
   touching anything.
3. A deploy first makes lock_dir, then takes and releases the same flock (for example
   `flock <state_dir>/heal.lock true`) before it changes anything. A heal that started before
   the mkdir therefore finishes before the deploy goes on, and every later one sees lock_dir.
4. A deploy writes the new wanted set (--want, which ignores lock_dir but takes the flock)
   before it removes lock_dir, so no heal ever sees the old set after the deploy.

Runs on the server as root with python3's standard library, the docker CLI, the Engine API
socket and haproxy_runtime.py installed next to this file (imported from there: Python puts the
script's own directory first on sys.path).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from haproxy_runtime import (
    ADMIN_FMAINT,
    ADMIN_MAINT_MASK,
    ADMIN_RMAINT,
    NAME_PATTERN,
    REPLY_ADDED,
    REPLY_DELETED,
    RuntimeAPIError,
    RuntimeClient,
    ServerController,
)

DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_TIMEOUT_SECONDS = 60.0
# HAProxy may have just been started by this run: its socket answers a moment later.
RUNTIME_API_WAIT_SECONDS = 10.0
CONTAINER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# What one wanted container needs, from its state in Docker.
SNAPSHOT = "snapshot"
START = "start"
UNPAUSE = "unpause"
RECREATE = "recreate"
NO_SNAPSHOT = "no-snapshot"
LEAVE = "leave"

# What its HAProxy server needs.
HAPROXY_OK = "ok"
HAPROXY_MISSING = "missing"
HAPROXY_MOVE = "move"
HAPROXY_READD = "re-add"


class HealError(Exception):
    """Docker or the config refused something; the message says what."""


# The configuration.


@dataclass(frozen=True)
class HAProxyServer:
    """The HAProxy server that sends traffic to one app container."""

    backend: str
    server: str
    port: int
    network: str
    # Keywords of `add server` when the server must be added again; dynamic servers ignore
    # default-server lines, so they are given in full (haproxy_server_options).
    options: str = "check"

    @property
    def ref(self) -> str:
        return f"{self.backend}/{self.server}"


@dataclass(frozen=True)
class Wanted:
    name: str
    haproxy: HAProxyServer | None = None


@dataclass(frozen=True)
class Config:
    lock_dir: Path
    state_dir: Path
    haproxy_socket: str
    containers: tuple[Wanted, ...]

    @property
    def specs_dir(self) -> Path:
        return self.state_dir / "specs"


def parse_config(data: dict[str, Any]) -> Config:
    """The config from its JSON document; HealError on anything HAProxy or Docker would misread."""
    try:
        containers = tuple(_parse_wanted(item) for item in data.get("containers", []))
        return Config(
            lock_dir=Path(data["lock_dir"]),
            state_dir=Path(data["state_dir"]),
            haproxy_socket=str(data["haproxy_socket"]),
            containers=containers,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise HealError(f"bad config: {err!r}") from None


def _parse_wanted(item: dict[str, Any]) -> Wanted:
    name = str(item["name"])
    if not CONTAINER_NAME_PATTERN.match(name):
        raise ValueError(f"container name {name!r}")
    haproxy = item.get("haproxy")
    if not haproxy:
        return Wanted(name)
    server = HAProxyServer(
        backend=str(haproxy["backend"]),
        server=str(haproxy["server"]),
        port=int(haproxy["port"]),
        network=str(haproxy["network"]),
        options=str(haproxy.get("options") or "check"),
    )
    for value in (server.backend, server.server):
        if not NAME_PATTERN.match(value):
            raise ValueError(f"HAProxy name {value!r}")
    if re.search(r"[\r\n;#]", server.options) or not 0 < server.port < 65536:
        raise ValueError(f"HAProxy server options or port of {name}")
    return Wanted(name, server)


def load_config(path: Path) -> Config:
    try:
        return parse_config(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as err:
        raise HealError(f"cannot read config {path}: {err}") from None


# Snapshots: the create body of a container, rebuilt from `docker inspect`.


def endpoint_config(network: dict[str, Any], short_id: str) -> dict[str, Any]:
    """What to ask of a network again: its aliases (without the short id Docker adds to every
    container) and its fixed address, if any."""
    config: dict[str, Any] = {}
    aliases = [alias for alias in network.get("Aliases") or [] if alias != short_id]
    if aliases:
        config["Aliases"] = aliases
    if network.get("IPAMConfig"):
        config["IPAMConfig"] = network["IPAMConfig"]
    return config


def create_body(inspect: dict[str, Any]) -> dict[str, Any]:
    """The body of POST /containers/create that makes this container again.

    Hostname and Domainname are left out so that the new container gets its own (its id);
    every network is in EndpointsConfig, see split_networks.
    """
    config = {
        key: value
        for key, value in inspect["Config"].items()
        if key not in ("Hostname", "Domainname")
    }
    short_id = inspect["Id"][:12]
    networks = inspect.get("NetworkSettings", {}).get("Networks") or {}
    endpoints = {name: endpoint_config(network, short_id) for name, network in networks.items()}
    return {
        **config,
        "HostConfig": inspect["HostConfig"],
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }


def split_networks(body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The create body with only its first network, and the networks to connect afterwards.

    Engine API 1.41 (Docker 20.10) takes a single network at create time. The first one is
    HostConfig.NetworkMode, the one Docker made the container with.
    """
    endpoints = dict(body.get("NetworkingConfig", {}).get("EndpointsConfig") or {})
    mode = body.get("HostConfig", {}).get("NetworkMode", "")
    first = mode if mode in endpoints else next(iter(endpoints), None)
    if first is None:
        return body, []
    create = {**body, "NetworkingConfig": {"EndpointsConfig": {first: endpoints.pop(first)}}}
    return create, list(endpoints.items())


def container_action(inspect: dict[str, Any] | None, has_snapshot: bool) -> str:
    """What a wanted container needs, from its `docker inspect` document (None: missing)."""
    if inspect is None:
        return RECREATE if has_snapshot else NO_SNAPSHOT
    state = inspect.get("State", {})
    if state.get("Paused"):
        return UNPAUSE
    if state.get("Restarting"):
        # Its restart policy is at work (a crash loop backs off by itself).
        return LEAVE
    if state.get("Running"):
        return SNAPSHOT
    return START


def container_ip(inspect: dict[str, Any], network: str) -> str:
    networks = inspect.get("NetworkSettings", {}).get("Networks") or {}
    return (networks.get(network) or {}).get("IPAddress", "")


class SnapshotStore:
    """One JSON file per container in the specs directory, each written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def load(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(name).read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as err:
            raise HealError(f"unreadable snapshot {self.path(name)}: {err}") from None

    def save(self, name: str, body: dict[str, Any]) -> bool:
        """Write the snapshot unless it holds this already; True if the file changed."""
        text = json.dumps(body, indent=2, sort_keys=True) + "\n"
        path = self.path(name)
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == text:
                return False
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(path, text)
        return True

    def names(self) -> set[str]:
        if not self.directory.is_dir():
            return set()
        return {path.stem for path in self.directory.glob("*.json")}

    def prune(self, wanted: Iterable[str]) -> list[str]:
        """Remove the snapshots of containers no longer wanted; their names."""
        gone = sorted(self.names() - set(wanted))
        for name in gone:
            self.path(name).unlink(missing_ok=True)
        return gone


def write_atomically(path: Path, text: str) -> None:
    """Replace path with text: readers see the old file or the new one, never a part."""
    # The snapshot may hold the containers' environment: root only.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# HAProxy: what a server needs so that it sends traffic to its container, without a reload.


class Command(NamedTuple):
    """A Runtime API command and the replies that mean it worked (none: an empty reply)."""

    text: str
    accept: tuple[str, ...] = ()

    def accepted(self, reply: str) -> bool:
        if not self.accept:
            return not reply.strip()
        return any(word in reply for word in self.accept)


def haproxy_decision(row: dict[str, str] | None, address: str, port: int) -> str:
    """What a server needs, from its `show servers state` row.

    A server whose name did not resolve when HAProxy started (init-addr libc,none) sits in
    RMAINT with no address at all (srv_addr "-"); it must be added again (see
    haproxy_commands). A server at another address is moved; one that does not exist is left
    alone: only deploy.yml and site.yml add servers.
    """
    if row is None:
        return HAPROXY_MISSING
    flags = _count(row.get("srv_admin_state"))
    if row.get("srv_addr", "-") in ("", "-") or flags & ADMIN_RMAINT:
        return HAPROXY_READD
    if row.get("srv_addr") != address or row.get("srv_port") != str(port):
        return HAPROXY_MOVE
    return HAPROXY_OK


def haproxy_commands(
    decision: str, server: HAProxyServer, row: dict[str, str], address: str
) -> list[Command]:
    """The Runtime API commands that carry out a decision, as verified on HAProxy 2.6.12.

    - A server with an address (it resolved at start, or was added at run time) only needs
      `set server B/S addr IP port P`; its health checks then bring it UP after `rise` passes.
    - A server without one (init-addr none: "MAINT (resolution)", srv_admin_state 32) cannot be
      given one: `set server ... addr` answers "Update for the current server address family is
      only supported through configuration file", yet clears RMAINT, which leaves the server
      out of maintenance, with no address, briefly "UP 1/3" then DOWN (SOCKERR) for good.
      `set server ... state ready`, `enable server` and `enable health` leave it in RMAINT.
      (`set server ... fqdn` needs runtime resolvers, which this stack does not use.)
      What works: put it in maintenance if it is not (`del server` refuses otherwise), `del
      server`, `add server B/S IP:P OPTIONS` (it comes back as a dynamic server in
      maintenance, with the backend's http-check), `enable health`, `enable server`; it is UP
      once its checks pass. A server also in forced maintenance (an operator's `disable
      server`) is added back but left in maintenance.
    """
    ref = server.ref
    if decision == HAPROXY_MOVE:
        return [
            Command(
                f"set server {ref} addr {address} port {server.port}",
                ("changed from", "no need to change"),
            )
        ]
    if decision != HAPROXY_READD:
        return []
    flags = _count(row.get("srv_admin_state"))
    commands = []
    if not flags & ADMIN_MAINT_MASK:
        commands.append(Command(f"set server {ref} state maint"))
    commands += [
        Command(f"del server {ref}", (REPLY_DELETED,)),
        Command(f"add server {ref} {address}:{server.port} {server.options}", (REPLY_ADDED,)),
    ]
    if "check" in server.options.split():
        commands.append(Command(f"enable health {ref}"))
    if not flags & ADMIN_FMAINT:
        commands.append(Command(f"enable server {ref}"))
    return commands


def _count(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


# Docker: the Engine API for reading and creating; the CLI for starting and unpausing.


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the Engine API's unix socket."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Docker:
    """The few Docker operations a heal needs."""

    def __init__(self, socket_path: str = DOCKER_SOCKET) -> None:
        self.socket_path = socket_path

    def inspect(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The inspect document (as `docker container inspect` prints it) of each container that
        exists, by name: one Engine API call each, where a `docker` process cost a run about a
        third of its CPU."""
        found = {}
        for name in names:
            document = self._get(f"/containers/{quote(name, safe='')}/json")
            if document is not None:
                found[document["Name"].lstrip("/")] = document
        return found

    def start(self, name: str) -> None:
        self._cli("start", name)

    def unpause(self, name: str) -> None:
        self._cli("unpause", name)

    def create(self, name: str, body: dict[str, Any]) -> None:
        self._post(f"/containers/create?name={quote(name)}", body)

    def connect(self, name: str, network: str, endpoint: dict[str, Any]) -> None:
        self._post(
            f"/networks/{quote(network, safe='')}/connect",
            {"Container": name, "EndpointConfig": endpoint},
        )

    def remove(self, name: str) -> None:
        self._request("DELETE", f"/containers/{quote(name, safe='')}?force=1", None)

    def _cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                ["docker", *args],
                capture_output=True,
                text=True,
                timeout=DOCKER_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise HealError(f"docker {args[0]} failed: {err}") from None
        if check and result.returncode != 0:
            raise HealError(result.stderr.strip() or f"docker {args[0]} exited {result.returncode}")
        return result

    def _post(self, path: str, body: dict[str, Any]) -> None:
        self._request("POST", path, body)

    def _get(self, path: str) -> dict[str, Any] | None:
        """The JSON document at path, or None when the engine has no such object (404)."""
        status, reply = self._call("GET", path, None)
        if status == 404:
            return None
        if status >= 300:
            raise HealError(f"Engine API GET {path}: {status} {_message(reply)}")
        try:
            document = json.loads(reply)
        except ValueError:
            raise HealError(f"Engine API GET {path}: not JSON: {reply[:200]}") from None
        if not isinstance(document, dict):
            raise HealError(f"Engine API GET {path}: not a JSON object: {reply[:200]}")
        return document

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> None:
        status, reply = self._call(method, path, body)
        if status >= 300:
            raise HealError(f"Engine API {method} {path}: {status} {_message(reply)}")

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, str]:
        connection = UnixHTTPConnection(self.socket_path, DOCKER_TIMEOUT_SECONDS)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {} if body is None else {"Content-Type": "application/json"}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            reply = response.read().decode("utf-8", errors="replace")
        except OSError as err:
            raise HealError(f"Engine API {method} {path} failed: {err}") from None
        finally:
            connection.close()
        return response.status, reply


def _message(reply: str) -> str:
    try:
        return str(json.loads(reply).get("message", reply)).strip()
    except (ValueError, AttributeError):
        return reply.strip()


# One run.


def log(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def heal_lock(state_dir: Path) -> Iterator[None]:
    """Hold the exclusive flock every run and every deploy takes (see the module docstring)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(state_dir / "heal.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def deploy_lock_holder(lock_dir: Path) -> str | None:
    """Who holds the deploy lock (owner.json as it is), or None when nobody does."""
    if not lock_dir.is_dir():
        return None
    try:
        return (lock_dir / "owner.json").read_text().strip() or "unknown"
    except OSError:
        # The deploy has made the directory and not written its name yet.
        return "unknown (no owner.json yet)"


@dataclass
class Healer:
    config: Config
    docker: Docker
    store: SnapshotStore
    failed: bool = False

    def fail(self, message: str) -> None:
        self.failed = True
        log(message)

    def run(self) -> int:
        """One heal: containers first, then HAProxy's view of the app containers."""
        wanted = self.config.containers
        try:
            found = self.docker.inspect(item.name for item in wanted)
        except HealError as err:
            self.fail(f"cannot read the containers: {err}")
            return 1
        # In start order: Redis and HAProxy come back before what needs them.
        touched = []
        for item in wanted:
            if self.heal_container(item, found.get(item.name)):
                touched.append(item.name)
        app = [item for item in wanted if item.haproxy is not None]
        if app:
            self.heal_haproxy(app, found, touched)
        return 1 if self.failed else 0

    def heal_container(self, item: Wanted, inspect: dict[str, Any] | None) -> bool:
        """Bring one container to running; True if it was started or created."""
        name = item.name
        try:
            snapshot = self.store.load(name) if inspect is None else None
            action = container_action(inspect, snapshot is not None)
            if action == SNAPSHOT and inspect is not None:
                if self.store.save(name, create_body(inspect)):
                    log(f"saved the spec of {name}")
            elif action == START and inspect is not None:
                self.docker.start(name)
                log(f"started {name} (was {inspect.get('State', {}).get('Status', 'stopped')})")
                return True
            elif action == UNPAUSE:
                self.docker.unpause(name)
                log(f"unpaused {name}")
                return True
            elif action == RECREATE and snapshot is not None:
                self.recreate(name, snapshot)
                log(f"recreated {name} from its snapshot")
                return True
            elif action == NO_SNAPSHOT:
                self.fail(f"cannot recreate {name}: no snapshot of its spec (run site.yml)")
        except HealError as err:
            self.fail(f"could not heal {name}: {err}")
        return False

    def recreate(self, name: str, snapshot: dict[str, Any]) -> None:
        create, others = split_networks(snapshot)
        self.docker.create(name, create)
        try:
            for network, endpoint in others:
                self.docker.connect(name, network, endpoint)
            self.docker.start(name)
        except HealError:
            # A container on only some of its networks must not be taken for healed (the next
            # run would merely start it): remove it, the next run creates it again.
            with contextlib.suppress(HealError):
                self.docker.remove(name)
            raise

    def heal_haproxy(
        self, app: list[Wanted], found: dict[str, dict[str, Any]], touched: list[str]
    ) -> None:
        # Containers started or created in this run have their addresses only now.
        fresh = [item.name for item in app if item.name in touched]
        if fresh:
            try:
                found = {**found, **self.docker.inspect(fresh)}
            except HealError as err:
                self.fail(f"cannot read the containers: {err}")
                return
        # One that could not be brought back has already been reported.
        running = [
            (item.haproxy, found[item.name])
            for item in app
            if item.haproxy is not None and found.get(item.name, {}).get("State", {}).get("Running")
        ]
        if not running:
            return
        client = RuntimeClient(self.config.haproxy_socket)
        rows = self.read_servers(client, {server.backend for server, _ in running})
        if rows is None:
            return
        for server, inspect in running:
            self.point_server(client, server, rows, container_ip(inspect, server.network))

    def read_servers(
        self, client: RuntimeClient, backends: set[str]
    ) -> dict[tuple[str, str], dict[str, str]] | None:
        """Every server of these backends by (backend, server); None if HAProxy is unreachable."""
        deadline = time.monotonic() + RUNTIME_API_WAIT_SECONDS
        while True:
            try:
                return {
                    (row.get("be_name", ""), row.get("srv_name", "")): row
                    for backend in sorted(backends)
                    for row in client.show_servers_state(backend)
                }
            except RuntimeAPIError as err:
                if time.monotonic() >= deadline:
                    self.fail(f"cannot reach HAProxy's Runtime API: {err}")
                    return None
                time.sleep(0.5)

    def point_server(
        self,
        client: RuntimeClient,
        server: HAProxyServer,
        rows: dict[tuple[str, str], dict[str, str]],
        address: str,
    ) -> None:
        if not address:
            self.fail(f"haproxy {server.ref}: its container has no address on {server.network}")
            return
        row = rows.get((server.backend, server.server))
        decision = haproxy_decision(row, address, server.port)
        if decision == HAPROXY_MISSING:
            self.fail(f"haproxy has no server {server.ref}; not adding it (deploy.yml does)")
            return
        if row is None or decision == HAPROXY_OK:
            return
        controller = ServerController(
            client, server.backend, server.server, timeout_seconds=10, poll_interval_seconds=0.5
        )
        try:
            for command in haproxy_commands(decision, server, row, address):
                controller.send(command.text, command.accepted)
        except RuntimeAPIError as err:
            self.fail(f"haproxy {server.ref}: {err}")
            return
        how = " (added again: it had no address)" if decision == HAPROXY_READD else ""
        log(f"haproxy {server.ref} -> {address}:{server.port}{how}")


def heal(config: Config, docker: Docker) -> int:
    """One heal run under the heal lock; does nothing while a deploy holds its lock."""
    with heal_lock(config.state_dir):
        holder = deploy_lock_holder(config.lock_dir)
        if holder is not None:
            log(f"deploy lock held by {holder}; not healing")
            return 0
        return Healer(config, docker, SnapshotStore(config.specs_dir)).run()


def refresh_snapshots(config: Config, docker: Docker, quiet_unchanged: bool = False) -> int:
    """Snapshots of the running wanted containers; those of unwanted ones removed.

    "changed" is printed last when a file changed; with quiet_unchanged, never (the caller
    says it).
    """
    store = SnapshotStore(config.specs_dir)
    names = [item.name for item in config.containers]
    changed = False
    with heal_lock(config.state_dir):
        for name, inspect in docker.inspect(names).items():
            if container_action(inspect, False) == SNAPSHOT and store.save(
                name, create_body(inspect)
            ):
                log(f"saved the spec of {name}")
                changed = True
        for name in store.prune(names):
            log(f"removed the snapshot of {name}, no longer wanted")
            changed = True
    if changed and not quiet_unchanged:
        log("changed")
    return 0


def wanted_config(current: dict[str, Any] | None, want: dict[str, Any]) -> dict[str, Any]:
    """The config document a want request makes of the current one (None: there is none).

    want holds lock_dir, state_dir, haproxy_socket, groups (group -> list of wanted containers,
    in start order), order (the known groups, in the order a stack starts) and replace: true
    drops the current groups that want does not name (site.yml names every group), false keeps
    them (a deploy names only its service's group). The containers are the groups' lists, the
    known groups first in their order, any other after them by name.
    """
    try:
        groups = dict((current or {}).get("groups") or {}) if not want["replace"] else {}
        groups.update(want["groups"])
        known = [str(group) for group in want["order"]]
        order = known + sorted(group for group in groups if group not in known)
        return {
            "lock_dir": str(want["lock_dir"]),
            "state_dir": str(want["state_dir"]),
            "haproxy_socket": str(want["haproxy_socket"]),
            "groups": groups,
            "containers": [item for group in order if group in groups for item in groups[group]],
        }
    except (KeyError, TypeError, AttributeError) as err:
        raise HealError(f"bad want request: {err!r}") from None


def write_wanted(path: Path, want: dict[str, Any], docker: Docker) -> int:
    """Write the wanted set to the config file (when it changed), then refresh the snapshots.

    One call for what a deploy or site.yml names to the healer: "changed" is printed last when
    the config or a snapshot file changed. The document is checked (parse_config) before it
    replaces the file, and replaced atomically: a heal reads the old set or the new one.
    """
    try:
        current = json.loads(path.read_text())
    except FileNotFoundError:
        current = None
    except (OSError, json.JSONDecodeError) as err:
        # An unreadable file is replaced: only a replacing request can be trusted to keep
        # nothing from it.
        if not want.get("replace"):
            raise HealError(f"cannot read config {path}: {err}") from None
        current = None
    document = wanted_config(current, want)
    config = parse_config(document)
    text = json.dumps(document, indent=4, sort_keys=True) + "\n"
    wrote = False
    with heal_lock(config.state_dir):
        if not path.exists() or path.read_text() != text:
            write_atomically(path, text)
            log(f"wrote the list of wanted containers ({len(config.containers)})")
            wrote = True
    if refresh_snapshots(config, docker, quiet_unchanged=wrote) == 0 and wrote:
        log("changed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="the healer's JSON config")
    parser.add_argument(
        "--snapshot-only",
        action="store_true",
        help="only refresh the snapshots of the running wanted containers",
    )
    parser.add_argument(
        "--want",
        type=json.loads,
        help="a JSON request: write the wanted set to --config, then refresh the snapshots",
    )
    args = parser.parse_args(argv)
    try:
        if args.want is not None:
            return write_wanted(args.config, args.want, Docker())
        config = load_config(args.config)
        if args.snapshot_only:
            return refresh_snapshots(config, Docker())
        return heal(config, Docker())
    except HealError as err:
        log(str(err))
        return 1


if __name__ == "__main__":
    sys.exit(main())
