"""A swarm formed by site.yml, checked from its manager.

The inventory (molecule.yml): one manager with the edge and data roles, two workers with the
app role. The tests run in file order.
"""

from __future__ import annotations

import json
import os

import testinfra
from stackcheck import finish, inventory, playbook, wait_for

PREFIX = os.environ.get("WEBSTACK_SWARM_NAME", "webstack-swarm")
MANAGER, WORKER, LEAVER = (f"{PREFIX}-{n}" for n in (1, 2, 3))
ROLES = {MANAGER: {"edge", "data"}, WORKER: {"app"}, LEAVER: {"app"}}
testinfra_hosts = [f"ansible://{MANAGER}"]


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


def test_the_engine_runs_without_live_restore(host) -> None:  # type: ignore[no-untyped-def]
    for name in ROLES:
        assert node(name).check_output("docker info -f '{{.LiveRestoreEnabled}}'") == "false"


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
