"""Runtime settings, read once from the environment at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    app_version: str = "dev"
    redis_host: str = "redis"
    redis_port: int = 6379
    redis_password: str | None = None
    # Bounds both connect and read so a Redis outage costs at most this per request.
    redis_timeout_seconds: float = 0.5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            app_version=env.get("APP_VERSION") or cls.app_version,
            redis_host=env.get("REDIS_HOST") or cls.redis_host,
            redis_port=int(env.get("REDIS_PORT") or cls.redis_port),
            redis_password=_redis_password(env),
            redis_timeout_seconds=float(
                env.get("REDIS_TIMEOUT_SECONDS") or cls.redis_timeout_seconds
            ),
        )


def _redis_password(env: Mapping[str, str]) -> str | None:
    """Prefer a secret file (keeps the password out of `docker inspect`), then the env var."""
    path = env.get("REDIS_PASSWORD_FILE")
    if path:
        # A configured but unreadable file is a deployment error: fail loudly at start-up.
        password = Path(path).read_text(encoding="utf-8").strip()
    else:
        password = env.get("REDIS_PASSWORD", "")
    return password or None
