"""Linking a WAHA session by QR code (web/waha_pairing.py), against the WAHA emulator over HTTP: what
tests/settings/test_waha_pairing.py leaves open.

- The key round-trips for real: the portal, served over HTTP at its PUBLIC_BASE_URL, configures the session;
  the emulator then POSTs to the webhook URL it was given, signed with the key it was given, and the portal
  accepts it; a WAHA holding any other key is refused.
- A session another clinic already receives is not taken over (WAHA is not even called).
- Staff cannot create, restart or unlink; another clinic's admin cannot restart; nothing reaches WAHA.
- The QR image only while WAHA shows one, renewed on every poll, never with a secret; a WAHA that stops
  answering is said in words with a Restart, and leaves the connection as it was.
- Restart after STOPPED keeps the same key (webhooks already in WAHA's retry queue stay valid); an unlink
  WAHA refuses says why and changes nothing.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_token
from tests.emulators.server import serve
from tests.emulators.waha import API_KEY, message_payload
from wa_portal.models import AuditEvent, Connection, WebhookEvent
from wa_portal.services import connections

SESSION = "sunrise_front"
PHONE = "+34600111222"
NEW = "/settings/connections/new/waha"


def _create(client, url: str, **overrides: str):
    form = {
        "csrf_token": csrf_token(client, NEW),
        "base_url": url,
        "api_key": API_KEY,
        "session": SESSION,
        **overrides,
    }
    return client.post(NEW, data=form)


def _the_connection(db) -> Connection:
    [conn] = db.session.scalars(select(Connection).where(Connection.provider == "waha"))
    return conn


def _count(db, model=Connection) -> int:
    query = select(func.count()).select_from(model)
    if model is Connection:
        query = query.where(Connection.provider == "waha")
    return db.session.scalar(query)


def _poll(client, conn_id: int) -> str:
    resp = client.get(f"/settings/connections/{conn_id}/waha", headers={"HX-Request": "true"})
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def _connection_audit(db) -> list[str]:
    return list(
        db.session.scalars(
            select(AuditEvent.summary).where(AuditEvent.object_type == "connection").order_by(AuditEvent.id)
        )
    )


def test_waha_signs_its_webhooks_with_the_key_the_portal_keeps(app, admin_client, db, waha, monkeypatch):
    emu, waha_url = waha
    with serve(app) as portal_url:  # the portal over HTTP, as WAHA reaches it
        monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", portal_url + "/")
        assert _create(admin_client, waha_url).status_code == 302
        conn = _the_connection(db)
        key = connections.get_secrets(conn)["webhook_hmac_key"]

        [hook] = emu.sessions[SESSION]["config"]["webhooks"]
        assert hook["url"] == portal_url + "/webhooks/waha"  # PUBLIC_BASE_URL wins over the page's host
        assert set(hook["events"]) == {
            "message",
            "message.any",
            "message.ack",
            "message.reaction",
            "session.status",
        }
        assert hook["retries"] == {"policy": "exponential", "delaySeconds": 2, "attempts": 15}

        emu.step(SESSION)
        emu.scan(SESSION, PHONE)
        assert 'data-status="WORKING"' in _poll(admin_client, conn.id)

        # WAHA posts to the URL it was given, signed with the key it was given: accepted and stored.
        assert emu.deliver(SESSION, "message", message_payload(me_phone=PHONE)) == [200]
        assert emu.deliver(SESSION, "session.status", {"status": "WORKING", "statuses": []}) == [200]
        assert _count(db, WebhookEvent) == 2

        # A WAHA holding any other key (or none) is refused: the key is really checked.
        hook["hmac"] = {"key": "f" * 64}
        assert emu.deliver(SESSION, "message", message_payload(me_phone=PHONE)) == [401]
        hook.pop("hmac")
        assert emu.deliver(SESSION, "message", message_payload(me_phone=PHONE)) == [401]
        assert _count(db, WebhookEvent) == 2

    # Neither secret ever reaches a page.
    for text in (
        admin_client.get(f"/settings/connections/{conn.id}/waha").get_data(as_text=True),
        admin_client.get("/settings/connections").get_data(as_text=True),
    ):
        assert API_KEY not in text and key not in text


def test_a_session_another_clinic_receives_is_not_taken_over(admin_client, db, waha, make_clinic):
    emu, url = waha
    other = make_clinic("moonlight")
    connections.create_connection(
        clinic=other,
        provider="waha",
        settings={"base_url": url, "api_key": API_KEY, "session": SESSION, "webhook_hmac_key": "k" * 64},
        label="Moonlight",
    )
    emu.add_session(SESSION, status="WORKING")
    emu.sessions[SESSION]["config"] = {"webhooks": [{"url": "https://moonlight.example/webhooks/waha"}]}
    emu.log.clear()

    resp = _create(admin_client, url)
    assert resp.status_code == 422
    assert "already connected in the portal" in resp.get_data(as_text=True)
    assert _count(db) == 1  # only Moonlight's
    assert emu.log.entries == []  # WAHA was not touched: Moonlight's webhooks still go to Moonlight
    assert emu.sessions[SESSION]["config"]["webhooks"][0]["url"] == "https://moonlight.example/webhooks/waha"
    assert _connection_audit(db) == []


def test_only_this_clinics_admins_change_a_session(
    client, login, db, waha, admin, staff, make_clinic, make_user
):
    emu, url = waha
    login(admin)
    _create(client, url)
    conn = _the_connection(db)
    emu.fail(SESSION)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})
    emu.log.clear()

    login(staff)
    token = csrf_token(client, "/inbox")
    resp = client.post(
        NEW,
        data={"csrf_token": token, "base_url": url, "api_key": API_KEY, "session": "staff_session"},
    )
    assert resp.status_code == 403
    for action in ("restart", "unlink"):
        path = f"/settings/connections/{conn.id}/waha/{action}"
        assert client.post(path, data={"csrf_token": token}).status_code == 403
    client.post("/logout", data={"csrf_token": token})

    login(make_user(make_clinic("moonlight"), "admin"))
    token = csrf_token(client, NEW)
    path = f"/settings/connections/{conn.id}/waha/restart"
    assert client.post(path, data={"csrf_token": token}).status_code == 404

    assert emu.log.entries == []  # nobody reached WAHA
    assert emu.sessions[SESSION]["status"] == "FAILED" and set(emu.sessions) == {SESSION}
    assert _count(db) == 1
    assert _connection_audit(db) == ["provider: waha (QR code)"]  # the admin's create only


def test_the_qr_code_only_while_waha_shows_one_and_never_a_secret(admin_client, db, waha):
    emu, url = waha
    _create(admin_client, url)
    conn = _the_connection(db)
    key = connections.get_secrets(conn)["webhook_hmac_key"]
    qr_path = f"/settings/connections/{conn.id}/waha/qr.png"

    starting = admin_client.get(qr_path)  # STARTING: WAHA has no code yet
    assert starting.status_code == 404 and starting.mimetype != "image/png"
    assert "Session status is not as expected" not in starting.get_data(as_text=True)

    emu.step(SESSION)
    first, second = _poll(admin_client, conn.id), _poll(admin_client, conn.id)
    srcs = [re.search(r'<img class="waha-qr" src="([^"]+)"', text) for text in (first, second)]
    assert srcs[0] and srcs[1] and srcs[0].group(1) != srcs[1].group(1)  # a new image each poll
    assert srcs[0].group(1).startswith(qr_path)
    qr = admin_client.get(srcs[1].group(1).replace("&amp;", "&"))
    assert qr.status_code == 200 and qr.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert qr.headers["Cache-Control"] == "no-store"
    everything = qr.data + str(qr.headers).encode() + first.encode()
    assert API_KEY.encode() not in everything and key.encode() not in everything

    # WAHA stops answering: said in words, a Restart offered, no image, the connection unchanged.
    emu.faults.down()
    text = _poll(admin_client, conn.id)
    assert 'data-status="UNREACHABLE"' in text and "The WAHA server did not answer" in text
    assert "Restart the session" in text and "waha-qr" not in text
    assert admin_client.get(qr_path).status_code == 404
    db.session.expire_all()
    assert db.session.get(Connection, conn.id).status == "pending"


def test_restart_after_stop_keeps_the_key(admin_client, db, waha):
    emu, url = waha
    _create(admin_client, url)
    conn = _the_connection(db)
    key = connections.get_secrets(conn)["webhook_hmac_key"]
    emu.set_status(SESSION, "STOPPED")
    page = admin_client.get(f"/settings/connections/{conn.id}/waha").get_data(as_text=True)
    assert 'data-status="STOPPED"' in page and "Restart the session" in page

    token = csrf_token(admin_client, f"/settings/connections/{conn.id}/waha")
    resp = admin_client.post(f"/settings/connections/{conn.id}/waha/restart", data={"csrf_token": token})
    assert resp.status_code == 200 and 'data-status="STARTING"' in resp.get_data(as_text=True)
    [hook] = emu.sessions[SESSION]["config"]["webhooks"]
    assert hook["hmac"] == {"key": key} and hook["url"] == "http://localhost/webhooks/waha"
    assert connections.get_secrets(conn)["webhook_hmac_key"] == key


def test_an_unlink_waha_refuses_says_why_and_changes_nothing(admin_client, db, waha):
    emu, url = waha
    _create(admin_client, url)
    conn = _the_connection(db)
    emu.step(SESSION)
    emu.scan(SESSION, PHONE)
    _poll(admin_client, conn.id)
    token = csrf_token(admin_client, f"/settings/connections/{conn.id}/waha")

    emu.faults.fail_next(1, status=401, body={"message": "Unauthorized", "statusCode": 401}, path="/logout")
    resp = admin_client.post(
        f"/settings/connections/{conn.id}/waha/unlink",
        data={"csrf_token": token},
        headers={"HX-Request": "true"},
    )
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "WAHA refused the API key" in text
    assert emu.sessions[SESSION]["me"] is not None  # still linked
    db.session.expire_all()
    assert db.session.get(Connection, conn.id).status == "connected"
    assert _connection_audit(db) == ["provider: waha (QR code)"]


@pytest.mark.parametrize("status", ["FAILED", "STOPPED"])
def test_a_lost_session_marks_a_linked_connection_degraded(admin_client, db, waha, status):
    emu, url = waha
    _create(admin_client, url)
    conn = _the_connection(db)
    emu.step(SESSION)
    emu.scan(SESSION, PHONE)
    _poll(admin_client, conn.id)
    emu.set_status(SESSION, status)
    text = _poll(admin_client, conn.id)
    assert f'data-status="{status}"' in text and 'hx-trigger="every 3s"' in text  # polling again
    db.session.expire_all()
    conn = db.session.get(Connection, conn.id)
    assert (conn.status, conn.status_detail) == ("degraded", f"WhatsApp session: {status}")
    assert conn.health_checked_at is not None
