"""Twilio end to end (WhatsApp and SMS on one connection): signed form webhooks, the SDK's send, callbacks."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl

from tests.e2e.conftest import JPEG, PDF, PUBLIC_BASE_URL, sample, unescaped
from tests.emulators.twilio_api import ACCOUNT_SID, AUTH_TOKEN, inbound_form, sign_form

PATIENT = "+16505551234"  # provider-samples/twilio/inbound_whatsapp_text.txt
SMS_PATIENT = "+16505550100"
WHATSAPP_FROM = "+15550783881"
SMS_FROM = "+15005550006"


def _captured(name: str) -> bytes:
    """The body line of a captured .txt webhook (comment lines stripped), byte for byte."""
    lines = [ln for ln in sample("twilio", name).decode().splitlines() if ln and not ln.startswith("#")]
    return lines[0].encode()


def _post_form(portal, url: str, params: dict, token: str = AUTH_TOKEN, body: bytes | None = None):
    signed = sign_form(url, params, token)  # RequestValidator over the URL the CLI printed
    return portal.webhook(url, body if body is not None else signed.body, signed.headers)


def _add(portal, twilio):
    emu, base = twilio
    conn, url = portal.add_connection(
        "twilio",
        account_sid=emu.account_sid,
        auth_token=emu.auth_token,
        whatsapp_from=WHATSAPP_FROM,
        sms_from=SMS_FROM,
        base_url=base,
    )
    assert url == f"{PUBLIC_BASE_URL}/webhooks/twilio"
    return conn, url


def test_twilio_whatsapp_conversation_end_to_end(portal, twilio):
    emu, base = twilio
    conn, url = _add(portal, twilio)

    # 2. The captured inbound WhatsApp text, its bytes unchanged, signed for our public URL.
    captured = _captured("inbound_whatsapp_text.txt")
    resp = _post_form(portal, url, dict(parse_qsl(captured.decode())), body=captured)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    portal.drain()
    conv = portal.conversation(conn, PATIENT)
    assert "Olá, quero remarcar minha consulta" in unescaped(portal.page(conv))

    # 3. A photo and a PDF: MediaUrl on Twilio's API (Basic auth), which redirects to its storage.
    image_url = base + emu.add_media(JPEG, "image/jpeg")
    doc_url = base + emu.add_media(PDF, "application/pdf")
    for media_url, mime, caption in ((image_url, "image/jpeg", "My x-ray"), (doc_url, "application/pdf", "")):
        form = inbound_form(
            from_phone=PATIENT, to_phone=WHATSAPP_FROM, body=caption, media=[(media_url, mime)]
        )
        assert _post_form(portal, url, form).status_code == 200
    portal.drain()
    _text, image, doc = portal.messages(conv, "in")
    portal.assert_media(conv, image, JPEG, image=True)
    portal.assert_media(conv, doc, PDF, image=False)
    api_calls = [e for e in emu.log.find(method="GET") if "/Media/" in e["path"]]
    cdn_calls = [e for e in emu.log.find(method="GET") if e["path"].startswith("/media-cdn/")]
    assert len(api_calls) == 2 and all(e["auth"] == (ACCOUNT_SID, AUTH_TOKEN) for e in api_calls)
    assert len(cdn_calls) == 2 and all(e["auth"] is None for e in cdn_calls)  # never to the redirect

    # 4. A staff reply → the SDK's POST …/Messages.json with the WhatsApp addresses and a StatusCallback.
    text = "We can move it to Friday at 10:00."
    msg = portal.reply(conv, text)
    portal.drain()
    [create] = emu.log.find(method="POST", path=emu.messages_path)
    assert create["auth"] == (ACCOUNT_SID, AUTH_TOKEN)
    form = {k: v[0] for k, v in create["form"].items()}
    assert form["To"] == f"whatsapp:{PATIENT}" and form["From"] == f"whatsapp:{WHATSAPP_FROM}"
    assert form["Body"] == text
    # CONTRACT.md: status callbacks arrive at /webhooks/twilio/status.
    assert form["StatusCallback"] == f"{url}/status"
    [sent] = emu.sent
    portal.db.session.refresh(msg)
    assert (msg.status, msg.provider_message_id, msg.channel) == ("sent", sent["sid"], "whatsapp")

    # 5. Status callbacks to that URL: delivered, read, then a late (distinct) delivered.
    for status, extra in (("delivered", {}), ("read", {}), ("delivered", {"ChannelPrefix": "whatsapp"})):
        callback = emu.status_form(sent["sid"], status)
        params = {**{k: v[0] for k, v in callback.form.items()}, **extra}
        assert _post_form(portal, callback.url, params).status_code == 200
    portal.drain()
    portal.assert_tick(conv, msg, "read")

    failing = portal.reply(conv, "Please confirm the new time.")
    portal.drain()
    portal.db.session.refresh(failing)
    # This one to CONTRACT.md's status route, which Twilio consoles are often configured with.
    callback = emu.status_form(
        failing.provider_message_id, "undelivered", error_code=30003, url=f"{url}/status"
    )
    assert portal.webhook(callback.url, callback.body, callback.headers).status_code == 200
    portal.drain()
    page = unescaped(portal.assert_tick(conv, failing, "failed"))
    assert "The patient's phone is switched off or unreachable." in page


def test_twilio_sms_conversation_is_answered_by_sms(portal, twilio):
    emu, _ = twilio
    conn, url = _add(portal, twilio)
    form = inbound_form(
        channel="sms", from_phone=SMS_PATIENT, to_phone=SMS_FROM, body="Can I come at 5 instead?"
    )
    assert _post_form(portal, url, form).status_code == 200
    portal.drain()
    conv = portal.conversation(conn, SMS_PATIENT)
    assert "Can I come at 5 instead?" in unescaped(portal.page(conv))
    # SMS has no 24-hour window: two days later the reply is still free text, marked as SMS.
    conv.last_inbound_at -= timedelta(days=2)
    portal.db.session.commit()
    page = unescaped(portal.page(conv))
    assert 'id="composer-form"' in page and "free text is locked" not in page
    assert "Write an SMS reply" in page and "replies go by SMS" in page and "Template needed" not in page
    msg = portal.reply(conv, "Yes, 5 pm is fine.")
    portal.drain()
    [create] = emu.log.find(method="POST", path=emu.messages_path)
    form = {k: v[0] for k, v in create["form"].items()}
    assert (form["To"], form["From"], form["Body"]) == (SMS_PATIENT, SMS_FROM, "Yes, 5 pm is fine.")
    portal.db.session.refresh(msg)
    assert (msg.status, msg.channel, msg.provider_message_id) == ("sent", "sms", emu.sent[0]["sid"])
    callback = emu.status_form(msg.provider_message_id, "delivered")
    assert portal.webhook(callback.url, callback.body, callback.headers).status_code == 200
    portal.drain()
    portal.assert_tick(conv, msg, "delivered")


def test_twilio_sms_patient_gets_automatic_answers_by_sms(portal, twilio):
    """The opt-out confirmation (like every automatic answer) goes back by SMS, not to WhatsApp."""
    emu, _ = twilio
    conn, url = _add(portal, twilio)
    form = inbound_form(channel="sms", from_phone=SMS_PATIENT, to_phone=SMS_FROM, body="STOP")
    assert _post_form(portal, url, form).status_code == 200
    portal.drain()
    conv = portal.conversation(conn, SMS_PATIENT)
    assert conv.contact.consent == "opted_out"
    [answer] = portal.messages(conv, "out")
    [create] = emu.log.find(method="POST", path=emu.messages_path)
    sent = {k: v[0] for k, v in create["form"].items()}
    assert (sent["To"], sent["From"]) == (SMS_PATIENT, SMS_FROM)
    assert (answer.status, answer.channel) == ("sent", "sms")


def test_twilio_refuses_bad_signatures_and_unknown_numbers(portal, twilio):
    _conn, url = _add(portal, twilio)
    form = inbound_form(from_phone=PATIENT, to_phone=WHATSAPP_FROM, body="hi")
    assert _post_form(portal, url, form, token="not-the-auth-token").status_code == 401
    # Signed for the URL the request reached inside the proxy, not the public one Twilio called.
    inside = sign_form("http://localhost/webhooks/twilio", form)
    assert portal.webhook(url, inside.body, inside.headers).status_code == 401
    stranger = inbound_form(
        from_phone=PATIENT, to_phone="+15550009999", body="hi", account_sid="AC" + "0" * 32
    )
    assert _post_form(portal, url, stranger).status_code == 404
    portal.drain()
    assert portal.stored() == (0, 0)
