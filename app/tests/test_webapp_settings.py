from __future__ import annotations

from pathlib import Path

from webapp.settings import Settings


def test_defaults() -> None:
    assert Settings.from_env({}) == Settings(
        app_version="dev",
        redis_host="redis",
        redis_port=6379,
        redis_password=None,
        redis_timeout_seconds=0.5,
    )


def test_values_from_env() -> None:
    env = {
        "APP_VERSION": "2.0.0",
        "REDIS_HOST": "cache",
        "REDIS_PORT": "6380",
        "REDIS_PASSWORD": "pw",
        "REDIS_TIMEOUT_SECONDS": "1.5",
    }
    assert Settings.from_env(env) == Settings("2.0.0", "cache", 6380, "pw", 1.5)


def test_password_file_wins_over_env(tmp_path: Path) -> None:
    secret = tmp_path / "redis_password"
    secret.write_text("from-file\n", encoding="utf-8")
    env = {"REDIS_PASSWORD_FILE": str(secret), "REDIS_PASSWORD": "from-env"}
    assert Settings.from_env(env).redis_password == "from-file"


def test_empty_password_means_none(tmp_path: Path) -> None:
    secret = tmp_path / "empty"
    secret.write_text("\n", encoding="utf-8")
    from_file = Settings.from_env({"REDIS_PASSWORD_FILE": str(secret)})
    assert from_file.redis_password is None
    assert Settings.from_env({"REDIS_PASSWORD": ""}).redis_password is None
