"""A swarm formed by site.yml, checked from its manager and through the edge node's port.

The inventory (molecule.yml): one manager with the edge and data roles (NGINX, HAProxy,
Redis), two workers with the app role (the app's tasks). The tests run in file order: the
swarm, the site it serves, releases under load (a deploy, a release the engine rolls back, a
rollback), a worker drained and made active under load, a worker's engine killed (measured),
a node that left joining again, and a deploy through a registry (the one prepare.yml runs).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import testinfra
from stackcheck import (
    NEW_TEXT,
    OLD_TEXT,
    assert_no_failed_request,
    changed_app,
    fetch,
    finish,
    haproxy_servers,
    inventory,
    load,
    loadprobe,
    playbook,
    wait_for,
)

PREFIX = os.environ.get("WEBSTACK_SWARM_NAME", "webstack-swarm")
MANAGER, WORKER, LEAVER = (f"{PREFIX}-{n}" for n in (1, 2, 3))
ROLES = {MANAGER: {"edge", "data"}, WORKER: {"app"}, LEAVER: {"app"}}
testinfra_hosts = [f"ansible://{MANAGER}"]
SERVICE = "webstack-app"
HISTORY = "/opt/webstack/releases/history.jsonl"
# The test registry of prepare.yml, on the nodes' network, and its throwaway login.
REGISTRY = f"{PREFIX}-registry:5000"
REGISTRY_SETTINGS = {
    "release_registry": f"{REGISTRY}/team",
    "release_registry_username": "deployer",
    "release_registry_password": "test-password",
}


def node(name: str):  # type: ignore[no-untyped-def]
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=str(inventory()))


def nodes(host) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every node the manager knows, inspected."""
    ids = host.check_output("docker node ls -q").split()
    return json.loads(host.check_output("docker node inspect " + " ".join(ids)))


def test_every_server_is_a_ready_node_with_its_role(host) -> None:  # type: ignore[no-untyped-def]
    seen = {n["Description"]["Hostname"]: n for n in nodes(host)}
    assert set(seen) == set(ROLES)
    for name, inspected in seen.items():
        assert inspected["Status"]["State"] == "ready", (name, inspected["Status"])
        assert inspected["Spec"]["Availability"] == "active", name
        expected = "manager" if name == MANAGER else "worker"
        assert inspected["Spec"]["Role"] == expected, name
    assert seen[MANAGER]["ManagerStatus"]["Leader"] is True


def test_each_node_is_labelled_with_its_roles_only(host) -> None:  # type: ignore[no-untyped-def]
    for inspected in nodes(host):
        labels = inspected["Spec"]["Labels"]
        name = inspected["Description"]["Hostname"]
        assert labels == {f"webstack.{role}": "true" for role in ROLES[name]}, name


def test_the_stack_network_is_an_internal_attachable_overlay(host) -> None:  # type: ignore[no-untyped-def]
    network = json.loads(host.check_output("docker network inspect webstack_swarm"))[0]
    assert network["Driver"] == "overlay"
    assert network["Scope"] == "swarm"
    assert network["Attachable"] is True
    assert network["Internal"] is True
    # Not encrypted here: molecule.yml says why (this kernel has no IPsec AEAD).
    assert "encrypted" not in network["Options"]


def tasks(host) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """The app's tasks the swarm wants running: node, state and release."""
    lines = host.check_output(
        f"docker service ps {SERVICE} --filter desired-state=running"
        " --format '{{.Node}} {{.CurrentState}} {{.Image}}'"
    ).splitlines()
    return [
        {"node": node, "state": state, "release": image.rsplit(":", 1)[-1]}
        for node, state, *_, image in (line.split() for line in lines)
    ]


def settled(host, release: str, replicas: int = 2) -> bool:  # type: ignore[no-untyped-def]
    """Every task runs the release, on both app nodes."""
    running = [t for t in tasks(host) if t["state"] == "Running"]
    return (
        len(running) == replicas
        and {t["release"] for t in running} == {release}
        and {t["node"] for t in running} == {WORKER, LEAVER}
    )


def assert_served(host, result: dict) -> None:  # type: ignore[no-untyped-def]
    """No failed request; else the edge's own account of the run goes into the failure.

    HAProxy logs every exchange (server, timings, termination state) and every change of a
    server; NGINX logs an upstream that failed it. A rare failure is then explained by the
    run that saw it.
    """
    try:
        assert_no_failed_request(result)
    except AssertionError as failed:
        since = int(result["started_at"])
        edge = host.run(
            f"docker logs --since {since} webstack-haproxy 2>&1"
            " | grep -Ev ' (2[0-9][0-9]|3[0-9][0-9]) [0-9]+ - - ---- ' | tail -n 80;"
            f" docker logs --since {since} webstack-nginx 2>&1 >/dev/null | tail -n 20"
        ).stdout
        raise AssertionError(f"{failed}\nThe edge's log of the run:\n{edge}") from None


