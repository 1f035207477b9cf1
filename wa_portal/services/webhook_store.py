"""Group commit for raw webhook events: many concurrent requests, one INSERT and one COMMIT.

A webhook may be acknowledged only after its raw event is committed. Committing each
request on its own costs a WAL flush per webhook (~1.7 ms here) and caps a 2-core box at
about 400 webhooks/s. Instead, every request thread of a process hands its row to one
writer thread and waits; the writer takes *everything that queued up while the previous
commit was running* (natural batching: no artificial delay at low load, large batches at
high load), inserts it in one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING``,
commits once, and wakes each waiting request with its event id (or None: a duplicate).
Only then do the requests answer 200. The ingest jobs for the whole batch are enqueued
after the commit in one Redis pipeline; if Redis is down the rows wait for the sweeper.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any

from flask import Flask
from sqlalchemy.dialects import postgresql, sqlite

from ..models import WebhookEvent

log = logging.getLogger(__name__)

MAX_BATCH = 500
SUBMIT_TIMEOUT = 10.0  # seconds a request waits for its commit before answering 503


class GroupCommitter:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self._queue: queue.Queue[tuple[dict[str, Any], Future[int | None]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def submit(self, values: dict[str, Any]) -> int | None:
        """Store one raw event; returns its id, or None when it was already stored (a redelivery)."""
        self._ensure_thread()
        fut: Future[int | None] = Future()
        self._queue.put((values, fut))
        return fut.result(timeout=SUBMIT_TIMEOUT)

    def _ensure_thread(self) -> None:
        # After a fork (gunicorn) the parent's thread does not exist in the child: start our own.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._queue = queue.Queue()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="webhook-group-commit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        q = self._queue
        while True:
            batch = [q.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            try:
                self._store(batch)
            finally:
                for _ in batch:
                    q.task_done()

    def _store(self, batch: list[tuple[dict[str, Any], Future[int | None]]]) -> None:
        try:
            with self.app.app_context():
                ids = self._insert([values for values, _ in batch])
        except Exception as exc:
            log.exception("webhook batch of %d could not be stored", len(batch))
            for _, fut in batch:
                fut.set_exception(exc)
            return
        # Answer as soon as the rows are committed; the enqueue follows (the sweeper covers its loss).
        for (_, fut), event_id in zip(batch, ids, strict=True):
            fut.set_result(event_id)
        new_ids = [i for i in ids if i is not None]
        if new_ids:
            with self.app.app_context():
                _enqueue_ingest(new_ids)

    def wait_idle(self) -> None:
        """Block until every submitted event is stored and its ingest job enqueued (tests, shutdown)."""
        self._queue.join()

    def _insert(self, rows: list[dict[str, Any]]) -> list[int | None]:
        from ..extensions import db

        engine = db.engine
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # One statement for the batch; duplicates (redeliveries, or the same event twice in one
        # batch) are skipped by the unique (provider, dedupe_key) constraint.
        stmt = (
            insert(WebhookEvent)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["provider", "dedupe_key"])
            .returning(WebhookEvent.id, WebhookEvent.provider, WebhookEvent.dedupe_key)
        )
        with engine.begin() as conn:
            returned = conn.execute(stmt).all()
        by_key = {(r.provider, r.dedupe_key): r.id for r in returned}
        out: list[int | None] = []
        for row in rows:
            # The first row of a key gets the id; a second copy in the same batch is a duplicate.
            out.append(by_key.pop((row["provider"], row["dedupe_key"]), None))
        return out


INGEST_CHUNK = 50  # events per ingest job: RQ's per-job cost (~40 Redis calls) is paid once per chunk


def _enqueue_ingest(event_ids: list[int]) -> None:
    from ..jobs import WEBHOOKS, enqueue_many, tasks

    chunks = [event_ids[i : i + INGEST_CHUNK] for i in range(0, len(event_ids), INGEST_CHUNK)]
    enqueue_many(tasks.ingest_events, [((c,), f"ingest-{c[0]}-{len(c)}") for c in chunks], queue=WEBHOOKS)


def committer(app: Flask) -> GroupCommitter:
    gc = app.extensions.get("wa_group_commit")
    if gc is None:
        gc = app.extensions.setdefault("wa_group_commit", GroupCommitter(app))
    return gc
