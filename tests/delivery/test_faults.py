"""Fault tests with the real RQ worker and emulators: flaky provider, provider down, Redis down, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from tests.conftest import ROOT, TEST_KEYS, TEST_SECRET_KEY, app_config


def _contacts(db, clinic, n):
    from wa_portal.models import Contact

    rows = [Contact(clinic_id=clinic.id, phone=f"+3461{i:07d}", name=f"P{i}") for i in range(n)]
    db.session.add_all(rows)
    db.session.commit()
    return rows


def _accepted_per_message(graph) -> Counter[str]:
    """How many times the emulator accepted (200) a send for each of our messages (client_ref msg-<id>)."""
    return Counter(
        (r.get("json") or {}).get("biz_opaque_callback_data")
        for r in graph.requests("messages")
        if r.get("status") == 200
    )


def _notify_all(contacts, purpose="broadcast", **kw):
    """Queue one notification per contact (Contact rows or (clinic_id, id, name) tuples)."""
    from wa_portal.services import messaging

    refs = [c if isinstance(c, tuple) else (c.clinic_id, c.id, c.name) for c in contacts]
    return [
        messaging.queue_notification(
            clinic_id=clinic_id, contact_id=cid, purpose=purpose, body=f"Hello {name}", **kw
        ).id
        for clinic_id, cid, name in refs
    ]


def _drain_until(db, drain, ids, *, timeout=60.0):
    from wa_portal.models import Message

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drain()
        db.session.expire_all()
        left = db.session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.id.in_(ids), Message.status.in_(["queued", "sending"]))
        )
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"{left} message(s) still pending")


def test_thirty_percent_500s_every_message_delivered_once(
    db, clinic, meta_conn, graph, drain, fast_delivery, generic_template
):
    from wa_portal.models import Message

    contacts = _contacts(db, clinic, 40)
    graph.fail_rate(0.3, status=500, seed=7, route="messages")
    ids = _notify_all(contacts)
    _drain_until(db, drain, ids)
    statuses = Counter(db.session.scalars(select(Message.status).where(Message.id.in_(ids))))
    assert statuses == {"sent": 40}
    accepted = _accepted_per_message(graph)
    assert all(accepted[f"msg-{i}"] == 1 for i in ids)  # delivered, and exactly once
    failed_calls = sum(1 for r in graph.requests("messages") if r.get("status") == 500)
    assert failed_calls > 0


def test_provider_down_opens_circuit_falls_back_to_sms_and_closes_after_recovery(
    db, clinic, meta_conn, sms_conn, graph, twilio, drain, fast_delivery, generic_template
):
    from wa_portal.models import Message
    from wa_portal.services import delivery

    emu, _ = twilio
    contacts = _contacts(db, clinic, 6)
    graph.down()
    ids = _notify_all(contacts, purpose="broadcast")
    _drain_until(db, drain, ids)
    rows = list(db.session.scalars(select(Message).where(Message.id.in_(ids))))
    assert {(m.status, m.channel) for m in rows} == {("sent", "sms")}
    assert len(emu.sent) == 6
    assert delivery.breaker_for(meta_conn.id).state().state in ("open", "half_open")
    # Fewer WhatsApp calls than messages x attempts: once open, the circuit stops calling Meta.
    assert len(graph.requests("messages")) < 6 * delivery.MAX_ATTEMPTS

    graph.up()
    time.sleep(0.4)  # the (test) cooldown of 0.3 s passes: the next message is the probe
    [probe] = _notify_all(_contacts_more(db, clinic), purpose="broadcast")
    _drain_until(db, drain, [probe])
    msg = db.session.get(Message, probe)
    assert (msg.status, msg.channel) == ("sent", "whatsapp")
    assert delivery.breaker_for(meta_conn.id).state().state == "closed"


def _contacts_more(db, clinic):
    from wa_portal.models import Contact

    c = Contact(clinic_id=clinic.id, phone="+34699000111", name="Late")
    db.session.add(c)
    db.session.commit()
    return [c]


def test_redis_down_during_burst_of_500_all_delivered_exactly_once(
    _migrated_app, database_url, private_redis, db, clinic, meta_conn, graph, generic_template
):
    from wa_portal import create_app
    from wa_portal.jobs import make_worker
    from wa_portal.models import Message
    from wa_portal.services.sweeper import sweep

    # Plain values: touching the main app's rows inside the other app's context would borrow a
    # connection from the other app's engine (Flask-SQLAlchemy binds by current_app).
    contacts = [(c.clinic_id, c.id, c.name) for c in _contacts(db, clinic, 500)]
    url = private_redis()
    outage_app = create_app(app_config(database_url, url, DELIVERY_RATE_LIMITS=False))
    with outage_app.app_context():
        first = _notify_all(contacts[:250])  # enqueued in Redis …
        private_redis.stop()  # … which then dies (no persistence): those jobs are gone too
        second = _notify_all(contacts[250:])  # enqueue fails: the rows stay queued
        ids = first + second
        assert graph.requests("messages") == []

        private_redis()  # back, empty
        result = sweep(older_than=timedelta(0))
        assert result.messages == 500 and not result.enqueue_failed
        make_worker(outage_app).work(burst=True, logging_level="WARNING")
        from wa_portal.extensions import db as odb

        odb.session.remove()
        odb.engine.dispose()
    db.session.expire_all()
    statuses = Counter(db.session.scalars(select(Message.status).where(Message.id.in_(ids))))
    assert statuses == {"sent": 500}
    accepted = _accepted_per_message(graph)
    assert [accepted[f"msg-{i}"] for i in ids] == [1] * 500  # each exactly once


@pytest.mark.slow
@pytest.mark.parametrize("window", ["closed", "open"])
def test_worker_killed_mid_batch_loses_nothing_and_duplicates_are_bounded(
    app, db, clinic, meta_conn, graph, drain, redis_url, capsys, generic_template, window
):
    """SIGKILL a real worker process mid-batch; the sweeper + a new worker finish the job.

    Window closed: each message goes one at a time (template switch). Window open: the batch fast
    path, whose attempt rows for the whole batch are committed before the first send.
    """
    from wa_portal.jobs import DELIVERY, enqueue_many, tasks
    from wa_portal.models import AttemptOutcome, DeliveryAttempt, Message
    from wa_portal.services.sweeper import sweep

    contacts = _contacts(db, clinic, 120)
    graph.delay(0.2)
    from wa_portal.services import messaging

    # Record the intents without the per-message job, then hand them out in batches like a broadcast.
    ids = []
    for c in contacts:
        m = messaging.queue_notification(clinic_id=clinic.id, contact_id=c.id, purpose="broadcast", body="Hi")
        ids.append(m.id)
    if window == "open":
        from wa_portal.models import Conversation, utcnow

        db.session.execute(
            update(Conversation)
            .where(Conversation.clinic_id == clinic.id)
            .values(last_inbound_at=utcnow() - timedelta(minutes=5))
        )
        db.session.commit()
    from wa_portal.jobs import get_queue

    get_queue(DELIVERY).empty()
    enqueue_many(
        tasks.deliver_messages,
        [((ids[i : i + 30],), f"batch-{i}") for i in range(0, len(ids), 30)],
        queue=DELIVERY,
    )
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": redis_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "ENCRYPTION_KEYS": TEST_KEYS,
        "WA_DELIVERY_RATE_LIMITS": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "wa", "worker", "--queues", DELIVERY, "--burst"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while len(graph.requests("messages")) < 20 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)  # the next call is now waiting on the (0.2 s) provider: kill it mid-call
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    graph.wait_idle()
    db.session.expire_all()
    sent_before = db.session.scalar(
        select(func.count()).select_from(Message).where(Message.id.in_(ids), Message.status == "sent")
    )
    assert 0 < sent_before < 120  # it really died mid-batch

    # Recovery: the RQ job died with the worker; the sweeper re-enqueues every unfinished row.
    app.config["DELIVERY_LEASE_SECONDS"] = 0
    try:
        sweep(older_than=timedelta(0))
        drain()
    finally:
        app.config.pop("DELIVERY_LEASE_SECONDS", None)
    db.session.expire_all()
    statuses = Counter(db.session.scalars(select(Message.status).where(Message.id.in_(ids))))
    assert statuses == {"sent": 120}  # nothing lost
    accepted = _accepted_per_message(graph)
    duplicates = {i: accepted[f"msg-{i}"] for i in ids if accepted[f"msg-{i}"] > 1}
    interrupted = db.session.scalar(
        select(func.count())
        .select_from(DeliveryAttempt)
        .where(DeliveryAttempt.outcome == AttemptOutcome.RETRY, DeliveryAttempt.error_code == "interrupted")
    )
    with capsys.disabled():
        print(
            f"\n[SIGKILL/{window}] {sent_before} sent before the kill, {len(duplicates)} duplicate(s) "
            f"{sorted(duplicates)}, {interrupted} interrupted attempt(s) recorded"
        )
    assert len(duplicates) <= 1  # at most one duplicate per crash (the message in flight)
    assert all(n == 2 for n in duplicates.values())
    assert len(duplicates) <= interrupted
