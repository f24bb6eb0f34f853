"""Visit counter backends.

Routes depend only on the `VisitCounter` protocol, so tests can swap in a fake
without a Redis server.
"""

from __future__ import annotations

import logging
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from webapp.settings import Settings

VISITS_KEY = "webapp:visits"

log = logging.getLogger(__name__)


class CounterUnavailable(Exception):
    """The backing store could not be reached or refused us (network, auth, ...)."""


class VisitCounter(Protocol):
    def increment(self) -> int:
        """Count one visit and return the new total; raise CounterUnavailable on failure."""
        ...


class RedisCounter:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisCounter:
        # The client connects lazily, so creating it never blocks start-up on Redis.
        client = redis.Redis(
            host=settings.redis_host,
            port=settings.redis_port,
            password=settings.redis_password,
            socket_connect_timeout=settings.redis_timeout_seconds,
            socket_timeout=settings.redis_timeout_seconds,
            # No retries: newer redis-py retries with backoff by default, which would
            # turn an outage into multi-second page loads instead of one short timeout.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client)

    def increment(self) -> int:
        try:
            visits = self._client.incr(VISITS_KEY)
        except redis.RedisError as exc:  # covers connection, timeout and auth errors
            log.warning("visit counter unavailable: %s", exc)
            raise CounterUnavailable(str(exc)) from exc
        return int(visits)
