"""Tenant isolation of the inbox pages and of the live event stream."""

from __future__ import annotations

import json

import pytest

from tests.conftest import csrf_token
from wa_portal.services import realtime


@pytest.fixture
def outsider(make_clinic, make_user):
    return make_user(make_clinic("northside"), "admin")


def test_other_clinic_gets_404_on_every_inbox_action(client, login, conv, outsider):
    login(outsider)
    token = csrf_token(client, "/inbox")
    h = {"HX-Request": "true"}
    for part in ("", "?fragment=thread", "?fragment=header", "?fragment=composer"):
        assert client.get(f"/inbox/c/{conv.id}{part}").status_code == 404
    for url, data in [
        (f"/inbox/c/{conv.id}/actions", {"action": "assign"}),
        (f"/inbox/c/{conv.id}/messages", {"body": "hi", "mode": "note"}),
        (f"/inbox/c/{conv.id}/typing", {}),
        (f"/inbox/contacts/{conv.contact_id}/notes", {"notes": "x"}),
    ]:
        assert client.post(url, data={"csrf_token": token, **data}, headers=h).status_code == 404, url
    for q in ("", "?view=all", "?view=all&q=Maria", "?view=all&q=appointment"):
        assert 'conv-name">Maria' not in client.get("/inbox" + q).get_data(as_text=True)


def read_until(resp, marker: str, limit: int = 50) -> str:
    seen = ""
    for i, chunk in enumerate(resp.response):
        seen += chunk.decode() if isinstance(chunk, bytes) else chunk
        if marker in seen or i > limit:
            break
    return seen


def test_event_stream_carries_only_the_own_clinics_events(app, client, login, staff, outsider):
    app.config["SSE_MAX_SECONDS"] = 5
    try:
        login(staff)
        resp = client.get("/events")
        assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
        assert "retry:" in read_until(resp, "connected")
        realtime.publish(outsider.clinic_id, "message", conversation_id=999, message_id=1, inbound=True)
        realtime.publish(staff.clinic_id, "message", conversation_id=7, message_id=2, inbound=True)
        seen = read_until(resp, '"message_id": 2')
        resp.close()
    finally:
        app.config.pop("SSE_MAX_SECONDS", None)
    events = [json.loads(line[6:]) for line in seen.splitlines() if line.startswith("data: ")]
    assert events == [{"event": "message", "conversation_id": 7, "message_id": 2, "inbound": True}]


def test_event_stream_ends_after_a_bounded_time_with_heartbeats(app, client, login, staff):
    app.config.update(SSE_MAX_SECONDS=1.5, SSE_HEARTBEAT_SECONDS=0.5)
    try:
        login(staff)
        body = client.get("/events").get_data(as_text=True)  # returns: the stream ended on its own
    finally:
        app.config.pop("SSE_MAX_SECONDS", None)
        app.config.pop("SSE_HEARTBEAT_SECONDS", None)
    assert body.startswith("retry: 2000")
    assert body.count(": ping") >= 1


def test_event_stream_needs_a_login(client):
    assert client.get("/events").status_code == 302


def test_open_streams_per_process_are_capped_and_a_tab_over_the_cap_polls(app, client, login, staff):
    from wa_portal.web.events import SLOTS

    before = app.config["SSE_MAX_STREAMS"]
    app.config.update(SSE_MAX_SECONDS=5, SSE_MAX_STREAMS=2)
    try:
        login(staff)
        first, second = client.get("/events"), client.get("/events")
        assert (first.status_code, second.status_code) == (200, 200)
        third = client.get("/events")
        assert third.status_code == 503 and third.headers["Retry-After"] == "30"
        assert "refreshes every few seconds" in third.get_data(as_text=True)
        first.close()  # a tab closed (or navigated away): its thread and slot are free again
        fourth = client.get("/events")
        assert fourth.status_code == 200
        assert "retry:" in read_until(fourth, "connected")
        second.close()
        fourth.close()
        assert SLOTS.open == 0
    finally:
        app.config.update(SSE_MAX_STREAMS=before)
        app.config.pop("SSE_MAX_SECONDS", None)
