"""A stack of three services, none of them the sample app, ships one service at a time.

The inventory (molecule.yml) declares `web` (tests/apps/plain at /: port 5000, healthy on /up,
no static files, no HEALTHCHECK), `api` (tests/apps/api at /api/: port 7000, healthy on
/api/ready, a migrate step before its switch, one static file) and `worker` (tests/apps/worker:
no HTTP). A changed release of one service is shipped by giving webstack_services as extra
vars with that service's source pointing at a changed copy, and `-e service=NAME`.

The tests run in file order against the one converged server, each starting from the state
the previous one left: bad input refused; web deployed, rolled back, refused, shipped; api
refused, shipped, rolled back; the worker rolled; then the layout the runs left behind.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from stackcheck import (
    ROOT,
    RUNTIME_SOCKET,
    STACK,
    app_containers,
    assert_no_failed_request,
    docker_inspect,
    fetch,
    finish,
    haproxy_servers,
    inventory,
    load,
    loadprobe,
    playbook,
    wait_for,
)

FIRST = "Plain app, first release"
SECOND = "Plain app, second release"
THIRD = "Plain app, third release"
API_FIRST = "API, first release"
API_SECOND = "API, second release"
WORKER_FIRST = "Worker, first release"
WORKER_SECOND = "Worker, second release"
WORKER_THIRD = "Worker, third release"
SERVICES = ("web", "api", "worker")
RELEASES = "/opt/webstack/releases"


# ---- helpers --------------------------------------------------------------------------------


def changed_copy(app: str, destination: Path, old: str, new: str) -> Path:
    """A copy of tests/apps/<app> whose release text is new: a real new release."""
    shutil.copytree(
        ROOT / "tests" / "apps" / app, destination, ignore=shutil.ignore_patterns("__pycache__")
    )
    changed = 0
    for source in destination.glob("*.py"):
        text = source.read_text()
        changed += text.count(old)
        source.write_text(text.replace(old, new))
    assert changed, f"{old!r} is not in tests/apps/{app}"
    return destination


def services() -> list[dict]:
    """webstack_services as the scenario's inventory declares them."""
    return yaml.safe_load((inventory() / "group_vars" / "web").read_text())["webstack_services"]


def services_file(tmp_path: Path, items: list[dict]) -> Path:
    path = tmp_path / f"services-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps({"webstack_services": items}))
    return path


def changed_services(**changes: dict) -> list[dict]:
    """The inventory's services, with the given keys of the named ones changed."""
    return [{**item, **changes.get(item["name"], {})} for item in services()]


def ship(tmp_path: Path, service: str, **changes: dict):  # type: ignore[no-untyped-def]
    """Start deploy.yml of one service, the others' definitions as in the inventory."""
    extra = services_file(tmp_path, changed_services(**changes))
    return playbook("deploy.yml", "-e", f"@{extra}", "-e", f"service={service}")


def history(host, service: str) -> list[dict]:  # type: ignore[no-untyped-def]
    content = host.file(f"{RELEASES}/{service}/history.jsonl").content_string
    return [json.loads(line) for line in content.splitlines()]


def current(host, service: str) -> str:  # type: ignore[no-untyped-def]
    return host.file(f"{RELEASES}/{service}/current").content_string.strip()


def container_ids(host, service: str) -> set[str]:  # type: ignore[no-untyped-def]
    return set(
        host.check_output(
            f"docker ps -q --no-trunc --filter label=webstack.stack={STACK}"
            f" --filter label=webstack.service={service}"
        ).split()
    )


def all_container_ids(host) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    return {service: container_ids(host, service) for service in SERVICES}


def running_versions(host, service: str) -> set[str]:  # type: ignore[no-untyped-def]
    out = host.check_output(
        f"docker ps --filter label=webstack.stack={STACK} --filter label=webstack.service={service}"
        " --format '{{.Label \"webstack.version\"}}'"
    )
    return set(out.split())


