"""Chatwoot end to end: signed message_created webhooks, attachments by data_url, agent replies by the API.

Chatwoot documents no delivery-status webhook for agent messages (it relays them to WhatsApp itself),
so a reply here ends at "sent" with Chatwoot's message id; there are no ticks to move.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.e2e.conftest import JPEG, PDF, PUBLIC_BASE_URL, sample, unescaped
from tests.emulators.chatwoot_api import (
    ACCOUNT_ID,
    API_TOKEN,
    CONVERSATION_ID,
    INBOX_ID,
    SECRET,
    incoming_message,
    sign_webhook,
)

PATIENT = "+16505551234"  # provider-samples/chatwoot/message_created_incoming_whatsapp.json


def _add(portal, chatwoot):
    emu, base = chatwoot
    conn, url = portal.add_connection(
        "chatwoot",
        base_url=base,
        api_token=emu.api_token,
        account_id=ACCOUNT_ID,
        inbox_id=INBOX_ID,
        webhook_secret=SECRET,
    )
    assert url == f"{PUBLIC_BASE_URL}/webhooks/chatwoot"
    return conn, url


def _attachment(message_id: int, n: int, file_type: str, data_url: str, size: int) -> dict:
    return {
        "id": message_id * 10 + n,
        "message_id": message_id,
        "file_type": file_type,
        "account_id": ACCOUNT_ID,
        "extension": None,
        "data_url": data_url,
        "thumb_url": "",
        "file_size": size,
    }


def test_chatwoot_conversation_end_to_end(portal, chatwoot):
    emu, base = chatwoot
    conn, url = _add(portal, chatwoot)

    # 2. The captured message_created, byte for byte, signed as Chatwoot signs: timestamp + "." + body.
    body = sample("chatwoot", "message_created_incoming_whatsapp.json")
    assert portal.webhook(url, body, sign_webhook(body)).status_code == 200
    portal.drain()
    conv = portal.conversation(conn, PATIENT)
    assert "Olá, quero remarcar minha consulta" in unescaped(portal.page(conv))

    # 3. Attachments: ActiveStorage data_urls that redirect to the file store (another host).
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    image_url = base + emu.add_file(JPEG, "image/jpeg", "xray.jpg")
    doc_url = base + emu.add_file(PDF, "application/pdf", "exam-results.pdf")
    for message_id, caption, att in (
        (5502, "My x-ray", _attachment(5502, 0, "image", image_url, len(JPEG))),
        (5503, None, _attachment(5503, 0, "file", doc_url, len(PDF))),
    ):
        payload = incoming_message(message_id=message_id, content=caption, attachments=[att])
        payload["created_at"] = now  # the patient writes now: the reply window is open
        raw = json.dumps(payload).encode()
        assert portal.webhook(url, raw, sign_webhook(raw)).status_code == 200
    portal.drain()
    _text, image, doc = portal.messages(conv, "in")
    portal.assert_media(conv, image, JPEG, image=True)
    portal.assert_media(conv, doc, PDF, image=False, filename="exam-results.pdf")
    blobs = [e for e in emu.log.find(method="GET") if e["path"].startswith("/rails/")]
    files = [e for e in emu.log.find(method="GET") if e["path"].startswith("/storage/")]
    assert len(blobs) == 2 and all(e["headers"].get("Api-Access-Token") == API_TOKEN for e in blobs)
    assert len(files) == 2 and not any("Api-Access-Token" in e["headers"] for e in files)

    # 4. A staff reply → an outgoing message in the patient's Chatwoot conversation.
    text = "We can move it to Friday at 10:00."
    msg = portal.reply(conv, text)
    portal.drain()
    [post] = emu.log.find(
        method="POST", path=f"/api/v1/accounts/{ACCOUNT_ID}/conversations/{CONVERSATION_ID}/messages"
    )
    assert post["headers"].get("Api-Access-Token") == API_TOKEN
    assert post["json"] == {"content": text, "message_type": "outgoing", "private": False}
    [sent] = emu.sent
    portal.db.session.refresh(msg)
    assert (msg.status, msg.provider_message_id) == ("sent", f"chatwoot:{sent['id']}")
    portal.assert_tick(conv, msg, "sent")

    # Chatwoot echoes our reply back as an outgoing message_created: it must not become a patient message.
    echo = incoming_message(message_id=sent["id"], content=text, message_type="outgoing")
    raw = json.dumps(echo).encode()
    assert portal.webhook(url, raw, sign_webhook(raw)).status_code == 200
    portal.drain()
    assert len(portal.messages(conv, "in")) == 3


def test_chatwoot_refuses_bad_signatures_and_unknown_inboxes(portal, chatwoot):
    _conn, url = _add(portal, chatwoot)
    body = sample("chatwoot", "message_created_incoming_whatsapp.json")
    assert portal.webhook(url, body, sign_webhook(body, "not-the-secret")).status_code == 401
    assert portal.webhook(url, body, {"Content-Type": "application/json"}).status_code == 401
    stale = sign_webhook(body, timestamp=1751457600)  # the sample's own signature, a year old: a replay
    assert portal.webhook(url, body, stale).status_code == 401
    other = json.dumps(incoming_message(inbox_id=99)).encode()
    assert portal.webhook(url, other, sign_webhook(other)).status_code == 404
    portal.drain()
    assert portal.stored() == (0, 0)
