"""Unit tests of the haproxy_runtime module against a fake HAProxy Runtime API (conftest.py)."""

from __future__ import annotations

import json
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from ansible.module_utils.testing import patch_module_args

if TYPE_CHECKING:
    # Only for annotations: with app/tests in the same run, "conftest" is ambiguous.
    from conftest import FakeHAProxy

# Short enough for the suite to run in seconds, long enough for the fake's delays.
POLL_SECONDS = 0.02


def params(haproxy: FakeHAProxy, **overrides: Any) -> dict[str, Any]:
    """The parameters as AnsibleModule hands them over, defaults filled in."""
    base: dict[str, Any] = {
        "socket": haproxy.socket_path,
        "backend": "app",
        "server": "web1",
        "state": "stats",
        "address": None,
        "port": None,
        "server_options": "check",
        "command": None,
        "wait": True,
        "timeout": 2.0,
        "poll_interval": POLL_SECONDS,
        "watch_servers": None,
        "watch_seconds": 30.0,
        "watch_min_requests": 20,
        "watch_max_error_ratio": 0.05,
    }
    return {**base, **overrides}


def add_web2(haproxy: FakeHAProxy, **overrides: Any) -> dict[str, Any]:
    """Parameters that add web2 to backend app."""
    present = {
        "server": "web2",
        "state": "present",
        "address": "10.0.0.12",
        "port": 8000,
        "server_options": "check inter 1s rise 2 fall 3",
    }
    return params(haproxy, **{**present, **overrides})


def run_module(hr: ModuleType, capsys: pytest.CaptureFixture[str], args: dict[str, Any]):
    """Run main() as Ansible would; returns (exit code, result)."""
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        hr.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


# The client and the parsers.


