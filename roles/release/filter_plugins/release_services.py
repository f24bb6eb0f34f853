"""The services of a stack: their settings, their names on the server and their checks.

One place for the naming rule of a release's replicas (``<prefix>-<version>-<n>``, HAProxy
server ``<version>-<n>``) and for where each service keeps its history, its current release
and its static files. The service named ``app`` keeps the names of the one-app stack this
project started as, so servers provisioned before services existed go on unchanged.
"""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any

NAME = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOST = re.compile(rf"^(?=.{{1,253}}$)({LABEL}\.)+[a-z]([a-z0-9-]{{0,61}}[a-z0-9])?$")
PREFIX = re.compile(r"^/([A-Za-z0-9._~%!$&'()*+,;=:@-]+/)*$")
TAG = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})?$")
KINDS = ("web", "worker")
WEB_ONLY = ("port", "health_path", "route", "static_path")
KEYS = (
    "_legacy",
    "name",
    "source",
    "kind",
    "port",
    "health_path",
    "replicas",
    "route",
    "static_path",
    "env",
    "before_switch",
    "before_switch_timeout_seconds",
    "version",
    "keep_releases",
    "stop_timeout_seconds",
    "graceful_timeout_seconds",
    "health_timeout_seconds",
    "memory",
    "cpus",
    "uid",
)


# The item made from a one-app stack's app_* variables is refused in their names.
LEGACY_NAMES = {"memory": "app_memory_limit", "name": "app_name", "route": "app_route"}


def _key(item: dict[str, Any], key: str) -> str:
    return LEGACY_NAMES.get(key, f"app_{key}") if item.get("_legacy") else key


def _label(item: Any, index: int) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"webstack_services[{index}] ({name})" if name else f"webstack_services[{index}]"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def release_services(
    services: list[dict[str, Any]], defaults: dict[str, Any], stack: str, base_dir: str
) -> list[dict[str, Any]]:
    """Each service with every setting (its own, else the defaults) and its names."""
    result = []
    for item in services:
        kind = item.get("kind", defaults.get("kind", "web"))
        service = {key: value for key, value in defaults.items() if key in KEYS}
        if kind == "worker":
            service["replicas"] = defaults.get("worker_replicas", 1)
            for key in WEB_ONLY:
                service.pop(key, None)
            service["route"] = ""
        service.update(item)
        service["kind"] = kind
        name = str(service.get("name", ""))
        legacy = name == "app"
        service["image"] = f"{stack}/{name}"
        service["prefix"] = f"{stack}-{name}"
        service["release_dir"] = f"{base_dir}/releases" if legacy else f"{base_dir}/releases/{name}"
        service["static_dir"] = (
            f"{base_dir}/static" if legacy else f"{base_dir}/services/{name}/static"
        )
        service["secrets_dir"] = f"{base_dir}/secrets/{name}"
        route = str(service.get("route") or "")
        service["static_url"] = (
            f"{route}static/"
            if kind == "web" and route.startswith("/") and service.get("static_path")
            else ""
        )
        result.append(service)
    return result


def release_servers(
    service: dict[str, Any], version: str, replicas: Any = None
) -> list[dict[str, str]]:
    """The replicas of release ``version``: HAProxy server name and container name."""
    count = int(service["replicas"] if replicas is None else replicas)
    return [
        {"name": f"{version}-{index}", "host": f"{service['prefix']}-{version}-{index}"}
        for index in range(1, count + 1)
    ]


def release_backends(
    services: list[dict[str, Any]], currents: dict[str, str]
) -> list[dict[str, Any]]:
    """HAProxy's backends (the haproxy role's haproxy_backends): one per web service, with
    the replicas of its current release (``currents``: service name -> release)."""
    return [
        {
            "name": service["name"],
            "port": int(service["port"]),
            "health_path": service["health_path"],
            "route": service["route"],
            "servers": release_servers(service, currents[service["name"]])
            if currents.get(service["name"])
            else [],
        }
        for service in services
        if service["kind"] == "web"
    ]