def history(host) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in host.file(HISTORY).content_string.splitlines()]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The changed app, and a broken one whose server never starts (so never healthy)."""
    base = tmp_path_factory.mktemp("apps")
    changed = changed_app(base / "changed")
    broken = base / "broken"
    shutil.copytree(changed, broken)
    dockerfile = broken / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("webapp.wsgi:app", "webapp.missing:app"))
    assert "webapp.missing:app" in dockerfile.read_text()
    # The changed app once more, as a release no node has built yet.
    registry = base / "registry"
    shutil.copytree(changed, registry)
    (registry / "RELEASE_NOTE").write_text("shipped through a registry\n")
    return {"changed": changed, "broken": broken, "registry": registry}


def test_the_engine_runs_without_live_restore(host) -> None:  # type: ignore[no-untyped-def]
    for name in ROLES:
        assert node(name).check_output("docker info -f '{{.LiveRestoreEnabled}}'") == "false"


def test_the_site_answers_from_tasks_on_both_app_nodes(host) -> None:  # type: ignore[no-untyped-def]
    release = history(host)[-1]["version"]
    assert settled(host, release), tasks(host)
    assert fetch("/").text == OLD_TEXT + "\n"
    # Redis on the data node, reached from the tasks on the other nodes.
    first = fetch("/counter").json()["visits"]
    assert fetch("/counter").json()["visits"] > first
    # HAProxy on the edge has both tasks, found through Docker's DNS, up.
    up = [server for server in haproxy_servers(host) if server["status"] == "UP"]
    assert len(up) == 2, haproxy_servers(host)
    # Each task runs under Docker's init, which hands the app the stop signal: an app with no
    # SIGTERM handler of its own still stops at once.
    for name in (WORKER, LEAVER):
        worker = node(name)
        label = f"com.docker.swarm.service.name={SERVICE}"
        ids = worker.check_output(f"docker ps -q --filter label={label}").split()
        assert ids, name
        shown = worker.check_output(f"docker inspect -f '{{{{.HostConfig.Init}}}}' {' '.join(ids)}")
        inits = shown.split()
        assert inits == ["true"] * len(ids), (name, inits)


def test_maintenance_mode_switches_on_the_edge_node(host) -> None:  # type: ignore[no-untyped-def]
    code, output = finish(playbook("maintenance.yml", "-e", "maintenance=on"))
    assert code == 0, output
    page = fetch("/")
    assert page.status == 503 and page.headers.get("X-Webstack-Maintenance"), page.status
    code, output = finish(playbook("maintenance.yml", "-e", "maintenance=off"))
    assert code == 0, output
    assert fetch("/").text == OLD_TEXT + "\n"


def test_a_deploy_rolls_the_changed_app_over_the_swarm_without_a_failed_request(  # type: ignore[no-untyped-def]
    host, apps, tmp_path
) -> None:
    before = history(host)[-1]["version"]
    with load(tmp_path) as result:
        code, output = finish(playbook("deploy.yml", "-e", f"app_source={apps['changed']}"))
    assert code == 0, output
    assert_served(host, result)
    assert loadprobe.texts_after(result, 0) <= {OLD_TEXT, NEW_TEXT}
    latest = history(host)[-1]
    assert latest["result"] == "success" and latest["version"] != before
    # Every task runs the new release, spread over both app nodes.
    wait_for(lambda: settled(host, latest["version"]), timeout=30)
    assert fetch("/").text == NEW_TEXT + "\n"


def test_a_release_that_never_gets_healthy_is_rolled_back_by_the_engine(  # type: ignore[no-untyped-def]
    host, apps, tmp_path
) -> None:
    serving = history(host)[-1]["version"]
    with load(tmp_path) as result:
        code, output = finish(playbook("deploy.yml", "-e", f"app_source={apps['broken']}"))
    assert code != 0, output
    assert "the engine rolled it back" in " ".join(output.split()), output
    assert f"Release {serving} of app still serves" in " ".join(output.split()), output
    assert_served(host, result)
    assert loadprobe.texts_after(result, 0) == {NEW_TEXT}
    assert history(host)[-1]["result"] == "refused"
    wait_for(lambda: settled(host, serving), timeout=60)
    assert not host.file("/opt/webstack/releases/deploy.lock").exists


def test_rollback_returns_to_the_previous_release_without_a_failed_request(  # type: ignore[no-untyped-def]
    host, tmp_path
) -> None:
    first = history(host)[0]["version"]
    with load(tmp_path) as result:
        code, output = finish(playbook("rollback.yml"))
    assert code == 0, output
    assert_served(host, result)
    assert history(host)[-1] | {"time": "", "user": "", "seconds": 0} == {
        "version": first,
        "action": "rollback",
        "result": "success",
        "time": "",
        "user": "",
        "seconds": 0,
    }
    wait_for(lambda: settled(host, first), timeout=30)
    assert fetch("/").text == OLD_TEXT + "\n"


def test_a_drained_worker_hands_its_tasks_over_without_a_failed_request(  # type: ignore[no-untyped-def]
    host, tmp_path
) -> None:
    with load(tmp_path) as result:
        code, output = finish(
            playbook("swarm-node.yml", "-e", f"node={LEAVER}", "-e", "availability=drain")
        )
        assert code == 0, output
        on_drained = [t for t in tasks(host) if t["node"] == LEAVER]
        running = [t for t in tasks(host) if t["state"] == "Running"]
        code, output = finish(
            playbook("swarm-node.yml", "-e", f"node={LEAVER}", "-e", "availability=active")
        )
        assert code == 0, output
    assert on_drained == [] and len(running) == 2, (on_drained, running)
    assert_served(host, result)
    availability = {n["Description"]["Hostname"]: n["Spec"]["Availability"] for n in nodes(host)}
    assert availability[LEAVER] == "active"


def test_a_worker_whose_engine_is_killed_is_replaced_on_the_others(  # type: ignore[no-untyped-def]
    host, tmp_path
) -> None:
    """Measured, not asserted zero: requests in flight on the killed node's tasks fail."""
    release = history(host)[-1]["version"]
    # Both app nodes run a task (swarm-node.yml spread them again), so the kill takes one away.
    assert settled(host, release), tasks(host)
    with load(tmp_path) as result:
        time.sleep(3)
        subprocess.run(["docker", "kill", "--signal", "KILL", LEAVER], check=True, timeout=60)
        killed = time.monotonic()

        def full_strength() -> bool:
            running = [t for t in tasks(host) if t["state"] == "Running" and t["node"] != LEAVER]
            return len(running) == 2

        wait_for(full_strength, timeout=180, interval=0.5)
        strong = time.monotonic() - killed
        time.sleep(3)
    print(
        f"fault: worker engine killed: {result['requests']} requests, {result['failed']} failed,"
        f" {result['retried_on_idle_close']} retried on idle close; full strength again"
        f" {strong:.1f}s after the kill"
    )
    assert fetch("/").text == OLD_TEXT + "\n"
    # The node comes back and joins as it was (its engine's state is on its volume).
    subprocess.run(["docker", "start", LEAVER], check=True, timeout=60)

    def ready_again() -> bool:
        states = {n["Description"]["Hostname"]: n["Status"]["State"] for n in nodes(host)}
        return states.get(LEAVER) == "ready"

    wait_for(ready_again, timeout=180, interval=1)


