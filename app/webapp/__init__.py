"""Sample web app: greeting pages, health/version endpoints and a Redis visit counter."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from webapp import draining
from webapp.counter import RedisCounter
from webapp.routes import bp
from webapp.settings import Settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment; `config` overrides it (e.g. a fake COUNTER in tests)."""
    # Package-relative so /static works in local dev; in production NGINX serves it from disk.
    app = Flask(__name__, static_folder="../static", static_url_path="/static")
    settings = Settings.from_env()
    app.config["APP_VERSION"] = settings.app_version
    app.config.update(config or {})
    if app.config.get("COUNTER") is None:
        app.config["COUNTER"] = RedisCounter.from_settings(settings)

    @app.before_request
    def note_activity() -> None:
        # Health checks do not count: while draining, only real requests keep it serving.
        if request.path != "/healthz":
            draining.mark_request()

    @app.after_request
    def add_version_header(response: Response) -> Response:
        # Lets deployment tests see which release answered, on every response incl. errors.
        response.headers["X-App-Version"] = app.config["APP_VERSION"]
        return response

    app.register_blueprint(bp)
    return app