def release_swarm_backends(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """HAProxy's backends on a swarm's edge: one per web service, its servers the tasks Docker's
    DNS names (tasks.<service>), with room for twice the replicas (a rolling update's extra
    task, and tasks that still stop while new ones start)."""
    return [
        {
            "name": service["name"],
            "port": int(service["port"]),
            "health_path": service["health_path"],
            "route": service["route"],
            "servers": [],
            "discover": f"tasks.{service['prefix']}",
            "slots": 2 * int(service["replicas"]) + 2,
        }
        for service in services
        if service["kind"] == "web"
    ]


def release_static_locations(services: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Where NGINX serves each service's static files (the nginx role's nginx_static_locations)."""
    return [
        {"url": service["static_url"], "dir": service["static_dir"]}
        for service in services
        if service.get("static_url")
    ]


def release_healer_entries(
    service: dict[str, Any], version: str, network: str, options: str
) -> list[dict[str, Any]]:
    """The healer's entries for the replicas of a release: the container, and for a web
    service the HAProxy server it is pointed at again when it comes back."""
    entries: list[dict[str, Any]] = []
    for server in release_servers(service, version):
        entry: dict[str, Any] = {"name": server["host"]}
        if service["kind"] == "web":
            entry["haproxy"] = {
                "backend": service["name"],
                "server": server["name"],
                "port": int(service["port"]),
                "network": network,
                "options": options,
            }
        entries.append(entry)
    return entries


def release_healer_groups(
    services: list[dict[str, Any]], currents: dict[str, str], network: str, options: str
) -> dict[str, list[dict[str, Any]]]:
    """The healer's groups (healer_service_groups): one per service with a current release."""
    return {
        service["name"]: release_healer_entries(
            service, currents[service["name"]], network, options
        )
        for service in services
        if currents.get(service["name"])
    }


def release_status(
    services: list[dict[str, Any]],
    files: list[dict[str, Any]],
    containers: list[dict[str, Any]],
    lines: int,
) -> list[dict[str, Any]]:
    """Each service's serving release, since when, its last releases and its containers.

    ``files``: slurp results looped over (service, file name) pairs; ``containers``:
    docker_host_info's list of the stack's containers."""
    states = []
    for service in services:
        texts = {
            result["item"][1]: base64.b64decode(result["content"]).decode().strip()
            for result in files
            if result["item"][0]["name"] == service["name"] and "content" in result
        }
        current = texts.get("current") or "none"
        history = [json.loads(line) for line in texts.get("history.jsonl", "").splitlines() if line]
        since = [
            item["time"]
            for item in history
            if item.get("version") == current and item.get("result") == "success"
        ]
        own = [
            container
            for container in containers
            if (container.get("Labels") or {}).get("webstack.service") == service["name"]
        ]
        states.append(
            {
                "name": service["name"],
                "kind": service["kind"],
                "current": current,
                "since": since[-1] if since else "unknown",
                "history": history[-int(lines) :] if int(lines) > 0 else [],
                "containers": sorted(
                    (
                        {
                            "name": container["Names"][0].lstrip("/"),
                            "server": container["Names"][0].lstrip("/")[
                                len(service["prefix"]) + 1 :
                            ],
                            "state": container.get("Status", ""),
                        }
                        for container in own
                    ),
                    key=lambda entry: entry["name"],
                ),
            }
        )
    return states


def _say(problems: list[str], label: str, text: str) -> None:
    problems.append(f"{label}: {text}")


def _check_web(
    problems: list[str], label: str, item: dict[str, Any], routes: dict[str, str]
) -> None:
    port = _int(item.get("port"))
    if port is None or not 1 <= port <= 65535:
        _say(
            problems, label, f"{_key(item, 'port')} {item.get('port')!r} must be a port in 1-65535"
        )
    health = item.get("health_path")
    if not isinstance(health, str) or not health.startswith("/"):
        _say(problems, label, f"{_key(item, 'health_path')} {health!r} must start with /")
    route = item.get("route")
    if not isinstance(route, str) or not (PREFIX.match(route) or HOST.match(route)):
        _say(
            problems,
            label,
            f"route {route!r} must be a path prefix that starts and ends with / (such as /api/)"
            " or a host name (such as api.example.com)",
        )
    elif route.lower() in routes:
        _say(problems, label, f"route {route!r} is already the route of {routes[route.lower()]}")
    else:
        routes[route.lower()] = label


def _check_values(problems: list[str], label: str, item: dict[str, Any]) -> None:
    for key in ("replicas", "keep_releases", "before_switch_timeout_seconds"):
        value = _int(item.get(key))
        if value is None or value < 1:
            _say(
                problems,
                label,
                f"{_key(item, key)} must be a whole number of at least 1 (got {item.get(key)!r})",
            )
    stop = _int(item.get("stop_timeout_seconds"))
    graceful = _int(item.get("graceful_timeout_seconds"))
    if stop is None or graceful is None or stop <= graceful:
        _say(
            problems,
            label,
            f"{_key(item, 'stop_timeout_seconds')} ({item.get('stop_timeout_seconds')}) must exceed"
            f" {_key(item, 'graceful_timeout_seconds')} ({item.get('graceful_timeout_seconds')}),"
            " or Docker kills work the app is still finishing",
        )
    command = item.get("before_switch")
    if not isinstance(command, str) and not (
        isinstance(command, list) and all(isinstance(part, str) for part in command)
    ):
        _say(
            problems,
            label,
            f"{_key(item, 'before_switch')} must be a command:"
            " a list of strings (argv) or a string",
        )
    if not TAG.match(str(item.get("version") or "")):
        _say(
            problems,
            label,
            f"{_key(item, 'version')} {item.get('version')!r} is not a valid Docker tag:"
            " letters, digits, '_', '.'"
            " and '-', at most 64, not starting with '.' or '-'",
        )
    if not isinstance(item.get("env"), dict):
        _say(problems, label, f"{_key(item, 'env')} must be a mapping of names to values")


def release_problems(services: Any, defaults: dict[str, Any], only: str = "") -> list[str]:
    """What is wrong with webstack_services (and the service asked for), one line each."""
    if not isinstance(services, list) or not services:
        return ["webstack_services must be a list of at least one service"]
    problems: list[str] = []
    names: dict[str, int] = {}
    routes: dict[str, str] = {}
    for index, item in enumerate(services):
        label = _label(item, index)
        if not isinstance(item, dict):
            _say(problems, label, f"each service must be a mapping (got {item!r})")
            continue
        unknown = sorted(set(item) - set(KEYS))
        if unknown:
            _say(problems, label, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
        name = item.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            _say(
                problems,
                label,
                f"name {name!r} must be DNS-safe: a lower-case letter, then lower-case letters,"
                " digits and '-', at most 30",
            )
        elif name in ("data", "edge"):
            _say(problems, label, f"name {name!r} is reserved (the healer's groups data and edge)")
        elif name in names:
            _say(
                problems,
                label,
                f"name {name!r} is already that of webstack_services[{names[name]}]",
            )
        else:
            names[name] = index
        kind = item.get("kind", "web")
        if kind not in KINDS:
            _say(problems, label, f"kind {kind!r} must be one of {', '.join(KINDS)}")
        source = item.get("source")
        if not source:
            _say(problems, label, "source is missing (the build context, with a Dockerfile)")
        elif not os.path.isfile(os.path.join(str(source), "Dockerfile")):
            _say(problems, label, f"{_key(item, 'source')} {source}: there is no Dockerfile in it")
        if kind == "worker":
            given = [key for key in WEB_ONLY if item.get(key) not in (None, "")]
            if given:
                _say(
                    problems,
                    label,
                    f"{', '.join(given)} on a worker: a worker has no HTTP"
                    " (no route, port, health path or static files)",
                )
        merged = release_services([item], defaults, "x", "/x")[0]
        if kind == "web":
            _check_web(problems, label, merged, routes)
        _check_values(problems, label, merged)
    if only and only not in names:
        _say(problems, f"service={only!r}", f"names no service; the services: {', '.join(names)}")
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "release_services": release_services,
            "release_servers": release_servers,
            "release_problems": release_problems,
            "release_backends": release_backends,
            "release_static_locations": release_static_locations,
            "release_swarm_backends": release_swarm_backends,
            "release_healer_entries": release_healer_entries,
            "release_healer_groups": release_healer_groups,
            "release_status": release_status,
        }
