"""WAHA adapter: captured webhooks, and real HTTP against the local WAHA emulator (sends, files, QR login)."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.server import serve
from tests.emulators.twilio_api import PNG_1X1, emulator_errors
from tests.emulators.waha import (
    API_KEY,
    HMAC_KEY,
    NOT_ON_WHATSAPP,
    WahaEmulator,
    message_payload,
    signed_webhook,
)
from wa_portal.providers import http
from wa_portal.providers.base import (
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
from wa_portal.providers.waha import WahaProvider

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "waha"
SIGNATURES: dict[str, str] = {
    k: v for k, v in json.loads((PAYLOADS / "signatures.json").read_text()).items() if not k.startswith("_")
}
WEBHOOKS = sorted(p.name for p in PAYLOADS.glob("webhook_*.json"))
SESSION = "clinic_42"
ROUTE = f"session:{SESSION}"
PATIENT = "+16505551234"
CHAT = "16505551234@c.us"


def settings(base_url: str = "http://127.0.0.1:9", **overrides: str) -> dict[str, str]:
    return {
        "base_url": base_url,
        "api_key": API_KEY,
        "session": SESSION,
        "webhook_hmac_key": HMAC_KEY,
        "display_phone": "+15550783881",
        **overrides,
    }


def webhook(name: str, signature: str | None = None) -> WebhookRequest:
    body = (PAYLOADS / name).read_bytes()
    headers = {"Content-Type": "application/json"}
    signature = signature or SIGNATURES.get(name)
    if signature:
        headers.update({"X-Webhook-Hmac": signature, "X-Webhook-Hmac-Algorithm": "sha512"})
    return WebhookRequest(
        method="POST", url="https://clinic.example.com/webhooks/waha", headers=headers, body=body
    )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[WahaEmulator, str]]:
    """One emulator per module (stopping a server takes half a second); reset before each test."""
    emulator = WahaEmulator()
    with serve(emulator) as url:
        yield emulator, url


@pytest.fixture
def emu(served: tuple[WahaEmulator, str]) -> Iterator[WahaEmulator]:
    served[0].reset()
    yield served[0]
    assert emulator_errors(served[0].log) == []


@pytest.fixture
def api_url(served: tuple[WahaEmulator, str], emu: WahaEmulator) -> str:
    return served[1]


@pytest.fixture
def provider(emu: WahaEmulator, api_url: str) -> WahaProvider:
    emu.add_session(SESSION)
    return WahaProvider(settings(api_url))


@pytest.fixture
def offline() -> WahaProvider:
    return WahaProvider(settings())


# --- registration --------------------------------------------------------------------------------


def test_registered_with_its_contract() -> None:
    cls = get_provider_class("waha")
    assert cls is WahaProvider
    assert cls.channels == {Channel.WHATSAPP}
    assert cls.capabilities == {
        Capability.TEXT,
        Capability.MEDIA,
        Capability.INBOUND,
        Capability.QR_LOGIN,
        Capability.READ_RECEIPT,
    }
    assert cls.rate_limit_per_second == 1.0
    fields = {f.name: f for f in cls.settings_schema}
    assert list(fields) == ["base_url", "api_key", "session", "webhook_hmac_key", "display_phone"]
    assert fields["api_key"].secret and fields["webhook_hmac_key"].secret
    assert fields["session"].default == "default"
    assert fields["base_url"].required


# --- verify --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_verify_accepts_captured_signature(offline: WahaProvider, name: str) -> None:
    assert offline.verify_webhook(webhook(name))


def _replace_header(req: WebhookRequest, **headers: str | None) -> WebhookRequest:
    merged = {**req.headers, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return dataclasses.replace(req, headers={k: v for k, v in merged.items() if v is not None})


TAMPERED: list[tuple[str, Callable[[WebhookRequest], WebhookRequest]]] = [
    ("body changed", lambda r: dataclasses.replace(r, body=r.body.replace(b"remarcar", b"cancelar"))),
    ("whitespace added", lambda r: dataclasses.replace(r, body=r.body + b"\n")),
    ("signature missing", lambda r: _replace_header(r, X_Webhook_Hmac=None)),
    ("signature truncated", lambda r: _replace_header(r, X_Webhook_Hmac=r.headers["X-Webhook-Hmac"][:-2])),
    (
        "another body's signature",
        lambda r: _replace_header(r, X_Webhook_Hmac=SIGNATURES["webhook_message_ack_server.json"]),
    ),
    ("other algorithm announced", lambda r: _replace_header(r, X_Webhook_Hmac_Algorithm="sha256")),
]


@pytest.mark.parametrize(("case", "tamper"), TAMPERED, ids=[c for c, _ in TAMPERED])
def test_verify_rejects_tampered(
    offline: WahaProvider, case: str, tamper: Callable[[WebhookRequest], WebhookRequest]
) -> None:
    req = webhook("webhook_message_text.json")
    assert offline.verify_webhook(req)
    assert not offline.verify_webhook(tamper(req))


def test_verify_rejects_another_key() -> None:
    assert not WahaProvider(settings(webhook_hmac_key="another-key")).verify_webhook(
        webhook("webhook_message_text.json")
    )


def test_verify_without_a_configured_key_is_false() -> None:
    """No key, nothing to check: the adapter says False and the web layer decides the policy."""
    assert not WahaProvider(settings(webhook_hmac_key="")).verify_webhook(
        webhook("webhook_message_text.json")
    )


def test_verify_accepts_uppercase_hex(offline: WahaProvider) -> None:
    req = webhook("webhook_message_text.json")
    assert offline.verify_webhook(_replace_header(req, X_Webhook_Hmac=req.headers["X-Webhook-Hmac"].upper()))


def test_verify_emulator_signed_webhook(offline: WahaProvider) -> None:
    signed = signed_webhook("message", message_payload(), session=SESSION)
    assert offline.verify_webhook(signed.as_webhook_request())


# --- routing and event keys ----------------------------------------------------------------------


def test_route_keys_for_settings() -> None:
    assert WahaProvider.route_keys_for_settings(settings()) == [ROUTE]
    assert WahaProvider.route_keys_for_settings({"base_url": "http://waha:3000"}) == ["session:default"]


@pytest.mark.parametrize("name", WEBHOOKS)
def test_every_captured_webhook_routes_by_session(name: str) -> None:
    assert WahaProvider.route_keys_for_request(webhook(name)) == [ROUTE]


def test_route_keys_refuse_a_body_that_is_not_json() -> None:
    req = WebhookRequest(method="POST", url="https://x", headers={}, body=b"<html>")
    with pytest.raises(WebhookError):
        WahaProvider.route_keys_for_request(req)


def test_event_key_is_the_envelope_id() -> None:
    assert WahaProvider.event_key(webhook("webhook_message_text.json")) == "evt_01jz5m8q3r4s5t6v7w8x9y0z1a"
    no_id = WebhookRequest(method="POST", url="https://x", headers={}, body=b'{"event":"message"}')
    assert WahaProvider.event_key(no_id).startswith("sha256:")
    not_json = WebhookRequest(method="POST", url="https://x", headers={}, body=b"\xff")
    assert WahaProvider.event_key(not_json).startswith("sha256:")


# --- parse ---------------------------------------------------------------------------------------

ECHO = "true_16505551234@c.us_3EB0F00DBABE00000001"

PARSE_CASES: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "webhook_message_text.json",
        [
            {
                "provider_message_id": "false_16505551234@c.us_3EB0C767D26A1D0B8E2A",
                "kind": MessageKind.TEXT,
                "from_phone": PATIENT,
                "text": "Olá, quero remarcar",
                "timestamp": datetime(2025, 7, 2, 12, 0, tzinfo=UTC),
                "channel": Channel.WHATSAPP,
                "route_key": ROUTE,
                "media": None,
                "extra.chat_id": CHAT,
            }
        ],
    ),
    (
        "webhook_message_image.json",
        [
            {
                "kind": MessageKind.IMAGE,
                "text": "Foto do meu exame",
                "media.url": "http://localhost:3000/api/files/clinic_42/"
                "false_16505551234@c.us_3EB0A1B2C3D4E5F60001.jpeg",
                "media.mime_type": "image/jpeg",
                "media.caption": "Foto do meu exame",
            }
        ],
    ),
    (
        "webhook_message_document.json",
        [
            {
                "kind": MessageKind.DOCUMENT,
                "media.mime_type": "application/pdf",
                "media.filename": "exame_sangue.pdf",
            }
        ],
    ),
    (
        "webhook_message_media_error.json",
        [{"kind": MessageKind.VIDEO, "media.url": None, "media.mime_type": "video/mp4", "text": ""}],
    ),
    (
        "webhook_message_media_null.json",
        [{"kind": MessageKind.AUDIO, "media.url": None, "media.mime_type": None}],
    ),
    ("webhook_message_from_me.json", []),
    ("webhook_message_group.json", []),
    (
        "webhook_message_any_incoming.json",
        [{"provider_message_id": "false_16505551234@c.us_3EB0C767D26A1D0B8E2A", "kind": MessageKind.TEXT}],
    ),
    ("webhook_message_any_api_echo.json", []),
    ("webhook_message_any_app_echo.json", []),
    ("webhook_message_reply.json", [{"text": "Pode ser às 10h?", "reply_to_provider_id": ECHO}]),
    (
        "webhook_message_lid.json",
        [
            {
                "from_phone": PATIENT,
                "contact_name": "Maria Souza",
                "extra.lid": "148823459876543@lid",
                "extra.chat_id": "148823459876543@lid",
            }
        ],
    ),
    (
        "webhook_message_lid_no_phone.json",
        [{"from_phone": "+148823459876543", "extra.lid": "148823459876543@lid"}],
    ),
    (
        "webhook_message_location.json",
        [
            {
                "kind": MessageKind.LOCATION,
                "text": "Av. Paulista, 1000",
                "extra.latitude": -23.5613,
                "extra.longitude": -46.6565,
            }
        ],
    ),
    (
        "webhook_message_ack_server.json",
        [{"type": StatusUpdate, "provider_message_id": ECHO, "status": "sent", "route_key": ROUTE}],
    ),
    (
        "webhook_message_ack_device.json",
        [{"type": StatusUpdate, "provider_message_id": ECHO, "status": "delivered"}],
    ),
    ("webhook_message_ack_read.json", [{"type": StatusUpdate, "status": "read"}]),
    ("webhook_message_ack_played.json", [{"type": StatusUpdate, "status": "read"}]),
    (
        "webhook_message_ack_error.json",
        [
            {
                "type": StatusUpdate,
                "status": "failed",
                "error_title": "WhatsApp could not deliver the message.",
            }
        ],
    ),
    ("webhook_message_ack_pending.json", []),
    ("webhook_message_ack_incoming.json", []),
    (
        "webhook_message_reaction.json",
        [
            {
                "kind": MessageKind.REACTION,
                "provider_message_id": "false_16505551234@c.us_3EB0A1B2C3D4E5F60012",
                "text": "👍",
                "reply_to_provider_id": ECHO,
                "extra.emoji": "👍",
            }
        ],
    ),
    (
        "webhook_session_status_working.json",
        [{"type": ConnectionEvent, "kind": "session_status", "data.status": "WORKING", "route_key": ROUTE}],
    ),
    ("webhook_session_status_scan_qr.json", [{"type": ConnectionEvent, "data.status": "SCAN_QR_CODE"}]),
    ("webhook_session_status_failed.json", [{"type": ConnectionEvent, "data.status": "FAILED"}]),
    ("webhook_state_change.json", []),
]


def _attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) or hasattr(obj, "keys") else getattr(obj, part)
    return obj


def assert_events(events: list[Any], expected: list[dict[str, Any]]) -> None:
    assert len(events) == len(expected), events
    for event, want in zip(events, expected, strict=True):
        want = dict(want)
        assert type(event) is want.pop("type", InboundMessage)
        assert event.raw, "every event keeps the raw payload"
        for key, value in want.items():
            assert _attr(event, key) == value, key


def test_every_webhook_payload_has_a_parse_case() -> None:
    assert sorted(name for name, _ in PARSE_CASES) == WEBHOOKS


@pytest.mark.parametrize(("name", "expected"), PARSE_CASES, ids=[n for n, _ in PARSE_CASES])
def test_parse(offline: WahaProvider, name: str, expected: list[dict[str, Any]]) -> None:
    assert_events(offline.parse_webhook(webhook(name)), expected)


def test_session_status_event_keeps_the_last_statuses(offline: WahaProvider) -> None:
    [event] = offline.parse_webhook(webhook("webhook_session_status_working.json"))
    assert isinstance(event, ConnectionEvent)
    assert [s["status"] for s in event.data["statuses"]] == ["STOPPED", "STARTING", "WORKING"]


def test_message_and_its_message_any_twin_dedupe_to_one(offline: WahaProvider) -> None:
    """Subscribed to both events, WAHA delivers an incoming message twice under two event ids."""
    direct = offline.parse_webhook(webhook("webhook_message_text.json"))
    twin = offline.parse_webhook(webhook("webhook_message_any_incoming.json"))
    assert [getattr(e, "dedupe_key", None) for e in direct] == [getattr(e, "dedupe_key", None) for e in twin]
    assert len(direct) == 1
    assert WahaProvider.event_key(webhook("webhook_message_text.json")) != WahaProvider.event_key(
        webhook("webhook_message_any_incoming.json")
    )


@pytest.mark.parametrize("name", WEBHOOKS)
def test_parse_twice_gives_identical_ids(offline: WahaProvider, name: str) -> None:
    first = [getattr(e, "dedupe_key", None) for e in offline.parse_webhook(webhook(name))]
    assert first == [getattr(e, "dedupe_key", None) for e in offline.parse_webhook(webhook(name))]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"event":"message","session":"clinic_42","payload":null}'],
    ids=["not json", "not an object", "message without payload"],
)
def test_parse_refuses_unreadable_bodies(offline: WahaProvider, body: bytes) -> None:
    with pytest.raises(WebhookError):
        offline.parse_webhook(WebhookRequest(method="POST", url="https://x", headers={}, body=body))


# --- send ----------------------------------------------------------------------------------------

SAMPLE_SEND = json.loads((PAYLOADS / "send_text_request.json").read_text())

SEND_CASES: list[tuple[str, OutboundMessage, str, dict[str, Any]]] = [
    (
        "text (the captured request)",
        OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text=SAMPLE_SEND["text"]),
        "/api/sendText",
        SAMPLE_SEND,
    ),
    (
        "text as a reply",
        OutboundMessage(
            to="+1 650 555 1234", channel=Channel.WHATSAPP, text="Sim", reply_to="false_16505551234@c.us_AAA"
        ),
        "/api/sendText",
        {
            "session": SESSION,
            "chatId": CHAT,
            "text": "Sim",
            "linkPreview": False,
            "reply_to": "false_16505551234@c.us_AAA",
        },
    ),
    (
        "image by URL with caption",
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            kind=MessageKind.IMAGE,
            text="Seu pedido de exame",
            media=OutboundMedia(url="https://files.clinic.example/s/abc.jpg", mime_type="image/jpeg"),
        ),
        "/api/sendImage",
        {
            "session": SESSION,
            "chatId": CHAT,
            "file": {"mimetype": "image/jpeg", "url": "https://files.clinic.example/s/abc.jpg"},
            "caption": "Seu pedido de exame",
        },
    ),
    (
        "document uploaded as base64",
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            kind=MessageKind.DOCUMENT,
            media=OutboundMedia(data=b"%PDF-1.4", mime_type="application/pdf", filename="laudo.pdf"),
        ),
        "/api/sendFile",
        {
            "session": SESSION,
            "chatId": CHAT,
            "file": {
                "mimetype": "application/pdf",
                "data": base64.b64encode(b"%PDF-1.4").decode(),
                "filename": "laudo.pdf",
            },
        },
    ),
    (
        "template goes out as its fallback text",
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            kind=MessageKind.TEMPLATE,
            text="Lembrete: consulta amanhã às 09:30.",
            template=TemplateRef(name="reminder", language="pt_BR", params=("amanhã",)),
        ),
        "/api/sendText",
        {
            "session": SESSION,
            "chatId": CHAT,
            "text": "Lembrete: consulta amanhã às 09:30.",
            "linkPreview": False,
        },
    ),
    (
        "a @lid chat id passes through",
        OutboundMessage(to="148823459876543@lid", channel=Channel.WHATSAPP, text="Oi"),
        "/api/sendText",
        {"session": SESSION, "chatId": "148823459876543@lid", "text": "Oi", "linkPreview": False},
    ),
]


@pytest.mark.parametrize(("case", "msg", "path", "expected"), SEND_CASES, ids=[c[0] for c in SEND_CASES])
def test_send(
    emu: WahaEmulator,
    provider: WahaProvider,
    case: str,
    msg: OutboundMessage,
    path: str,
    expected: dict[str, Any],
) -> None:
    result = provider.send(msg)
    [request] = emu.log.entries
    assert (request["method"], request["path"]) == ("POST", path)
    assert request["headers"]["X-Api-Key"] == API_KEY
    assert request["json"] == expected
    [sent] = emu.sent
    assert result.provider_message_id == sent["id"]
    assert result.provider_message_id.startswith(f"true_{expected['chatId']}_")


def test_send_reads_an_id_object(emu: WahaEmulator, provider: WahaProvider) -> None:
    emu.id_style = "object"
    result = provider.send(OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi"))
    assert result.provider_message_id == emu.sent[0]["id"]


def test_send_without_a_recognizable_id_still_succeeds(emu: WahaEmulator, provider: WahaProvider) -> None:
    """The message went out: raising would make the delivery layer send it twice."""
    emu.faults.fail_next(1, 201, {"ok": True})
    result = provider.send(OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi"))
    assert result.provider_message_id.startswith("waha:")


SEND_ERRORS: list[tuple[str, Callable[[WahaEmulator], None], dict[str, str], str, ErrorKind, str]] = [
    ("wrong api key", lambda e: None, {"api_key": "wrong"}, PATIENT, ErrorKind.AUTH, "401"),
    ("not on WhatsApp", lambda e: None, {}, NOT_ON_WHATSAPP, ErrorKind.RECIPIENT_INVALID, "422"),
    (
        "engine says no LID (500)",
        lambda e: e.faults.fail_next(1, 500, {"statusCode": 500, "message": "Error: No LID for user"}),
        {},
        PATIENT,
        ErrorKind.RECIPIENT_INVALID,
        "500",
    ),
    (
        "phone not linked",
        lambda e: e.set_status(SESSION, "SCAN_QR_CODE"),
        {},
        PATIENT,
        ErrorKind.AUTH,
        "SCAN_QR_CODE",
    ),
    ("session failed", lambda e: e.set_status(SESSION, "FAILED"), {}, PATIENT, ErrorKind.AUTH, "FAILED"),
    (
        "session starting",
        lambda e: e.set_status(SESSION, "STARTING"),
        {},
        PATIENT,
        ErrorKind.RETRYABLE,
        "STARTING",
    ),
    ("unknown session", lambda e: None, {"session": "nope"}, PATIENT, ErrorKind.PERMANENT, "404"),
    (
        "bad request",
        lambda e: e.faults.fail_next(1, 400, {"statusCode": 400}),
        {},
        PATIENT,
        ErrorKind.PERMANENT,
        "400",
    ),
    ("rate limited", lambda e: e.faults.fail_next(1, 429), {}, PATIENT, ErrorKind.RATE_LIMITED, "429"),
    ("server error", lambda e: e.faults.fail_next(1, 502), {}, PATIENT, ErrorKind.RETRYABLE, "502"),
    ("connection dropped", lambda e: e.faults.down(), {}, PATIENT, ErrorKind.RETRYABLE, "connection"),
]


@pytest.mark.parametrize(
    ("case", "inject", "overrides", "to", "kind", "code"), SEND_ERRORS, ids=[c[0] for c in SEND_ERRORS]
)
def test_send_errors(
    emu: WahaEmulator,
    api_url: str,
    case: str,
    inject: Callable[[WahaEmulator], None],
    overrides: dict[str, str],
    to: str,
    kind: ErrorKind,
    code: str,
) -> None:
    emu.add_session(SESSION)
    inject(emu)
    with pytest.raises(ProviderError) as caught:
        WahaProvider(settings(api_url, **overrides)).send(
            OutboundMessage(to=to, channel=Channel.WHATSAPP, text="Oi")
        )
    assert (caught.value.kind, caught.value.code) == (kind, code)
    assert to.lstrip("+") not in caught.value.detail
    assert len(emu.log.entries) == 1
    assert emu.sent == []


def test_send_timeout_is_retryable(
    emu: WahaEmulator, provider: WahaProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.3)
    emu.faults.delay(5)
    try:
        with pytest.raises(ProviderError) as caught:
            provider.send(OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi"))
    finally:
        emu.faults.reset()
    assert (caught.value.kind, caught.value.code) == (ErrorKind.RETRYABLE, "timeout")


@pytest.mark.parametrize(
    ("overrides", "msg"),
    [
        ({}, OutboundMessage(to=PATIENT, channel=Channel.SMS, text="Oi")),
        ({}, OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="")),
        (
            {},
            OutboundMessage(
                to=PATIENT, channel=Channel.WHATSAPP, kind=MessageKind.IMAGE, media=OutboundMedia()
            ),
        ),
        ({"base_url": ""}, OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi")),
    ],
    ids=["sms", "empty", "media without file", "no base url"],
)
def test_send_refuses_locally(
    emu: WahaEmulator, api_url: str, overrides: dict[str, str], msg: OutboundMessage
) -> None:
    with pytest.raises(ProviderError) as caught:
        WahaProvider({**settings(api_url), **overrides}).send(msg)
    assert caught.value.kind is ErrorKind.PERMANENT
    assert emu.log.entries == []


def test_mark_read(emu: WahaEmulator, provider: WahaProvider) -> None:
    provider.mark_read("false_16505551234@c.us_3EB0C767D26A1D0B8E2A")
    assert emu.seen == [
        {"session": SESSION, "chatId": CHAT, "messageIds": ["false_16505551234@c.us_3EB0C767D26A1D0B8E2A"]}
    ]
    provider.mark_read("not-a-waha-id")
    assert len(emu.seen) == 1


# --- media ---------------------------------------------------------------------------------------


def test_fetch_media_from_the_waha_file_url(emu: WahaEmulator, api_url: str, provider: WahaProvider) -> None:
    path = emu.add_file(PNG_1X1, "image/jpeg", session=SESSION)
    assert provider.fetch_media(InboundMedia(url=api_url + path)) == (PNG_1X1, "image/jpeg")
    [request] = emu.log.entries
    assert request["headers"]["X-Api-Key"] == API_KEY


def test_fetch_media_rewrites_wahas_own_base_url(emu: WahaEmulator, provider: WahaProvider) -> None:
    """WAHA writes file URLs with its WAHA_BASE_URL (localhost:3000 by default), unreachable from here."""
    path = emu.add_file(b"%PDF", "application/pdf", session=SESSION)
    assert provider.fetch_media(InboundMedia(url="http://localhost:3000" + path)) == (
        b"%PDF",
        "application/pdf",
    )
    assert emu.log.entries[0]["path"] == path


def test_fetch_media_sends_no_key_to_another_host(provider: WahaProvider) -> None:
    foreign = WahaEmulator(api_key=None)
    with serve(foreign) as foreign_url:
        path = "/media/photo.jpg"  # not a WAHA /api/files/ path: fetched where it points
        with pytest.raises(ProviderError):
            provider.fetch_media(InboundMedia(url=foreign_url + path))
    [request] = foreign.log.entries
    assert "X-Api-Key" not in request["headers"]


@pytest.mark.parametrize(
    ("overrides", "file_path", "kind"),
    [
        ({"api_key": "wrong"}, None, ErrorKind.AUTH),
        ({}, "/api/files/clinic_42/GONE.jpeg", ErrorKind.PERMANENT),
    ],
    ids=["wrong key", "gone"],
)
def test_fetch_media_failures(
    emu: WahaEmulator, api_url: str, overrides: dict[str, str], file_path: str | None, kind: ErrorKind
) -> None:
    path = file_path or emu.add_file(session=SESSION)
    with pytest.raises(ProviderError) as caught:
        WahaProvider(settings(api_url, **overrides)).fetch_media(InboundMedia(url=api_url + path))
    assert caught.value.kind is kind


def test_fetch_media_that_waha_could_not_download(offline: WahaProvider) -> None:
    [message] = offline.parse_webhook(webhook("webhook_message_media_null.json"))
    assert isinstance(message, InboundMessage) and message.media is not None
    with pytest.raises(ProviderError) as caught:
        offline.fetch_media(message.media)
    assert caught.value.kind is ErrorKind.PERMANENT


# --- sessions and QR login -----------------------------------------------------------------------


def test_qr_login_flow(emu: WahaEmulator, api_url: str) -> None:
    provider = WahaProvider(settings(api_url))
    assert provider.health().status == "session not found"

    created = provider.start_session(
        config={"webhooks": [{"url": "https://clinic.example.com/webhooks/waha"}]}
    )
    assert created["status"] == "STARTING"
    assert [e["path"] for e in emu.log.find(method="POST")] == [
        f"/api/sessions/{SESSION}/start",
        "/api/sessions",
    ]
    assert emu.sessions[SESSION]["config"]["webhooks"][0]["url"].endswith("/webhooks/waha")
    assert (provider.health().ok, provider.health().status) == (False, "STARTING")
    with pytest.raises(ProviderError) as too_early:
        provider.get_qr()
    assert too_early.value.kind is ErrorKind.RETRYABLE  # no QR yet while the session starts

    assert emu.step(SESSION) == "SCAN_QR_CODE"
    health = provider.health()
    assert (health.ok, health.status) == (False, "SCAN_QR_CODE")
    assert "Scan the QR code" in health.detail
    qr = provider.get_qr()
    assert qr == PNG_1X1
    assert emu.log.find(path=f"/api/{SESSION}/auth/qr")[-1]["headers"]["Accept"] == "application/json"
    emu.qr_always_png = True
    assert provider.get_qr() == PNG_1X1

    emu.scan(SESSION, "+15550783881")
    health = provider.health()
    assert (health.ok, health.status) == (True, "WORKING")
    assert health.data["me"]["id"] == "15550783881@c.us"
    assert provider.get_session()["status"] == "WORKING"
    provider.send(OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Conectado"))

    provider.start_session()  # idempotent on a running session
    assert emu.sessions[SESSION]["status"] == "WORKING"

    provider.logout()
    assert emu.sessions[SESSION]["me"] is None
    assert emu.step(SESSION) == "SCAN_QR_CODE"  # unlinked: a new QR to scan
    emu.fail(SESSION)
    assert (provider.health().ok, provider.health().status) == (False, "FAILED")
    provider.stop_session()
    assert emu.sessions[SESSION]["status"] == "STOPPED"


def test_session_status_webhook_from_the_emulator(emu: WahaEmulator, offline: WahaProvider) -> None:
    emu.add_session(SESSION, status="STARTING", me_phone=None)
    emu.step(SESSION)
    signed = emu.session_status_webhook(SESSION)
    req = signed.as_webhook_request()
    assert offline.verify_webhook(req)
    [event] = offline.parse_webhook(req)
    assert isinstance(event, ConnectionEvent)
    assert event.data["status"] == "SCAN_QR_CODE"
    assert [s["status"] for s in event.data["statuses"]] == ["STARTING", "SCAN_QR_CODE"]


@pytest.mark.parametrize(
    ("overrides", "inject", "status"),
    [
        ({"api_key": "wrong"}, lambda e: None, "auth failed"),
        ({"session": "missing"}, lambda e: None, "session not found"),
        ({}, lambda e: e.faults.down(), "unreachable"),
        ({}, lambda e: e.faults.fail_next(1, 500), "unreachable"),
    ],
    ids=["wrong key", "no session", "down", "server error"],
)
def test_health_failures(
    emu: WahaEmulator,
    api_url: str,
    overrides: dict[str, str],
    inject: Callable[[WahaEmulator], None],
    status: str,
) -> None:
    emu.add_session(SESSION)
    inject(emu)
    health = WahaProvider(settings(api_url, **overrides)).health()
    assert (health.ok, health.status) == (False, status)
