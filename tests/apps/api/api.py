"""An HTTP service under /api/: GET /api/ answers TEXT, /api/ready 200, /api/slow?seconds=N.

Every answer names the release in X-App-Version (APP_VERSION, set by the stack).

`python3 /srv/api.py migrate` is its before_switch step: it prints one line and exits 0, or
exits 3 after printing why when MIGRATE_FAIL=1. SIGTERM ends the server at once.
"""

import http.server
import os
import signal
import sys
import time
import urllib.parse

TEXT = "API, first release"
PORT = int(os.environ.get("PORT", "7000"))
PREFIX = "/api/"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == PREFIX + "slow":
            seconds = float(urllib.parse.parse_qs(url.query).get("seconds", ["1"])[0])
            time.sleep(min(max(seconds, 0.0), 10.0))
            self.answer(200, f"api slept {seconds:g}")
        elif url.path == PREFIX + "ready":
            self.answer(200, "ready")
        elif url.path == PREFIX:
            self.answer(200, TEXT)
        else:
            # Static files are NGINX's (<route>static/): the service itself has none to serve.
            self.answer(404, "API: not found")

    def answer(self, status: int, body: str) -> None:
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-App-Version", os.environ.get("APP_VERSION", ""))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def migrate() -> int:
    if os.environ.get("MIGRATE_FAIL") == "1":
        print("migration 7 of 9 failed: table api_keys is locked", flush=True)
        return 3
    print(f"migrated {TEXT} to {os.environ.get('APP_VERSION', 'no version')}", flush=True)
    return 0


def serve() -> None:
    # PID 1 in its container: without a handler, SIGTERM would be ignored until Docker kills.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()


if __name__ == "__main__":
    if sys.argv[1:] == ["migrate"]:
        sys.exit(migrate())
    if sys.argv[1:]:
        sys.exit(f"usage: {sys.argv[0]} [migrate]")
    serve()