def test_execute_returns_the_reply_read_until_eof(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    client = hr.RuntimeClient(haproxy.socket_path)

    assert client.execute("show info").startswith("Name: HAProxy\nVersion: 2.6.12")
    assert client.execute("del server app/nope") == "No such server.\n"
    assert haproxy.received == ["show info", "del server app/nope"]


def test_show_stat_keeps_server_rows_as_strings(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.hold_sessions("app", "web1", 3, seconds=5)

    rows = hr.RuntimeClient(haproxy.socket_path).show_stat("app")

    assert haproxy.received == ["show stat app 4 -1"]
    assert len(rows) == 1
    row = rows[0]
    assert row["pxname"] == "app"
    assert row["svname"] == "web1"
    assert row["status"] == "UP"
    assert row["scur"] == "3"
    assert row["qcur"] == "0"
    assert row["addr"] == "10.0.0.11:8000"
    assert row["check_status"] == "L7OK"
    assert row["check_desc"] == "Layer7 check passed, code: 200"
    assert row["weight"] == "1"


def test_parser_goes_by_header_names_and_skips_proxy_rows(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    reply = haproxy.handle("show stat app -1 -1").replace('"Layer7 check passed, code: 200"', "ok")
    header, *lines = (line[:-1].split(",") for line in reply.splitlines() if line)
    # The same table with its columns in reverse order must read the same.
    reversed_reply = "\n".join(
        ["# " + ",".join(reversed([header[0][2:], *header[1:]])) + ","]
        + [",".join(reversed(line)) + "," for line in lines]
    )

    rows = hr.parse_stat_csv(reply)

    assert [line[1] for line in lines] == ["web1", "BACKEND"]
    assert [row["svname"] for row in rows] == ["web1"]
    assert rows[0]["status"] == "UP"
    assert hr.parse_stat_csv(reversed_reply) == rows


def test_parser_fills_fields_an_older_haproxy_lacks(hr: ModuleType) -> None:
    rows = hr.parse_stat_csv("# pxname,svname,status,\napp,web1,UP,\n\n")

    assert rows[0]["status"] == "UP"
    assert rows[0]["scur"] == ""


def test_show_servers_state_parses_admin_state(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.server("app", "web1").admin = 0x08  # type: ignore[union-attr]
    client = hr.RuntimeClient(haproxy.socket_path)

    (row,) = client.show_servers_state("app")

    assert row["srv_name"] == "web1"
    assert row["srv_addr"] == "10.0.0.11"
    assert row["srv_port"] == "8000"
    assert hr.admin_state(int(row["srv_admin_state"])) == "drain"
    assert [hr.admin_state(flags) for flags in (0, 0x01, 0x09, 0x10, 0x20)] == [
        "ready",
        "maint",
        "maint",
        "drain",
        "maint",
    ]


def test_unknown_backend_is_an_error_with_haproxys_reply(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    client = hr.RuntimeClient(haproxy.socket_path)

    with pytest.raises(hr.RuntimeAPIError, match=r"'show stat nosuch 4 -1': No such proxy\."):
        client.show_stat("nosuch")


def test_missing_socket_is_named(hr: ModuleType, tmp_path: Any) -> None:
    path = str(tmp_path / "nothing.sock")

    with pytest.raises(hr.RuntimeAPIError, match=f"socket {path} does not exist"):
        hr.RuntimeClient(path).execute("show info")


def test_a_line_break_cannot_smuggle_a_second_command(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    with pytest.raises(hr.RuntimeAPIError, match="line break"):
        hr.RuntimeClient(haproxy.socket_path).execute("show info\ndel server app/web1")
    assert haproxy.received == []


# state=stats


def test_stats_reads_without_changing(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    result = hr.run(params(haproxy))

    assert result["changed"] is False
    assert result["commands"] == []
    assert [s["svname"] for s in result["servers"]] == ["web1"]
    assert result["server"]["status"] == "UP"
    assert result["server"]["admin_state"] == "ready"
    assert "stdout" not in result
    assert haproxy.mutating() == []


def test_stats_of_an_unknown_server_is_null(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    assert hr.run(params(haproxy, server="ghost"))["server"] is None


# state=present


def test_present_adds_enables_and_waits_for_up(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    started = time.monotonic()

    result = hr.run(add_web2(haproxy))

    assert result["changed"] is True
    assert haproxy.mutating() == [
        "add server app/web2 10.0.0.12:8000 check inter 1s rise 2 fall 3",
        "enable health app/web2",
        "enable server app/web2",
    ]
    assert result["commands"] == haproxy.mutating()
    # The fake says "UP 1/2" until its checks confirm the server, as HAProxy does.
    assert time.monotonic() - started >= haproxy.rise_seconds
    assert result["server"]["status"] == "UP"
    assert result["server"]["admin_state"] == "ready"
    assert [s["svname"] for s in result["servers"]] == ["web1", "web2"]


def test_present_twice_changes_nothing_the_second_time(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    hr.run(add_web2(haproxy))
    sent = len(haproxy.mutating())

    result = hr.run(add_web2(haproxy))

    assert result["changed"] is False
    assert result["commands"] == []
    assert len(haproxy.mutating()) == sent


def test_present_without_wait_returns_before_the_checks(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    haproxy.rise_seconds = 5

    result = hr.run(add_web2(haproxy, wait=False))

    assert result["changed"] is True
    assert result["server"]["status"] == "UP 1/2"


def test_present_without_check_skips_enable_health(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    result = hr.run(add_web2(haproxy, server_options="weight 10"))

    assert haproxy.mutating() == [
        "add server app/web2 10.0.0.12:8000 weight 10",
        "enable server app/web2",
    ]
    assert result["server"]["status"] == "no check"


def test_present_enables_a_server_in_maintenance(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.add_server("app", "web2", "10.0.0.12", 8000, admin=0x01, checks=True)

    result = hr.run(add_web2(haproxy))

    assert result["changed"] is True
    assert haproxy.mutating() == ["enable health app/web2", "enable server app/web2"]
    assert result["server"]["status"] == "UP"


def test_present_leaves_a_drained_server_alone(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.add_server("app", "web2", "10.0.0.12", 8000, admin=0x08)

    result = hr.run(add_web2(haproxy))

    assert result["changed"] is False
    assert haproxy.mutating() == []
    assert result["server"]["admin_state"] == "drain"


def test_present_moves_a_server_found_at_another_address(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    result = hr.run(add_web2(haproxy, server="web1"))

    assert result["changed"] is True
    assert haproxy.mutating() == ["set server app/web1 addr 10.0.0.12 port 8000"]
    assert result["server"]["addr"] == "10.0.0.12:8000"
    assert hr.run(add_web2(haproxy, server="web1"))["changed"] is False


def test_present_adds_again_a_server_whose_name_did_not_resolve_at_start(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    # init-addr none: in maintenance (RMAINT), no address; `set server addr` is refused.
    haproxy.add_server("app", "web2", "-", 8000, admin=0x20, checks=True)

    result = hr.run(add_web2(haproxy))

    assert result["changed"] is True
    assert haproxy.mutating() == [
        "del server app/web2",
        "add server app/web2 10.0.0.12:8000 check inter 1s rise 2 fall 3",
        "enable health app/web2",
        "enable server app/web2",
    ]
    assert result["server"]["status"] == "UP"
    assert result["server"]["addr"] == "10.0.0.12:8000"


def test_present_fails_on_haproxys_refusal(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.add_backend("static", dynamic=False)

    with pytest.raises(hr.RuntimeAPIError) as error:
        hr.run(add_web2(haproxy, backend="static"))

    assert "add server static/web2 10.0.0.12:8000" in str(error.value)
    assert "Backend must use a dynamic load balancing" in str(error.value)
    assert error.value.details["command"].startswith("add server static/web2")
    assert haproxy.mutating() == [error.value.details["command"]]


def test_present_in_an_unknown_backend_fails(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    with pytest.raises(hr.RuntimeAPIError, match="Can't find backend"):
        hr.run(add_web2(haproxy, backend="nosuch"))
    assert haproxy.mutating() == []


def test_add_into_an_unknown_backend_is_refused(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    controller = hr.ServerController(
        hr.RuntimeClient(haproxy.socket_path), "nosuch", "web2", 1.0, POLL_SECONDS
    )

    with pytest.raises(hr.RuntimeAPIError, match=r"nosuch/web2 [^']+': No such backend"):
        controller.send(
            "add server nosuch/web2 10.0.0.12:8000 check", lambda r: hr.REPLY_ADDED in r
        )


def test_present_times_out_on_a_server_that_stays_down(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    haproxy.add_server("app", "web2", "10.0.0.12", 8000, admin=0x01, checks=True, healthy=False)

    with pytest.raises(hr.RuntimeAPIError, match=r"waiting for app/web2 to be UP.*'DOWN'") as err:
        hr.run(add_web2(haproxy, timeout=0.2))
    assert err.value.details["server"]["status"] == "DOWN"


# state=ready, drain, maint


def test_ready_undrains_and_waits_for_up(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.server("app", "web1").admin = 0x08  # type: ignore[union-attr]

    first = hr.run(params(haproxy, state="ready"))
    second = hr.run(params(haproxy, state="ready"))

    assert first["changed"] is True
    assert haproxy.mutating() == ["set server app/web1 state ready"]
    assert first["server"]["status"] == "UP"
    assert second["changed"] is False


def test_ready_leaving_maintenance_waits_for_the_checks(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    haproxy.server("app", "web1").admin = 0x01  # type: ignore[union-attr]
    started = time.monotonic()

    result = hr.run(params(haproxy, state="ready"))

    assert time.monotonic() - started >= haproxy.rise_seconds
    assert result["server"]["status"] == "UP"


def test_drain_waits_until_sessions_end(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.hold_sessions("app", "web1", 2, seconds=0.3)
    started = time.monotonic()

    first = hr.run(params(haproxy, state="drain"))
    waited = time.monotonic() - started
    second = hr.run(params(haproxy, state="drain"))

    assert first["changed"] is True
    assert waited >= 0.25
    assert first["server"]["status"] == "DRAIN"
    assert first["server"]["scur"] == "0"
    assert second["changed"] is False
    assert haproxy.mutating() == ["set server app/web1 state drain"]


def test_drain_without_wait_returns_with_sessions_left(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    haproxy.hold_sessions("app", "web1", 2, seconds=5)

    result = hr.run(params(haproxy, state="drain", wait=False))

    assert result["changed"] is True
    assert result["server"]["scur"] == "2"


def test_drain_timeout_reports_the_last_counts(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.hold_sessions("app", "web1", 4, seconds=5)
    started = time.monotonic()

    with pytest.raises(hr.RuntimeAPIError) as error:
        hr.run(params(haproxy, state="drain", timeout=0.2))

    assert time.monotonic() - started < 2
    assert "timed out after 0.2s" in str(error.value)
    assert "status='DRAIN' scur='4' qcur='0'" in str(error.value)


def test_maint_waits_until_sessions_end(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.hold_sessions("app", "web1", 1, seconds=0.2)

    first = hr.run(params(haproxy, state="maint"))
    second = hr.run(params(haproxy, state="maint"))

    assert first["changed"] is True
    assert first["server"]["status"] == "MAINT"
    assert first["server"]["scur"] == "0"
    assert second["changed"] is False
    assert haproxy.mutating() == ["set server app/web1 state maint"]


def test_maint_of_a_drained_server_is_a_change(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.server("app", "web1").admin = 0x08  # type: ignore[union-attr]

    assert hr.run(params(haproxy, state="maint"))["changed"] is True


def test_drain_of_a_down_server_is_judged_by_admin_state(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    # A drained server whose checks fail shows DOWN in show stat; it is still drained.
    web1 = haproxy.server("app", "web1")
    assert web1 is not None
    web1.admin, web1.healthy = 0x08, False

    result = hr.run(params(haproxy, state="drain"))

    assert result["server"]["status"] == "DOWN"
    assert result["changed"] is False


def test_state_change_of_a_missing_server_fails(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    with pytest.raises(hr.RuntimeAPIError, match="server app/ghost does not exist"):
        hr.run(params(haproxy, server="ghost", state="drain"))


def test_state_change_refused_by_haproxy_fails(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    client = hr.RuntimeClient(haproxy.socket_path)
    controller = hr.ServerController(client, "app", "web1", 1.0, POLL_SECONDS)

    with pytest.raises(hr.RuntimeAPIError, match="expects 'ready', 'drain' and 'maint'") as err:
        controller.send("set server app/web1 state sleepy")
    assert err.value.details["reply"].startswith("'set server <srv> state'")


# state=absent


def test_absent_retries_until_the_connections_are_gone(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    haproxy.server("app", "web1").refuse_deletes = 1  # type: ignore[union-attr]
    haproxy.hold_sessions("app", "web1", 1, seconds=0.15)

    result = hr.run(params(haproxy, state="absent"))

    assert result["changed"] is True
    assert result["server"] is None
    assert result["servers"] == []
    assert haproxy.server("app", "web1") is None
    deletes = [cmd for cmd in haproxy.mutating() if cmd.startswith("del server")]
    assert len(deletes) >= 2
    assert haproxy.mutating()[:3] == [
        "set server app/web1 state drain",
        "set server app/web1 state maint",
        "disable health app/web1",
    ]


def test_absent_drains_until_the_sessions_end_before_maintenance(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    haproxy.hold_sessions("app", "web1", 2, seconds=0.3)
    started = time.monotonic()

    hr.run(params(haproxy, state="absent"))

    # Maintenance came only once the two requests had finished on the drained server.
    assert time.monotonic() - started >= 0.3
    assert haproxy.mutating()[:2] == [
        "set server app/web1 state drain",
        "set server app/web1 state maint",
    ]
    assert haproxy.server("app", "web1") is None


def test_absent_of_a_drained_server_does_not_drain_again(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    hr.run(params(haproxy, state="drain"))
    sent = len(haproxy.mutating())

    hr.run(params(haproxy, state="absent"))

    assert haproxy.mutating()[sent] == "set server app/web1 state maint"


def test_absent_twice_changes_nothing_the_second_time(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    hr.run(params(haproxy, state="absent"))
    sent = len(haproxy.mutating())

    result = hr.run(params(haproxy, state="absent"))

    assert result["changed"] is False
    assert len(haproxy.mutating()) == sent


def test_absent_of_a_server_in_maintenance_skips_maint(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    haproxy.add_server("app", "web2", "10.0.0.12", 8000, admin=0x01)

    hr.run(params(haproxy, server="web2", state="absent"))

    # disable health is best effort: a server without checks may refuse it.
    assert haproxy.mutating() == ["disable health app/web2", "del server app/web2"]


def test_absent_times_out_while_connections_last(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    haproxy.hold_sessions("app", "web1", 3, seconds=5)

    with pytest.raises(hr.RuntimeAPIError, match=r"timed out after 0\.2s") as error:
        hr.run(params(haproxy, state="absent", timeout=0.2))

    # It never left drain: the requests in flight were not cut by maintenance.
    assert "waiting for app/web1 to have no session" in str(error.value)
    assert "scur='3' qcur='0'" in str(error.value)
    assert "set server app/web1 state maint" not in haproxy.mutating()
    assert haproxy.server("app", "web1") is not None


def test_absent_without_wait_still_deletes_only_once_the_connections_are_gone(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    haproxy.hold_sessions("app", "web1", 1, seconds=5)

    with pytest.raises(hr.RuntimeAPIError, match="still has connections"):
        hr.run(params(haproxy, state="absent", wait=False, timeout=0.2))

    assert haproxy.server("app", "web1") is not None


# state=command


def test_show_command_is_not_a_change(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    result = hr.run(params(haproxy, state="command", command="show info", backend=None))

    assert result["changed"] is False
    assert result["stdout"].startswith("Name: HAProxy")
    assert result["servers"] == []


def test_other_commands_are_changes(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    result = hr.run(params(haproxy, state="command", command="set server app/web1 state drain"))

    assert result["changed"] is True
    assert result["stdout"] == "\n"
    assert result["server"]["status"] == "DRAIN"
    assert result["commands"] == ["set server app/web1 state drain"]


# Check mode


@pytest.mark.parametrize(
    ("state", "extra"),
    [
        ("present", {"server": "web2", "address": "10.0.0.12", "port": 8000}),
        ("drain", {}),
        ("maint", {}),
        ("absent", {}),
        ("command", {"command": "disable server app/web1"}),
    ],
)
def test_check_mode_predicts_without_sending(
    hr: ModuleType, haproxy: FakeHAProxy, state: str, extra: dict[str, Any]
) -> None:
    haproxy.hold_sessions("app", "web1", 1, seconds=5)

    result = hr.run(params(haproxy, state=state, **extra), check_mode=True)

    assert result["changed"] is True
    assert result["commands"]
    assert haproxy.mutating() == []
    assert haproxy.server("app", "web2") is None
    assert haproxy.server("app", "web1").admin == 0  # type: ignore[union-attr]


def test_check_mode_reports_no_change_when_there_is_none(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    result = hr.run(params(haproxy, state="ready"), check_mode=True)

    assert result["changed"] is False
    assert result["commands"] == []


def test_check_mode_of_present_lists_the_whole_sequence(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    result = hr.run(add_web2(haproxy), check_mode=True)

    assert result["commands"] == [
        "add server app/web2 10.0.0.12:8000 check inter 1s rise 2 fall 3",
        "enable health app/web2",
        "enable server app/web2",
    ]
    assert result["server"] is None


# Input checks


@pytest.mark.parametrize(
    "overrides",
    [
        {"backend": "app;del server app/web1"},
        {"server": "web 1"},
        {"address": "10.0.0.12; disable server app/web1"},
        {"server_options": "check; disable server app/web1"},
        {"port": 70000},
        {"timeout": 0},
    ],
)
def test_input_that_haproxy_would_misparse_is_refused(
    hr: ModuleType, haproxy: FakeHAProxy, overrides: dict[str, Any]
) -> None:
    with pytest.raises(hr.RuntimeAPIError):
        hr.run(add_web2(haproxy, **overrides))
    assert haproxy.received == []


# Watching the answers of servers (the release guard).


def test_answers_count_every_status_class_and_5xx_apart(hr: ModuleType) -> None:
    rows = [
        {"svname": "v2-1", "hrsp_2xx": "90", "hrsp_3xx": "4", "hrsp_4xx": "1", "hrsp_5xx": "5"},
        {"svname": "v2-2", "hrsp_2xx": "10", "hrsp_other": "1", "hrsp_5xx": ""},
        {"svname": "v1-1", "hrsp_2xx": "1000", "hrsp_5xx": "1000"},
    ]

    counts = hr.count_answers(rows, ["v2-1", "v2-2", "v2-3"])

    assert counts == {"v2-1": hr.Answers(100, 5), "v2-2": hr.Answers(11, 0)}
    assert counts["v2-1"].ratio == 0.05
    assert hr.Answers().ratio == 0.0


def test_answers_since_the_baseline_survive_a_server_added_again(hr: ModuleType) -> None:
    baseline = {"v2-1": hr.Answers(100, 10), "v2-2": hr.Answers(50, 0)}
    # v2-1 went on; v2-2 was deleted and added again (its counters restarted); v2-3 is new.
    now = {"v2-1": hr.Answers(130, 12), "v2-2": hr.Answers(5, 5), "v2-3": hr.Answers(7, 0)}

    assert hr.answers_since(baseline, now) == hr.Answers(30 + 5 + 7, 2 + 5 + 0)
    assert hr.answers_since(baseline, {}) == hr.Answers()


@pytest.mark.parametrize(
    ("requests", "errors", "expected"),
    [
        (100, 5, "passed"),  # at the limit still passes
        (100, 6, "failed"),
        (19, 19, "too_few"),  # every answer an error, but too few to judge
        (20, 2, "failed"),
        (0, 0, "too_few"),
    ],
)
def test_verdict_needs_enough_answers_and_a_ratio_above_the_limit(
    hr: ModuleType, requests: int, errors: int, expected: str
) -> None:
    assert hr.verdict(hr.Answers(requests, errors), 20, 0.05) == expected


def test_verdict_with_no_minimum_still_needs_one_answer(hr: ModuleType) -> None:
    assert hr.verdict(hr.Answers(0, 0), 0, 0.0) == "too_few"
    assert hr.verdict(hr.Answers(1, 1), 0, 0.0) == "failed"


def watch_params(haproxy: FakeHAProxy, **overrides: Any) -> dict[str, Any]:
    watch = {
        "state": "watch",
        "server": None,
        "watch_servers": ["web1", "web2"],
        "watch_seconds": 0.3,
        "watch_min_requests": 20,
    }
    return params(haproxy, **{**watch, **overrides})


def test_watch_of_good_answers_passes_after_the_whole_time(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    web1 = haproxy.server("app", "web1")
    assert web1 is not None
    # Earlier answers, errors among them, are before the baseline and do not count.
    web1.answers = {"hrsp_2xx": 1000, "hrsp_5xx": 900}
    web1.traffic = {"hrsp_2xx": 5}
    haproxy.add_server("app", "web2", "10.0.0.12", 8000, traffic={"hrsp_2xx": 14, "hrsp_5xx": 1})

    result = hr.run(watch_params(haproxy))

    watched = result["watch"]
    # 1 answer in 20 is 5%: at the limit, which still passes.
    assert watched["verdict"] == "passed" and watched["ratio"] == 0.05
    assert watched["seconds"] >= 0.3
    # Reads after the baseline, before the backend listed at the end.
    polls = haproxy.received.count("show stat app 4 -1") - 2
    assert watched["requests"] == 20 * polls and watched["errors"] == polls
    assert result["changed"] is False and result["commands"] == []
    assert haproxy.mutating() == []


def test_watch_of_errors_stops_as_soon_as_the_ratio_is_exceeded(
    hr: ModuleType, haproxy: FakeHAProxy
) -> None:
    web1 = haproxy.server("app", "web1")
    assert web1 is not None
    web1.traffic = {"hrsp_2xx": 2, "hrsp_5xx": 8}

    result = hr.run(watch_params(haproxy, watch_seconds=30.0, watch_max_error_ratio=0.5))

    watched = result["watch"]
    assert watched["verdict"] == "failed"
    # Two reads after the baseline: 20 answers, 16 of them 5xx.
    assert watched == {**watched, "requests": 20, "errors": 16, "ratio": 0.8}
    assert watched["seconds"] < 1


def test_watch_of_an_idle_release_has_too_few_answers(hr: ModuleType, haproxy: FakeHAProxy) -> None:
    result = hr.run(watch_params(haproxy, watch_seconds=0.1))

    assert result["watch"] == {**result["watch"], "requests": 0, "ratio": 0.0, "verdict": "too_few"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"watch_max_error_ratio": 1.5},
        {"watch_max_error_ratio": -0.1},
        {"watch_seconds": -1.0},
        {"watch_servers": ["web1; disable server app/web1"]},
    ],
)
def test_watch_input_out_of_range_is_refused(
    hr: ModuleType, haproxy: FakeHAProxy, overrides: dict[str, Any]
) -> None:
    with pytest.raises(hr.RuntimeAPIError):
        hr.run(watch_params(haproxy, **overrides))
    assert haproxy.received == []


def test_module_watch_needs_the_servers_and_returns_the_figures(
    hr: ModuleType, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {"socket": haproxy.socket_path, "backend": "app", "state": "watch"}

    code, result = run_module(hr, capsys, args)
    assert code == 1 and "watch_servers" in result["msg"]

    web1 = haproxy.server("app", "web1")
    assert web1 is not None
    web1.traffic = {"hrsp_2xx": 30}
    code, result = run_module(
        hr, capsys, {**args, "watch_servers": ["web1"], "watch_seconds": 0.1, "poll_interval": 0.05}
    )
    assert code == 0 and result["changed"] is False
    assert result["watch"]["verdict"] == "passed" and result["watch"]["errors"] == 0


# The module entry point, as Ansible runs it.


def test_module_reports_stats(
    hr: ModuleType, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result = run_module(hr, capsys, {"socket": haproxy.socket_path, "backend": "app"})

    assert code == 0
    assert result["changed"] is False
    assert result["servers"][0]["svname"] == "web1"
    assert result["servers"][0]["status"] == "UP"
    assert isinstance(result["elapsed_seconds"], float)


def test_module_adds_a_server_then_is_idempotent(
    hr: ModuleType, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {
        "socket": haproxy.socket_path,
        "backend": "app",
        "server": "web2",
        "state": "present",
        "address": "10.0.0.12",
        "port": 8000,
        "poll_interval": POLL_SECONDS,
    }

    first = run_module(hr, capsys, args)
    second = run_module(hr, capsys, args)

    assert first[0] == 0
    assert first[1]["changed"] is True
    assert first[1]["server"]["status"] == "UP"
    assert second[1]["changed"] is False


def test_module_check_mode_sends_nothing(
    hr: ModuleType, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {
        "socket": haproxy.socket_path,
        "backend": "app",
        "server": "web1",
        "state": "absent",
        "_ansible_check_mode": True,
    }

    code, result = run_module(hr, capsys, args)

    assert code == 0
    assert result["changed"] is True
    assert haproxy.mutating() == []


def test_module_fails_on_a_missing_socket(
    hr: ModuleType, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "missing.sock")

    code, result = run_module(hr, capsys, {"socket": path, "backend": "app"})

    assert code == 1
    assert result["failed"] is True
    assert result["msg"] == f"HAProxy Runtime API socket {path} does not exist"


def test_module_failure_carries_command_and_reply(
    hr: ModuleType, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    haproxy.add_backend("static", dynamic=False)
    args = {
        "socket": haproxy.socket_path,
        "backend": "static",
        "server": "web2",
        "state": "present",
        "address": "10.0.0.12",
        "port": 8000,
    }

    code, result = run_module(hr, capsys, args)

    assert code == 1
    assert result["command"] == "add server static/web2 10.0.0.12:8000 check"
    assert result["reply"].startswith("Backend must use a dynamic load balancing")
    assert "add server static/web2" in result["msg"]


def test_module_requires_address_and_port_for_present(
    hr: ModuleType, haproxy: FakeHAProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {"socket": haproxy.socket_path, "backend": "app", "server": "web2", "state": "present"}

    code, result = run_module(hr, capsys, args)

    assert code == 1
    assert "address" in result["msg"] and "port" in result["msg"]
    assert haproxy.received == []
