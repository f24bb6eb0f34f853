"""roles/release/filter_plugins/release_services.py: the services' settings, names and checks."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "release"
sys.path.insert(0, str(ROLE / "filter_plugins"))

import release_services as rs  # noqa: E402

DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["release_service_defaults"]
STACK = [
    {"name": "app", "source": "APP", "static_path": "/app/static"},
    {"name": "api", "source": "APP", "port": 7000, "route": "/api/", "static_path": "/s"},
    {"name": "worker", "kind": "worker", "source": "APP"},
]


@pytest.fixture
def source(tmp_path: Path) -> str:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return str(tmp_path)


def stack(source: str, *changes: dict) -> list[dict]:
    items = [dict(item, source=source) for item in STACK]
    return items + list(changes)


def services(source: str) -> list[dict]:
    return rs.release_services(stack(source), DEFAULTS, "webstack", "/opt/webstack")


def test_the_app_service_keeps_the_names_of_a_one_app_stack(source: str) -> None:
    app, api, _ = services(source)
    assert (app["image"], app["prefix"]) == ("webstack/app", "webstack-app")
    assert (app["release_dir"], app["static_dir"]) == (
        "/opt/webstack/releases",
        "/opt/webstack/static",
    )
    assert app["static_url"] == "/static/"
    assert api["release_dir"] == "/opt/webstack/releases/api"
    assert api["static_dir"] == "/opt/webstack/services/api/static"
    assert api["static_url"] == "/api/static/"
    assert (api["port"], app["port"]) == (7000, 8000)


def test_a_worker_has_one_replica_and_no_http(source: str) -> None:
    worker = services(source)[2]
    assert worker["replicas"] == 1 and worker["route"] == "" and worker["static_url"] == ""
    assert "port" not in worker and "health_path" not in worker


def test_the_naming_rule_of_replicas(source: str) -> None:
    api = services(source)[1]
    assert rs.release_servers(api, "v7") == [
        {"name": "v7-1", "host": "webstack-api-v7-1"},
        {"name": "v7-2", "host": "webstack-api-v7-2"},
    ]


def test_what_the_role_publishes(source: str) -> None:
    all_ = services(source)
    currents = {"app": "a1", "api": "b2", "worker": "c3"}
    backends = rs.release_backends(all_, currents)
    assert [(b["name"], b["route"], b["port"]) for b in backends] == [
        ("app", "/", 8000),
        ("api", "/api/", 7000),
    ]
    assert backends[1]["servers"][0] == {"name": "b2-1", "host": "webstack-api-b2-1"}
    assert rs.release_static_locations(all_) == [
        {"url": "/static/", "dir": "/opt/webstack/static"},
        {"url": "/api/static/", "dir": "/opt/webstack/services/api/static"},
    ]
    groups = rs.release_healer_groups(all_, currents, "net", "check")
    assert groups["worker"] == [{"name": "webstack-worker-c3-1"}]
    assert groups["api"][0]["haproxy"] == {
        "backend": "api",
        "server": "b2-1",
        "port": 7000,
        "network": "net",
        "options": "check",
    }


def test_what_the_role_publishes_on_a_swarm(source: str) -> None:
    # HAProxy finds each web service's tasks through Docker's DNS; a worker has no backend.
    backends = rs.release_swarm_backends(services(source))
    assert [(b["name"], b["route"], b["port"], b["discover"]) for b in backends] == [
        ("app", "/", 8000, "tasks.webstack-app"),
        ("api", "/api/", 7000, "tasks.webstack-api"),
    ]
    # Room for a rolling update's extra task and the ones still stopping.
    assert [b["slots"] for b in backends] == [6, 6]
    assert all(b["servers"] == [] for b in backends)


def test_a_good_stack_has_no_problem(source: str) -> None:
    assert rs.release_problems(stack(source), DEFAULTS, "api") == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"name": "x", "colour": "blue"}, "webstack_services[3] (x): unknown key(s) colour"),
        ({"name": "api"}, "webstack_services[3] (api): name 'api' is already"),
        ({"name": "Web_1"}, "webstack_services[3] (Web_1): name 'Web_1' must be DNS-safe"),
        ({"name": "edge"}, "webstack_services[3] (edge): name 'edge' is reserved"),
        ({"name": "x", "route": "/api/"}, "(x): route '/api/' is already the route of"),
        ({"name": "x", "route": "/"}, "(x): route '/' is already the route of"),
        ({"name": "x", "route": "api"}, "(x): route 'api' must be a path prefix"),
        ({"name": "x", "route": "/api"}, "(x): route '/api' must be a path prefix"),
        ({"name": "x", "kind": "worker", "route": "/w/"}, "(x): route on a worker"),
        ({"name": "x", "kind": "cron"}, "(x): kind 'cron' must be one of web, worker"),
        ({"name": "x", "route": "/x/", "port": 70000}, "(x): port 70000 must be a port"),
        ({"name": "x", "route": "/x/", "health_path": "up"}, "(x): health_path 'up' must start"),
        ({"name": "x", "route": "/x/", "replicas": 0}, "(x): replicas must be a whole number"),
        ({"name": "x", "route": "/x/", "before_switch": {"run": 1}}, "(x): before_switch must be"),
        ({"name": "x", "route": "/x/", "version": "a/b"}, "(x): version 'a/b' is not a valid"),
        ({"name": "x", "route": "/x/", "env": ["A=1"]}, "(x): env must be a mapping"),
        (
            {"name": "x", "route": "/x/", "stop_timeout_seconds": 5},
            "(x): stop_timeout_seconds (5) must exceed graceful_timeout_seconds (20)",
        ),
    ],
)
def test_each_bad_item_is_refused_naming_the_service_and_the_key(
    source: str, change: dict, named: str
) -> None:
    item = {"source": source, **change}
    problems = rs.release_problems(stack(source, item), DEFAULTS)
    assert any(named in problem for problem in problems), problems


def test_a_source_without_dockerfile_and_a_missing_source(source: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    problems = rs.release_problems(
        stack(source, {"name": "x", "route": "/x/", "source": str(empty)}, {"name": "y"}), DEFAULTS
    )
    assert f"webstack_services[3] (x): source {empty}: there is no Dockerfile in it" in problems
    assert "webstack_services[4] (y): source is missing" in " ".join(problems)


def test_a_service_asked_for_that_does_not_exist(source: str) -> None:
    problems = rs.release_problems(stack(source), DEFAULTS, "nope")
    assert problems == ["service='nope': names no service; the services: app, api, worker"]


def test_the_item_made_from_app_variables_is_refused_in_their_names(tmp_path: Path) -> None:
    item = {"_legacy": True, "name": "app", "source": str(tmp_path), "replicas": "two"}
    problems = " ".join(rs.release_problems([item], DEFAULTS))
    assert "app_source" in problems and "app_replicas must be" in problems


def test_the_status_of_each_service(source: str) -> None:
    all_ = services(source)

    def slurped(service: dict, name: str, text: str) -> dict:
        return {"item": [service, name], "content": base64.b64encode(text.encode()).decode()}

    history = "\n".join(
        json.dumps({"version": v, "result": r, "time": t})
        for v, r, t in [("b1", "success", "T1"), ("b2", "refused", "T2"), ("b2", "success", "T3")]
    )
    files = [slurped(all_[1], "current", "b2\n"), slurped(all_[1], "history.jsonl", history)]
    containers = [
        {"Names": ["/webstack-api-b2-1"], "Status": "Up", "Labels": {"webstack.service": "api"}},
        {"Names": ["/webstack-redis"], "Status": "Up", "Labels": {"webstack.service": "redis"}},
    ]
    app, api, _ = rs.release_status(all_, files, containers, 2)
    assert (app["current"], app["history"], app["containers"]) == ("none", [], [])
    assert (api["current"], api["since"]) == ("b2", "T3")
    assert [item["time"] for item in api["history"]] == ["T2", "T3"]
    assert api["containers"] == [{"name": "webstack-api-b2-1", "server": "b2-1", "state": "Up"}]
