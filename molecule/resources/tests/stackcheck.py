"""Helpers shared by the testinfra checks of every scenario (imported as stackcheck)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message

import pytest

HTTP_PORT = int(os.environ.get("WEBSTACK_HTTP_PORT", "18080"))
HTTPS_PORT = int(os.environ.get("WEBSTACK_HTTPS_PORT", "18443"))
STACK = os.environ.get("WEBSTACK_NAME", "webstack")
RUNTIME_SOCKET = "/opt/webstack/haproxy/run/admin.sock"


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> object:
        return json.loads(self.body)


def fetch(
    path: str, *, https: bool = False, headers: dict[str, str] | None = None, timeout: float = 10
) -> Response:
    """GET through NGINX's port published on 127.0.0.1, as a visitor would."""
    scheme, port = ("https", HTTPS_PORT) if https else ("http", HTTP_PORT)
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", headers=headers or {})
    context = ssl.create_default_context()
    # The certificate is self-signed for the test server.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            return Response(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())


def wait_for(check, timeout: float = 60, interval: float = 1):  # type: ignore[no-untyped-def]
    """Call check until it returns something truthy; return that, or fail after timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"gave up after {timeout}s; last result: {last!r}")


def tcp_connects(address: str, port: int, timeout: float = 2) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def docker_inspect(host, name: str) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(host.check_output(f"docker inspect {name}"))[0]


def haproxy_servers(host, backend: str = "app") -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Servers of a backend as HAProxy's Runtime API reports them."""
    result = host.ansible(
        "haproxy_runtime",
        f"socket={RUNTIME_SOCKET} backend={backend} state=stats",
        check=False,
        become=True,
    )
    assert not result.get("failed"), result
    return result["servers"]


def app_containers(host) -> list[str]:  # type: ignore[no-untyped-def]
    out = host.check_output(
        f"docker ps --filter label=webstack.stack={STACK} --filter label=webstack.service=app"
        " --format '{{.Names}}'"
    )
    return sorted(out.split())
