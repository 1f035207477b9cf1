"""RQ plumbing: purpose-named queues, one enqueue helper, and the app-aware worker.

Jobs take ids, never ORM objects, and carry deterministic job ids so a re-enqueue by the
sweeper replaces rather than duplicates. Enqueue happens after the database commit; if
Redis is down the row stays in the database and the sweeper re-enqueues it later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from rq import Queue, SimpleWorker

from ..services.redis_conn import REDIS_DOWN, get_redis

log = logging.getLogger(__name__)

WEBHOOKS = "webhooks"  # ingest of stored provider events: first, they are what patients wrote
DELIVERY = "delivery"
MEDIA = "media"
DEFAULT = "default"  # maintenance, health checks, the sandbox phone
QUEUES = (WEBHOOKS, DELIVERY, MEDIA, DEFAULT)


def queue_name(name: str) -> str:
    return current_app.config.get("RQ_QUEUE_PREFIX", "") + name


def get_queue(name: str) -> Queue:
    return Queue(queue_name(name), connection=get_redis())


def enqueue(
    func: Callable[..., Any],
    *args: Any,
    queue: str = DEFAULT,
    job_id: str | None = None,
    at: datetime | None = None,
    delay: timedelta | None = None,
    timeout: int = 120,
) -> bool:
    """Enqueue ``func(*args)``; returns False (and logs) when Redis is unreachable."""
    try:
        q = get_queue(queue)
        opts: dict[str, Any] = {
            "job_id": job_id,
            "job_timeout": timeout,
            "result_ttl": 600,
            "failure_ttl": 86400,
        }
        if at is not None:
            q.enqueue_at(at, func, *args, **opts)
        elif delay is not None:
            q.enqueue_in(delay, func, *args, **opts)
        else:
            q.enqueue(func, *args, **opts)
    except REDIS_DOWN:
        log.warning("redis unavailable: %s left for the sweeper", job_id or func.__name__)
        return False
    return True


def enqueue_many(
    func: Callable[..., Any],
    calls: list[tuple[tuple[Any, ...], str]],
    *,
    queue: str = DEFAULT,
    timeout: int = 120,
) -> bool:
    """Enqueue many ``func(*args)`` jobs in one Redis round trip; False (logged) when Redis is down."""
    try:
        q = get_queue(queue)
        q.enqueue_many(
            [
                Queue.prepare_data(
                    func, args, job_id=job_id, timeout=timeout, result_ttl=600, failure_ttl=86400
                )
                for args, job_id in calls
            ]
        )
    except REDIS_DOWN:
        log.warning("redis unavailable: %d job(s) left for the sweeper", len(calls))
        return False
    return True


class AppWorker(SimpleWorker):
    """A non-forking RQ worker that runs every job in a fresh app context.

    Non-forking is about three times faster here (ENVIRONMENT.md); a fresh app context per
    job gives each job its own database session, removed when the job ends.
    """

    flask_app: Flask | None = None

    def execute_job(self, job: Any, queue: Queue) -> None:
        assert self.flask_app is not None
        with self.flask_app.app_context():
            super().execute_job(job, queue)


def make_worker(app: Flask, queues: tuple[str, ...] = QUEUES, name: str | None = None) -> AppWorker:
    with app.app_context():
        qs = [get_queue(q) for q in queues]
        worker = AppWorker(qs, connection=get_redis(), name=name)
    worker.flask_app = app
    return worker