def server_state(host) -> str:  # type: ignore[no-untyped-def]
    """Every container (and its start), every image and every release file on the server."""
    return host.check_output(
        "docker ps -aq --no-trunc | sort | xargs -r docker inspect --format"
        " '{{.Name}} {{.Id}} {{.State.Status}} {{.State.StartedAt}}';"
        " docker images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' | sort;"
        f" find {RELEASES} -type f | sort | xargs -r sha256sum"
    )


def refusal(output: str) -> str:
    """The msg of every failed task of a run, on one line (not the task names or the recap).

    ansible.cfg sets callback_result_format = yaml: a failure is a "fatal: [host]: FAILED! =>"
    (or, in a loop, "failed: [host] (item=...) =>") line, then the result indented below it.
    """
    messages = []
    lines = output.splitlines()
    for number, line in enumerate(lines):
        if not re.match(r"(?:fatal|failed): \[[^\]]+\].*=>", line):
            continue
        inline = line.split("=>", 1)[1].strip()
        if inline.startswith("{"):
            result = json.loads(inline)
        else:
            block = []
            for following in lines[number + 1 :]:
                if following.strip() and not following[0].isspace():
                    break
                block.append(following)
            result = yaml.safe_load(textwrap.dedent("\n".join(block))) or {}
        messages.append(str(result.get("msg", "")))
    assert messages, output[-4000:]
    return " ".join(" ".join(messages).split())


