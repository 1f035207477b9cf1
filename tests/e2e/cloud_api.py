"""The Cloud API conversation, shared by Meta and 360dialog: same bodies, another transport and auth."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.e2e.conftest import (
    JPEG,
    PDF,
    UNDELIVERABLE,
    Portal,
    meta_envelope,
    meta_media_message,
    meta_status,
    sample,
    unescaped,
)

PATIENT = "+16505551234"  # the sender of provider-samples/meta/inbound_text.json
WA_ID = PATIENT.lstrip("+")


@dataclass(frozen=True)
class Transport:
    """How one host of the Cloud API is reached: the emulator's route names and the auth it wants."""

    sign: Callable[[bytes], dict[str, str]]  # the webhook headers for a body
    media_get: str  # emulator route of GET /{media id}
    messages: str  # emulator route of the send
    messages_path: str
    auth: tuple[str, str]  # (lower-cased header, value) every call to the provider carries


def run(portal: Portal, graph: Any, conn: Any, url: str, t: Transport) -> None:
    post = lambda body: portal.webhook(url, body, {"Content-Type": "application/json", **t.sign(body)})  # noqa: E731

    # 2. The captured inbound text, byte for byte → 200 → the worker → the conversation page shows it.
    resp = post(sample("meta", "inbound_text.json"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    portal.drain()
    conv = portal.conversation(conn, PATIENT)
    page = unescaped(portal.page(conv))
    assert "Olá, gostaria de remarcar minha consulta de amanhã." in page
    assert "Maria Souza" in page
    # Meta redelivers until it gets a 200: the same body again is answered 200 and stored once.
    assert post(sample("meta", "inbound_text.json")).status_code == 200
    portal.drain()
    assert [m.body for m in portal.messages(conv, "in")] == [
        "Olá, gostaria de remarcar minha consulta de amanhã."
    ]

    # 3. A photo and a PDF: the worker looks each id up, then downloads the short-lived URL.
    image_id = graph.add_media(JPEG, "image/jpeg")
    doc_id = graph.add_media(PDF, "application/pdf", filename="exam-results.pdf")
    now = int(time.time())
    image = meta_media_message("image", image_id, "image/jpeg", wa_id=WA_ID, at=now, caption="My x-ray")
    doc = meta_media_message(
        "document", doc_id, "application/pdf", wa_id=WA_ID, at=now + 1, filename="exam-results.pdf"
    )
    assert post(meta_envelope(messages=[image, doc])).status_code == 200
    portal.drain()
    _text, got_image, got_doc = portal.messages(conv, "in")
    portal.assert_media(conv, got_image, JPEG, image=True)
    portal.assert_media(conv, got_doc, PDF, image=False, filename="exam-results.pdf")
    assert "My x-ray" in portal.page(conv)
    lookups = graph.requests(t.media_get)
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in lookups) == sorted([image_id, doc_id])
    downloads = graph.requests("download")
    assert sorted(r["query"]["mid"] for r in downloads) == sorted([image_id, doc_id])
    header, value = t.auth
    assert all(r["headers"].get(header) == value for r in lookups + downloads)

    # 4. A staff reply through the composer → the worker → the provider's send request.
    text = "We can move it to Friday at 10:00."
    msg = portal.reply(conv, text)
    portal.drain()
    [sent] = [r for r in graph.requests(t.messages) if (r["json"] or {}).get("type") == "text"]
    assert sent["path"] == t.messages_path
    assert sent["headers"].get(header) == value
    body = sent["json"]
    assert {k: body[k] for k in ("messaging_product", "recipient_type", "to", "type", "text")} == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA_ID,
        "type": "text",
        "text": {"preview_url": False, "body": text},
    }
    wamid = sent["response"]["messages"][0]["id"]
    portal.db.session.refresh(msg)
    assert (msg.status, msg.provider_message_id) == ("sent", wamid)
    portal.assert_tick(conv, msg, "sent")

    # 5. delivered, read, then a late delivered: the ticks only move forward.
    for status, at in (("delivered", now + 10), ("read", now + 20), ("delivered", now + 11)):
        envelope = meta_envelope(statuses=[meta_status(wamid, status, at=at, wa_id=WA_ID)])
        assert post(envelope).status_code == 200
    portal.drain()
    portal.assert_tick(conv, msg, "read")

    # A second reply fails at WhatsApp: the thread says why in words, not as a code.
    failing = portal.reply(conv, "Please confirm the new time.")
    portal.drain()
    portal.db.session.refresh(failing)
    assert failing.status == "sent", (failing.status, failing.error_code, failing.error_detail)
    failed = meta_status(
        failing.provider_message_id, "failed", at=now + 30, wa_id=WA_ID, errors=UNDELIVERABLE
    )
    assert post(meta_envelope(statuses=[failed])).status_code == 200
    portal.drain()
    page = unescaped(portal.assert_tick(conv, failing, "failed"))
    assert "This number cannot receive WhatsApp messages" in page
    portal.db.session.refresh(failing)
    assert failing.error_code == "131026"
