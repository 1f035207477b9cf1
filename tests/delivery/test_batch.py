"""Batch delivery (``tasks.deliver_messages``): one claim, one commit of attempt rows, per-message rules."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update


def _patients(db, clinic, meta_conn, n, *, window_open=True, prefix="+3462"):
    """n contacts, each with a conversation on the clinic's WhatsApp number (window open or closed)."""
    from wa_portal.models import Contact, Conversation, utcnow

    contacts = [Contact(clinic_id=clinic.id, phone=f"{prefix}{i:07d}", name=f"P{i}") for i in range(n)]
    db.session.add_all(contacts)
    db.session.flush()
    db.session.add_all(
        Conversation(
            clinic_id=clinic.id,
            connection_id=meta_conn.id,
            contact_id=c.id,
            last_inbound_at=utcnow() - timedelta(minutes=5) if window_open else None,
        )
        for c in contacts
    )
    db.session.commit()
    return contacts


def _queue(contacts, purpose="broadcast", **kw):
    from wa_portal.services import messaging

    return [
        messaging.queue_notification(
            clinic_id=c.clinic_id,
            contact_id=c.id,
            purpose=purpose,
            body=f"Hello {c.name}",
            enqueue=False,
            **kw,
        ).id
        for c in contacts
    ]


def _calls_per_message(graph) -> Counter[str]:
    return Counter(
        (r.get("json") or {}).get("biz_opaque_callback_data")
        for r in graph.requests("messages")
        if r.get("status") == 200
    )


def _attempts(db, message_id):
    from wa_portal.models import DeliveryAttempt

    return list(
        db.session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.message_id == message_id)
            .order_by(DeliveryAttempt.id)
        )
    )


def test_batch_sends_each_message_once_and_a_rerun_sends_nothing(db, clinic, meta_conn, graph, fast_delivery):
    from wa_portal.models import Message
    from wa_portal.services import delivery

    ids = _queue(_patients(db, clinic, meta_conn, 12))
    delivery.deliver_batch(ids)
    db.session.expire_all()
    msgs = list(db.session.scalars(select(Message).where(Message.id.in_(ids))))
    assert {(m.status, m.channel) for m in msgs} == {("sent", "whatsapp")}
    for m in msgs:
        [attempt] = _attempts(db, m.id)
        assert attempt.outcome == "sent"
        assert attempt.provider_message_id == m.provider_message_id is not None
        assert attempt.finished_at >= attempt.started_at
        assert m.attempts == 1
    assert _calls_per_message(graph) == Counter({f"msg-{i}": 1 for i in ids})

    delivery.deliver_batch(ids)  # the same job again (a re-enqueue, a second worker): nothing is resent
    assert _calls_per_message(graph) == Counter({f"msg-{i}": 1 for i in ids})


def test_enqueue_deliveries_hands_out_batch_jobs(db, clinic, meta_conn, graph, drain, fast_delivery):
    from wa_portal.jobs import DELIVERY, get_queue
    from wa_portal.models import Message
    from wa_portal.services import messaging

    ids = _queue(_patients(db, clinic, meta_conn, 7))
    assert get_queue(DELIVERY).count == 0  # enqueue=False: nothing handed out per message
    assert messaging.enqueue_deliveries(ids, batch_size=3)
    jobs = get_queue(DELIVERY).get_jobs()
    assert [j.func_name for j in jobs] == ["wa_portal.jobs.tasks.deliver_messages"] * 3
    assert [j.args[0] for j in jobs] == [ids[0:3], ids[3:6], ids[6:7]]
    drain()
    db.session.expire_all()
    assert set(db.session.scalars(select(Message.status).where(Message.id.in_(ids)))) == {"sent"}
    assert _calls_per_message(graph) == Counter({f"msg-{i}": 1 for i in ids})


def test_mixed_batch_keeps_consent_window_and_claims(
    db, clinic, meta_conn, graph, fast_delivery, generic_template
):
    """One batch: open window, closed window, opted out, already sent, leased by another worker."""
    from wa_portal.models import Consent, Message, MessageStatus
    from wa_portal.services import delivery

    open_ids = _queue(_patients(db, clinic, meta_conn, 3, prefix="+3463"))
    [closed] = _queue(_patients(db, clinic, meta_conn, 1, window_open=False, prefix="+3464"))
    opted = _patients(db, clinic, meta_conn, 1, prefix="+3465")[0]
    opted.consent = Consent.OPTED_OUT
    db.session.commit()
    [refused] = _queue([opted])
    already, leased = _queue(_patients(db, clinic, meta_conn, 2, prefix="+3466"))
    db.session.execute(update(Message).where(Message.id == already).values(status=MessageStatus.SENT))
    db.session.execute(update(Message).where(Message.id == leased).values(status=MessageStatus.SENDING))
    db.session.commit()

    delivery.deliver_batch([*open_ids, closed, refused, already, leased])
    db.session.expire_all()
    by_id = {m.id: m for m in db.session.scalars(select(Message))}
    assert all(by_id[i].status == "sent" and by_id[i].kind == "text" for i in open_ids)
    assert (by_id[closed].status, by_id[closed].kind) == ("sent", "template")  # window closed → template
    assert (by_id[refused].status, by_id[refused].error_detail) == ("failed", "Patient opted out")
    assert by_id[already].status == "sent" and _attempts(db, already) == []
    assert by_id[leased].status == "sending" and _attempts(db, leased) == []  # another worker holds it
    calls = _calls_per_message(graph)
    assert calls == Counter({f"msg-{i}": 1 for i in [*open_ids, closed]})
    [tpl_call] = [
        r for r in graph.requests("messages") if r["json"]["biz_opaque_callback_data"] == f"msg-{closed}"
    ]
    assert tpl_call["json"]["type"] == "template"


