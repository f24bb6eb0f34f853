"""Unit tests of webstack_heal.py, the healer the healer role runs on the server.

The pure parts (the create body, the decisions, the Runtime API commands) are tested on real
documents: `docker inspect` of Docker 20.10.24 and `show servers state` rows of HAProxy 2.6.12.
The runs use a fake Docker and the fake HAProxy of conftest.py; Docker's reads are also tested
against this machine's own engine.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import FakeHAProxy

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# On the server the role installs haproxy_runtime.py beside the script, which imports it.
if "haproxy_runtime" not in sys.modules:
    _load("haproxy_runtime", ROOT / "plugins" / "modules" / "haproxy_runtime.py")
wh = _load("webstack_heal", ROOT / "roles" / "healer" / "files" / "webstack_heal.py")

# `docker inspect` of a container on two networks, one with a fixed address (Docker 20.10.24;
# a test container renamed after NGINX, trimmed of the paths, drivers and zero limits).
INSPECT = json.loads(
    """
{
  "Id": "7f4db25e352c9d49208cfe96eca5db5a375da9797060193661add447a9e4160e",
  "Created": "2026-11-27T07:15:01.157308935Z",
  "Name": "/webstack-nginx",
  "State": {"Status": "running", "Running": true, "Paused": false, "Restarting": false,
            "OOMKilled": false, "Dead": false, "Pid": 25638, "ExitCode": 0, "Error": "",
            "StartedAt": "2026-11-27T07:15:01.527841673Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []}},
  "Image": "sha256:c6d555691e79cba1a4801bd2416b362527dbf09bb67041d09f0f0f4b134f5992",
  "RestartCount": 0,
  "HostConfig": {
    "Binds": ["webstack_cache:/data"],
    "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "webstack_internal",
    "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}]},
    "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
    "AutoRemove": false, "CapAdd": null, "CapDrop": ["ALL"], "CgroupnsMode": "host",
    "Dns": [], "ExtraHosts": null, "IpcMode": "private", "Privileged": false,
    "ReadonlyRootfs": true, "SecurityOpt": ["no-new-privileges:true"],
    "Tmpfs": {"/tmp": "uid=33,gid=33,mode=0700"}, "ShmSize": 67108864, "Runtime": "runc",
    "Memory": 67108864, "NanoCpus": 500000000, "MemorySwap": 134217728, "PidsLimit": null,
    "MaskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
    "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  },
  "Config": {
    "Hostname": "7f4db25e352c", "Domainname": "", "User": "33:33",
    "AttachStdin": false, "AttachStdout": true, "AttachStderr": true,
    "ExposedPorts": {"8080/tcp": {}},
    "Tty": false, "OpenStdin": false, "StdinOnce": false,
    "Env": ["FOO=bar"], "Cmd": ["sleep", "600"],
    "Healthcheck": {"Test": ["CMD-SHELL", "test -e /etc/hostname"], "Interval": 5000000000},
    "Image": "webstack/nginx:local", "Volumes": null, "WorkingDir": "", "Entrypoint": null,
    "OnBuild": null, "Labels": {"webstack.stack": "webstack"}, "StopTimeout": 30
  },
  "NetworkSettings": {
    "Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}]},
    "Networks": {
      "webstack_internal": {
        "IPAMConfig": {"IPv4Address": "172.31.240.10"},
        "Aliases": ["nginx", "7f4db25e352c"],
        "NetworkID": "052bdd4618cfef2d127c740d498f014662bba2f6753d05550baf6fa51ce5558c",
        "EndpointID": "d57bcdc4228e6f46234f2a95e483186c2a98ee63bcaee2728a84a514765dfc49",
        "Gateway": "172.31.240.128", "IPAddress": "172.31.240.10", "IPPrefixLen": 24,
        "MacAddress": "02:42:ac:1d:4e:0a"
      },
      "webstack_edge": {
        "IPAMConfig": {},
        "Aliases": ["www", "7f4db25e352c"],
        "NetworkID": "791b428707c9c632af20c48c72faa494b697aaf656374067041fdcb160f64efe",
        "EndpointID": "a3fb5c59eacbbe34633186f1c6b1b6dbc45ba73a7720b6e686f1079b044f81ed",
        "Gateway": "172.30.0.1", "IPAddress": "172.30.0.5", "IPPrefixLen": 24,
        "MacAddress": "02:42:ac:1d:4d:05"
      }
    }
  }
}
"""
)

# `show servers state app` header and rows of HAProxy 2.6.12 (init-addr libc,none).
STATE_HEADER_LINE = (
    "be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
    "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
    "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"
)
# Its name did not resolve at start: "MAINT (resolution)", no address.
ROW_UNRESOLVED = "3 app 1 s1 - 0 32 100 100 2 1 0 0 14 0 0 0 healtest-web 8000 - 0 0 - - 0"
# After a `set server addr` on the unresolved server: refused, but RMAINT cleared.
ROW_NO_ADDRESS = "3 app 1 s1 - 0 0 100 100 0 5 2 0 6 0 0 0 healtest-web 8000 - 0 0 - - 0"
ROW_UP = "3 app 1 s1 172.29.77.4 2 0 100 100 2 15 3 4 6 0 0 0 healtest-web 8000 - 0 0 - - 0"

SERVER_OPTIONS = "check inter 1s rise 2 fall 3 weight 100"
APP_SERVER = wh.HAProxyServer("app", "s1", 8000, "webstack_internal", SERVER_OPTIONS)


def state_row(line: str, **changes: str) -> dict[str, str]:
    return {**dict(zip(STATE_HEADER_LINE.split(), line.split(), strict=True)), **changes}


def inspect_as(name: str, status: str, **networks: str) -> dict[str, Any]:
    """A copy of INSPECT named name, in state status, with these addresses per network."""
    doc = copy.deepcopy(INSPECT)
    doc["Name"] = f"/{name}"
    doc["State"].update(
        Status=status,
        Running=status in ("running", "paused", "restarting"),
        Paused=status == "paused",
        Restarting=status == "restarting",
    )
    for network, address in networks.items():
        doc["NetworkSettings"]["Networks"][network]["IPAddress"] = address
    return doc


# The create body.


def test_create_body_keeps_the_spec_and_leaves_out_the_identity() -> None:
    body = wh.create_body(INSPECT)

    assert "Hostname" not in body and "Domainname" not in body
    for key in ("User", "Env", "Cmd", "Healthcheck", "Image", "Labels", "StopTimeout"):
        assert body[key] == INSPECT["Config"][key]
    assert body["Image"] == "webstack/nginx:local"
    assert body["HostConfig"] == INSPECT["HostConfig"]
    assert body["NetworkingConfig"] == {
        "EndpointsConfig": {
            # The short id Docker adds as an alias is the old container's: left out.
            "webstack_internal": {
                "Aliases": ["nginx"],
                "IPAMConfig": {"IPv4Address": "172.31.240.10"},
            },
            "webstack_edge": {"Aliases": ["www"]},
        }
    }
    assert not {"Id", "State", "NetworkSettings", "Created"} & set(body)


def test_create_body_is_the_same_for_the_container_made_from_it() -> None:
    # What Docker reports for the new container differs only in its identity and addresses,
    # so its snapshot is the same and the next run saves nothing.
    again = inspect_as("webstack-nginx", "running", webstack_edge="172.30.0.9")
    again["Id"] = "b88e83581b98" + "0" * 52
    again["Config"]["Hostname"] = "b88e83581b98"
    for network in again["NetworkSettings"]["Networks"].values():
        network["Aliases"] = [*network["Aliases"][:-1], "b88e83581b98"]

    assert wh.create_body(again) == wh.create_body(INSPECT)


def test_split_networks_creates_on_the_network_mode_and_connects_the_others() -> None:
    create, others = wh.split_networks(wh.create_body(INSPECT))

    assert list(create["NetworkingConfig"]["EndpointsConfig"]) == ["webstack_internal"]
    assert others == [("webstack_edge", {"Aliases": ["www"]})]
    assert create["HostConfig"]["NetworkMode"] == "webstack_internal"


def test_split_networks_of_a_container_without_networks() -> None:
    body = {"Image": "x", "HostConfig": {"NetworkMode": "none"}}

    assert wh.split_networks(body) == (body, [])


# The decision per container.


@pytest.mark.parametrize(
    ("status", "has_snapshot", "action"),
    [
        ("running", True, wh.SNAPSHOT),
        ("exited", True, wh.START),
        ("created", False, wh.START),
        ("paused", True, wh.UNPAUSE),
        ("restarting", True, wh.LEAVE),
        (None, True, wh.RECREATE),
        (None, False, wh.NO_SNAPSHOT),
    ],
)
def test_container_action(status: str | None, has_snapshot: bool, action: str) -> None:
    inspect = None if status is None else inspect_as("webstack-redis", status)

    assert wh.container_action(inspect, has_snapshot) == action


# HAProxy.


@pytest.mark.parametrize(
    ("row", "address", "port", "decision"),
    [
        (None, "172.29.77.4", 8000, wh.HAPROXY_MISSING),
        (ROW_UNRESOLVED, "172.29.77.4", 8000, wh.HAPROXY_READD),
        (ROW_NO_ADDRESS, "172.29.77.4", 8000, wh.HAPROXY_READD),
        (ROW_UP, "172.29.77.4", 8000, wh.HAPROXY_OK),
        (ROW_UP, "172.29.77.6", 8000, wh.HAPROXY_MOVE),
        (ROW_UP, "172.29.77.4", 8001, wh.HAPROXY_MOVE),
    ],
    ids=["missing", "unresolved", "no-address", "ok", "moved", "other-port"],
)
def test_haproxy_decision(row: str | None, address: str, port: int, decision: str) -> None:
    parsed = None if row is None else state_row(row)

    assert wh.haproxy_decision(parsed, address, port) == decision


def commands(decision: str, row: dict[str, str], server: Any = APP_SERVER) -> list[str]:
    return [command.text for command in wh.haproxy_commands(decision, server, row, "10.0.0.7")]


def test_a_server_at_another_address_is_moved() -> None:
    assert commands(wh.HAPROXY_MOVE, state_row(ROW_UP)) == [
        "set server app/s1 addr 10.0.0.7 port 8000"
    ]


def test_an_unresolved_server_is_added_again_as_haproxy_2_6_needs() -> None:
    assert commands(wh.HAPROXY_READD, state_row(ROW_UNRESOLVED)) == [
        "del server app/s1",
        f"add server app/s1 10.0.0.7:8000 {SERVER_OPTIONS}",
        "enable health app/s1",
        "enable server app/s1",
    ]


def test_a_server_without_address_out_of_maintenance_is_put_in_it_first() -> None:
    # `del server` refuses a server that is not in maintenance.
    assert commands(wh.HAPROXY_READD, state_row(ROW_NO_ADDRESS))[:2] == [
        "set server app/s1 state maint",
        "del server app/s1",
    ]


def test_an_operators_maintenance_is_kept_and_checks_only_when_configured() -> None:
    forced = state_row(ROW_UNRESOLVED, srv_admin_state=str(0x20 | 0x01))
    plain = wh.HAProxyServer("app", "s1", 8000, "webstack_internal", "weight 10")

    assert "enable server app/s1" not in commands(wh.HAPROXY_READD, forced)
    assert commands(wh.HAPROXY_READD, state_row(ROW_UNRESOLVED), plain) == [
        "del server app/s1",
        "add server app/s1 10.0.0.7:8000 weight 10",
        "enable server app/s1",
    ]


def test_nothing_is_sent_to_a_server_that_is_fine_or_missing() -> None:
    assert commands(wh.HAPROXY_OK, state_row(ROW_UP)) == []
    assert commands(wh.HAPROXY_MISSING, {}) == []


@pytest.mark.parametrize(
    ("command", "reply", "accepted"),
    [
        (0, "IP changed from '172.29.77.5' to '172.29.77.6', no need to change the port by "
         "'stats socket command'\n\n", True),
        (0, "Update for the current server address family is only supported through "
         "configuration file by 'stats socket command'\n\n", False),
        (1, "Server deleted.\n", True),
        (1, "Only servers in maintenance mode can be deleted.\n", False),
        (2, "New server registered.\n\n", True),
        (3, "\n", True),
        (3, "No such server.\n", False),
    ],
)  # fmt: skip
def test_replies_of_haproxy_2_6_are_told_apart(command: int, reply: str, accepted: bool) -> None:
    moved = wh.haproxy_commands(wh.HAPROXY_MOVE, APP_SERVER, state_row(ROW_UP), "172.29.77.6")
    readded = wh.haproxy_commands(
        wh.HAPROXY_READD, APP_SERVER, state_row(ROW_UNRESOLVED), "172.29.77.6"
    )
    sent = [moved[0], readded[0], readded[1], readded[2]][command]

    assert sent.accepted(reply) is accepted


# The config.


def config_document(state_dir: Path, socket_path: str = "/nonexistent/admin.sock") -> dict:
    return {
        "lock_dir": str(state_dir / "deploy.lock"),
        "state_dir": str(state_dir),
        "haproxy_socket": socket_path,
        "containers": [
            {"name": "webstack-redis"},
            {"name": "webstack-nginx"},
            {
                "name": "webstack-app-abc-1",
                "haproxy": {
                    "backend": "app",
                    "server": "web1",
                    "port": "8000",
                    "network": "webstack_internal",
                },
            },
        ],
    }


def test_the_config_is_read_with_its_defaults(tmp_path: Path) -> None:
    config = wh.parse_config(config_document(tmp_path))

    assert [item.name for item in config.containers] == [
        "webstack-redis",
        "webstack-nginx",
        "webstack-app-abc-1",
    ]
    assert config.containers[2].haproxy == wh.HAProxyServer(
        "app", "web1", 8000, "webstack_internal", "check"
    )
    assert config.specs_dir == tmp_path / "specs"


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "two words"},
        {"name": "x", "haproxy": {"backend": "app", "server": "a;b", "port": 1, "network": "n"}},
        {"name": "x", "haproxy": {"backend": "app", "server": "s", "port": 0, "network": "n"}},
        {"name": "x", "haproxy": {"backend": "app", "server": "s", "port": 1}},
    ],
)
def test_a_config_haproxy_or_docker_would_misread_is_refused(tmp_path: Path, bad: dict) -> None:
    document = {**config_document(tmp_path), "containers": [bad]}

    with pytest.raises(wh.HealError, match="bad config"):
        wh.parse_config(document)


# Snapshots.


def test_a_snapshot_is_written_only_when_it_changes(tmp_path: Path) -> None:
    store = wh.SnapshotStore(tmp_path / "specs")
    body = wh.create_body(INSPECT)

    assert store.save("webstack-nginx", body) is True
    assert store.save("webstack-nginx", copy.deepcopy(body)) is False
    assert store.load("webstack-nginx") == body
    assert store.load("webstack-redis") is None
    # Written through a temporary file and a rename: none is left behind.
    assert [path.name for path in (tmp_path / "specs").iterdir()] == ["webstack-nginx.json"]
    assert (tmp_path / "specs" / "webstack-nginx.json").stat().st_mode & 0o077 == 0


def test_snapshots_of_containers_no_longer_wanted_are_pruned(tmp_path: Path) -> None:
    store = wh.SnapshotStore(tmp_path / "specs")
    for name in ("webstack-app-old-1", "webstack-nginx"):
        store.save(name, {"Image": name})

    assert store.prune(["webstack-nginx"]) == ["webstack-app-old-1"]
    assert store.names() == {"webstack-nginx"}


# Runs, against a fake Docker.


class FakeDocker:
    """The containers Docker has, by name, and every call that would change them."""

    def __init__(self, containers: dict[str, dict[str, Any]] | None = None) -> None:
        self.containers = containers or {}
        self.calls: list[tuple[str, ...]] = []
        self.fail_on: set[str] = set()
        self.addresses: dict[str, str] = {}

    def inspect(self, names: Any) -> dict[str, dict[str, Any]]:
        self.calls.append(("inspect",))
        return {name: self.containers[name] for name in names if name in self.containers}

    def _change(self, verb: str, *args: str) -> None:
        self.calls.append((verb, *args))
        if verb in self.fail_on:
            raise wh.HealError(f"{verb} refused")

    def start(self, name: str) -> None:
        self._change("start", name)
        edge, internal = "172.30.0.20", self.addresses.get(name, "172.31.240.130")
        self.containers[name] = inspect_as(
            name, "running", webstack_edge=edge, webstack_internal=internal
        )

    def unpause(self, name: str) -> None:
        self._change("unpause", name)
        self.containers[name]["State"].update(Status="running", Paused=False)

    def create(self, name: str, body: dict[str, Any]) -> None:
        self._change("create", name, ",".join(body["NetworkingConfig"]["EndpointsConfig"]))
        self.containers[name] = inspect_as(name, "created")

    def connect(self, name: str, network: str, endpoint: dict[str, Any]) -> None:
        self._change("connect", name, network)

    def remove(self, name: str) -> None:
        self._change("remove", name)
        self.containers.pop(name, None)

    def changes(self) -> list[tuple[str, ...]]:
        return [call for call in self.calls if call[0] != "inspect"]


def make_config(tmp_path: Path, socket_path: str = "/nonexistent/admin.sock") -> Any:
    return wh.parse_config(config_document(tmp_path, socket_path))


def test_a_held_deploy_lock_means_nothing_is_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path)
    config.lock_dir.mkdir()
    (config.lock_dir / "owner.json").write_text('{"user": "alice", "action": "deploy"}\n')
    docker = FakeDocker({"webstack-redis": inspect_as("webstack-redis", "exited")})

    assert wh.heal(config, docker) == 0
    assert docker.calls == []
    assert not config.specs_dir.exists()
    assert capsys.readouterr().out == (
        'deploy lock held by {"user": "alice", "action": "deploy"}; not healing\n'
    )


def test_a_deploy_lock_without_its_owner_yet_is_held_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path)
    config.lock_dir.mkdir()
    docker = FakeDocker()

    assert wh.heal(config, docker) == 0
    assert docker.calls == []
    assert "not healing" in capsys.readouterr().out


def test_a_heal_waits_for_the_heal_lock(tmp_path: Path) -> None:
    # What a deploy does after its mkdir: take the flock, so a heal in progress finishes first.
    config = make_config(tmp_path)
    docker = FakeDocker()
    holding = threading.Event()
    release = threading.Event()

    def deploy() -> None:
        with wh.heal_lock(config.state_dir):
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=deploy)
    thread.start()
    holding.wait(5)
    healer = threading.Thread(target=wh.heal, args=(config, docker))
    healer.start()
    time.sleep(0.2)
    assert docker.calls == []
    release.set()
    healer.join(5)
    thread.join(5)
    assert docker.calls[0] == ("inspect",)


def test_stopped_paused_and_missing_containers_come_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path)
    wh.SnapshotStore(config.specs_dir).save("webstack-nginx", wh.create_body(INSPECT))
    docker = FakeDocker(
        {
            "webstack-redis": inspect_as("webstack-redis", "exited"),
            "webstack-app-abc-1": inspect_as("webstack-app-abc-1", "paused"),
        }
    )
    healer = wh.Healer(config, docker, wh.SnapshotStore(config.specs_dir))

    for item in config.containers:
        healer.heal_container(item, docker.containers.get(item.name))

    assert docker.changes() == [
        ("start", "webstack-redis"),
        # Created on its first network, connected to the other, then started.
        ("create", "webstack-nginx", "webstack_internal"),
        ("connect", "webstack-nginx", "webstack_edge"),
        ("start", "webstack-nginx"),
        ("unpause", "webstack-app-abc-1"),
    ]
    assert capsys.readouterr().out.splitlines() == [
        "started webstack-redis (was exited)",
        "recreated webstack-nginx from its snapshot",
        "unpaused webstack-app-abc-1",
    ]
    assert not healer.failed


def test_a_half_made_container_is_removed_for_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path)
    wh.SnapshotStore(config.specs_dir).save("webstack-nginx", wh.create_body(INSPECT))
    docker = FakeDocker()
    docker.fail_on = {"connect"}
    healer = wh.Healer(config, docker, wh.SnapshotStore(config.specs_dir))

    assert healer.heal_container(config.containers[1], None) is False
    assert docker.changes()[-1] == ("remove", "webstack-nginx")
    assert "webstack-nginx" not in docker.containers
    assert healer.failed
    assert "could not heal webstack-nginx: connect refused" in capsys.readouterr().out


def test_a_missing_container_without_snapshot_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path)
    healer = wh.Healer(config, FakeDocker(), wh.SnapshotStore(config.specs_dir))

    healer.heal_container(config.containers[0], None)

    assert healer.failed
    assert capsys.readouterr().out == (
        "cannot recreate webstack-redis: no snapshot of its spec (run site.yml)\n"
    )


def test_a_healthy_stack_prints_nothing_the_second_time(
    tmp_path: Path, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, haproxy.socket_path)
    names = [item.name for item in config.containers]
    docker = FakeDocker(
        {name: inspect_as(name, "running", webstack_internal="10.0.0.11") for name in names}
    )

    assert wh.heal(config, docker) == 0
    assert capsys.readouterr().out.count("saved the spec of") == 3
    assert wh.heal(config, docker) == 0
    assert capsys.readouterr().out == ""
    assert haproxy.mutating() == []


def test_an_app_container_started_at_another_address_is_followed_by_haproxy(
    tmp_path: Path, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, haproxy.socket_path)
    docker = FakeDocker({item.name: inspect_as(item.name, "running") for item in config.containers})
    docker.containers["webstack-app-abc-1"] = inspect_as("webstack-app-abc-1", "exited")
    docker.addresses["webstack-app-abc-1"] = "10.0.0.99"

    assert wh.heal(config, docker) == 0

    server = haproxy.server("app", "web1")
    assert server is not None and (server.address, server.port) == ("10.0.0.99", 8000)
    assert haproxy.mutating() == ["set server app/web1 addr 10.0.0.99 port 8000"]
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        "started webstack-app-abc-1 (was exited)",
        "haproxy app/web1 -> 10.0.0.99:8000",
    ]


def test_a_server_without_address_is_added_again(
    tmp_path: Path, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    # The state a `set server addr` leaves an unresolved server in (the fake, unlike HAProxy
    # 2.6, deletes only servers in forced maintenance, so the RMAINT case is tested above).
    config = make_config(tmp_path, haproxy.socket_path)
    haproxy.backends["app"].servers.clear()
    haproxy.add_server("app", "web1", "-", 8000, checks=True, health_enabled=True)
    docker = FakeDocker(
        {
            item.name: inspect_as(item.name, "running", webstack_internal="10.0.0.42")
            for item in config.containers
        }
    )

    assert wh.heal(config, docker) == 0

    assert haproxy.mutating() == [
        "set server app/web1 state maint",
        "del server app/web1",
        "add server app/web1 10.0.0.42:8000 check",
        "enable health app/web1",
        "enable server app/web1",
    ]
    server = haproxy.server("app", "web1")
    assert server is not None and server.address == "10.0.0.42" and server.admin == 0
    assert "haproxy app/web1 -> 10.0.0.42:8000 (added again: it had no address)" in (
        capsys.readouterr().out
    )


def test_a_server_haproxy_does_not_have_is_left_alone(
    tmp_path: Path, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, haproxy.socket_path)
    haproxy.backends["app"].servers.clear()
    docker = FakeDocker({item.name: inspect_as(item.name, "running") for item in config.containers})

    assert wh.heal(config, docker) == 1
    assert haproxy.mutating() == []
    assert "haproxy has no server app/web1; not adding it" in capsys.readouterr().out


def test_snapshot_only_says_changed_only_when_a_file_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path)
    wh.SnapshotStore(config.specs_dir).save("webstack-app-old-1", {"Image": "old"})
    docker = FakeDocker(
        {
            "webstack-nginx": inspect_as("webstack-nginx", "running"),
            "webstack-redis": inspect_as("webstack-redis", "exited"),
        }
    )

    assert wh.refresh_snapshots(config, docker) == 0
    assert capsys.readouterr().out.splitlines() == [
        "saved the spec of webstack-nginx",
        "removed the snapshot of webstack-app-old-1, no longer wanted",
        "changed",
    ]
    assert wh.refresh_snapshots(config, docker) == 0
    assert capsys.readouterr().out == ""
    assert docker.changes() == []


def test_snapshot_only_ignores_the_deploy_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A deploy names its new set before it releases its lock.
    config = make_config(tmp_path)
    config.lock_dir.mkdir()
    docker = FakeDocker({"webstack-nginx": inspect_as("webstack-nginx", "running")})

    wh.refresh_snapshots(config, docker)

    assert capsys.readouterr().out.splitlines()[-1] == "changed"


# --want: the healer role's one call when a set changes.


def want_request(tmp_path: Path, groups: dict[str, Any], *, replace: bool) -> dict[str, Any]:
    return {
        "lock_dir": str(tmp_path / "deploy.lock"),
        "state_dir": str(tmp_path),
        "haproxy_socket": "/nonexistent/admin.sock",
        "groups": groups,
        "order": ["redis", "app", "haproxy", "nginx"],
        "replace": replace,
    }


def test_a_deploy_replaces_its_group_and_keeps_the_others(tmp_path: Path) -> None:
    current = {"groups": {"nginx": [{"name": "webstack-nginx"}], "app": [{"name": "old-1"}]}}
    want = want_request(tmp_path, {"app": [{"name": "new-1"}, {"name": "new-2"}]}, replace=False)

    document = wh.wanted_config(current, want)

    assert document["groups"] == {
        "nginx": [{"name": "webstack-nginx"}],
        "app": [{"name": "new-1"}, {"name": "new-2"}],
    }
    # In start order: the app before NGINX.
    assert [item["name"] for item in document["containers"]] == ["new-1", "new-2", "webstack-nginx"]


def test_naming_every_group_drops_the_groups_no_longer_in_the_stack(tmp_path: Path) -> None:
    current = {"groups": {"gone": [{"name": "webstack-gone-1"}], "app": [{"name": "a-1"}]}}
    want = want_request(
        tmp_path, {"nginx": [{"name": "webstack-nginx"}], "app": [{"name": "a-1"}]}, replace=True
    )

    document = wh.wanted_config(current, want)

    assert sorted(document["groups"]) == ["app", "nginx"]
    assert [item["name"] for item in document["containers"]] == ["a-1", "webstack-nginx"]


def test_groups_outside_the_known_order_come_last_by_name(tmp_path: Path) -> None:
    want = want_request(
        tmp_path,
        {"zeta": [{"name": "z-1"}], "beta": [{"name": "b-1"}], "redis": [{"name": "r"}]},
        replace=True,
    )

    names = [item["name"] for item in wh.wanted_config(None, want)["containers"]]

    assert names == ["r", "b-1", "z-1"]


def test_want_writes_the_config_once_and_says_changed_only_then(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.json"
    docker = FakeDocker({"webstack-nginx": inspect_as("webstack-nginx", "running")})
    want = want_request(tmp_path, {"nginx": [{"name": "webstack-nginx"}]}, replace=True)

    assert wh.write_wanted(path, want, docker) == 0
    assert capsys.readouterr().out.splitlines() == [
        "wrote the list of wanted containers (1)",
        "saved the spec of webstack-nginx",
        "changed",
    ]
    assert wh.load_config(path).containers == (wh.Wanted("webstack-nginx"),)

    assert wh.write_wanted(path, want, docker) == 0
    assert capsys.readouterr().out == ""
    assert docker.changes() == []


def test_want_says_changed_when_only_a_snapshot_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.json"
    want = want_request(tmp_path, {"nginx": [{"name": "webstack-nginx"}]}, replace=True)
    wh.write_wanted(path, want, FakeDocker())
    capsys.readouterr()

    wh.write_wanted(
        path, want, FakeDocker({"webstack-nginx": inspect_as("webstack-nginx", "running")})
    )

    assert capsys.readouterr().out.splitlines() == ["saved the spec of webstack-nginx", "changed"]


def test_a_bad_want_request_leaves_the_config_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    want = want_request(tmp_path, {"nginx": [{"name": "webstack-nginx"}]}, replace=True)
    wh.write_wanted(path, want, FakeDocker())
    before = path.read_text()

    bad_name = want_request(tmp_path, {"app": [{"name": "bad name; rm -rf /"}]}, replace=False)
    with pytest.raises(wh.HealError, match="container name"):
        wh.write_wanted(path, bad_name, FakeDocker())
    with pytest.raises(wh.HealError, match="bad want request"):
        wh.write_wanted(path, {"groups": {}}, FakeDocker())

    assert path.read_text() == before


def test_a_deploy_refuses_an_unreadable_config_it_would_merge_into(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")

    with pytest.raises(wh.HealError, match="cannot read config"):
        wh.write_wanted(path, want_request(tmp_path, {"app": []}, replace=False), FakeDocker())
    wh.write_wanted(path, want_request(tmp_path, {"app": []}, replace=True), FakeDocker())

    assert json.loads(path.read_text())["groups"] == {"app": []}


# Docker's reads against this machine's engine (make bootstrap starts it and imports the image).


Docker = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def engine_container(docker: Docker) -> Iterator[str]:
    """A container made (not started) on this machine's engine, removed afterwards."""
    if os.environ.get("DOCKER_HOST", "unix://" + wh.DOCKER_SOCKET) != "unix://" + wh.DOCKER_SOCKET:
        pytest.skip("the engine is not on the socket the healer reads")
    name = f"webstack-heal-unit-{os.getpid()}"
    made = docker(
        "create", "--name", name, "--label", "webstack.test=heal", "debian:bookworm-slim", "true"
    )
    assert made.returncode == 0, made.stderr
    yield name
    docker("rm", "--force", name)


def test_inspect_reads_what_docker_inspect_prints_through_the_engine_api(
    engine_container: str, docker: Docker
) -> None:
    found = wh.Docker().inspect([engine_container, f"{engine_container}-missing"])
    printed = json.loads(docker("container", "inspect", engine_container).stdout)
    # The same document the CLI prints, by name; a name the engine does not know is left out.
    assert found == {engine_container: printed[0]}
    assert found[engine_container]["Config"]["Labels"]["webstack.test"] == "heal"
    assert wh.Docker().inspect([]) == {}


def test_inspect_fails_when_the_engine_does_not_answer(tmp_path: Path) -> None:
    with pytest.raises(wh.HealError, match="Engine API GET /containers/webstack-redis/json failed"):
        wh.Docker(str(tmp_path / "no-engine.sock")).inspect(["webstack-redis"])
