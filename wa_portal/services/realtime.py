"""Per-clinic real-time events over Redis pub/sub (the inbox listens; workers and views publish)."""

from __future__ import annotations

import json
import logging
from typing import Any

from .redis_conn import REDIS_DOWN, get_redis

log = logging.getLogger(__name__)


def channel(clinic_id: int) -> str:
    return f"wa:events:clinic:{clinic_id}"


def publish(clinic_id: int, event: str, **data: Any) -> None:
    """Best effort: a lost event costs a refresh, never data (pages poll as a fallback)."""
    try:
        get_redis().publish(channel(clinic_id), json.dumps({"event": event, **data}))
    except REDIS_DOWN:
        log.info("realtime publish skipped: redis unavailable")
