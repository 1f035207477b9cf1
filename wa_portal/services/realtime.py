"""Per-clinic real-time events over Redis pub/sub (the inbox listens; workers and views publish)."""

from __future__ import annotations

import json
import logging
from typing import Any

from .redis_conn import REDIS_DOWN, get_redis

log = logging.getLogger(__name__)


def channel(clinic_id: int) -> str:
    """The clinic's channel. Pub/sub ignores Redis database numbers, so the number is in the name:
    two deployments (or test runs) sharing one Redis server on different databases never mix."""
    db = get_redis().connection_pool.connection_kwargs.get("db", 0)
    return f"wa:events:{db}:clinic:{clinic_id}"


def publish(clinic_id: int, event: str, **data: Any) -> None:
    """Best effort: a lost event costs a refresh, never data (pages poll as a fallback)."""
    try:
        get_redis().publish(channel(clinic_id), json.dumps({"event": event, **data}))
    except REDIS_DOWN:
        log.info("realtime publish skipped: redis unavailable")