def test_circuit_opening_mid_batch_stops_whatsapp_calls_and_falls_back(
    app, db, clinic, meta_conn, sms_conn, graph, twilio, fast_delivery
):
    from wa_portal.models import Message
    from wa_portal.services import delivery

    emu, _ = twilio
    app.config["CIRCUIT_COOLDOWN_SECONDS"] = 60  # stays open for the whole batch (no probe mid-test)
    ids = _queue(_patients(db, clinic, meta_conn, 8))
    graph.down()
    delivery.deliver_batch(ids)
    db.session.expire_all()

    # Three failures open the circuit (threshold 3); the rest of the batch never calls Meta.
    assert len(graph.requests("messages")) == 3
    first, rest = ids[:3], ids[3:]
    for mid in first:  # retried later on WhatsApp, as any transient failure
        msg = db.session.get(Message, mid)
        assert msg.status == "queued" and msg.next_attempt_at is not None
        assert [a.outcome for a in _attempts(db, mid)] == ["retry"]
    for mid in rest:  # skipped to SMS; the attempt row written for WhatsApp was withdrawn, not left in flight
        msg = db.session.get(Message, mid)
        assert (msg.status, msg.channel) == ("sent", "sms")
        assert [(a.channel, a.outcome) for a in _attempts(db, mid)] == [
            ("whatsapp", "skipped"),
            ("sms", "sent"),
        ]
    assert len(emu.sent) == len(rest)


def test_successes_of_a_batch_close_the_breaker(db, clinic, meta_conn, graph, fast_delivery):
    from wa_portal.services import delivery

    breaker = delivery.breaker_for(meta_conn.id)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state().failures == 2
    delivery.deliver_batch(_queue(_patients(db, clinic, meta_conn, 4)))
    state = breaker.state()
    assert (state.state, state.failures) == ("closed", 0)


def test_message_taken_over_after_the_lease_is_not_sent_by_the_old_batch(
    app, db, clinic, meta_conn, graph, fast_delivery
):
    """A batch that outlived its lease (slow provider) checks its claim before each send."""
    from wa_portal.models import Message, utcnow
    from wa_portal.services import delivery

    kept, lost = _queue(_patients(db, clinic, meta_conn, 2))
    delivery._cache = delivery._BatchCache()
    db.session().expire_on_commit = False  # as in deliver_batch: objects are not reloaded after commits
    try:
        prepared, slow = delivery._claim_and_prepare([kept, lost], utcnow())
        assert [p.msg.id for p in prepared] == [kept, lost] and slow == []
        # Meanwhile the sweeper handed `lost` to another worker, whose claim rewrote updated_at
        # (another process: its own connection; this session's objects do not see the change).
        with db.engine.begin() as other:
            other.execute(
                update(Message.__table__)
                .where(Message.__table__.c.id == lost)
                .values(updated_at=utcnow() + timedelta(seconds=1))
            )
        app.config["DELIVERY_LEASE_SECONDS"] = 0  # every prepared message now re-checks its claim
        for item in prepared:
            delivery._send_prepared(item)
    finally:
        delivery._cache = None
        db.session().expire_on_commit = True
        app.config.pop("DELIVERY_LEASE_SECONDS", None)
    assert _calls_per_message(graph) == Counter({f"msg-{kept}": 1})
    db.session.expire_all()
    assert db.session.get(Message, kept).status == "sent"
    assert db.session.get(Message, lost).status == "sending"  # the other worker's to finish


def test_database_error_after_a_send_stops_the_batch(
    db, clinic, meta_conn, graph, fast_delivery, monkeypatch
):
    """If "sent" cannot be recorded, the batch stops: the rest are never sent twice by this worker."""
    from sqlalchemy.exc import OperationalError

    from wa_portal.models import Message
    from wa_portal.services import delivery

    ids = _queue(_patients(db, clinic, meta_conn, 5))
    real = delivery._mark_sent
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OperationalError("UPDATE message", {}, Exception("server closed the connection"))
        return real(*args, **kwargs)

    monkeypatch.setattr(delivery, "_mark_sent", flaky)
    delivery.deliver_batch(ids)
    db.session.expire_all()
    statuses = [db.session.get(Message, i).status for i in ids]
    assert statuses == ["sent", "sending", "sending", "sending", "sending"]
    assert len(graph.requests("messages")) == 2  # the one that could not be recorded, and no more
