"""Group commit for raw webhook events: many concurrent requests, one INSERT and one COMMIT.

A webhook may be acknowledged only after its raw event is committed. Committing each
request on its own costs a WAL flush per webhook (~1.7 ms here) and caps a 2-core box at
about 400 webhooks/s. Instead, every request thread of a process hands its row to one
writer thread and waits; the writer takes *everything that queued up while the previous
commit was running* (natural batching: no artificial delay at low load, large batches at
high load), inserts it in one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING``,
commits once, and wakes each waiting request with its event id (or None: a duplicate).
Only then do the requests answer 200.

The ingest jobs are enqueued by a second thread, so the writer starts the next commit at once
instead of waiting on Redis: it takes every committed id that piled up meanwhile and enqueues
them in chunks of INGEST_CHUNK in one Redis pipeline (under load: few, full jobs). If Redis is
down the rows wait for the sweeper. On PostgreSQL the batch is one ``INSERT … SELECT FROM
unnest(arrays)``: a fixed statement with nine array parameters, so neither SQLAlchemy nor the
server compiles anything per batch size.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

from flask import Flask
from sqlalchemy.dialects import sqlite

from ..models import WebhookEvent

log = logging.getLogger(__name__)

MAX_BATCH = 500
SUBMIT_TIMEOUT = 10.0  # seconds a request waits for its commit before answering 503
# The writer keeps one database connection while webhooks flow: a pool checkout per batch costs a
# pre-ping round trip. After this long unused it goes back to the pool (whose pre-ping then
# catches a connection the server dropped meanwhile).
CONN_IDLE_SECONDS = 5.0
# The enqueuer waits this long for more committed ids before enqueuing: fuller ingest jobs (RQ's
# per-job cost is paid once per chunk, and the ingest job works per chunk). Not on the ack path.
ENQUEUE_LINGER = 0.02
# Under load the writer waits this long for more rows before it commits (measured here: about a
# quarter less CPU per webhook at ~900/s). Never at low load: a lone webhook is committed at once.
COMMIT_LINGER = 0.002


class GroupCommitter:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self._queue: queue.Queue[tuple[dict[str, Any], Future[int | None]]] = queue.Queue()
        self._ingest: queue.Queue[list[int]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._enqueuer: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._conn: Any = None  # the writer thread's own connection (PostgreSQL)
        self._conn_used = 0.0

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
                self._ingest = queue.Queue()
                self._conn = None  # never the parent's
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="webhook-group-commit", daemon=True)
                self._enqueuer = threading.Thread(
                    target=self._run_enqueue, name="webhook-ingest-enqueue", daemon=True
                )
                self._thread.start()
                self._enqueuer.start()

    def _run(self) -> None:
        q = self._queue
        last = 1
        while True:
            batch = [q.get()]
            # Under load (the last batch had company) wait a moment for more: a commit per webhook is
            # what group commit exists to avoid. A lone webhook at low load is written at once.
            deadline = time.monotonic() + (COMMIT_LINGER if last > 1 else 0.0)
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(q.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            last = len(batch)
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
        new_ids = [i for i in ids if i is not None]
        if new_ids:
            self._ingest.put(new_ids)  # before task_done, so wait_idle sees it
        for (_, fut), event_id in zip(batch, ids, strict=True):
            fut.set_result(event_id)

    def _run_enqueue(self) -> None:
        q = self._ingest
        while True:
            parts = [q.get()]
            pending = len(parts[0])
            deadline = time.monotonic() + ENQUEUE_LINGER
            while pending < INGEST_CHUNK:
                try:
                    parts.append(q.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
                pending += len(parts[-1])
            while True:  # and whatever else is already there
                try:
                    parts.append(q.get_nowait())
                except queue.Empty:
                    break
            try:
                with self.app.app_context():
                    _enqueue_ingest([i for part in parts for i in part])
            except Exception:  # never lose the thread; the rows are committed and the sweeper re-enqueues
                log.exception("ingest jobs for %d event batch(es) could not be enqueued", len(parts))
            finally:
                for _ in parts:
                    q.task_done()

    def wait_idle(self) -> None:
        """Block until every submitted event is stored and its ingest job enqueued (tests, shutdown)."""
        self._queue.join()
        self._ingest.join()

    def _insert(self, rows: list[dict[str, Any]]) -> list[int | None]:
        from ..extensions import db

        engine = db.engine
        if engine.dialect.name == "postgresql":
            conn = self._connection(engine)
            try:
                with conn.begin():
                    returned = conn.exec_driver_sql(PG_INSERT, _pg_columns(rows)).all()
            except Exception:
                self._release_connection()  # a broken connection is not kept; the next batch checks out anew
                raise
            self._conn_used = time.monotonic()
            return _ids_in_order(rows, returned)
        insert = sqlite.insert  # the embedded default
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
        return _ids_in_order(rows, returned)

    def _connection(self, engine: Any) -> Any:
        if self._conn is not None and (
            time.monotonic() - self._conn_used > CONN_IDLE_SECONDS or self._conn.engine is not engine
        ):
            self._release_connection()
        if self._conn is None:
            self._conn = engine.connect()
        return self._conn

    def _release_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: the pool discards it
                log.debug("webhook writer connection could not be closed", exc_info=True)


def _ids_in_order(rows: list[dict[str, Any]], returned: Any) -> list[int | None]:
    by_key = {(r[1], r[2]): r[0] for r in returned}
    # The first row of a key gets the id; a second copy in the same batch is a duplicate.
    return [by_key.pop((row["provider"], row["dedupe_key"]), None) for row in rows]


# Duplicates, also two copies within one batch, are skipped by the unique (provider, dedupe_key).
PG_INSERT = """
INSERT INTO webhook_event
    (clinic_id, connection_id, provider, dedupe_key, body, meta, state, attempts, received_at)
SELECT c, n, p, k, b, m::json, s, a, r
FROM unnest(%s::int[], %s::int[], %s::text[], %s::text[], %s::bytea[], %s::text[], %s::text[],
            %s::int[], %s::timestamptz[]) AS t(c, n, p, k, b, m, s, a, r)
ON CONFLICT (provider, dedupe_key) DO NOTHING
RETURNING id, provider, dedupe_key
"""


def _pg_columns(rows: list[dict[str, Any]]) -> tuple[list[Any], ...]:
    return (
        [r["clinic_id"] for r in rows],
        [r["connection_id"] for r in rows],
        [r["provider"] for r in rows],
        [r["dedupe_key"] for r in rows],
        [r["body"] for r in rows],
        [json.dumps(r["meta"]) for r in rows],
        [str(r["state"]) for r in rows],
        [r["attempts"] for r in rows],
        [r["received_at"] for r in rows],
    )


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
