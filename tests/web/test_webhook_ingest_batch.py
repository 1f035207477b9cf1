"""Ingest in chunks (one transaction per chunk, bulk lookups) keeps every per-event guarantee."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from tests.helpers import patient_message, post_signed, sandbox_ids, status_body
from wa_portal.models import (
    AuthorType,
    Contact,
    Conversation,
    Direction,
    Message,
    MessageStatus,
    WebhookEvent,
    WebhookState,
)
from wa_portal.services import ingest
from wa_portal.services.webhook_store import committer


def count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def stored_ids(app, db) -> list[int]:
    committer(app).wait_idle()
    return list(db.session.scalars(select(WebhookEvent.id).order_by(WebhookEvent.id)))


@pytest.fixture
def batch_only(monkeypatch):
    """These tests prove the chunk path itself: the event-by-event fallback must not be needed."""

    def fallback(event_id: int) -> None:
        raise AssertionError(f"chunk fell back to one by one (event {event_id})")

    monkeypatch.setattr(ingest, "process_event", fallback)


def post_all(client, conn, bodies: list[bytes]) -> None:
    secret = sandbox_ids(conn)[2]
    for body in bodies:
        assert post_signed(client, body, secret).status_code == 200


def test_a_chunk_makes_one_contact_and_conversation_per_patient_and_no_duplicates(
    app, client, db, sandbox_conn, batch_only
):
    first, first_id = patient_message(sandbox_conn, "Hello", phone="+34611111111", name="Ana")
    again, _ = patient_message(sandbox_conn, "Are you open?", phone="+34611111111", name="Ana")
    other, _ = patient_message(sandbox_conn, "Hi there", phone="+34622222222", name="Luis")
    # Meta redelivers with a new envelope: another body (another event), the same message id.
    redelivered = json.loads(first)
    redelivered["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = "1"
    post_all(client, sandbox_conn, [first, again, other, json.dumps(redelivered).encode()])
    ids = stored_ids(app, db)
    assert len(ids) == 4

    ingest.process_events(ids)
    db.session.expire_all()
    assert count(db, Message) == 3
    assert count(db, Contact) == 2
    assert count(db, Conversation) == 2
    ana = db.session.scalar(select(Contact).where(Contact.phone == "+34611111111"))
    assert ana.name == "Ana"
    conv = db.session.scalar(select(Conversation).where(Conversation.contact_id == ana.id))
    assert conv.unread_count == 2
    assert conv.last_message_preview in ("Hello", "Are you open?")
    assert db.session.scalar(select(Message.body).where(Message.provider_message_id == first_id)) == "Hello"
    assert {e.state for e in db.session.scalars(select(WebhookEvent))} == {WebhookState.PROCESSED}

    # the sweeper may run the same chunk again: nothing changes
    for event in db.session.scalars(select(WebhookEvent)):
        event.state = WebhookState.RECEIVED
    db.session.commit()
    ingest.process_events(ids)
    db.session.expire_all()
    assert count(db, Message) == 3
    assert db.session.get(Conversation, conv.id).unread_count == 2


def test_a_chunk_adds_to_an_existing_conversation(app, client, db, sandbox_conn, batch_only):
    earlier, _ = patient_message(sandbox_conn, "First visit")
    post_all(client, sandbox_conn, [earlier])
    ingest.process_events(stored_ids(app, db))
    later, _ = patient_message(sandbox_conn, "Second message")
    post_all(client, sandbox_conn, [later])
    ingest.process_events(stored_ids(app, db))
    db.session.expire_all()
    assert count(db, Contact) == 1
    assert count(db, Conversation) == 1
    assert db.session.scalar(select(Conversation)).unread_count == 2
    assert count(db, Message) == 2


def test_statuses_in_one_chunk_only_move_forward(app, client, db, sandbox_conn, batch_only):
    hello, _ = patient_message(sandbox_conn, "hello")
    post_all(client, sandbox_conn, [hello])
    ingest.process_events(stored_ids(app, db))
    conv = db.session.scalar(select(Conversation))
    out = Message(
        clinic_id=conv.clinic_id,
        conversation_id=conv.id,
        connection_id=conv.connection_id,
        direction=Direction.OUT,
        body="see you",
        author_type=AuthorType.STAFF,
        status=MessageStatus.SENT,
        provider_message_id="wamid.OUTBATCH",
    )
    db.session.add(out)
    db.session.commit()
    already = set(stored_ids(app, db))
    post_all(
        client,
        sandbox_conn,
        [status_body(sandbox_conn, ["wamid.OUTBATCH"], s) for s in ("read", "delivered", "sent")],
    )
    ingest.process_events([i for i in stored_ids(app, db) if i not in already])
    db.session.expire_all()
    out = db.session.get(Message, out.id)
    assert out.status == MessageStatus.READ
    assert out.read_at is not None


def test_an_unreadable_event_fails_alone(app, client, db, sandbox_conn, batch_only):
    good, _ = patient_message(sandbox_conn, "fine")
    post_all(client, sandbox_conn, [good])
    ids = stored_ids(app, db)
    broken = db.session.get(WebhookEvent, ids[0])
    broken.body = b'{"object": "whatsapp_business_account", "entry": "nope"}'
    db.session.commit()
    good2, _ = patient_message(sandbox_conn, "also fine", phone="+34633333333")
    post_all(client, sandbox_conn, [good2])
    ingest.process_events(stored_ids(app, db))
    db.session.expire_all()
    assert db.session.get(WebhookEvent, ids[0]).state == WebhookState.FAILED
    assert [m.body for m in db.session.scalars(select(Message))] == ["also fine"]


def test_a_chunk_that_races_another_worker_is_rerun_event_by_event(
    app, client, db, sandbox_conn, monkeypatch
):
    bodies = [patient_message(sandbox_conn, f"message {i}", phone=f"+3464444444{i}")[0] for i in range(3)]
    post_all(client, sandbox_conn, bodies)
    ids = stored_ids(app, db)

    def raced(event_ids):  # another worker inserted one of our rows first: the unique key fires
        db.session.add(Contact(clinic_id=sandbox_conn.clinic_id, phone="+34644444440", name=""))
        db.session.flush()
        raise IntegrityError("insert", {}, Exception("duplicate key"))

    monkeypatch.setattr(ingest, "_process_batch", raced)
    ingest.process_events(ids)
    db.session.expire_all()
    assert sorted(m.body for m in db.session.scalars(select(Message))) == [f"message {i}" for i in range(3)]
    assert {e.state for e in db.session.scalars(select(WebhookEvent))} == {WebhookState.PROCESSED}


def test_the_group_commit_stores_a_key_once_even_twice_in_one_batch(app, db, sandbox_conn):
    from wa_portal.models import utcnow

    row = {
        "clinic_id": sandbox_conn.clinic_id,
        "connection_id": sandbox_conn.id,
        "provider": "sandbox",
        "dedupe_key": "sha256:same",
        "body": b"{}",
        "meta": {"method": "POST", "headers": {"content-type": "application/json"}},
        "state": WebhookState.RECEIVED,
        "attempts": 0,
        "received_at": utcnow(),
    }
    other = {**row, "dedupe_key": "sha256:other"}
    first = committer(app)._insert([row, dict(row), other])
    assert first[0] is not None and first[1] is None and first[2] is not None
    assert committer(app)._insert([dict(row)]) == [None]  # a redelivery later
    stored = db.session.get(WebhookEvent, first[0])
    assert stored.meta["headers"] == {"content-type": "application/json"}
    assert stored.body == b"{}"
    assert count(db, WebhookEvent) == 2


def test_valid_webhooks_never_touch_the_rate_limiter_and_refusals_do(client, db, sandbox_conn, monkeypatch):
    from wa_portal.extensions import limiter

    calls: list[str] = []
    real_hit = limiter.limiter.hit
    for name in ("test", "get_window_stats"):
        monkeypatch.setattr(limiter.limiter, name, lambda *a, n=name, **k: calls.append(n))

    def hit(*args, **kwargs):
        calls.append("hit")
        return real_hit(*args, **kwargs)

    monkeypatch.setattr(limiter.limiter, "hit", hit)
    body, _ = patient_message(sandbox_conn, "real")
    assert post_signed(client, body, sandbox_ids(sandbox_conn)[2]).status_code == 200
    assert calls == []
    refused = client.post("/webhooks/sandbox", data=body, headers={"Content-Type": "application/json"})
    assert refused.status_code == 401
    assert calls == ["hit"]


@pytest.mark.parametrize("path", ["/webhooks/meta?hub.mode=subscribe&hub.challenge=1&hub.verify_token=no"])
def test_a_failed_meta_handshake_counts_as_a_refusal(app, client, db, path):
    from wa_portal.extensions import limiter

    app.config["WEBHOOK_REFUSAL_LIMIT"] = "2 per minute"
    limiter.reset()
    try:
        assert [client.get(path).status_code for _ in range(3)] == [403, 403, 429]
    finally:
        app.config["WEBHOOK_REFUSAL_LIMIT"] = "120 per minute"
        limiter.reset()
