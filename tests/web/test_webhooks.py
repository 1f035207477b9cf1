"""The shared webhook path on the sandbox provider: verify, store, dedupe, enqueue, ingest."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.helpers import patient_message, post_signed, sandbox_ids, status_body
from wa_portal.models import Conversation, Message, MessageStatus, WebhookEvent, WebhookState


def count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_patient_message_reaches_the_inbox(client, db, sandbox_conn, run_worker):
    body, msg_id = patient_message(sandbox_conn, "Hello, I'd like an appointment")
    resp = post_signed(client, body, sandbox_ids(sandbox_conn)[2])
    assert resp.status_code == 200
    assert count(db, WebhookEvent) == 1
    run_worker()
    msg = db.session.scalar(select(Message))
    assert msg.body == "Hello, I'd like an appointment"
    assert msg.provider_message_id == msg_id
    conv = db.session.get(Conversation, msg.conversation_id)
    assert conv.contact.phone == "+34612345678"
    assert conv.contact.name == "Maria Lopez"
    assert conv.status == "awaiting_human"
    assert conv.unread_count == 1
    assert db.session.get(WebhookEvent, 1).state == WebhookState.PROCESSED


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        (None, 401),
        ("sha256=" + "0" * 64, 401),
        ("md5=abc", 401),
    ],
)
def test_bad_signature_is_refused_and_nothing_stored(client, db, sandbox_conn, signature, expected):
    body, _ = patient_message(sandbox_conn, "hi")
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    resp = client.post("/webhooks/sandbox", data=body, headers=headers)
    assert resp.status_code == expected
    assert count(db, WebhookEvent) == 0


def test_tampered_body_is_refused(client, db, sandbox_conn):
    body, _ = patient_message(sandbox_conn, "hi")
    secret = sandbox_ids(sandbox_conn)[2]
    from wa_portal.providers.sandbox import sign

    tampered = body.replace(b"hi", b"ho")
    resp = client.post(
        "/webhooks/sandbox",
        data=tampered,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body)},
    )
    assert resp.status_code == 401
    assert count(db, WebhookEvent) == 0


def test_unknown_connection_is_404_and_nothing_stored(client, db, sandbox_conn):
    body, _ = patient_message(sandbox_conn, "hi")
    body = body.replace(sandbox_conn.config["phone_number_id"].encode(), b"sbx-unknown")
    resp = post_signed(client, body, sandbox_ids(sandbox_conn)[2])
    assert resp.status_code == 404
    assert count(db, WebhookEvent) == 0


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'{"entry": "nope"}'])
def test_unreadable_body_is_400(client, db, sandbox_conn, body):
    resp = post_signed(client, body, sandbox_ids(sandbox_conn)[2])
    assert resp.status_code == 400
    assert count(db, WebhookEvent) == 0


def test_same_event_twice_gives_one_message(client, db, sandbox_conn, run_worker):
    body, _ = patient_message(sandbox_conn, "only once please")
    secret = sandbox_ids(sandbox_conn)[2]
    assert post_signed(client, body, secret).status_code == 200
    assert post_signed(client, body, secret).status_code == 200
    run_worker()
    assert count(db, WebhookEvent) == 1
    assert count(db, Message) == 1


def test_ingest_twice_is_idempotent(app, db, sandbox_conn, client):
    from wa_portal.services.ingest import process_event

    body, _ = patient_message(sandbox_conn, "hello")
    post_signed(client, body, sandbox_ids(sandbox_conn)[2])
    process_event(1)
    db.session.get(WebhookEvent, 1).state = WebhookState.RECEIVED  # as if the worker died before marking it
    db.session.commit()
    process_event(1)
    assert count(db, Message) == 1
    assert db.session.scalar(select(Conversation)).unread_count == 1


def test_log_lines_carry_no_phone_number(client, db, sandbox_conn, caplog):
    body, _ = patient_message(sandbox_conn, "hi", phone="+34612345678")
    client.post("/webhooks/sandbox", data=body, headers={"Content-Type": "application/json"})
    assert "612345678" not in caplog.text
    assert "refused" in caplog.text


def test_statuses_only_move_forward(client, db, sandbox_conn, run_worker, staff):
    from wa_portal.models import AuthorType, Direction

    body, _ = patient_message(sandbox_conn, "hello")
    secret = sandbox_ids(sandbox_conn)[2]
    post_signed(client, body, secret)
    run_worker()
    conv = db.session.scalar(select(Conversation))
    out = Message(
        clinic_id=conv.clinic_id,
        conversation_id=conv.id,
        connection_id=conv.connection_id,
        direction=Direction.OUT,
        body="see you",
        author_type=AuthorType.STAFF,
        status=MessageStatus.SENT,
        provider_message_id="wamid.OUT1",
    )
    db.session.add(out)
    db.session.commit()
    for status in ("read", "delivered", "sent"):
        assert (
            post_signed(client, status_body(sandbox_conn, ["wamid.OUT1"], status), secret).status_code == 200
        )
    run_worker()
    db.session.refresh(out)
    assert out.status == MessageStatus.READ
    assert out.read_at is not None


def test_redis_down_webhook_is_stored_and_sweeper_delivers_it(
    _migrated_app, database_url, private_redis, db, sandbox_conn
):
    """Redis stopped while a webhook arrives → 200 and stored; after Redis is back the sweeper delivers it."""
    from datetime import timedelta

    from tests.conftest import app_config
    from wa_portal import create_app
    from wa_portal.jobs import make_worker
    from wa_portal.services.sweeper import sweep

    url = private_redis()
    outage_app = create_app(app_config(database_url, url))
    private_redis.stop()  # Redis goes away
    body, _ = patient_message(sandbox_conn, "Are you there?")
    with outage_app.app_context():
        resp = post_signed(outage_app.test_client(), body, sandbox_ids(sandbox_conn)[2])
        assert resp.status_code == 200
        assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 1
        assert db.session.scalar(select(func.count()).select_from(Message)) == 0

    private_redis()  # Redis is back, empty: the job it had is gone
    with outage_app.app_context():
        result = sweep(older_than=timedelta(0))
        assert result.webhook_events == 1
        make_worker(outage_app).work(burst=True, logging_level="WARNING")
        db.session.remove()
        db.engine.dispose()
    db.session.expire_all()
    msg = db.session.scalar(select(Message))
    assert msg is not None and msg.body == "Are you there?"


def test_repeated_refusals_are_rate_limited_but_valid_webhooks_are_not(app, client, db, sandbox_conn):
    from wa_portal.extensions import limiter

    app.config["WEBHOOK_REFUSAL_LIMIT"] = "3 per minute"
    limiter.reset()
    try:
        body, _ = patient_message(sandbox_conn, "probe")
        secret = sandbox_ids(sandbox_conn)[2]
        unsigned = {"Content-Type": "application/json"}
        codes = [client.post("/webhooks/sandbox", data=body, headers=unsigned).status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        assert client.post("/webhooks/sandbox", data=body, headers=unsigned).status_code == 429
        limiter.reset()
        # valid deliveries never count: many in a row all succeed
        for i in range(6):
            good, _ = patient_message(sandbox_conn, f"real message {i}")
            assert post_signed(client, good, secret).status_code == 200
    finally:
        app.config["WEBHOOK_REFUSAL_LIMIT"] = "120 per minute"
        limiter.reset()


def test_login_attempts_are_rate_limited(app, client, staff):
    from tests.conftest import csrf_token
    from wa_portal.extensions import limiter

    app.config["LOGIN_RATE_LIMIT"] = "2 per minute"
    limiter.reset()
    try:
        token = csrf_token(client)
        codes = [
            client.post(
                "/login", data={"email": staff.email, "password": "wrong", "csrf_token": token}
            ).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
    finally:
        app.config["LOGIN_RATE_LIMIT"] = "10000 per minute"
        limiter.reset()
