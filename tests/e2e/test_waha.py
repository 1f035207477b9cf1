"""WAHA end to end: HMAC-SHA512 webhooks, files behind X-Api-Key, sendText, message.ack ticks."""

from __future__ import annotations

import hashlib
import hmac

from tests.e2e.conftest import JPEG, PDF, PUBLIC_BASE_URL, sample, unescaped
from tests.emulators.waha import API_KEY, HMAC_KEY, ack_payload, message_payload, signed_webhook

PATIENT = "+16505551234"  # provider-samples/waha/webhook_message_text.json
SESSION = "clinic_42"
WAHA_PUBLIC = "http://localhost:3000"  # WAHA_BASE_URL's default: what WAHA writes into media URLs


def _add(portal, waha):
    emu, base = waha
    emu.add_session(SESSION)
    conn, url = portal.add_connection(
        "waha",
        base_url=base,
        api_key=emu.api_key,
        session=SESSION,
        webhook_hmac_key=HMAC_KEY,
        display_phone="+15550783881",
    )
    assert url == f"{PUBLIC_BASE_URL}/webhooks/waha"
    return conn, url


def _post(portal, url, event: str, payload: dict, key: str = HMAC_KEY, session: str = SESSION):
    hook = signed_webhook(event, payload, session=session, hmac_key=key)
    return portal.webhook(url, hook.body, hook.headers)


def test_waha_conversation_end_to_end(portal, waha):
    emu, _ = waha
    conn, url = _add(portal, waha)

    # 2. The captured message webhook, byte for byte, with WAHA's X-Webhook-Hmac (sha512 of the body).
    body = sample("waha", "webhook_message_text.json")
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Request-Id": "req-1",
        "X-Webhook-Timestamp": "1751457600512",
        "X-Webhook-Hmac": hmac.new(HMAC_KEY.encode(), body, hashlib.sha512).hexdigest(),
        "X-Webhook-Hmac-Algorithm": "sha512",
    }
    assert portal.webhook(url, body, headers).status_code == 200
    portal.drain()
    conv = portal.conversation(conn, PATIENT)
    assert "Olá, quero remarcar" in unescaped(portal.page(conv))

    # 3. Files WAHA downloaded: /api/files/… URLs under its own public name, fetched with X-Api-Key.
    image_path = emu.add_file(JPEG, "image/jpeg", session=SESSION)
    doc_path = emu.add_file(PDF, "application/pdf", session=SESSION)
    for path, mime, name, caption in (
        (image_path, "image/jpeg", None, "My x-ray"),
        (doc_path, "application/pdf", "exam-results.pdf", ""),
    ):
        media = {"url": WAHA_PUBLIC + path, "mimetype": mime, "filename": name, "error": None}
        assert (
            _post(
                portal, url, "message", message_payload(from_phone=PATIENT, body=caption, media=media)
            ).status_code
            == 200
        )
    portal.drain()
    _text, image, doc = portal.messages(conv, "in")
    portal.assert_media(conv, image, JPEG, image=True)
    portal.assert_media(conv, doc, PDF, image=False, filename="exam-results.pdf")
    fetched = [e for e in emu.log.find(method="GET") if e["path"].startswith("/api/files/")]
    assert sorted(e["path"] for e in fetched) == sorted([image_path, doc_path])
    assert all(e["headers"].get("X-Api-Key") == API_KEY for e in fetched)

    # 4. A staff reply → POST /api/sendText for the patient's chat id.
    text = "We can move it to Friday at 10:00."
    msg = portal.reply(conv, text)
    portal.drain()
    [send] = emu.log.find(method="POST", path="/api/sendText")
    assert send["headers"].get("X-Api-Key") == API_KEY
    assert {k: send["json"][k] for k in ("session", "chatId", "text")} == {
        "session": SESSION,
        "chatId": "16505551234@c.us",
        "text": text,
    }
    [sent] = emu.sent
    portal.db.session.refresh(msg)
    assert (msg.status, msg.provider_message_id) == ("sent", sent["id"])

    # 5. message.ack: DEVICE (delivered), READ, then a late DEVICE.
    for ack in (2, 3, 2):
        assert (
            _post(portal, url, "message.ack", ack_payload(sent["id"], ack, to_phone=PATIENT)).status_code
            == 200
        )
    portal.drain()
    portal.assert_tick(conv, msg, "read")

    failing = portal.reply(conv, "Please confirm the new time.")
    portal.drain()
    portal.db.session.refresh(failing)
    payload = ack_payload(failing.provider_message_id, -1, to_phone=PATIENT)
    assert _post(portal, url, "message.ack", payload).status_code == 200
    portal.drain()
    page = unescaped(portal.assert_tick(conv, failing, "failed"))
    assert "WhatsApp could not deliver the message." in page


def test_waha_refuses_bad_signatures_and_unknown_sessions(portal, waha):
    _conn, url = _add(portal, waha)
    payload = message_payload(from_phone=PATIENT, body="hi")
    assert _post(portal, url, "message", payload, key="not-the-hmac-key").status_code == 401
    unsigned = signed_webhook("message", payload, session=SESSION, hmac_key=None)
    assert portal.webhook(url, unsigned.body, unsigned.headers).status_code == 401
    assert _post(portal, url, "message", payload, session="someone_else").status_code == 404
    portal.drain()
    assert portal.stored() == (0, 0)
