"""A plain HTTP app: GET / answers TEXT, /up answers 200, /slow?seconds=N sleeps first."""

import http.server
import os
import time
import urllib.parse

TEXT = "Plain app, first release"
PORT = int(os.environ.get("PORT", "5000"))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/slow":
            seconds = float(urllib.parse.parse_qs(url.query).get("seconds", ["1"])[0])
            time.sleep(min(max(seconds, 0.0), 10.0))
            self.answer(200, f"slept {seconds:g}")
        elif url.path == "/up":
            self.answer(200, "up")
        elif url.path == "/":
            self.answer(200, TEXT)
        else:
            self.answer(404, "not found")

    def answer(self, status: int, body: str) -> None:
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
