"""Certificates from a real ACME server: Debian's pebble, started by the scenario's prepare.

site.yml got the certificate through a real HTTP-01 validation over the server's port 80; the
renewal timer's service renews it under load.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from stackcheck import (
    ACME_DOMAIN,
    HTTPS_PORT,
    assert_no_failed_request,
    fetch,
    finish,
    load,
    playbook,
)

BROKEN_DOMAIN = "broken.webstack.test"
DROP_IN = Path("/run/systemd/system/webstack-acme-renew.service.d/force.conf")


def served_certificate() -> x509.Certificate:
    """The certificate NGINX presents for the name, read over TLS as a browser would."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        ssl.create_connection(("127.0.0.1", HTTPS_PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=ACME_DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der
    return x509.load_der_x509_certificate(der)


def pebble_root(host) -> str:  # type: ignore[no-untyped-def]
    """The root pebble made at its start, from its management API (trusted through the test CA)."""
    name = host.backend.get_hostname()
    address = subprocess.check_output(
        ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", f"{name}-pebble"], text=True
    ).strip()
    test_ca = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "acme" / "ca.crt"
    context = ssl.create_default_context(cafile=str(test_ca))
    # Reached by address from here; the server reaches it by the name its certificate bears.
    context.check_hostname = False
    url = f"https://{address}:15000/roots/0"
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        return answer.read().decode()


def names(certificate: x509.Certificate) -> list[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return extension.value.get_values_for_type(x509.DNSName)


def issuer(certificate: x509.Certificate) -> str:
    return certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def verified_against(root: str) -> None:
    """A full TLS handshake that trusts only pebble's root and checks the host name."""
    context = ssl.create_default_context(cadata=root)
    with (
        ssl.create_connection(("127.0.0.1", HTTPS_PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=ACME_DOMAIN),
    ):
        pass


def test_the_site_serves_the_certificate_the_acme_server_issued(host) -> None:  # type: ignore[no-untyped-def]
    certificate = served_certificate()
    assert issuer(certificate).startswith("Pebble Intermediate"), certificate.issuer
    assert names(certificate) == [ACME_DOMAIN]
    verified_against(pebble_root(host))
    # The challenge files are gone once the certificate is issued; the path stays NGINX's.
    assert fetch("/.well-known/acme-challenge/nothing-here").status == 404
    assert host.service("webstack-acme-renew.timer").is_enabled
    assert host.service("webstack-acme-renew.timer").is_running


def test_the_renewal_timer_keeps_a_good_certificate(host) -> None:  # type: ignore[no-untyped-def]
    before = served_certificate().serial_number
    result = host.run("systemctl start webstack-acme-renew.service")
    assert result.rc == 0, result.stderr
    assert served_certificate().serial_number == before
    log = host.check_output("journalctl -u webstack-acme-renew.service -n 5 --no-pager -o cat")
    assert "nothing to do" in log


def test_renewal_under_load_serves_a_new_certificate_without_a_failed_request(
    host,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    before = served_certificate()
    # The timer's own service, told that the certificate is about to expire.
    host.run(f"mkdir -p {DROP_IN.parent}")
    host.run(f"printf '[Service]\\nEnvironment=WEBSTACK_ACME_RENEW_DAYS=36500\\n' > {DROP_IN}")
    host.run("systemctl daemon-reload")
    tls_failures: list[str] = []
    tls_ok = 0
    stop = threading.Event()

    def tls_visitor() -> None:
        # Fresh TLS connections through the reload, bounded in count and time.
        nonlocal tls_ok
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline and tls_ok < 5000:
            try:
                answer = fetch("/", https=True, timeout=10)
                if answer.status == 200:
                    tls_ok += 1
                else:
                    tls_failures.append(f"HTTP {answer.status}")
            except OSError as error:
                tls_failures.append(repr(error))
            time.sleep(0.2)

    try:
        # About 13 requests a second in all, slow ones always in flight: under the scenario's
        # rate limit (20 a second per address), so that every refusal would be a real failure.
        with load(tmp_path, keepalive_workers=1, fresh_workers=1, pace=0.4) as result:
            visitor = threading.Thread(target=tls_visitor)
            visitor.start()
            time.sleep(6)
            renewal = host.run("systemctl start webstack-acme-renew.service")
            time.sleep(6)
            stop.set()
            visitor.join()
    finally:
        host.run(f"rm -f {DROP_IN}")
        host.run("systemctl daemon-reload")
    log = host.check_output("journalctl -u webstack-acme-renew.service -n 20 --no-pager -o cat")
    assert renewal.rc == 0, log
    assert "renewed:" in log
    after = served_certificate()
    print(
        f"renewal: serial {before.serial_number:x} -> {after.serial_number:x},"
        f" {tls_ok} HTTPS requests during it, {len(tls_failures)} failed"
    )
    assert after.serial_number != before.serial_number
    assert issuer(after).startswith("Pebble Intermediate")
    assert names(after) == [ACME_DOMAIN]
    assert after.not_valid_after_utc >= before.not_valid_after_utc
    assert_no_failed_request(result)
    assert tls_ok > 0 and not tls_failures, tls_failures[:10]


def test_a_failed_challenge_names_the_domain_and_keeps_the_served_certificate(host) -> None:  # type: ignore[no-untyped-def]
    before = served_certificate().serial_number
    renewal_names = host.file("/opt/webstack/nginx/acme/renew.csr").content_string
    # The test DNS points the new name at an address where nothing answers on port 80.
    name = host.backend.get_hostname()
    dns = subprocess.check_output(
        ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", f"{name}-challtestsrv"],
        text=True,
    ).strip()
    record = json.dumps({"host": f"{BROKEN_DOMAIN}.", "addresses": ["127.0.0.1"]}).encode()
    urllib.request.urlopen(f"http://{dns}:8055/add-a", data=record, timeout=10).close()
    domains = json.dumps({"nginx_acme_domains": [ACME_DOMAIN, BROKEN_DOMAIN]})
    code, output = finish(playbook("site.yml", "-e", domains))
    assert code != 0, output[-3000:]
    failure = " ".join(output.split("fatal:", 1)[-1].split())
    assert f"No certificate for {ACME_DOMAIN}, {BROKEN_DOMAIN} from" in failure, failure[:3000]
    # What pebble said of the name it could not validate.
    assert BROKEN_DOMAIN in failure.split(" from ", 1)[1], failure[:3000]
    assert "keeps serving with the certificate it had" in failure
    assert served_certificate().serial_number == before
    assert fetch("/", https=True).status == 200
    assert host.file("/opt/webstack/nginx/acme/renew.csr").content_string == renewal_names
    assert not host.file("/opt/webstack/nginx/acme-challenge/.well-known/acme-challenge").listdir()
    # site.yml stopped the healer's timer and never reached the end that starts it again; the
    # safety net it left starts it (after healer_pause_max_minutes; here at once).
    assert not host.service("webstack-heal.timer").is_running
    assert host.run("systemctl is-active webstack-heal-resume.timer").stdout.strip() == "active"
    # systemd-run's service is Type=simple: a plain start returns before its command has run
    # (this check once failed so); --wait returns when it has ended.
    assert host.run("systemctl start --wait webstack-heal-resume.service").rc == 0
    assert host.service("webstack-heal.timer").is_running