def recap(output: str) -> dict[str, int]:
    match = re.search(r":\s*(ok=\d+.*)", output.split("PLAY RECAP")[-1])
    assert match, output[-4000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def step_starts(host, service: str, since: str, until: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Containers of the service's images started in the window that are not its replicas."""
    lines = host.check_output(
        f"docker events --since {since} --until {until} --filter type=container"
        " --filter event=start --format '{{.Actor.Attributes.name}} {{.Actor.Attributes.image}}'"
    ).splitlines()
    names = [line.split(" ", 1) for line in lines if " " in line]
    return [
        name
        for name, image in names
        if image.startswith(f"{STACK}/{service}:") and not re.search(r"-\d+$", name)
    ]


def exits(host, service: str, since: str, until: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Exit codes of the service's containers that ended in the window, by name."""
    lines = host.check_output(
        f"docker events --since {since} --until {until} --filter type=container"
        f" --filter event=die --filter label=webstack.service={service}"
        " --format '{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}'"
    ).splitlines()
    return dict(line.split(" ", 1) for line in lines if " " in line)


def no_step_container_left(host) -> bool:  # type: ignore[no-untyped-def]
    names = host.check_output("docker ps -a --format '{{.Names}}'").split()
    return not [name for name in names if name.endswith("-before-switch")]


def plain_load(tmp_path: Path, prefix: str = ""):  # type: ignore[no-untyped-def]
    """Keep-alive, fresh and slow GETs (no /counter) at / or under a prefix such as /api."""
    directory = tmp_path / ("load" + prefix.replace("/", "-"))
    directory.mkdir()
    return load(
        directory,
        counter_every=0,
        post_workers=0,
        keepalive_workers=2,
        fresh_workers=1,
        prefix=prefix,
    )


def since_now(host) -> str:  # type: ignore[no-untyped-def]
    return host.check_output("date +%s")


# ---- the converged stack --------------------------------------------------------------------


def test_site_yml_serves_every_service_at_its_route(host) -> None:  # type: ignore[no-untyped-def]
    assert fetch("/").text == FIRST + "\n"
    api = fetch("/api/")
    assert api.text == API_FIRST + "\n"
    assert api.headers["X-App-Version"] == current(host, "api")
    # Routed by path prefix: /api/... reaches the API, anything else the web service.
    for path, text in (("/api/nothing", "API: not found\n"), ("/nothing", "not found\n")):
        answer = fetch(path)
        assert (answer.status, answer.text) == (404, text), path
    # The API's static file, copied out of its image, is NGINX's at <route>static/.
    static = fetch("/api/static/hello.txt")
    assert (static.status, static.text) == (200, "API static file\n")
    assert host.file("/opt/webstack/services/api/static/hello.txt").exists
    # No static files in the web service's image, and none needed.
    web_static = "/opt/webstack/static /opt/webstack/services/web/static"
    assert host.run(f"find {web_static} -mindepth 1 2>/dev/null").stdout.strip() == ""

    for service, replicas, port in (("web", 2, "5000"), ("api", 2, "7000")):
        version = current(host, service)
        names = app_containers(host, service)
        assert names == [f"{STACK}-{service}-{version}-{n}" for n in range(1, replicas + 1)]
        # No HEALTHCHECK in the images: the gate was the health path itself.
        assert docker_inspect(host, names[0])["Config"].get("Healthcheck") is None
        servers = haproxy_servers(host, service)
        assert {server["status"] for server in servers} == {"UP"}, servers
        assert {server["addr"].rsplit(":", 1)[1] for server in servers} == {port}
        assert len(servers) == replicas

    worker = app_containers(host, "worker")
    assert worker == [f"{STACK}-worker-{current(host, 'worker')}-1"]
    assert WORKER_FIRST in host.check_output(f"docker logs --tail 5 {worker[0]}")


def test_the_playbooks_log_in_as_a_user_with_sudo_and_become_root(host) -> None:  # type: ignore[no-untyped-def]
    """site.yml above, and every deploy below, logged in as `admin` and became root with sudo."""
    # The checks themselves run as admin through sudo (conftest.py).
    assert host.check_output("id -un; echo $SUDO_USER").split() == ["root", "admin"]
    # sudo logs each command to the journal. Under Mitogen (ansible.cfg's strategy) become
    # starts one Python as root on admin's behalf, which then runs the modules of the whole
    # run (logged as COMMAND=/usr/bin/python3.11 -c <Mitogen's bootstrap>): at least one for
    # site.yml's converge, one more for each playbook run since.
    becomes = host.check_output(
        "journalctl _COMM=sudo --no-pager -o cat | grep -c "
        "'admin : .*USER=root ; COMMAND=/usr/bin/python3[.0-9]* -c ' || true"
    )
    assert int(becomes) >= 1, becomes
    # What site.yml made is root's, not the login's.
    assert host.file("/opt/webstack").user == "root"
    assert host.file("/opt/webstack/releases/web/history.jsonl").user == "root"


# ---- bad input ------------------------------------------------------------------------------


def billing(**settings: object) -> dict:
    """A service none of the others resembles, so a message naming it names it alone."""
    return {
        "name": "billing",
        "source": str(ROOT / "tests" / "apps" / "api"),
        "port": 7100,
        "health_path": "/api/ready",
        "route": "/billing/",
        **settings,
    }


def no_dockerfile(tmp_path: Path) -> str:
    source = tmp_path / "no-dockerfile"
    source.mkdir()
    (source / "api.py").write_text("print('no Dockerfile here')\n")
    return str(source)


# (case, services, extra arguments, what the message must name)
BAD: list[tuple[str, Callable[[Path], list[dict]], list[str], list[str]]] = [
    ("unknown key", lambda _: [*services(), billing(colour="blue")], [], ["billing", "colour"]),
    (
        "duplicate names",
        lambda _: [*services(), billing(), billing(route="/billing2/", port=7200)],
        [],
        ["billing", "name"],
    ),
    ("name not DNS-safe", lambda _: [*services(), billing(name="Web_1")], [], ["Web_1", "name"]),
    ("same route twice", lambda _: [*services(), billing(route="/api/")], [], ["billing", "route"]),
    (
        "route on a worker",
        lambda _: [
            *services(),
            {
                "name": "billing",
                "kind": "worker",
                "source": str(ROOT / "tests" / "apps" / "worker"),
                "route": "/billing/",
            },
        ],
        [],
        ["billing", "route"],
    ),
    ("port out of range", lambda _: [*services(), billing(port=70000)], [], ["billing", "port"]),
    (
        "source without a Dockerfile",
        lambda tmp: [*services(), billing(source=no_dockerfile(tmp))],
        [],
        ["billing", "source"],
    ),
    (
        "service naming no service",
        lambda _: services(),
        ["-e", "service=nope"],
        ["nope", "service"],
    ),
]


def test_bad_services_are_refused_before_anything_changes(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = server_state(host)

    def run(case: tuple) -> tuple[str, int, str]:
        name, items, extra, _ = case
        workdir = tmp_path / re.sub(r"\W+", "-", name)
        workdir.mkdir()
        extra_vars = services_file(workdir, items(workdir))
        code, output = finish(playbook("deploy.yml", "-e", f"@{extra_vars}", *extra))
        return name, code, output

    # Three at a time: each refusal is an ansible-playbook run that never reaches the roles.
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(run, BAD))

    problems = []
    for (name, code, output), (_, _, _, named) in zip(runs, BAD, strict=True):
        if code == 0:
            problems.append(f"{name}: accepted")
            continue
        message = refusal(output)
        missing = [word for word in named if word not in message]
        counts = recap(output)
        if missing or counts.get("changed", 0) != 0:
            problems.append(f"{name}: missing {missing}, {counts}, message: {message[:600]}")
    assert not problems, "\n".join(problems)
    assert server_state(host) == before


# ---- web: deploy, rollback, before_switch ---------------------------------------------------


def test_a_new_release_of_web_ships_without_a_failed_request(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    others = {service: container_ids(host, service) for service in ("api", "worker")}
    source = changed_copy("plain", tmp_path / "plain", FIRST, SECOND)
    old = app_containers(host, "web")
    since = since_now(host)
    with plain_load(tmp_path) as result:
        code, output = finish(ship(tmp_path, "web", web={"source": str(source)}))
        deployed_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, deployed_at - result["started_at"]) == {SECOND}
    assert history(host, "web")[-1]["result"] == "success"
    # The app has no SIGTERM handler and would ignore SIGTERM as PID 1: under Docker's init
    # each old replica ended on the SIGTERM of its stop (143), not on the SIGKILL that ends
    # the stop timeout (137).
    assert exits(host, "web", since, str(int(since_now(host)) + 1)) == dict.fromkeys(old, "143")
    assert running_versions(host, "web") == {current(host, "web")}
    assert {service: container_ids(host, service) for service in others} == others


def test_web_rolls_back_without_a_failed_request(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    others = {service: container_ids(host, service) for service in ("api", "worker")}
    with plain_load(tmp_path) as result:
        code, output = finish(playbook("rollback.yml", "-e", "service=web"))
        rolled_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, rolled_at - result["started_at"]) == {FIRST}
    assert history(host, "web")[-1]["action"] == "rollback"
    assert len(app_containers(host, "web")) == 2
    assert {service: container_ids(host, service) for service in others} == others


def test_a_rollback_naming_no_service_is_refused_in_a_stack_of_several(host) -> None:  # type: ignore[no-untyped-def]
    before = server_state(host)
    code, output = finish(playbook("rollback.yml"))
    assert code != 0, output[-4000:]
    message = refusal(output)
    # It says what to add, and among what.
    assert "service" in message and "api" in message and "worker" in message, message[:2000]
    assert server_state(host) == before


def test_a_failing_before_switch_refuses_the_release_with_nothing_switched(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = all_container_ids(host)
    source = changed_copy("plain", tmp_path / "plain", FIRST, THIRD)
    failing = ["python3", "-c", "import sys; print('migration 7 of 9 failed'); sys.exit(3)"]
    code, output = finish(
        ship(tmp_path, "web", web={"source": str(source), "before_switch": failing})
    )
    assert code != 0, output[-4000:]
    message = " ".join(output.split("fatal:", 1)[-1].split())
    assert "before_switch" in message and "(exit 3," in message, message[:3000]
    assert "migration 7 of 9 failed" in message and "nothing was switched" in message
    # No replica of the refused release ever ran: no empty "log" of one is shown.
    assert "No replica of" in message and "'s log:" not in message, message[:3000]
    assert all_container_ids(host) == before
    assert fetch("/").text == FIRST + "\n"
    assert history(host, "web")[-1]["result"] == "refused"
    assert no_step_container_left(host)
    # A step that hangs (a migration waiting on a lock) is stopped at its timeout: refused the
    # same way, with what it printed, and its container does not outlive the refusal.
    hanging = ["python3", "-u", "-c", "import time; print('waiting for a lock'); time.sleep(600)"]
    started = time.monotonic()
    code, output = finish(
        ship(
            tmp_path,
            "web",
            web={
                "source": str(source),
                "before_switch": hanging,
                "before_switch_timeout_seconds": 3,
            },
        )
    )
    assert code != 0, output[-4000:]
    assert time.monotonic() - started < 120, "the step ran past its timeout"
    message = " ".join(output.split("fatal:", 1)[-1].split())
    assert "(exit -1," in message and "waiting for a lock" in message, message[:3000]
    assert "overran before_switch_timeout_seconds, 3 s" in message, message[:3000]
    assert "nothing was switched" in message, message[:3000]
    assert all_container_ids(host) == before
    assert fetch("/").text == FIRST + "\n"
    assert history(host, "web")[-1]["result"] == "refused"
    assert no_step_container_left(host)


def test_a_succeeding_before_switch_runs_exactly_once_then_the_release_ships(
    host, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    source = changed_copy("plain", tmp_path / "plain", FIRST, THIRD)
    # It sees what a replica sees: the release's environment and the internal network.
    step = [
        "python3",
        "-c",
        "import os, socket; print('migrated to', os.environ['APP_VERSION'],"
        " 'redis at', socket.gethostbyname('redis'))",
    ]
    since = since_now(host)
    with plain_load(tmp_path) as result:
        code, output = finish(
            ship(tmp_path, "web", web={"source": str(source), "before_switch": step})
        )
        deployed_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, deployed_at - result["started_at"]) == {THIRD}
    # The output wraps long messages: compare with the whitespace folded.
    flat = " ".join(output.split())
    assert "before_switch: exit 0 in" in flat, flat[-4000:]
    # What the step printed (not its argv): the new release's version and redis's address.
    printed = re.search(r"migrated to (\S+) redis at (\d+)\.", flat)
    assert printed and printed.group(1) == current(host, "web"), flat[-4000:]
    starts = step_starts(host, "web", since, since_now(host))
    assert len(starts) == 1, starts
    assert no_step_container_left(host)


# ---- api: refused, shipped and rolled back alone --------------------------------------------


def test_a_failing_migrate_refuses_the_api_release_with_nothing_switched(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = all_container_ids(host)
    version = current(host, "api")
    source = changed_copy("api", tmp_path / "api", API_FIRST, API_SECOND)
    code, output = finish(
        ship(tmp_path, "api", api={"source": str(source), "env": {"MIGRATE_FAIL": "1"}})
    )
    assert code != 0, output[-4000:]
    message = " ".join(output.split("fatal:", 1)[-1].split())
    assert "before_switch" in message and "(exit 3," in message, message[:3000]
    # The tail of its output, and that nothing switched.
    assert "migration 7 of 9 failed: table api_keys is locked" in message, message[:3000]
    assert "nothing was switched" in message, message[:3000]
    assert all_container_ids(host) == before
    assert current(host, "api") == version
    assert fetch("/api/").text == API_FIRST + "\n"
    assert history(host, "api")[-1]["result"] == "refused"
    assert no_step_container_left(host)


def test_api_ships_under_load_on_both_routes_leaving_web_and_worker_alone(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    others = {service: container_ids(host, service) for service in ("web", "worker")}
    old = current(host, "api")
    source = changed_copy("api", tmp_path / "api", API_FIRST, API_SECOND)
    since = since_now(host)
    with plain_load(tmp_path) as web, plain_load(tmp_path, "/api") as api:
        code, output = finish(ship(tmp_path, "api", api={"source": str(source)}))
        deployed_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(web)
    assert_no_failed_request(api)
    new = current(host, "api")
    assert new != old
    assert loadprobe.texts_after(api, deployed_at - api["started_at"]) == {API_SECOND}
    assert loadprobe.versions_after(api, deployed_at - api["started_at"]) == {new}
    # The web service answered the same text all along: it was never touched.
    assert loadprobe.texts_after(web, 0) == {THIRD}
    assert {service: container_ids(host, service) for service in others} == others
    assert running_versions(host, "api") == {new}
    assert fetch("/api/").text == API_SECOND + "\n"
    # The migrate step of the inventory ran once, in the new release, and said so.
    flat = " ".join(output.split())
    assert f"migrated {API_SECOND} to {new}" in flat, flat[-4000:]
    starts = step_starts(host, "api", since, since_now(host))
    assert len(starts) == 1, starts
    assert history(host, "api")[-1]["result"] == "success"


def test_api_rolls_back_under_load_leaving_web_alone(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    web = container_ids(host, "web")
    since = since_now(host)
    with plain_load(tmp_path, "/api") as result:
        code, output = finish(playbook("rollback.yml", "-e", "service=api"))
        rolled_at = time.time()
    assert code == 0, output[-4000:]
    assert_no_failed_request(result)
    assert loadprobe.texts_after(result, rolled_at - result["started_at"]) == {API_FIRST}
    assert history(host, "api")[-1]["action"] == "rollback"
    assert running_versions(host, "api") == {current(host, "api")}
    assert len(app_containers(host, "api")) == 2
    assert container_ids(host, "web") == web
    # A rollback returns to a release whose step already ran: it is not run again.
    assert step_starts(host, "api", since, since_now(host)) == []


# ---- worker ---------------------------------------------------------------------------------


def test_the_worker_is_rolled_new_first_and_the_old_one_stops_gracefully(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    others = {service: container_ids(host, service) for service in ("web", "api")}
    [old] = app_containers(host, "worker")
    # The old container is likely removed once stopped: its log is followed to a file on the
    # server until it ends.
    unit = f"webstack-test-follow-{uuid.uuid4().hex[:8]}"
    log = f"/tmp/{unit}.log"
    host.check_output(
        f"systemd-run --quiet --collect --unit {unit}"
        f" sh -c 'exec docker logs -f {old} > {log} 2>/dev/null'"
    )
    wait_for(lambda: WORKER_FIRST in host.run(f"cat {log}").stdout, timeout=10, interval=0.2)
    source = changed_copy("worker", tmp_path / "worker", WORKER_FIRST, WORKER_SECOND)
    since = since_now(host)
    code, output = finish(ship(tmp_path, "worker", worker={"source": str(source)}))
    assert code == 0, output[-4000:]
    until = int(since_now(host)) + 1

    [new] = app_containers(host, "worker")
    assert new != old and new == f"{STACK}-worker-{current(host, 'worker')}-1"
    events = [
        json.loads(line)
        for line in host.check_output(
            f"docker events --since {since} --until {until} --filter type=container"
            " --filter label=webstack.service=worker --format '{{json .}}'"
        ).splitlines()
    ]

    def at(name: str, *actions: str) -> list[tuple[int, dict]]:
        return [
            (int(event["timeNano"]), event["Actor"]["Attributes"])
            for event in events
            if event["Actor"]["Attributes"].get("name") == name
            and event.get("Action", event.get("status")) in actions
        ]

    started = at(new, "start")
    stopped = at(old, "kill", "stop", "die")
    died = at(old, "die")
    assert started and stopped and died, events
    # The new worker was running before the old one was told to stop.
    assert min(nanos for nanos, _ in started) < min(nanos for nanos, _ in stopped), events
    # The old one finished its unit and exited by itself, well before a kill.
    assert died[0][1].get("exitCode") == "0", died
    assert not [attributes for _, attributes in at(old, "kill") if attributes.get("signal") == "9"]

    wait_for(lambda: host.run(f"systemctl is-active {unit}").stdout.strip() != "active", 30, 0.2)
    lines = host.run(f"cat {log}").stdout.strip().splitlines()
    assert lines and lines[-1] == "worker stopping", lines[-5:]
    assert any(WORKER_FIRST in line for line in lines)
    host.run(f"rm -f {log}")

    wait_for(lambda: WORKER_SECOND in host.check_output(f"docker logs {new}"), 10, 0.2)
    assert {service: container_ids(host, service) for service in others} == others
    assert history(host, "worker")[-1]["result"] == "success"


def test_a_deploy_naming_no_service_ships_only_the_services_that_changed(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    others = {service: container_ids(host, service) for service in ("web", "api")}
    source = changed_copy("worker", tmp_path / "worker", WORKER_FIRST, WORKER_THIRD)
    # api serves its inventory's source again (rolled back to it): a copy that differs only in
    # files its .dockerignore lists is the same release, not a new one.
    api = tmp_path / "api"
    shutil.copytree(ROOT / "tests" / "apps" / "api", api)
    (api / ".env").write_text("API_TOKEN=kept-on-the-laptop\n")
    (api / "NOTES.md").write_text("What to try next.\n")
    # web as it serves now (its release pinned), api from that copy, the worker changed.
    items = changed_services(
        web={"version": current(host, "web")},
        api={"source": str(api)},
        worker={"source": str(source)},
    )
    code, output = finish(playbook("deploy.yml", "-e", f"@{services_file(tmp_path, items)}"))
    assert code == 0, output[-4000:]
    summary = " ".join(output.split("Summarise the release", 1)[-1].split())
    for service in ("web", "api"):
        assert f"{service}: deploy {current(host, service)} -> {current(host, service)}:" in summary
    assert summary.count("nothing to do, already serving") == 2, summary[:2000]
    assert "worker: deploy" in summary and "done in" in summary, summary[:2000]
    assert {service: container_ids(host, service) for service in others} == others
    [new] = app_containers(host, "worker")
    wait_for(lambda: WORKER_THIRD in host.check_output(f"docker logs {new}"), 10, 0.2)


# ---- what the runs left behind --------------------------------------------------------------


def test_each_service_has_its_history_and_each_web_service_its_haproxy_backend(host) -> None:  # type: ignore[no-untyped-def]
    steps = {
        "web": [
            ("provision", "success"),
            ("deploy", "success"),
            ("rollback", "success"),
            ("deploy", "refused"),
            ("deploy", "refused"),
            ("deploy", "success"),
        ],
        "api": [
            ("provision", "success"),
            ("deploy", "refused"),
            ("deploy", "success"),
            ("rollback", "success"),
        ],
        "worker": [("provision", "success"), ("deploy", "success"), ("deploy", "success")],
    }
    for service, expected in steps.items():
        assert [(item["action"], item["result"]) for item in history(host, service)] == expected
        assert running_versions(host, service) == {current(host, service)}
    # No service is called app: nothing is kept where the one-service stack keeps its own.
    assert not host.file(f"{RELEASES}/history.jsonl").exists
    assert not host.file(f"{RELEASES}/current").exists
    assert not host.file(f"{RELEASES}/deploy.lock").exists

    result = host.ansible(
        "haproxy_runtime",
        f"socket={RUNTIME_SOCKET} state=command command='show servers state'",
        check=False,
        # A module run through Ansible, not a check: sudo here is Ansible's become (the socket
        # is root's and this scenario logs in as admin).
        become=True,
    )
    assert not result.get("failed"), result
    rows = [line.split() for line in result["stdout"].splitlines()]
    # Rows: be_id be_name srv_id srv_name srv_addr ...; the first line is the format version.
    servers: dict[str, set[str]] = {}
    for row in rows:
        if len(row) > 4 and not row[0].startswith("#"):
            servers.setdefault(row[1], set()).add(row[3])
    assert servers == {
        service: {f"{current(host, service)}-{n}" for n in (1, 2)} for service in ("web", "api")
    }, result["stdout"]