def test_a_node_that_left_joins_again_on_the_next_run(host) -> None:  # type: ignore[no-untyped-def]
    leaver = node(LEAVER)
    leaver.check_output("docker swarm leave --force")

    def down() -> bool:
        states = {n["Description"]["Hostname"]: n["Status"]["State"] for n in nodes(host)}
        return states.get(LEAVER) == "down"

    wait_for(down, timeout=60)
    code, output = finish(playbook("site.yml"))
    assert code == 0, output
    # The node is back under a new ID, ready and labelled; the stale entry it left is gone.
    entries = [n for n in nodes(host) if n["Description"]["Hostname"] == LEAVER]
    assert len(entries) == 1, entries
    assert entries[0]["Status"]["State"] == "ready"
    assert entries[0]["Spec"]["Labels"] == {"webstack.app": "true"}
    assert leaver.check_output("docker info -f '{{.Swarm.LocalNodeState}}'") == "active"


def test_a_deploy_through_a_registry_is_built_once_and_pulled_elsewhere(  # type: ignore[no-untyped-def]
    host, apps, tmp_path
) -> None:
    with load(tmp_path) as result:
        code, output = finish(
            playbook(
                "deploy.yml",
                "-e",
                json.dumps(REGISTRY_SETTINGS),
                "-e",
                f"app_source={apps['registry']}",
            )
        )
    assert code == 0, output
    assert "test-password" not in output
    assert_served(host, result)
    assert loadprobe.texts_after(result, 0) <= {OLD_TEXT, NEW_TEXT}
    release = history(host)[-1]["version"]
    wait_for(lambda: settled(host, release), timeout=30)
    assert fetch("/").text == NEW_TEXT + "\n"
    # The service runs the registry's image; one app node built it, the other only pulled it.
    image = host.check_output(
        f"docker service inspect -f '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' {SERVICE}"
    )
    assert image == f"{REGISTRY}/team/webstack/app:{release}"
    built = {
        name: node(name).run(f"docker image inspect webstack/app:{release}").rc == 0
        for name in (WORKER, LEAVER)
    }
    pulled = {
        name: node(name).run(f"docker image inspect {image}").rc == 0 for name in (WORKER, LEAVER)
    }
    assert sorted(built.values()) == [False, True], built
    assert all(pulled.values()), pulled
    login = base64.b64encode(b"deployer:test-password").decode()
    tags = host.check_output(
        "python3 -c 'import sys, urllib.request as u;"
        ' r = u.Request(sys.argv[1], headers={"Authorization": sys.argv[2]});'
        " print(u.urlopen(r, timeout=10).read().decode())'"
        f" http://{REGISTRY}/v2/team/webstack/app/tags/list 'Basic {login}'"
    )
    assert release in json.loads(tags)["tags"]
