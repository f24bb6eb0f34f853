"""site.inc's static locations: one per item of nginx_static_locations, each an alias into
one of the two directories mounted into the NGINX container."""

from __future__ import annotations

import re

import pytest
from conftest import Render, RenderError

SERVICES_DIR = "/opt/webstack/services"


def static_locations(site: str) -> dict[str, list[str]]:
    """Each `location ^~ URL` block with its lines."""
    return {
        url: [line.strip() for line in body.strip().splitlines()]
        for url, body in re.findall(r"^location \^~ (\S+) \{\n(.*?)^\}", site, re.M | re.S)
    }


def served_as_today(alias: str) -> list[str]:
    return [
        f"alias {alias};",
        "expires 1h;",
        "include /etc/nginx/webstack/security-headers.inc;",
        'add_header Cache-Control "public";',
    ]


def test_by_default_the_app_static_files_are_served_at_static(render: Render) -> None:
    site = render("nginx", "site.inc.j2").read_text()
    assert static_locations(site) == {"/static/": served_as_today("/srv/static/")}
    # Everything else still goes to HAProxy.
    assert re.search(
        r"^location / \{\n(.*\n)*?\s+proxy_pass http://\$haproxy_upstream;", site, re.M
    )


def test_each_location_is_an_alias_into_its_mount(render: Render) -> None:
    locations = [
        {"url": "/static/", "dir": "/opt/webstack/static"},
        {"url": "/api/static/", "dir": f"{SERVICES_DIR}/api/static/"},
        {"url": "/admin/assets/", "dir": "/opt/webstack/static/admin"},
    ]
    site = render("nginx", "site.inc.j2", {"nginx_static_locations": locations}).read_text()
    assert static_locations(site) == {
        "/static/": served_as_today("/srv/static/"),
        "/api/static/": served_as_today("/srv/services/api/static/"),
        "/admin/assets/": served_as_today("/srv/static/admin/"),
    }


def test_release_static_locations_are_the_default(render: Render) -> None:
    locations = [{"url": "/api/static/", "dir": f"{SERVICES_DIR}/api/static"}]
    site = render("nginx", "site.inc.j2", {"release_static_locations": locations}).read_text()
    assert static_locations(site) == {"/api/static/": served_as_today("/srv/services/api/static/")}


@pytest.mark.parametrize("outside", ["/etc", "/opt/webstack/staticfiles", "/opt/webstack"])
def test_a_dir_outside_both_mounts_is_never_rendered(render: Render, outside: str) -> None:
    with pytest.raises(RenderError, match="nginx_static_locations: " + re.escape(outside)):
        render("nginx", "site.inc.j2", {"nginx_static_locations": [{"url": "/x/", "dir": outside}]})
