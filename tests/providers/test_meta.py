"""MetaProvider on captured payloads and against the local Graph emulator (no database, no Redis)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests

from tests.emulators import meta_graph
from tests.emulators.meta_graph import (
    DEFAULT_APP_ID,
    DEFAULT_APP_SECRET,
    DEFAULT_PNID,
    DEFAULT_TOKEN,
    DEFAULT_WABA,
    MetaGraphEmulator,
    running_meta_graph,
)
from wa_portal.providers import http, meta_errors
from wa_portal.providers.base import (
    Button,
    Capability,
    Channel,
    ConnectionEvent,
    ErrorKind,
    InboundMedia,
    InboundMessage,
    MessageKind,
    OutboundMedia,
    OutboundMessage,
    ProviderError,
    StatusUpdate,
    TemplateRef,
    WebhookError,
    WebhookRequest,
    get_provider_class,
)
from wa_portal.providers.meta import (
    MetaProvider,
    exchange_code,
    register_number,
    request_verification_code,
    subscribe_app,
    verify_code,
)

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "meta"
APP_SECRET = "test_app_secret"
# From ../shared/provider-samples/SIGNATURES.md (computed by Meta's scheme over the exact file bytes).
SIGNATURES = {
    "inbound_image.json": "sha256=40535a650faa09a819ead12903d3a078f18f4a3619805d46a82e7ee3da582321",
    "inbound_text.json": "sha256=34fdfa1616164c121375b78af1a2f5ef0b4a42d145f13bf85406c1cf10fb4162",
    "status_delivered.json": "sha256=1dacb08d7c3efb303ea15b556754c590f4be00798e79ba1550b31f5ca95b4648",
    "status_sent.json": "sha256=f22cec6de21f6c0fff4df80ac9ae25202d2779c304b686ffc45f942a5035d694",
}
PATIENT = "+16505551234"
OURS = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
PNID_KEY = f"pnid:{DEFAULT_PNID}"
WABA_KEY = f"waba:{DEFAULT_WABA}"
WA = Channel.WHATSAPP


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def body_json(name: str) -> Any:
    return json.loads(payload(name))


def webhook(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(
        method="POST", url="https://clinic.example.com/webhooks/meta", headers=headers or {}, body=body
    )


def first_message(name: str) -> dict[str, Any]:
    return body_json(name)["entry"][0]["changes"][0]["value"]["messages"][0]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v23.0"


@pytest.fixture(scope="module")
def server() -> Iterator[MetaGraphEmulator]:
    with running_meta_graph() as emulator:
        yield emulator


@pytest.fixture
def graph(server: MetaGraphEmulator) -> Iterator[MetaGraphEmulator]:
    server.reset()
    yield server
    assert server.wait_idle(), "a call was still running at the emulator"


@pytest.fixture
def provider(graph: MetaGraphEmulator) -> MetaProvider:
    return MetaProvider(graph.meta_settings())


# --- what the adapter declares -------------------------------------------------------------------------


def test_registered_with_its_declared_shape() -> None:
    assert get_provider_class("meta") is MetaProvider
    assert MetaProvider.channels == {Channel.WHATSAPP}
    assert MetaProvider.capabilities == {
        Capability.TEXT,
        Capability.MEDIA,
        Capability.TEMPLATE,
        Capability.BUTTONS,
        Capability.READ_RECEIPT,
        Capability.INBOUND,
        Capability.EMBEDDED_SIGNUP,
    }
    assert MetaProvider.rate_limit_per_second == 80
    fields = {f.name: f for f in MetaProvider.settings_schema}
    assert list(fields) == [
        "phone_number_id",
        "waba_id",
        "display_phone",
        "access_token",
        "app_secret",
        "verify_token",
        "base_url",
    ]
    assert {n for n, f in fields.items() if f.secret} == {"access_token", "app_secret", "verify_token"}
    assert fields["base_url"].default == "https://graph.facebook.com/v23.0"
    assert MetaProvider({}).base_url == "https://graph.facebook.com/v23.0"


# --- webhook signature and handshake -------------------------------------------------------------------

TEXT_BODY = payload("inbound_text.json")
TEXT_SIG = SIGNATURES["inbound_text.json"]

VERIFY_CASES = [
    *[
        pytest.param(payload(name), {"X-Hub-Signature-256": sig}, APP_SECRET, True, id=name)
        for name, sig in SIGNATURES.items()
    ],
    pytest.param(TEXT_BODY, {"x-hub-signature-256": TEXT_SIG}, APP_SECRET, True, id="header-name-any-case"),
    pytest.param(
        TEXT_BODY.replace(b"Maria", b"Mario"),
        {"X-Hub-Signature-256": TEXT_SIG},
        APP_SECRET,
        False,
        id="tampered-body",
    ),
    pytest.param(TEXT_BODY + b" ", {"X-Hub-Signature-256": TEXT_SIG}, APP_SECRET, False, id="one-byte-added"),
    pytest.param(
        TEXT_BODY,
        {"X-Hub-Signature-256": SIGNATURES["inbound_image.json"]},
        APP_SECRET,
        False,
        id="other-body-sig",
    ),
    pytest.param(TEXT_BODY, {}, APP_SECRET, False, id="missing-header"),
    pytest.param(TEXT_BODY, {"X-Hub-Signature-256": TEXT_SIG}, "wrong_secret", False, id="wrong-secret"),
    pytest.param(TEXT_BODY, {"X-Hub-Signature-256": TEXT_SIG}, None, False, id="no-secret-configured"),
    pytest.param(TEXT_BODY, {"X-Hub-Signature-256": TEXT_SIG[7:]}, APP_SECRET, False, id="no-sha256-prefix"),
    pytest.param(TEXT_BODY, {"X-Hub-Signature-256": "sha256="}, APP_SECRET, False, id="empty-digest"),
    pytest.param(TEXT_BODY, {"X-Hub-Signature-256": "sha256=zz€"}, APP_SECRET, False, id="non-ascii-digest"),
]


@pytest.mark.parametrize(("body", "headers", "secret", "expected"), VERIFY_CASES)
def test_verify_webhook(body: bytes, headers: dict[str, str], secret: str | None, expected: bool) -> None:
    assert MetaProvider({"app_secret": secret}).verify_webhook(webhook(body, headers)) is expected


def test_signature_uses_the_app_secret_not_the_tokens() -> None:
    settings = {"app_secret": "other", "access_token": APP_SECRET, "verify_token": APP_SECRET}
    assert not MetaProvider(settings).verify_webhook(webhook(TEXT_BODY, {"X-Hub-Signature-256": TEXT_SIG}))


def test_emulator_signature_helper_matches_the_samples() -> None:
    assert meta_graph.signature_header(TEXT_BODY, APP_SECRET) == {"X-Hub-Signature-256": TEXT_SIG}


SAMPLE_QUERY = dict(parse_qsl((PAYLOADS / "webhook_verify_get.txt").read_text().splitlines()[-1]))


@pytest.mark.parametrize(
    ("query", "token", "expected"),
    [
        pytest.param(SAMPLE_QUERY, "test_verify_token", "1158201444", id="sample"),
        pytest.param(SAMPLE_QUERY, "another_token", None, id="wrong-token"),
        pytest.param(SAMPLE_QUERY, None, None, id="no-token-configured"),
        pytest.param(
            {**SAMPLE_QUERY, "hub.mode": "unsubscribe"}, "test_verify_token", None, id="not-subscribe"
        ),
        pytest.param(
            {"hub.mode": "subscribe", "hub.verify_token": "test_verify_token"},
            "test_verify_token",
            None,
            id="no-challenge",
        ),
        pytest.param(
            {"hub.mode": "subscribe", "hub.challenge": "7"}, "test_verify_token", None, id="no-token-given"
        ),
    ],
)
def test_verify_handshake(query: dict[str, str], token: str | None, expected: str | None) -> None:
    assert MetaProvider.verify_handshake(query, token) == expected


# --- parsing -------------------------------------------------------------------------------------------

INBOUND = [
    (
        "inbound_text.json",
        {
            "provider_message_id": "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
            "kind": MessageKind.TEXT,
            "text": "Olá, gostaria de remarcar minha consulta de amanhã.",
            "from_phone": PATIENT,
            "contact_name": "Maria Souza",
            "timestamp": datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC),
            "reply_to_provider_id": None,
            "route_key": PNID_KEY,
        },
    ),
    (
        "inbound_image.json",
        {
            "kind": MessageKind.IMAGE,
            "text": "Foto do exame",
            "timestamp": datetime(2025, 4, 11, 4, 8, 16, tzinfo=UTC),
            "media": InboundMedia(
                provider_media_id="1003383421387256",
                mime_type="image/jpeg",
                sha256="SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=",
                caption="Foto do exame",
            ),
        },
    ),
    (
        "inbound_video.json",
        {
            "kind": MessageKind.VIDEO,
            "text": "Como faço o exercício?",
            "media": InboundMedia(
                provider_media_id="1100000000000001",
                mime_type="video/mp4",
                sha256="dmlkZW8tc2hhMjU2",
                caption="Como faço o exercício?",
            ),
        },
    ),
    (
        "inbound_audio_voice.json",
        {
            "kind": MessageKind.AUDIO,
            "text": "",
            "media": InboundMedia(
                provider_media_id="1100000000000002", mime_type="audio/ogg; codecs=opus", sha256="YXVkaW8="
            ),
            "extra": {"voice": True},
        },
    ),
    (
        "inbound_sticker.json",
        {
            "kind": MessageKind.STICKER,
            "media": InboundMedia(
                provider_media_id="1100000000000003", mime_type="image/webp", sha256="c3RpY2tlcg=="
            ),
            "extra": {},
        },
    ),
    (
        "inbound_document.json",
        {
            "kind": MessageKind.DOCUMENT,
            "text": "Resultado do exame",
            "media": InboundMedia(
                provider_media_id="1100000000000004",
                mime_type="application/pdf",
                filename="exame_sangue.pdf",
                sha256="ZG9j",
                caption="Resultado do exame",
            ),
        },
    ),
    (
        "inbound_location.json",
        {
            "kind": MessageKind.LOCATION,
            "text": "📍 Clínica Exemplo, Rua Augusta 100, Lisboa (38.7223, -9.1393)",
            "extra": {
                "latitude": 38.7223,
                "longitude": -9.1393,
                "name": "Clínica Exemplo",
                "address": "Rua Augusta 100, Lisboa",
                "url": "https://clinica.example.com",
            },
            "media": None,
        },
    ),
    (
        "inbound_contacts.json",
        {
            "kind": MessageKind.CONTACTS,
            "text": "👤 Ana Lima (+55 11 99999-8888); João (+351 912 345 678)",
            "extra": {
                "contacts": [
                    {"name": "Ana Lima", "phones": ["+55 11 99999-8888"]},
                    {"name": "João", "phones": ["+351 912 345 678"]},
                ]
            },
        },
    ),
    (
        "inbound_reaction.json",
        {"kind": MessageKind.REACTION, "text": "👍", "reply_to_provider_id": OURS, "extra": {"emoji": "👍"}},
    ),
    (
        "inbound_reaction_removed.json",
        {
            "kind": MessageKind.REACTION,
            "text": "",
            "reply_to_provider_id": OURS,
            "extra": {"emoji": "", "removed": True},
        },
    ),
    (
        "inbound_interactive_button_reply.json",
        {
            "kind": MessageKind.BUTTON_REPLY,
            "text": "Confirmar",
            "button_payload": "CONFIRM_APPT_8812",
            "reply_to_provider_id": OURS,
            "extra": {"interactive_type": "button_reply"},
        },
    ),
    (
        "inbound_interactive_list_reply.json",
        {
            "kind": MessageKind.BUTTON_REPLY,
            "text": "Terça 09:30",
            "button_payload": "SLOT_0930",
            "reply_to_provider_id": OURS,
            "extra": {"interactive_type": "list_reply", "description": "Dra. Costa"},
        },
    ),
    (
        "inbound_template_button.json",
        {
            "kind": MessageKind.BUTTON_REPLY,
            "text": "Cancelar",
            "button_payload": "CANCEL_APPT_8812",
            "reply_to_provider_id": OURS,
        },
    ),
    (
        "inbound_unsupported.json",
        {
            "kind": MessageKind.UNSUPPORTED,
            "text": "Unsupported message (Message type unknown)",
            "extra": {"type": "unsupported", "error_code": "131051"},
        },
    ),
    (
        "inbound_unknown_type.json",
        {"kind": MessageKind.UNSUPPORTED, "text": "Unsupported message", "extra": {"type": "hologram"}},
    ),
    (
        "inbound_interactive_flow_reply.json",
        {"kind": MessageKind.UNSUPPORTED, "text": "Unsupported message", "button_payload": None},
    ),
    (
        "inbound_system.json",
        {
            "kind": MessageKind.SYSTEM,
            "text": "User A changed from 16505551234 to 16505559999",
            "contact_name": None,
            "from_phone": PATIENT,
            "extra": {"type": "user_changed_number", "wa_id": "16505559999"},
        },
    ),
    (
        "inbound_text_extra_fields.json",
        {
            "kind": MessageKind.TEXT,
            "text": "Encaminhada",
            "contact_name": "Maria Souza",
            "reply_to_provider_id": None,
            "extra": {"forwarded": True},
        },
    ),
]


@pytest.mark.parametrize(("name", "expected"), INBOUND, ids=[name for name, _ in INBOUND])
def test_parse_inbound(name: str, expected: dict[str, Any]) -> None:
    events = MetaProvider({}).parse_webhook(webhook(payload(name)))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, InboundMessage)
    assert {k: getattr(event, k) for k in expected} == expected
    # Always: the patient's number in E.164, our number as route key, aware UTC time, the raw message kept.
    assert event.from_phone == PATIENT
    assert event.route_key == PNID_KEY
    assert event.channel is Channel.WHATSAPP
    assert event.timestamp.tzinfo is UTC
    assert event.raw == first_message(name)


STATUSES = [
    ("status_sent.json", "sent", datetime(2025, 6, 18, 16, 22, 53, tzinfo=UTC), None, None),
    ("status_delivered.json", "delivered", datetime(2025, 6, 18, 16, 22, 54, tzinfo=UTC), None, None),
    ("status_read.json", "read", datetime(2025, 6, 18, 16, 23, 20, tzinfo=UTC), None, None),
    ("status_played.json", "read", datetime(2025, 6, 18, 16, 25, tzinfo=UTC), None, None),
    (
        "status_failed.json",
        "failed",
        datetime(2025, 6, 18, 16, 22, 55, tzinfo=UTC),
        "131047",
        "More than 24 hours have passed since the patient last wrote. Send an approved template instead. "
        "(Re-engagement message)",
    ),
    (
        "status_failed_undeliverable.json",
        "failed",
        datetime(2025, 6, 18, 16, 22, 56, tzinfo=UTC),
        "131026",
        "This number cannot receive WhatsApp messages (not on WhatsApp or an outdated app). "
        "(Message undeliverable)",
    ),
]


@pytest.mark.parametrize(
    ("name", "status", "timestamp", "code", "title"), STATUSES, ids=[s[0] for s in STATUSES]
)
def test_parse_status(
    name: str, status: str, timestamp: datetime, code: str | None, title: str | None
) -> None:
    (event,) = MetaProvider({}).parse_webhook(webhook(payload(name)))
    assert isinstance(event, StatusUpdate)
    assert (event.provider_message_id, event.status, event.timestamp) == (OURS, status, timestamp)
    assert (event.error_code, event.error_title) == (code, title)
    assert event.route_key == PNID_KEY
    assert event.dedupe_key == f"{OURS}:{status}"
    assert event.raw == body_json(name)["entry"][0]["changes"][0]["value"]["statuses"][0]


def test_failed_status_reason_is_a_sentence_even_for_an_unknown_code() -> None:
    # Regression (e2e): the inbox showed Meta's bare title ("Message undeliverable") as the reason.
    body = body_json("status_failed_undeliverable.json")
    status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    status["errors"] = [{"code": 999999, "title": "Something new"}]
    (event,) = MetaProvider({}).parse_webhook(webhook(json.dumps(body).encode()))
    assert (event.error_code, event.error_title) == (
        "999999",
        "WhatsApp could not deliver the message. (Something new)",
    )


def test_failed_status_keeps_our_callback_data_in_raw() -> None:
    (event,) = MetaProvider({}).parse_webhook(webhook(payload("status_failed.json")))
    assert event.raw["biz_opaque_callback_data"] == "msg:4711"


@pytest.mark.parametrize(
    ("name", "kind", "data"),
    [
        (
            "template_status_update.json",
            "template_status",
            {
                "event": "REJECTED",
                "template_id": "1689556908129832",
                "name": "lembrete_consulta",
                "language": "pt_BR",
                "reason": "INCORRECT_CATEGORY",
                "category": "UTILITY",
            },
        ),
        (
            "quality_update.json",
            "quality_update",
            {
                "display_phone": "15550783881",
                "event": "FLAGGED",
                "current_limit": "TIER_1K",
                "old_limit": "TIER_1K",
                "max_daily_conversations": "TIER_1K",
            },
        ),
    ],
)
def test_parse_account_events(name: str, kind: str, data: dict[str, Any]) -> None:
    (event,) = MetaProvider({}).parse_webhook(webhook(payload(name)))
    assert isinstance(event, ConnectionEvent)
    assert (event.kind, dict(event.data), event.route_key) == (kind, data, WABA_KEY)
    assert event.raw == body_json(name)["entry"][0]["changes"][0]["value"]


def test_parse_batch_keeps_every_event_in_order() -> None:
    events = MetaProvider({}).parse_webhook(webhook(payload("batch_two_entries.json")))
    summary = [
        (
            type(e).__name__,
            e.provider_message_id if not isinstance(e, ConnectionEvent) else e.kind,
            getattr(e, "status", None) or getattr(e, "contact_name", None) or None,
            e.route_key,
        )
        for e in events
    ]
    assert summary == [
        ("InboundMessage", "wamid.B1M1", "Maria Souza", "pnid:106540352242922"),
        ("InboundMessage", "wamid.B1M2", "Pedro Alves", "pnid:106540352242922"),
        ("InboundMessage", "wamid.B1M3", "Maria Souza", "pnid:106540352242922"),
        ("StatusUpdate", "wamid.B1S1", "sent", "pnid:106540352242922"),
        ("StatusUpdate", "wamid.B1S2", "delivered", "pnid:106540352242922"),
        ("InboundMessage", "wamid.B2M1", "Lucía García", "pnid:106540352242923"),
        ("StatusUpdate", "wamid.B2S1", "read", "pnid:106540352242923"),
        ("StatusUpdate", "wamid.B2S2", "failed", "pnid:106540352242923"),
        ("ConnectionEvent", "template_status", None, "waba:102290129340399"),
    ]
    assert events[1].from_phone == "+16505554321"
    assert isinstance(events[2], InboundMessage) and events[2].kind is MessageKind.IMAGE
    assert isinstance(events[7], StatusUpdate) and events[7].error_code == "130429"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(payload("unknown_field.json"), id="unknown-field"),
        pytest.param(payload("status_unknown.json"), id="unknown-status-value"),
        pytest.param(b'{"object": "whatsapp_business_account", "entry": []}', id="no-entries"),
        pytest.param(
            json.dumps(
                {
                    "entry": [
                        1,
                        {"changes": "nope"},
                        {"id": "1", "changes": [{"field": "messages", "value": []}]},
                        {
                            "id": "2",
                            "changes": [
                                {
                                    "field": "messages",
                                    "value": {"messages": [{"type": "text"}, 5], "statuses": [{}]},
                                }
                            ],
                        },
                    ]
                }
            ).encode(),
            id="odd-shapes-without-ids",
        ),
    ],
)
def test_parse_yields_nothing_without_crashing(body: bytes) -> None:
    assert MetaProvider({}).parse_webhook(webhook(body)) == []


UNREADABLE = [
    pytest.param(b"", id="empty"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"\xff\xfe\x00garbage", id="binary"),
    pytest.param(b"[1, 2]", id="a-list"),
    pytest.param(b'{"object": "whatsapp_business_account"}', id="no-entry"),
    pytest.param(b'{"entry": {"id": "1"}}', id="entry-not-a-list"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-too-deep"),
]


@pytest.mark.parametrize("body", UNREADABLE)
def test_unreadable_bodies_raise_webhook_error(body: bytes) -> None:
    with pytest.raises(WebhookError):
        MetaProvider({}).parse_webhook(webhook(body))
    with pytest.raises(WebhookError):
        MetaProvider.route_keys_for_request(webhook(body))


# --- routing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("inbound_text.json", [PNID_KEY, WABA_KEY]),
        ("status_sent.json", [PNID_KEY, WABA_KEY]),
        ("template_status_update.json", [WABA_KEY]),
        ("quality_update.json", [WABA_KEY]),
        (
            "batch_two_entries.json",
            ["pnid:106540352242922", "pnid:106540352242923", "waba:102290129340398", "waba:102290129340399"],
        ),
    ],
)
def test_route_keys_for_request(name: str, keys: list[str]) -> None:
    found = MetaProvider.route_keys_for_request(webhook(payload(name)))
    assert found == keys
    # The default connection's keys meet every one of these webhooks: it would be found.
    assert set(found) & set(
        MetaProvider.route_keys_for_settings({"phone_number_id": DEFAULT_PNID, "waba_id": DEFAULT_WABA})
    )


@pytest.mark.parametrize(
    ("settings", "keys"),
    [
        ({"phone_number_id": "111", "waba_id": "222"}, ["pnid:111", "waba:222"]),
        ({"phone_number_id": "111", "waba_id": ""}, ["pnid:111"]),
        ({"waba_id": "222"}, ["waba:222"]),
        ({}, []),
    ],
)
def test_route_keys_for_settings(settings: dict[str, str], keys: list[str]) -> None:
    assert MetaProvider.route_keys_for_settings(settings) == keys


# --- sending -------------------------------------------------------------------------------------------


def msg(**kwargs: Any) -> OutboundMessage:
    return OutboundMessage(**{"to": PATIENT, "channel": WA, **kwargs})


BASE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234"}
SENDS = [
    pytest.param(
        msg(text="Sua consulta está confirmada para 02/07 às 09:30."),
        body_json("send_text_request.json"),
        id="text-as-the-sample",
    ),
    pytest.param(
        msg(
            kind=MessageKind.TEMPLATE,
            template=TemplateRef(
                "lembrete_consulta",
                "pt_BR",
                params=("Maria", "02/07 às 09:30"),
                button_payloads=("CONFIRM_APPT_8812", "CANCEL_APPT_8812"),
            ),
        ),
        body_json("send_template_request.json"),
        id="template-as-the-sample",
    ),
    pytest.param(
        msg(to="+55 (11) 99999-8888", text="Olá", reply_to=OURS, client_ref="msg:4711"),
        {
            **BASE,
            "to": "5511999998888",
            "type": "text",
            "text": {"preview_url": False, "body": "Olá"},
            "context": {"message_id": OURS},
            "biz_opaque_callback_data": "msg:4711",
        },
        id="text-reply-with-client-ref",
    ),
    pytest.param(
        msg(
            kind=MessageKind.IMAGE,
            text="Seu pedido de exame",
            media=OutboundMedia(url="https://files.example.com/x.jpg"),
        ),
        {
            **BASE,
            "type": "image",
            "image": {"link": "https://files.example.com/x.jpg", "caption": "Seu pedido de exame"},
        },
        id="image-by-link",
    ),
    pytest.param(
        msg(
            kind=MessageKind.DOCUMENT,
            text="Sua receita",
            media=OutboundMedia(
                url="https://files.example.com/r.pdf", mime_type="application/pdf", filename="receita.pdf"
            ),
        ),
        {
            **BASE,
            "type": "document",
            "document": {
                "link": "https://files.example.com/r.pdf",
                "caption": "Sua receita",
                "filename": "receita.pdf",
            },
        },
        id="document-by-link-with-filename",
    ),
    pytest.param(
        msg(
            kind=MessageKind.AUDIO, text="ignored", media=OutboundMedia(url="https://files.example.com/a.ogg")
        ),
        {**BASE, "type": "audio", "audio": {"link": "https://files.example.com/a.ogg"}},
        id="audio-takes-no-caption",
    ),
    pytest.param(
        msg(
            kind=MessageKind.TEMPLATE,
            template=TemplateRef(
                "resultado_pronto",
                "en",
                params=("Maria\nSouza\t ", "a     b"),
                header_media=OutboundMedia(url="https://files.example.com/logo.png", mime_type="image/png"),
            ),
        ),
        {
            **BASE,
            "type": "template",
            "template": {
                "name": "resultado_pronto",
                "language": {"code": "en"},
                "components": [
                    {
                        "type": "header",
                        "parameters": [
                            {"type": "image", "image": {"link": "https://files.example.com/logo.png"}}
                        ],
                    },
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Maria Souza  "},
                            {"type": "text", "text": "a    b"},
                        ],
                    },
                ],
            },
        },
        id="template-header-image-and-cleaned-params",
    ),
    pytest.param(
        msg(kind=MessageKind.TEMPLATE, template=TemplateRef("hello_world", "en_US")),
        {**BASE, "type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}},
        id="template-without-components",
    ),
    pytest.param(
        msg(
            kind=MessageKind.BUTTONS,
            text="Confirma a consulta de amanhã às 09:30?",
            buttons=(
                Button("CONFIRM_8812", "Confirmar a consulta de amanhã"),
                Button("CANCEL_8812", "Cancelar"),
            ),
        ),
        {
            **BASE,
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Confirma a consulta de amanhã às 09:30?"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "CONFIRM_8812", "title": "Confirmar a consulta"}},
                        {"type": "reply", "reply": {"id": "CANCEL_8812", "title": "Cancelar"}},
                    ]
                },
            },
        },
        id="reply-buttons-titles-cut-to-20",
    ),
]


@pytest.mark.parametrize(("message", "expected"), SENDS)
def test_send_posts_the_documented_body(
    graph: MetaGraphEmulator, provider: MetaProvider, message: OutboundMessage, expected: dict[str, Any]
) -> None:
    result = provider.send(message)
    (call,) = graph.requests("messages")
    assert call["json"] == expected
    assert call["path"] == f"/v23.0/{DEFAULT_PNID}/messages"
    assert call["headers"]["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert result.provider_message_id == call["response"]["messages"][0]["id"]
    assert result.provider_message_id.startswith("wamid.")
    assert result.status == "accepted"
    assert result.raw == call["response"]


@pytest.mark.parametrize(
    ("kind", "media", "text", "expected_object"),
    [
        (
            MessageKind.IMAGE,
            OutboundMedia(data=b"\x89PNG fake image", mime_type="image/png", filename="exame.png"),
            "Seu exame",
            {"caption": "Seu exame"},
        ),
        (
            MessageKind.DOCUMENT,
            OutboundMedia(data=b"%PDF-1.7 fake", mime_type="application/pdf", filename="receita.pdf"),
            "",
            {"filename": "receita.pdf"},
        ),
    ],
)
def test_send_uploads_bytes_first_then_sends_by_id(
    graph: MetaGraphEmulator,
    provider: MetaProvider,
    kind: MessageKind,
    media: OutboundMedia,
    text: str,
    expected_object: dict[str, str],
) -> None:
    provider.send(msg(kind=kind, text=text, media=media))
    (upload,) = graph.requests("media_upload")
    (send,) = graph.requests("messages")
    assert upload["path"] == f"/v23.0/{DEFAULT_PNID}/media"
    assert upload["headers"]["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert upload["form"] == {"messaging_product": "whatsapp", "type": media.mime_type}
    assert upload["files"]["file"] == {
        "filename": media.filename,
        "content_type": media.mime_type,
        "data": media.data,
    }
    media_id = upload["response"]["id"]
    assert send["json"] == {**BASE, "type": kind.value, kind.value: {"id": media_id, **expected_object}}
    assert graph.media[media_id].data == media.data


def test_template_header_bytes_are_uploaded(graph: MetaGraphEmulator, provider: MetaProvider) -> None:
    header = OutboundMedia(data=b"%PDF", mime_type="application/pdf", filename="guia.pdf")
    provider.send(msg(kind=MessageKind.TEMPLATE, template=TemplateRef("guia", "pt_BR", header_media=header)))
    media_id = graph.requests("media_upload")[0]["response"]["id"]
    (component,) = graph.requests("messages")[0]["json"]["template"]["components"]
    assert component == {
        "type": "header",
        "parameters": [{"type": "document", "document": {"id": media_id, "filename": "guia.pdf"}}],
    }


REFUSED_LOCALLY = [
    pytest.param(msg(text="   "), ErrorKind.PERMANENT, "no text", id="empty-text"),
    pytest.param(msg(text="x" * 4097), ErrorKind.PERMANENT, "too long", id="text-over-4096"),
    pytest.param(
        msg(to="", text="hi"), ErrorKind.RECIPIENT_INVALID, "phone number is empty", id="no-recipient"
    ),
    pytest.param(
        msg(kind=MessageKind.IMAGE, text="x"), ErrorKind.PERMANENT, "no file", id="image-without-media"
    ),
    pytest.param(msg(kind=MessageKind.TEMPLATE), ErrorKind.PERMANENT, "No template", id="template-missing"),
    pytest.param(
        msg(kind=MessageKind.BUTTONS, text="Pick", buttons=()),
        ErrorKind.PERMANENT,
        "no buttons",
        id="no-buttons",
    ),
    pytest.param(
        msg(kind=MessageKind.BUTTONS, text="Pick", buttons=[Button(str(i), f"Option {i}") for i in range(4)]),
        ErrorKind.PERMANENT,
        "at most 3",
        id="four-buttons",
    ),
    pytest.param(
        msg(kind=MessageKind.LOCATION, text="x"), ErrorKind.PERMANENT, "location", id="unsendable-kind"
    ),
    pytest.param(
        OutboundMessage(to="ana@example.com", channel=Channel.EMAIL, text="x"),
        ErrorKind.PERMANENT,
        "only sends WhatsApp",
        id="email-channel",
    ),
]


@pytest.mark.parametrize(("message", "kind", "phrase"), REFUSED_LOCALLY)
def test_send_refuses_what_whatsapp_would_refuse_without_calling_it(
    graph: MetaGraphEmulator, provider: MetaProvider, message: OutboundMessage, kind: ErrorKind, phrase: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.send(message)
    assert caught.value.kind is kind
    assert phrase in caught.value.detail
    assert graph.requests() == []


def test_upload_larger_than_the_limit_is_refused(graph: MetaGraphEmulator) -> None:
    class Small(MetaProvider):
        max_media_bytes = 10

    with pytest.raises(ProviderError) as caught:
        Small(graph.meta_settings()).send(msg(kind=MessageKind.IMAGE, media=OutboundMedia(data=b"x" * 11)))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.PERMANENT, "too_large")
    assert graph.requests() == []


# --- errors --------------------------------------------------------------------------------------------

EMULATED_ERRORS = [
    (4, ErrorKind.RATE_LIMITED, "how often this app may call it"),
    (80007, ErrorKind.RATE_LIMITED, "reached its rate limit"),
    (130429, ErrorKind.RATE_LIMITED, "faster than WhatsApp allows"),
    (131056, ErrorKind.RATE_LIMITED, "in a short time"),
    (131048, ErrorKind.RATE_LIMITED, "reported as spam"),
    (131047, ErrorKind.WINDOW_CLOSED, "More than 24 hours have passed since the patient last wrote."),
    (
        131026,
        ErrorKind.RECIPIENT_INVALID,
        "cannot receive WhatsApp messages (not on WhatsApp or an outdated app)",
    ),
    (131030, ErrorKind.RECIPIENT_INVALID, "allowed recipients"),
    (131050, ErrorKind.OPTED_OUT, "stop receiving marketing messages"),
    (132000, ErrorKind.PERMANENT, "different number of values"),
    (132001, ErrorKind.PERMANENT, "not approved yet"),
    (100, ErrorKind.PERMANENT, "did not accept a value"),
    (131000, ErrorKind.RETRYABLE, "retried"),
]


@pytest.mark.parametrize(
    ("code", "kind", "phrase"), EMULATED_ERRORS, ids=[str(c) for c, _, _ in EMULATED_ERRORS]
)
def test_send_errors_are_classified_by_graph_code(
    graph: MetaGraphEmulator, provider: MetaProvider, code: int, kind: ErrorKind, phrase: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.send(msg(to=graph.failing_recipient(code), text="Olá"))
    err = caught.value
    assert (err.kind, err.code) == (kind, str(code))
    assert phrase in err.detail
    assert err.status_code == meta_graph.ERRORS[code][0]
    assert err.retryable is (kind in (ErrorKind.RETRYABLE, ErrorKind.RATE_LIMITED))


def test_window_closed_reads_as_a_receptionist_sentence(
    graph: MetaGraphEmulator, provider: MetaProvider
) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.send(msg(to=graph.failing_recipient(131047), text="Olá"))
    assert caught.value.detail == (
        "More than 24 hours have passed since the patient last wrote. Send an approved template instead. "
        "(Re-engagement message)"
    )


def test_code_100_about_the_recipient_is_recipient_invalid(
    graph: MetaGraphEmulator, provider: MetaProvider
) -> None:
    number = graph.fail_recipient(
        "+15550000001", 100, details="Recipient phone number is not a valid WhatsApp number"
    )
    with pytest.raises(ProviderError) as caught:
        provider.send(msg(to=number, text="Olá"))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.RECIPIENT_INVALID, "100")
    assert "patient's phone number" in caught.value.detail


def test_bad_token_is_auth_and_never_echoed(graph: MetaGraphEmulator) -> None:
    token = "EAAG-leaked-token-0123456789"
    with pytest.raises(ProviderError) as caught:
        MetaProvider(graph.meta_settings(access_token=token)).send(msg(text="Olá"))
    err = caught.value
    assert (err.kind, err.code, err.status_code) == (ErrorKind.AUTH, "190", 401)
    assert err.detail.startswith(meta_errors.AUTH_REASON)
    assert token not in str(err)
    assert graph.requests("messages")[0]["response"]["error"]["error_subcode"] == 463


def test_missing_token_is_auth_without_a_call(graph: MetaGraphEmulator) -> None:
    with pytest.raises(ProviderError) as caught:
        MetaProvider(graph.meta_settings(access_token="")).send(msg(text="Olá"))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.AUTH, "not_configured")
    assert graph.requests() == []


def test_unknown_phone_number_id_is_explained(graph: MetaGraphEmulator) -> None:
    with pytest.raises(ProviderError) as caught:
        MetaProvider(graph.meta_settings(phone_number_id="999")).send(msg(text="Olá"))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.PERMANENT, "100")
    assert "number ID in Settings was not found" in caught.value.detail


@pytest.mark.parametrize(
    ("fault", "kind", "code"),
    [
        pytest.param({"status": 500}, ErrorKind.RETRYABLE, "2", id="500-graph-transient"),
        pytest.param(
            {"status": 502, "body": "<html>Bad Gateway</html>"},
            ErrorKind.RETRYABLE,
            "http_502",
            id="502-html",
        ),
        pytest.param({"status": 503, "body": ""}, ErrorKind.RETRYABLE, "http_503", id="503-empty"),
        pytest.param({"status": 429, "body": ""}, ErrorKind.RATE_LIMITED, "http_429", id="429-empty"),
        pytest.param({"status": 400, "code": 130429}, ErrorKind.RATE_LIMITED, "130429", id="400-throughput"),
        pytest.param({"status": 500, "code": 999001}, ErrorKind.RETRYABLE, "999001", id="500-unknown-code"),
        pytest.param({"status": 400}, ErrorKind.PERMANENT, "100", id="400-invalid-parameter"),
    ],
)
def test_fail_next_faults_then_recovers(
    graph: MetaGraphEmulator, provider: MetaProvider, fault: dict[str, Any], kind: ErrorKind, code: str
) -> None:
    graph.fail_next(1, **fault)
    with pytest.raises(ProviderError) as caught:
        provider.send(msg(text="Olá"))
    assert (caught.value.kind, caught.value.code) == (kind, code)
    assert provider.send(msg(text="Olá")).provider_message_id  # only the next call failed
    assert [e["status"] for e in graph.requests("messages")] == [fault["status"], 200]


def test_fail_next_can_target_one_route(graph: MetaGraphEmulator, provider: MetaProvider) -> None:
    graph.fail_next(1, status=503, route="media_upload")
    provider.send(msg(text="Olá"))
    with pytest.raises(ProviderError) as caught:
        provider.send(msg(kind=MessageKind.IMAGE, media=OutboundMedia(data=b"img", mime_type="image/png")))
    assert caught.value.kind is ErrorKind.RETRYABLE
    assert [e["route"] for e in graph.requests()] == ["messages", "media_upload"]


def test_down_and_up(graph: MetaGraphEmulator, provider: MetaProvider) -> None:
    graph.down()
    for _ in range(3):
        with pytest.raises(ProviderError) as caught:
            provider.send(msg(text="Olá"))
        assert caught.value.kind is ErrorKind.RETRYABLE
    assert not provider.health().ok
    graph.up()
    assert provider.send(msg(text="Olá")).status == "accepted"
    assert [e["status"] for e in graph.requests()] == [503, 503, 503, 503, 200]


def test_fail_rate_is_random_but_reproducible(graph: MetaGraphEmulator, provider: MetaProvider) -> None:
    def run() -> list[bool]:
        outcomes = []
        for _ in range(40):
            try:
                provider.send(msg(text="Olá"))
                outcomes.append(True)
            except ProviderError as err:
                outcomes.append(err.kind is not ErrorKind.RETRYABLE)  # a non-retryable failure shows as True
        return outcomes

    graph.fail_rate(0.3, seed=7)
    first = run()
    assert 0 < first.count(False) < 40
    assert first.count(False) == sum(e["status"] == 500 for e in graph.requests("messages"))
    graph.fail_rate(0.3, seed=7)
    assert run() == first
    graph.fail_rate(0.0)
    assert all(run())


def test_connection_refused_is_retryable() -> None:
    with pytest.raises(ProviderError) as caught:
        MetaProvider({"phone_number_id": "1", "access_token": "t", "base_url": closed_port_url()}).send(
            msg(text="Olá")
        )
    assert (caught.value.kind, caught.value.code) == (ErrorKind.RETRYABLE, "connection")


def test_slow_answer_times_out_as_retryable(
    graph: MetaGraphEmulator, provider: MetaProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.2)
    graph.delay(1.0)
    with pytest.raises(ProviderError) as caught:
        provider.send(msg(text="Olá"))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.RETRYABLE, "timeout")
    assert graph.wait_idle()
    assert graph.requests("messages")[0]["status"] == 200  # it went through late: why retries must dedupe


# --- the error table on captured bodies ----------------------------------------------------------------

CLASSIFIED = [
    ("error_100_invalid_parameter.json", 400, ErrorKind.PERMANENT, "100"),
    ("error_100_to_required.json", 400, ErrorKind.RECIPIENT_INVALID, "100"),
    ("error_100_object_missing.json", 400, ErrorKind.PERMANENT, "100"),
    ("error_4_app_rate_limit.json", 400, ErrorKind.RATE_LIMITED, "4"),
    ("error_80007_waba_rate_limit.json", 400, ErrorKind.RATE_LIMITED, "80007"),
    ("error_130429_throughput.json", 400, ErrorKind.RATE_LIMITED, "130429"),
    ("error_131047_reengagement.json", 400, ErrorKind.WINDOW_CLOSED, "131047"),
    ("error_131026_undeliverable.json", 400, ErrorKind.RECIPIENT_INVALID, "131026"),
    ("error_131030_not_allowed.json", 400, ErrorKind.RECIPIENT_INVALID, "131030"),
    ("error_131050_marketing_opt_out.json", 400, ErrorKind.OPTED_OUT, "131050"),
    ("error_132000_param_count.json", 400, ErrorKind.PERMANENT, "132000"),
    ("error_132001_template_missing.json", 404, ErrorKind.PERMANENT, "132001"),
    ("error_190_token_expired.json", 401, ErrorKind.AUTH, "190"),
    ("error_131000_something_wrong.json", 500, ErrorKind.RETRYABLE, "131000"),
    ("error_2_transient.json", 503, ErrorKind.RETRYABLE, "2"),
    ("error_unknown_code.json", 400, ErrorKind.PERMANENT, "999001"),
    ("error_unknown_code.json", 500, ErrorKind.RETRYABLE, "999001"),
    ("error_unknown_code.json", 401, ErrorKind.AUTH, "999001"),
    ("error_132000_param_count.json", 500, ErrorKind.RETRYABLE, "132000"),
]


@pytest.mark.parametrize(
    ("name", "status", "kind", "code"), CLASSIFIED, ids=[f"{c[0]}-{c[1]}" for c in CLASSIFIED]
)
def test_error_table(name: str, status: int, kind: ErrorKind, code: str) -> None:
    err = meta_errors.error_from_response(status, body_json(name), retry_after=3.0)
    assert (err.kind, err.code, err.status_code, err.retry_after) == (kind, code, status, 3.0)
    assert (
        err.detail.endswith(")") and "(" in err.detail
    )  # the provider's own words come last, in parentheses


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, None, ErrorKind.AUTH),
        (429, None, ErrorKind.RATE_LIMITED),
        (502, None, ErrorKind.RETRYABLE),
        (404, {"unexpected": True}, ErrorKind.PERMANENT),
        (400, {"error": "a string"}, ErrorKind.PERMANENT),
        (400, {"error": {"code": 999002, "message": "new", "is_transient": True}}, ErrorKind.RETRYABLE),
    ],
)
def test_error_without_a_known_graph_code(status: int, body: Any, kind: ErrorKind) -> None:
    assert meta_errors.error_from_response(status, body).kind is kind


def test_error_detail_never_carries_a_secret() -> None:
    body = {"error": {"code": 190, "message": "Invalid token EAAG-secret-123456 given"}}
    err = meta_errors.error_from_response(401, body, secrets=("EAAG-secret-123456",))
    assert "EAAG-secret-123456" not in err.detail
    assert "•••" in err.detail


def test_describe_failed_status_codes() -> None:
    assert meta_errors.describe("131047", "Re-engagement message") == (
        "More than 24 hours have passed since the patient last wrote. Send an approved template instead. "
        "(Re-engagement message)"
    )
    assert meta_errors.describe(None) == "WhatsApp could not deliver the message."


# --- media, read receipts, health ----------------------------------------------------------------------


def test_fetch_media_end_to_end(graph: MetaGraphEmulator, provider: MetaProvider) -> None:
    photo = b"\xff\xd8\xff fake jpeg bytes"
    provider.send(msg(kind=MessageKind.IMAGE, media=OutboundMedia(data=photo, mime_type="image/jpeg")))
    media_id = graph.requests("media_upload")[0]["response"]["id"]
    graph.log.clear()

    data, mime = provider.fetch_media(InboundMedia(provider_media_id=media_id))

    assert (data, mime) == (photo, "image/jpeg")
    lookup, download = graph.requests()
    assert (lookup["route"], lookup["path"]) == ("media_get", f"/v23.0/{media_id}")
    assert lookup["query"] == {"phone_number_id": DEFAULT_PNID}
    assert download["route"] == "download"
    assert download["path"] == "/whatsapp_business/attachments/"
    assert download["query"]["mid"] == media_id
    assert (
        lookup["headers"]["authorization"]
        == download["headers"]["authorization"]
        == f"Bearer {DEFAULT_TOKEN}"
    )


def test_media_download_url_needs_the_bearer(graph: MetaGraphEmulator) -> None:
    media_id = graph.add_media(b"secret scan", "image/png")
    auth = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    url = requests.get(f"{graph.graph_url}/{media_id}", headers=auth, timeout=5).json()["url"]
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    assert requests.get(url, headers=auth, timeout=5).content == b"secret scan"


@pytest.mark.parametrize(
    ("size", "reported", "downloads"),
    [
        pytest.param(100, 10**9, 0, id="refused-by-file-size"),
        pytest.param(100, 5, 1, id="file-size-lies-counted-on-arrival"),
    ],
)
def test_fetch_media_refuses_files_over_the_limit(
    graph: MetaGraphEmulator, size: int, reported: int, downloads: int
) -> None:
    class Small(MetaProvider):
        max_media_bytes = 50

    media_id = graph.add_media(b"x" * size, "video/mp4", reported_size=reported)
    with pytest.raises(ProviderError) as caught:
        Small(graph.meta_settings()).fetch_media(InboundMedia(provider_media_id=media_id))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.PERMANENT, "too_large")
    assert "too large" in caught.value.detail
    assert len(graph.requests("download")) == downloads


def test_fetch_media_errors(
    graph: MetaGraphEmulator, provider: MetaProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.fetch_media(InboundMedia(provider_media_id="1999999999999999"))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.PERMANENT, "100")

    with pytest.raises(ProviderError) as caught:
        provider.fetch_media(InboundMedia(url="https://lookaside.fbsbx.com/x"))
    assert caught.value.kind is ErrorKind.PERMANENT

    # An expired link (Meta's last ~5 minutes) is retried: the retry looks the id up again.
    monkeypatch.setattr(meta_graph, "MEDIA_URL_TTL", -1)
    media_id = graph.add_media(b"late", "image/png")
    with pytest.raises(ProviderError) as caught:
        provider.fetch_media(InboundMedia(provider_media_id=media_id))
    assert (caught.value.kind, caught.value.status_code) == (ErrorKind.RETRYABLE, 404)


def test_mark_read(graph: MetaGraphEmulator, provider: MetaProvider) -> None:
    assert provider.mark_read(OURS) is None
    (call,) = graph.requests("messages")
    assert call["json"] == {"messaging_product": "whatsapp", "status": "read", "message_id": OURS}
    assert call["response"] == {"success": True}


def test_mark_read_failure_raises(graph: MetaGraphEmulator, provider: MetaProvider) -> None:
    graph.fail_next(1, status=400, code=100)
    with pytest.raises(ProviderError):
        provider.mark_read(OURS)


@pytest.mark.parametrize(
    ("change", "ok", "status", "detail"),
    [
        pytest.param({}, True, "connected", "", id="connected"),
        pytest.param({"quality_rating": "RED"}, True, "connected", "Quality rating is low", id="red-quality"),
        pytest.param({"status": "FLAGGED"}, False, "flagged", "reports the number as flagged", id="flagged"),
    ],
)
def test_health(
    graph: MetaGraphEmulator,
    provider: MetaProvider,
    change: dict[str, str],
    ok: bool,
    status: str,
    detail: str,
) -> None:
    graph.numbers[DEFAULT_PNID].update(change)
    health = provider.health()
    assert (health.ok, health.status) == (ok, status)
    assert detail in health.detail
    assert health.data["display_phone_number"] == "15550783881"
    assert health.data["quality_rating"] == change.get("quality_rating", "GREEN")
    (call,) = graph.requests("phone_number")
    assert (
        call["query"]["fields"]
        == "display_phone_number,quality_rating,verified_name,code_verification_status,status"
    )


@pytest.mark.parametrize(
    ("settings", "fault", "status"),
    [
        pytest.param({"access_token": "expired-token"}, None, "token invalid", id="token-invalid"),
        pytest.param({}, "down", "unreachable", id="down"),
        pytest.param({"phone_number_id": ""}, None, "not configured", id="not-configured"),
    ],
)
def test_health_when_broken(
    graph: MetaGraphEmulator, settings: dict[str, str], fault: str | None, status: str
) -> None:
    if fault == "down":
        graph.down()
    health = MetaProvider(graph.meta_settings(**settings)).health()
    assert (health.ok, health.status) == (False, status)
    assert health.detail


# --- embedded signup -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["access_token", "business_token"])
def test_exchange_code(graph: MetaGraphEmulator, field: str) -> None:
    graph.oauth_token_field = field
    issued = graph.add_oauth_code("code-from-fb-login")
    token = exchange_code(graph.graph_url, DEFAULT_APP_ID, DEFAULT_APP_SECRET, "code-from-fb-login")
    assert token == issued
    (call,) = graph.requests("oauth")
    assert call["query"] == {
        "client_id": DEFAULT_APP_ID,
        "client_secret": DEFAULT_APP_SECRET,
        "code": "code-from-fb-login",
    }
    assert MetaProvider(graph.meta_settings(access_token=token)).health().ok  # the token works


@pytest.mark.parametrize(
    ("app_id", "secret", "code"),
    [
        pytest.param(DEFAULT_APP_ID, DEFAULT_APP_SECRET, "never-issued", id="bad-code"),
        pytest.param(DEFAULT_APP_ID, "wrong-app-secret", "good", id="wrong-secret"),
        pytest.param("other-app", DEFAULT_APP_SECRET, "good", id="wrong-app"),
    ],
)
def test_exchange_code_failures(graph: MetaGraphEmulator, app_id: str, secret: str, code: str) -> None:
    graph.add_oauth_code("good")
    with pytest.raises(ProviderError) as caught:
        exchange_code(graph.graph_url, app_id, secret, code)
    assert caught.value.kind is ErrorKind.PERMANENT
    assert secret not in str(caught.value)


def test_exchange_code_is_single_use(graph: MetaGraphEmulator) -> None:
    graph.add_oauth_code("once")
    exchange_code(graph.graph_url, DEFAULT_APP_ID, DEFAULT_APP_SECRET, "once")
    with pytest.raises(ProviderError):
        exchange_code(graph.graph_url, DEFAULT_APP_ID, DEFAULT_APP_SECRET, "once")


def test_exchange_code_transport_error_hides_the_url_with_the_secret() -> None:
    with pytest.raises(ProviderError) as caught:
        exchange_code(closed_port_url(), DEFAULT_APP_ID, "app-secret-in-query", "code")
    assert caught.value.kind is ErrorKind.RETRYABLE
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_subscribe_app(graph: MetaGraphEmulator) -> None:
    subscribe_app(graph.graph_url, DEFAULT_TOKEN, DEFAULT_WABA)
    subscribe_app(
        graph.graph_url,
        DEFAULT_TOKEN,
        "555",
        override_callback_uri="https://clinic.example.com/webhooks/meta",
        verify_token="vt",
    )
    first, second = graph.requests("subscribed_apps")
    assert first["path"] == f"/v23.0/{DEFAULT_WABA}/subscribed_apps"
    assert first["headers"]["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert first["json"] is None
    assert second["json"] == {
        "override_callback_uri": "https://clinic.example.com/webhooks/meta",
        "verify_token": "vt",
    }
    with pytest.raises(ProviderError) as caught:
        subscribe_app(graph.graph_url, "bad-token", DEFAULT_WABA)
    assert caught.value.kind is ErrorKind.AUTH


def test_register_number(graph: MetaGraphEmulator) -> None:
    graph.add_number("106540352242999", "15550783899", status="PENDING")
    register_number(graph.graph_url, DEFAULT_TOKEN, "106540352242999", "123456")
    (call,) = graph.requests("register")
    assert call["json"] == body_json("register_request.json")
    assert graph.numbers["106540352242999"]["status"] == "CONNECTED"


@pytest.mark.parametrize(
    ("pnid", "pin", "calls"),
    [
        pytest.param(DEFAULT_PNID, "12345", 0, id="short-pin-refused-locally"),
        pytest.param(DEFAULT_PNID, "12a456", 0, id="non-digit-pin"),
        pytest.param("404404", "123456", 1, id="unknown-number"),
    ],
)
def test_register_number_failures(graph: MetaGraphEmulator, pnid: str, pin: str, calls: int) -> None:
    with pytest.raises(ProviderError) as caught:
        register_number(graph.graph_url, DEFAULT_TOKEN, pnid, pin)
    assert caught.value.kind is ErrorKind.PERMANENT
    assert len(graph.requests("register")) == calls


def test_number_verification_codes(graph: MetaGraphEmulator) -> None:
    graph.numbers[DEFAULT_PNID]["code_verification_status"] = "NOT_VERIFIED"
    request_verification_code(graph.graph_url, DEFAULT_TOKEN, DEFAULT_PNID, method="VOICE", language="pt_BR")
    assert graph.requests("request_code")[0]["json"] == {"code_method": "VOICE", "language": "pt_BR"}
    with pytest.raises(ProviderError):
        verify_code(graph.graph_url, DEFAULT_TOKEN, DEFAULT_PNID, "000000")
    verify_code(graph.graph_url, DEFAULT_TOKEN, DEFAULT_PNID, graph.verification_code)
    assert graph.numbers[DEFAULT_PNID]["code_verification_status"] == "VERIFIED"
