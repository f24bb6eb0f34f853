"""Gunicorn settings (works with Debian bookworm's gunicorn 20.1)."""

import os

# Listen on all interfaces so NGINX/HAProxy can reach the container; port is configurable.
bind = f"0.0.0.0:{os.environ.get('APP_PORT', '8000')}"
# A few processes for CPU parallelism and isolation from a crashing worker.
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Threaded workers so long /slow requests don't block the other requests of a worker.
worker_class = "gthread"
# Concurrent requests per worker process.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# On SIGTERM, give in-flight requests this long to finish (zero-downtime deploys).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT_SECONDS", "20"))
# Longer than HAProxy's idle timeout, so the balancer always closes idle connections first.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE_SECONDS", "75"))
# Kill stuck workers; above the 10s /slow maximum so tests never trip it.
timeout = 30
# Access log to stdout so `docker logs` / journald collect it.
accesslog = "-"
# Errors to stderr, the container log as well.
errorlog = "-"
