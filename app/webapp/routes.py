"""HTTP routes of the sample app."""

from __future__ import annotations

import math
import time

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from markupsafe import escape

from webapp import draining
from webapp.counter import CounterUnavailable, VisitCounter
from webapp.greeting import GREETING

MAX_SLOW_SECONDS = 10.0

bp = Blueprint("webapp", __name__)


def _text(body: str, cache_control: str, status: int = 200) -> Response:
    response = Response(body, status=status, mimetype="text/plain")
    response.headers["Cache-Control"] = cache_control
    return response


@bp.route("/")
@bp.route("/index")
@bp.route("/home")
def home() -> Response:
    # no-cache: proxies may store it but must revalidate, so a release shows up at once.
    return _text(f"{GREETING}\n", "no-cache")


@bp.route("/healthz")
def healthz() -> Response:
    # Deliberately ignores Redis: an outage there must not pull every replica
    # out of the load balancer, the counter degrades on its own instead.
    if draining.draining():
        # Stopping: HAProxy takes it out before gunicorn stops accepting (webapp.draining).
        return _text("draining", "no-store", status=503)
    return _text("ok", "no-store")


@bp.route("/version")
def version() -> Response:
    response = jsonify(version=current_app.config["APP_VERSION"])
    response.headers["Cache-Control"] = "no-store"
    return response


# POST too, with the same answer: the release tests send POST /counter on new connections,
# a write that must survive a release like any GET.
@bp.route("/counter", methods=["GET", "POST"])
def counter() -> Response:
    backend: VisitCounter = current_app.config["COUNTER"]
    try:
        response = jsonify(visits=backend.increment())
    except CounterUnavailable:
        # Degrade visibly but keep a 200: the page works, only the count is missing.
        response = jsonify(visits=None, error="counter unavailable")
    response.headers["Cache-Control"] = "no-store"
    return response


ABOUT_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>About</title>
<link rel="stylesheet" href="{css}">
</head>
<body>
<h1>About this app</h1>
<p>Sample web app deployed with Ansible.</p>
<p>Version: <code>{version}</code></p>
</body>
</html>
"""


@bp.route("/about")
def about() -> Response:
    html = ABOUT_HTML.format(
        css=url_for("static", filename="style.css"),
        version=escape(current_app.config["APP_VERSION"]),
    )
    response = Response(html, mimetype="text/html")
    # Cacheable on purpose: the NGINX proxy cache is tested against this page.
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


@bp.route("/slow")
def slow() -> Response:
    """Hold a request in flight for a while (zero-downtime deployment tests)."""
    raw = request.args.get("seconds", "1")
    try:
        seconds = float(raw)
    except ValueError:
        return _text("seconds must be a number\n", "no-store", status=400)
    if not math.isfinite(seconds):
        return _text("seconds must be finite\n", "no-store", status=400)
    seconds = min(max(seconds, 0.0), MAX_SLOW_SECONDS)
    time.sleep(seconds)
    return _text(f"slept {seconds:g}", "no-store")
