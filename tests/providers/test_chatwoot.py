"""Chatwoot adapter: captured webhooks (signature freshness on a frozen clock) and the local API emulator."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from tests.emulators.chatwoot_api import (
    API_TOKEN,
    SECRET,
    ChatwootEmulator,
    incoming_message,
    sign_webhook,
)
from tests.emulators.server import serve
from tests.emulators.twilio_api import PNG_1X1, emulator_errors
from wa_portal.providers.base import (
    Capability,
    Channel,
    ErrorKind,
    InboundMedia,
    InboundMessage,
    MessageKind,
    OutboundMedia,
    OutboundMessage,
    ProviderError,
    TemplateRef,
    WebhookError,
    WebhookRequest,
    get_provider_class,
)
from wa_portal.providers.chatwoot import ChatwootProvider

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "chatwoot"
SIGNED: dict[str, dict[str, str]] = {
    k: v for k, v in json.loads((PAYLOADS / "signatures.json").read_text()).items() if not k.startswith("_")
}
WEBHOOKS = sorted(p.name for p in PAYLOADS.glob("*.json") if p.name != "signatures.json")
SIGNED_AT = 1751457600
ROUTE = "3:7"
PATIENT = "+16505551234"


def settings(base_url: str = "http://127.0.0.1:9", **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "api_token": API_TOKEN,
        "account_id": 3,
        "inbox_id": 7,
        "webhook_secret": SECRET,
        **overrides,
    }


def webhook(name: str, headers: dict[str, str] | None = None) -> WebhookRequest:
    body = (PAYLOADS / name).read_bytes()
    all_headers = {"Content-Type": "application/json", **SIGNED.get(name, {}), **(headers or {})}
    return WebhookRequest(
        method="POST", url="https://clinic.example.com/webhooks/chatwoot", headers=all_headers, body=body
    )


def at(timestamp: float) -> time_machine.travel:
    return time_machine.travel(datetime.fromtimestamp(timestamp, UTC), tick=False)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ChatwootEmulator, str]]:
    """One emulator per module (stopping a server takes half a second); reset before each test."""
    emulator = ChatwootEmulator()
    with serve(emulator) as url:
        yield emulator, url


@pytest.fixture
def emu(served: tuple[ChatwootEmulator, str]) -> Iterator[ChatwootEmulator]:
    served[0].reset()
    yield served[0]
    assert emulator_errors(served[0].log) == []


@pytest.fixture
def api_url(served: tuple[ChatwootEmulator, str], emu: ChatwootEmulator) -> str:
    return served[1]


@pytest.fixture
def provider(api_url: str) -> ChatwootProvider:
    return ChatwootProvider(settings(api_url))


@pytest.fixture
def offline() -> ChatwootProvider:
    return ChatwootProvider(settings())


# --- registration --------------------------------------------------------------------------------


def test_registered_with_its_contract() -> None:
    cls = get_provider_class("chatwoot")
    assert cls is ChatwootProvider
    assert cls.channels == {Channel.WHATSAPP}
    assert cls.capabilities == {Capability.TEXT, Capability.MEDIA, Capability.INBOUND}
    fields = {f.name: f for f in cls.settings_schema}
    assert list(fields) == ["base_url", "api_token", "account_id", "inbox_id", "webhook_secret"]
    assert fields["api_token"].secret and fields["webhook_secret"].secret
    assert not fields["webhook_secret"].required


# --- verify --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "valid"),
    [
        (SIGNED_AT, True),
        (SIGNED_AT + 299, True),
        (SIGNED_AT + 300, True),
        (SIGNED_AT + 301, False),
        (SIGNED_AT + 86_400, False),
        (SIGNED_AT - 299, True),
        (SIGNED_AT - 301, False),
    ],
    ids=["at signing", "4m59s later", "5m later", "stale", "a day later", "clock behind", "from the future"],
)
def test_verify_captured_signature_within_five_minutes(
    offline: ChatwootProvider, now: int, valid: bool
) -> None:
    with at(now):
        assert offline.verify_webhook(webhook("message_created_incoming_whatsapp.json")) is valid


def _headers(req: WebhookRequest, **changes: str | None) -> WebhookRequest:
    merged = {**req.headers, **{k.replace("_", "-"): v for k, v in changes.items()}}
    return dataclasses.replace(req, headers={k: v for k, v in merged.items() if v is not None})


TAMPERED: list[tuple[str, Callable[[WebhookRequest], WebhookRequest]]] = [
    ("body changed", lambda r: dataclasses.replace(r, body=r.body.replace(b"remarcar", b"cancelar"))),
    ("timestamp changed", lambda r: _headers(r, X_Chatwoot_Timestamp=str(SIGNED_AT + 1))),
    ("signature missing", lambda r: _headers(r, X_Chatwoot_Signature=None)),
    ("timestamp missing", lambda r: _headers(r, X_Chatwoot_Timestamp=None)),
    ("timestamp not a number", lambda r: _headers(r, X_Chatwoot_Timestamp="yesterday")),
    ("prefix missing", lambda r: _headers(r, X_Chatwoot_Signature=r.headers["X-Chatwoot-Signature"][7:])),
]


@pytest.mark.parametrize(("case", "tamper"), TAMPERED, ids=[c for c, _ in TAMPERED])
def test_verify_rejects_tampered(
    offline: ChatwootProvider, case: str, tamper: Callable[[WebhookRequest], WebhookRequest]
) -> None:
    req = webhook("message_created_incoming_whatsapp.json")
    with at(SIGNED_AT):
        assert offline.verify_webhook(req)
        assert not offline.verify_webhook(tamper(req))


def test_verify_rejects_another_secret() -> None:
    with at(SIGNED_AT):
        assert not ChatwootProvider(settings(webhook_secret="other")).verify_webhook(
            webhook("message_created_incoming_whatsapp.json")
        )


def test_verify_without_a_secret_accepts_unsigned_webhooks() -> None:
    """Chatwoot signs only webhooks that have a secret; without one there is nothing to check."""
    unsigned = dataclasses.replace(webhook("message_created_incoming_whatsapp.json"), headers={})
    assert ChatwootProvider(settings(webhook_secret="")).verify_webhook(unsigned)


def test_verify_emulator_signed_webhook_now(offline: ChatwootProvider) -> None:
    body = json.dumps(incoming_message()).encode()
    headers = sign_webhook(body)
    req = WebhookRequest(method="POST", url="https://x", headers=headers, body=body)
    assert offline.verify_webhook(req)
    stale = sign_webhook(body, timestamp=int(datetime.now(UTC).timestamp()) - 600)
    assert not offline.verify_webhook(dataclasses.replace(req, headers=stale))


# --- routing and event keys ----------------------------------------------------------------------


def test_route_keys_for_settings() -> None:
    assert ChatwootProvider.route_keys_for_settings(settings()) == [ROUTE]
    assert ChatwootProvider.route_keys_for_settings(settings(inbox_id="")) == []


@pytest.mark.parametrize("name", WEBHOOKS)
def test_every_captured_webhook_routes_by_account_and_inbox(name: str) -> None:
    assert ChatwootProvider.route_keys_for_request(webhook(name)) == [ROUTE]


def test_route_keys_refuse_a_body_that_is_not_json() -> None:
    with pytest.raises(WebhookError):
        ChatwootProvider.route_keys_for_request(
            WebhookRequest(method="POST", url="https://x", headers={}, body=b"x")
        )


def test_event_key_is_the_delivery_id() -> None:
    req = webhook("message_created_incoming_whatsapp.json", {"X-Chatwoot-Delivery": "5b1d1a4e-delivery"})
    assert ChatwootProvider.event_key(req) == "5b1d1a4e-delivery"
    assert ChatwootProvider.event_key(webhook("message_created_incoming_whatsapp.json")).startswith("sha256:")


# --- parse ---------------------------------------------------------------------------------------

BLOB = "https://chat.example.com/rails/active_storage/blobs/redirect/eyJfcmFpbHMi"

PARSE_CASES: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "message_created_incoming_whatsapp.json",
        [
            {
                "provider_message_id": "chatwoot:5501",
                "from_phone": PATIENT,
                "contact_name": "Maria Souza",
                "kind": MessageKind.TEXT,
                "text": "Olá, quero remarcar minha consulta",
                "conversation_ref": "88",
                "route_key": ROUTE,
                "channel": Channel.WHATSAPP,
                "timestamp": datetime(2025, 7, 2, 12, 0, tzinfo=UTC),
                "media": None,
            }
        ],
    ),
    (
        "message_created_incoming_image.json",
        [
            {
                "provider_message_id": "chatwoot:5502",
                "kind": MessageKind.IMAGE,
                "text": "Foto do exame",
                "media.url": f"{BLOB}1/exame.jpg",
                "media.mime_type": "image/jpeg",
                "media.filename": "exame.jpg",
                "media.caption": "Foto do exame",
            }
        ],
    ),
    (
        "message_created_incoming_attachments.json",
        [
            {
                "provider_message_id": "chatwoot:5503",
                "kind": MessageKind.IMAGE,
                "media.mime_type": "image/png",
            },
            {
                "provider_message_id": "chatwoot:5503#1",
                "kind": MessageKind.DOCUMENT,
                "media.url": f"{BLOB}3/laudo.pdf",
                "media.mime_type": "application/pdf",
                "conversation_ref": "88",
                "from_phone": PATIENT,
            },
            {
                "provider_message_id": "chatwoot:5503#2",
                "kind": MessageKind.AUDIO,
                "media.mime_type": "audio/ogg",
            },
        ],
    ),
    (
        "message_created_incoming_location.json",
        [
            {
                "kind": MessageKind.LOCATION,
                "media": None,
                "text": "Av. Paulista, 1000",
                "extra.latitude": -23.5613,
                "extra.longitude": -46.6565,
            }
        ],
    ),
    ("message_created_incoming_reply.json", [{"reply_to_provider_id": "chatwoot:5499"}]),
    ("message_created_outgoing.json", []),
    ("message_created_private_note.json", []),
    ("message_created_incoming_private.json", []),
    ("message_created_activity.json", []),
    ("message_created_template.json", []),
    ("message_updated.json", []),
    ("conversation_status_changed.json", []),
    ("conversation_created.json", []),
]


def _attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if hasattr(obj, "keys") else getattr(obj, part)
    return obj


def test_every_payload_has_a_parse_case() -> None:
    assert sorted(name for name, _ in PARSE_CASES) == WEBHOOKS


@pytest.mark.parametrize(("name", "expected"), PARSE_CASES, ids=[n for n, _ in PARSE_CASES])
def test_parse(offline: ChatwootProvider, name: str, expected: list[dict[str, Any]]) -> None:
    events = offline.parse_webhook(webhook(name))
    assert len(events) == len(expected), events
    for event, want in zip(events, expected, strict=True):
        assert isinstance(event, InboundMessage)
        assert event.raw
        for key, value in want.items():
            assert _attr(event, key) == value, key


@pytest.mark.parametrize("name", WEBHOOKS)
def test_parse_twice_gives_identical_ids(offline: ChatwootProvider, name: str) -> None:
    first = [getattr(e, "dedupe_key", None) for e in offline.parse_webhook(webhook(name))]
    assert first == [getattr(e, "dedupe_key", None) for e in offline.parse_webhook(webhook(name))]


def test_parse_falls_back_to_the_contact_inbox_for_the_phone(offline: ChatwootProvider) -> None:
    body = incoming_message(phone=None)
    body["conversation"]["contact_inbox"]["source_id"] = "16505551234"
    body["conversation"]["meta"]["sender"]["phone_number"] = None
    req = WebhookRequest(method="POST", url="https://x", headers={}, body=json.dumps(body).encode())
    [message] = offline.parse_webhook(req)
    assert isinstance(message, InboundMessage)
    assert message.from_phone == PATIENT


# --- send ----------------------------------------------------------------------------------------

MESSAGES_PATH = "/api/v1/accounts/3/conversations/88/messages"

SEND_CASES: list[tuple[str, OutboundMessage, dict[str, Any]]] = [
    (
        "text",
        OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Claro, às 10h.", conversation_ref="88"),
        {"content": "Claro, às 10h.", "message_type": "outgoing", "private": False},
    ),
    (
        "reply to a Chatwoot message",
        OutboundMessage(
            to=PATIENT, channel=Channel.WHATSAPP, text="Sim", conversation_ref="88", reply_to="chatwoot:5505"
        ),
        {
            "content": "Sim",
            "message_type": "outgoing",
            "private": False,
            "content_attributes": {"in_reply_to": 5505},
        },
    ),
    (
        "template goes out as its fallback text",
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            kind=MessageKind.TEMPLATE,
            text="Lembrete: consulta amanhã.",
            template=TemplateRef(name="reminder", language="pt_BR"),
            conversation_ref="88",
        ),
        {"content": "Lembrete: consulta amanhã.", "message_type": "outgoing", "private": False},
    ),
]


@pytest.mark.parametrize(("case", "msg", "expected"), SEND_CASES, ids=[c[0] for c in SEND_CASES])
def test_send(
    emu: ChatwootEmulator,
    provider: ChatwootProvider,
    case: str,
    msg: OutboundMessage,
    expected: dict[str, Any],
) -> None:
    result = provider.send(msg)
    [request] = emu.log.entries
    assert (request["method"], request["path"]) == ("POST", MESSAGES_PATH)
    assert request["headers"]["Api-Access-Token"] == API_TOKEN
    assert request["json"] == expected
    assert result.provider_message_id == f"chatwoot:{emu.sent[0]['id']}"
    assert result.status == "sent"


def test_send_attachment_as_multipart(emu: ChatwootEmulator, provider: ChatwootProvider) -> None:
    msg = OutboundMessage(
        to=PATIENT,
        channel=Channel.WHATSAPP,
        kind=MessageKind.DOCUMENT,
        text="Seu laudo",
        media=OutboundMedia(data=b"%PDF-1.4", mime_type="application/pdf", filename="laudo.pdf"),
        conversation_ref="88",
    )
    result = provider.send(msg)
    [request] = emu.log.entries
    assert request["form"] == {"content": ["Seu laudo"], "message_type": ["outgoing"], "private": ["false"]}
    assert request["files"] == {"attachments[]": [("laudo.pdf", "application/pdf", b"%PDF-1.4")]}
    assert result.provider_message_id == f"chatwoot:{emu.sent[0]['id']}"


SEND_ERRORS: list[tuple[str, Callable[[ChatwootEmulator], None], dict[str, Any], str, ErrorKind, str]] = [
    ("wrong token", lambda e: None, {"api_token": "wrong"}, "88", ErrorKind.AUTH, "401"),
    ("no access", lambda e: e.faults.fail_next(1, 403), {}, "88", ErrorKind.AUTH, "403"),
    ("conversation gone", lambda e: None, {}, "404404", ErrorKind.PERMANENT, "404"),
    ("other account", lambda e: None, {"account_id": 99}, "88", ErrorKind.PERMANENT, "404"),
    ("refused", lambda e: e.faults.fail_next(1, 422), {}, "88", ErrorKind.PERMANENT, "422"),
    ("rate limited", lambda e: e.faults.fail_next(1, 429), {}, "88", ErrorKind.RATE_LIMITED, "429"),
    ("server error", lambda e: e.faults.fail_next(1, 500), {}, "88", ErrorKind.RETRYABLE, "500"),
    ("connection dropped", lambda e: e.faults.down(), {}, "88", ErrorKind.RETRYABLE, "connection"),
]


@pytest.mark.parametrize(
    ("case", "inject", "overrides", "conversation", "kind", "code"),
    SEND_ERRORS,
    ids=[c[0] for c in SEND_ERRORS],
)
def test_send_errors(
    emu: ChatwootEmulator,
    api_url: str,
    case: str,
    inject: Callable[[ChatwootEmulator], None],
    overrides: dict[str, Any],
    conversation: str,
    kind: ErrorKind,
    code: str,
) -> None:
    inject(emu)
    msg = OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi", conversation_ref=conversation)
    with pytest.raises(ProviderError) as caught:
        ChatwootProvider(settings(api_url, **overrides)).send(msg)
    assert (caught.value.kind, caught.value.code) == (kind, code)
    assert len(emu.log.entries) == 1
    assert emu.sent == []


@pytest.mark.parametrize(
    ("msg", "phrase"),
    [
        (
            OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi"),
            "No Chatwoot conversation to reply in yet",
        ),
        (
            OutboundMessage(
                to=PATIENT,
                channel=Channel.WHATSAPP,
                kind=MessageKind.IMAGE,
                media=OutboundMedia(url="https://files.example/x.jpg", mime_type="image/jpeg"),
                conversation_ref="88",
            ),
            "the file itself",
        ),
        (OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="", conversation_ref="88"), "empty"),
        (OutboundMessage(to=PATIENT, channel=Channel.SMS, text="Oi", conversation_ref="88"), "cannot send"),
    ],
    ids=["no conversation", "media by link only", "empty", "sms"],
)
def test_send_refuses_locally(
    emu: ChatwootEmulator, provider: ChatwootProvider, msg: OutboundMessage, phrase: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.send(msg)
    assert caught.value.kind is ErrorKind.PERMANENT
    assert phrase in caught.value.detail
    assert emu.log.entries == []


# --- media ---------------------------------------------------------------------------------------


def test_fetch_media_follows_the_storage_redirect_without_the_token(
    emu: ChatwootEmulator, api_url: str, provider: ChatwootProvider
) -> None:
    path = emu.add_file(PNG_1X1, "image/png", "receita.png")
    assert provider.fetch_media(InboundMedia(url=api_url + path)) == (PNG_1X1, "image/png")
    blob, storage = emu.log.entries
    assert blob["path"] == path and blob["headers"]["Api-Access-Token"] == API_TOKEN
    assert storage["path"].startswith("/storage/")
    assert "Api-Access-Token" not in storage["headers"]


def test_fetch_media_of_a_parsed_attachment(
    emu: ChatwootEmulator, api_url: str, provider: ChatwootProvider
) -> None:
    data_url = api_url + emu.add_file(b"%PDF-1.4", "application/pdf", "laudo.pdf")
    body = incoming_message(
        attachments=[{"id": 1, "file_type": "file", "extension": "pdf", "data_url": data_url}]
    )
    req = WebhookRequest(method="POST", url="https://x", headers={}, body=json.dumps(body).encode())
    [message] = provider.parse_webhook(req)
    assert isinstance(message, InboundMessage) and message.media is not None
    assert message.kind is MessageKind.DOCUMENT
    assert provider.fetch_media(message.media) == (b"%PDF-1.4", "application/pdf")


@pytest.mark.parametrize(
    ("media", "kind"),
    [
        (InboundMedia(url="/rails/active_storage/blobs/redirect/missing/x.png"), ErrorKind.PERMANENT),
        (InboundMedia(url=None), ErrorKind.PERMANENT),
    ],
    ids=["gone", "no url"],
)
def test_fetch_media_failures(
    emu: ChatwootEmulator, api_url: str, provider: ChatwootProvider, media: InboundMedia, kind: ErrorKind
) -> None:
    if media.url:
        media = dataclasses.replace(media, url=api_url + media.url)
    with pytest.raises(ProviderError) as caught:
        provider.fetch_media(media)
    assert caught.value.kind is kind


# --- health --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "inject", "ok", "status"),
    [
        ({}, lambda e: None, True, "connected"),
        ({"api_token": "wrong"}, lambda e: None, False, "auth failed"),
        ({"inbox_id": 70}, lambda e: None, False, "inbox not found"),
        ({}, lambda e: e.faults.fail_next(1, 503), False, "unreachable"),
        ({}, lambda e: e.faults.down(), False, "unreachable"),
    ],
    ids=["ok", "wrong token", "wrong inbox", "server error", "down"],
)
def test_health(
    emu: ChatwootEmulator,
    api_url: str,
    overrides: dict[str, Any],
    inject: Callable[[ChatwootEmulator], None],
    ok: bool,
    status: str,
) -> None:
    inject(emu)
    health = ChatwootProvider(settings(api_url, **overrides)).health()
    assert (health.ok, health.status) == (ok, status)
    if ok:
        assert health.data["channel_type"] == "Channel::Whatsapp"
    [request] = emu.log.entries
    assert request["path"] == f"/api/v1/accounts/3/inboxes/{overrides.get('inbox_id', 7)}"
