"""Twilio adapter: captured webhooks, and the real twilio SDK aimed at the local Messages API emulator."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from twilio.request_validator import RequestValidator

from tests.emulators.server import serve
from tests.emulators.twilio_api import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INVALID_TO,
    NOT_MOBILE_TO,
    OPTED_OUT_TO,
    PNG_1X1,
    RATE_LIMITED_TO,
    UNVERIFIED_TO,
    WINDOW_CLOSED_TO,
    TwilioEmulator,
    emulator_errors,
    inbound_form,
    sign_form,
)
from wa_portal.providers import http
from wa_portal.providers.base import (
    Button,
    Capability,
    Channel,
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
from wa_portal.providers.twilio import TwilioProvider

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "twilio"
WHATSAPP_FROM = "+15550783881"
SMS_FROM = "+15550783999"
SERVICE_SID = "MG9f8e7d6c5b4a39281706f5e4d3c2b1a0"
PATIENT = "+16505551234"
STATUS_URL = "https://clinic.example.com/webhooks/twilio/status"


def settings(base_url: str = "http://127.0.0.1:9", **overrides: str) -> dict[str, str]:
    return {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "whatsapp_from": f"whatsapp:{WHATSAPP_FROM}",
        "sms_from": SMS_FROM,
        "messaging_service_sid": "",
        "base_url": base_url,
        **overrides,
    }


def captured(name: str) -> tuple[str, str | None, bytes]:
    """(URL, X-Twilio-Signature, body) of a captured .txt payload."""
    text = (PAYLOADS / name).read_text()
    url = re.search(r"^# POST (\S+)", text, re.MULTILINE)
    signature = re.search(r"X-Twilio-Signature: (\S+)$", text, re.MULTILINE)
    body = "".join(line for line in text.splitlines() if line and not line.startswith("#"))
    assert url is not None
    return url.group(1), signature.group(1) if signature else None, body.encode()


def webhook(name: str) -> WebhookRequest:
    url, signature, body = captured(name)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature:
        headers["X-Twilio-Signature"] = signature
    form = parse_qs(body.decode(), keep_blank_values=True)
    return WebhookRequest(method="POST", url=url, headers=headers, body=body, form=form)


SIGNED_PAYLOADS = sorted(p.name for p in PAYLOADS.glob("*.txt") if "X-Twilio-Signature:" in p.read_text())


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[TwilioEmulator, str]]:
    """One emulator per module (stopping a server takes half a second); reset before each test."""
    emulator = TwilioEmulator()
    with serve(emulator) as url:
        yield emulator, url


@pytest.fixture
def emu(served: tuple[TwilioEmulator, str]) -> Iterator[TwilioEmulator]:
    served[0].reset()
    yield served[0]
    assert emulator_errors(served[0].log) == []


@pytest.fixture
def api_url(served: tuple[TwilioEmulator, str], emu: TwilioEmulator) -> str:
    return served[1]


@pytest.fixture
def provider(api_url: str) -> TwilioProvider:
    return TwilioProvider(settings(api_url))


@pytest.fixture
def offline() -> TwilioProvider:
    """For webhook tests: no network."""
    return TwilioProvider(settings())


# --- registration --------------------------------------------------------------------------------


def test_registered_with_its_contract() -> None:
    cls = get_provider_class("twilio")
    assert cls is TwilioProvider
    assert cls.channels == {Channel.WHATSAPP, Channel.SMS}
    assert cls.capabilities == {
        Capability.TEXT,
        Capability.MEDIA,
        Capability.TEMPLATE,
        Capability.BUTTONS,
        Capability.SMS,
        Capability.INBOUND,
    }
    assert cls.rate_limit_per_second == 10
    fields = {f.name: f for f in cls.settings_schema}
    assert list(fields) == [
        "account_sid",
        "auth_token",
        "whatsapp_from",
        "sms_from",
        "messaging_service_sid",
        "base_url",
    ]
    assert fields["auth_token"].secret
    assert fields["base_url"].default == "https://api.twilio.com"


# --- verify --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SIGNED_PAYLOADS)
def test_verify_accepts_captured_signature(offline: TwilioProvider, name: str) -> None:
    assert offline.verify_webhook(webhook(name))


def _with_form(req: WebhookRequest, change: Callable[[dict[str, list[str]]], Any]) -> WebhookRequest:
    form = {k: list(v) for k, v in req.form.items()}
    change(form)
    return dataclasses.replace(req, form=form)


def _without_header(req: WebhookRequest) -> WebhookRequest:
    return dataclasses.replace(req, headers={"Content-Type": "application/x-www-form-urlencoded"})


TAMPERED: list[tuple[str, Callable[[WebhookRequest], WebhookRequest]]] = [
    ("body changed", lambda r: _with_form(r, lambda f: f.__setitem__("Body", ["Cancelar tudo"]))),
    ("parameter added", lambda r: _with_form(r, lambda f: f.__setitem__("Injected", ["1"]))),
    ("parameter removed", lambda r: _with_form(r, lambda f: f.pop("ProfileName"))),
    ("value repeated", lambda r: _with_form(r, lambda f: f["Body"].append("again"))),
    ("other URL", lambda r: dataclasses.replace(r, url=r.url.replace("whatsapp", "sms"))),
    ("http instead of https", lambda r: dataclasses.replace(r, url=r.url.replace("https:", "http:"))),
    ("signature missing", _without_header),
    ("signature empty", lambda r: dataclasses.replace(r, headers={**r.headers, "X-Twilio-Signature": ""})),
    (
        "signature of another body",
        lambda r: dataclasses.replace(r, headers=webhook("status_callback_sent.txt").headers),
    ),
]


@pytest.mark.parametrize(("case", "tamper"), TAMPERED, ids=[c for c, _ in TAMPERED])
def test_verify_rejects_tampered(
    offline: TwilioProvider, case: str, tamper: Callable[[WebhookRequest], WebhookRequest]
) -> None:
    req = webhook("inbound_whatsapp_text.txt")
    assert offline.verify_webhook(req)
    assert not offline.verify_webhook(tamper(req))


def test_verify_rejects_other_auth_token() -> None:
    other = TwilioProvider(settings(auth_token="another_token_000000000000000000"))
    assert not other.verify_webhook(webhook("inbound_whatsapp_text.txt"))
    assert not TwilioProvider(settings(auth_token="")).verify_webhook(webhook("inbound_whatsapp_text.txt"))


def test_verify_reads_the_raw_body_when_the_form_is_not_filled(offline: TwilioProvider) -> None:
    req = dataclasses.replace(webhook("inbound_whatsapp_text.txt"), form={})
    assert offline.verify_webhook(req)


def test_verify_accepts_url_with_default_port(offline: TwilioProvider) -> None:
    req = webhook("status_callback_delivered.txt")
    with_port = req.url.replace("clinic.example.com", "clinic.example.com:443")
    assert offline.verify_webhook(dataclasses.replace(req, url=with_port))


def test_verify_signs_every_value_of_a_repeated_parameter(offline: TwilioProvider) -> None:
    url = "https://clinic.example.com/webhooks/twilio"
    signed = sign_form(url, {"AccountSid": ACCOUNT_SID, "MessageSid": "SM1", "Tag": ["b", "a"]})
    assert offline.verify_webhook(signed.as_webhook_request())
    one_value = dataclasses.replace(signed.as_webhook_request(), form={**signed.form, "Tag": ["a"]})
    assert not offline.verify_webhook(one_value)


def test_verify_json_body_with_body_hash(offline: TwilioProvider) -> None:
    body = json.dumps({"MessageSid": "SM1", "AccountSid": ACCOUNT_SID}).encode()
    url = f"https://clinic.example.com/webhooks/twilio?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, {})
    req = WebhookRequest(method="POST", url=url, headers={"X-Twilio-Signature": signature}, body=body)
    assert offline.verify_webhook(req)
    assert not offline.verify_webhook(dataclasses.replace(req, body=body.replace(b"SM1", b"SM2")))


# --- routing -------------------------------------------------------------------------------------


def test_route_keys_for_settings() -> None:
    assert TwilioProvider.route_keys_for_settings(settings()) == [
        f"{ACCOUNT_SID}:{WHATSAPP_FROM}",
        f"{ACCOUNT_SID}:{SMS_FROM}",
    ]
    assert TwilioProvider.route_keys_for_settings(settings(sms_from="", whatsapp_from="+1 555 078-3881")) == [
        f"{ACCOUNT_SID}:{WHATSAPP_FROM}"
    ]
    assert TwilioProvider.route_keys_for_settings(
        settings(sms_from="", whatsapp_from="", messaging_service_sid=SERVICE_SID)
    ) == [f"{ACCOUNT_SID}:{SERVICE_SID}"]
    assert TwilioProvider.route_keys_for_settings(settings(account_sid="")) == []


@pytest.mark.parametrize("name", SIGNED_PAYLOADS)
def test_every_captured_webhook_routes_to_its_connection(name: str) -> None:
    """Inbound messages match on To, status callbacks on From; each payload finds the connection."""
    keys = TwilioProvider.route_keys_for_request(webhook(name))
    assert keys
    assert all(k.startswith(f"{ACCOUNT_SID}:") and "whatsapp:" not in k for k in keys)
    connection = set(TwilioProvider.route_keys_for_settings(settings(messaging_service_sid=SERVICE_SID)))
    assert connection & set(keys)


def test_route_keys_refuse_a_body_without_account_sid() -> None:
    req = WebhookRequest(method="POST", url="https://x", headers={}, body=b"Body=hi", form={"Body": ["hi"]})
    with pytest.raises(WebhookError):
        TwilioProvider.route_keys_for_request(req)


# --- parse ---------------------------------------------------------------------------------------

MEDIA = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages"
INBOUND_ROUTE = f"{ACCOUNT_SID}:{WHATSAPP_FROM}"

PARSE_CASES: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "inbound_whatsapp_text.txt",
        [
            {
                "type": InboundMessage,
                "provider_message_id": "SM8824d91645395b17594d92659b878468",
                "kind": MessageKind.TEXT,
                "channel": Channel.WHATSAPP,
                "from_phone": PATIENT,
                "text": "Olá, quero remarcar minha consulta",
                "contact_name": "Maria Souza",
                "route_key": INBOUND_ROUTE,
                "media": None,
                "extra.wa_id": "16505551234",
            }
        ],
    ),
    (
        "inbound_whatsapp_image.txt",
        [
            {
                "type": InboundMessage,
                "provider_message_id": "MM5b2d6a0c1e3f4a5b6c7d8e9f0a1b2c3d",
                "kind": MessageKind.IMAGE,
                "text": "Foto do meu exame",
                "media.url": f"{MEDIA}/MM5b2d6a0c1e3f4a5b6c7d8e9f0a1b2c3d/Media/"
                "ME0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                "media.mime_type": "image/jpeg",
                "media.provider_media_id": "ME0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                "media.caption": "Foto do meu exame",
            }
        ],
    ),
    (
        "inbound_whatsapp_multi_media.txt",
        [
            {
                "provider_message_id": "MM7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f",
                "kind": MessageKind.IMAGE,
                "media.provider_media_id": "ME11111111111111111111111111111111",
                "from_phone": PATIENT,
            },
            {
                "provider_message_id": "MM7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f#1",
                "kind": MessageKind.DOCUMENT,
                "media.mime_type": "application/pdf",
                "media.provider_media_id": "ME22222222222222222222222222222222",
                "from_phone": PATIENT,
                "route_key": INBOUND_ROUTE,
            },
            {
                "provider_message_id": "MM7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f#2",
                "kind": MessageKind.AUDIO,
                "media.mime_type": "audio/ogg",
                "contact_name": "Maria Souza",
            },
        ],
    ),
    (
        "inbound_whatsapp_button_reply.txt",
        [
            {
                "kind": MessageKind.BUTTON_REPLY,
                "button_payload": "confirm:appt_981",
                "text": "Confirmar",
                "reply_to_provider_id": "SM3a1f5e9b7c2d4e6f8a0b1c2d3e4f5a6b",
            }
        ],
    ),
    (
        "inbound_whatsapp_location.txt",
        [
            {
                "kind": MessageKind.LOCATION,
                "text": "Casa, Av. Paulista, 1000, São Paulo",
                "extra.latitude": "-23.5613",
                "extra.longitude": "-46.6565",
                "extra.label": "Casa",
            }
        ],
    ),
    (
        "inbound_sms_text.txt",
        [
            {
                "kind": MessageKind.TEXT,
                "channel": Channel.SMS,
                "from_phone": PATIENT,
                "contact_name": None,
                "route_key": f"{ACCOUNT_SID}:{SMS_FROM}",
            }
        ],
    ),
    (
        "status_callback_delivered.txt",
        [
            {
                "type": StatusUpdate,
                "provider_message_id": "SM3a1f5e9b7c2d4e6f8a0b1c2d3e4f5a6b",
                "status": "delivered",
                "error_code": None,
                "route_key": INBOUND_ROUTE,
            }
        ],
    ),
    ("status_callback_sent.txt", [{"type": StatusUpdate, "status": "sent"}]),
    ("status_callback_read.txt", [{"type": StatusUpdate, "status": "read"}]),
    (
        "status_callback_failed_63016.txt",
        [
            {
                "type": StatusUpdate,
                "status": "failed",
                "error_code": "63016",
                "error_title": "More than 24 hours have passed since the patient's last message: "
                "only an approved template can be sent.",
            }
        ],
    ),
    (
        "status_callback_undelivered_30003.txt",
        [
            {
                "type": StatusUpdate,
                "status": "failed",
                "error_code": "30003",
                "error_title": "The patient's phone is switched off or unreachable.",
            }
        ],
    ),
    ("status_callback_queued.txt", []),
    ("status_callback_accepted_service.txt", []),
    (
        "status_callback_sms_delivered.txt",
        [{"type": StatusUpdate, "status": "delivered", "route_key": f"{ACCOUNT_SID}:{SMS_FROM}"}],
    ),
]


def _attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part)
    return obj


def assert_events(events: list[Any], expected: list[dict[str, Any]]) -> None:
    assert len(events) == len(expected), events
    for event, want in zip(events, expected, strict=True):
        want = dict(want)
        assert type(event) is want.pop("type", InboundMessage)
        assert event.raw, "every event keeps the raw payload"
        for key, value in want.items():
            assert _attr(event, key) == value, key


@pytest.mark.parametrize(("name", "expected"), PARSE_CASES, ids=[n for n, _ in PARSE_CASES])
def test_parse(offline: TwilioProvider, name: str, expected: list[dict[str, Any]]) -> None:
    assert_events(offline.parse_webhook(webhook(name)), expected)


@pytest.mark.parametrize("name", SIGNED_PAYLOADS)
def test_parse_twice_gives_identical_ids(offline: TwilioProvider, name: str) -> None:
    first = [getattr(e, "dedupe_key", None) for e in offline.parse_webhook(webhook(name))]
    again = [getattr(e, "dedupe_key", None) for e in offline.parse_webhook(webhook(name))]
    assert first == again
    assert len(set(first)) == len(first)
    assert TwilioProvider.event_key(webhook(name)) == TwilioProvider.event_key(webhook(name))


def test_parse_refuses_a_form_without_message_sid(offline: TwilioProvider) -> None:
    req = WebhookRequest(
        method="POST", url="https://x", headers={}, body=b"", form={"AccountSid": [ACCOUNT_SID]}
    )
    with pytest.raises(WebhookError):
        offline.parse_webhook(req)


def test_emulator_signed_inbound_form_round_trip(offline: TwilioProvider) -> None:
    form = inbound_form(
        media=[("https://m/1", "image/png"), ("https://m/2", "image/webp")], body="duas fotos"
    )
    signed = sign_form("https://clinic.example.com/webhooks/twilio", form)
    req = signed.as_webhook_request()
    assert offline.verify_webhook(req)
    events = [e for e in offline.parse_webhook(req) if isinstance(e, InboundMessage)]
    assert [(e.kind, e.media.url if e.media else None) for e in events] == [
        (MessageKind.IMAGE, "https://m/1"),
        (MessageKind.STICKER, "https://m/2"),
    ]


# --- send ----------------------------------------------------------------------------------------


def _sample_send_form() -> dict[str, list[str]]:
    _, _, body = captured("send_whatsapp_text_request.txt")
    return parse_qs(body.decode())


TEMPLATE = TemplateRef(
    name="appointment_reminder",
    language="pt_BR",
    params=("Maria", "02/07 às 09:30"),
    provider_template_id="HXb5b62575e6e4ff6129ad7c8efe1f983e",
)
TEMPLATE_VARIABLES = {"1": "Maria", "2": "02/07 às 09:30"}

SEND_CASES: list[tuple[str, dict[str, str], OutboundMessage, dict[str, list[str]]]] = [
    (
        "whatsapp text (the captured request)",
        {},
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            text="Sua consulta está confirmada para 02/07 às 09:30.",
            status_callback_url=STATUS_URL,
        ),
        _sample_send_form(),
    ),
    (
        "whatsapp image with caption",
        {},
        OutboundMessage(
            to="+1 (650) 555-1234",
            channel=Channel.WHATSAPP,
            kind=MessageKind.IMAGE,
            text="Seu pedido de exame",
            media=OutboundMedia(url="https://files.clinic.example/s/abc.jpg", mime_type="image/jpeg"),
        ),
        {
            "To": [f"whatsapp:{PATIENT}"],
            "From": [f"whatsapp:{WHATSAPP_FROM}"],
            "MediaUrl": ["https://files.clinic.example/s/abc.jpg"],
            "Body": ["Seu pedido de exame"],
        },
    ),
    (
        "whatsapp document without caption",
        {},
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            kind=MessageKind.DOCUMENT,
            media=OutboundMedia(url="https://files.clinic.example/s/laudo.pdf", mime_type="application/pdf"),
        ),
        {
            "To": [f"whatsapp:{PATIENT}"],
            "From": [f"whatsapp:{WHATSAPP_FROM}"],
            "MediaUrl": ["https://files.clinic.example/s/laudo.pdf"],
        },
    ),
    (
        "whatsapp template by ContentSid",
        {},
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            kind=MessageKind.TEMPLATE,
            text="fallback text is not sent",
            template=TEMPLATE,
            status_callback_url=STATUS_URL,
        ),
        {
            "To": [f"whatsapp:{PATIENT}"],
            "From": [f"whatsapp:{WHATSAPP_FROM}"],
            "ContentSid": ["HXb5b62575e6e4ff6129ad7c8efe1f983e"],
            "ContentVariables": [json.dumps(TEMPLATE_VARIABLES, ensure_ascii=False)],
            "StatusCallback": [STATUS_URL],
        },
    ),
    (
        "whatsapp buttons through a quick-reply content template",
        {},
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            kind=MessageKind.BUTTONS,
            text="Confirma a consulta?",
            buttons=(Button("confirm", "Confirmar"), Button("cancel", "Cancelar")),
            template=TemplateRef(name="confirm_buttons", language="pt_BR", provider_template_id="HX0001"),
        ),
        {
            "To": [f"whatsapp:{PATIENT}"],
            "From": [f"whatsapp:{WHATSAPP_FROM}"],
            "ContentSid": ["HX0001"],
            "ContentVariables": ["{}"],
        },
    ),
    (
        "sms text",
        {},
        OutboundMessage(to=PATIENT, channel=Channel.SMS, text="Lembrete: consulta amanhã às 09:30."),
        {"To": [PATIENT], "From": [SMS_FROM], "Body": ["Lembrete: consulta amanhã às 09:30."]},
    ),
    (
        "sms template without ContentSid sends its text",
        {},
        OutboundMessage(
            to=PATIENT,
            channel=Channel.SMS,
            kind=MessageKind.TEMPLATE,
            text="Lembrete: consulta amanhã.",
            template=TemplateRef(name="reminder", language="pt_BR"),
        ),
        {"To": [PATIENT], "From": [SMS_FROM], "Body": ["Lembrete: consulta amanhã."]},
    ),
    (
        "messaging service when no sender number",
        {"whatsapp_from": "", "sms_from": "", "messaging_service_sid": SERVICE_SID},
        OutboundMessage(to=PATIENT, channel=Channel.SMS, text="Olá"),
        {"To": [PATIENT], "MessagingServiceSid": [SERVICE_SID], "Body": ["Olá"]},
    ),
]


@pytest.mark.parametrize(
    ("case", "overrides", "msg", "expected_form"), SEND_CASES, ids=[c[0] for c in SEND_CASES]
)
def test_send(
    emu: TwilioEmulator,
    api_url: str,
    case: str,
    overrides: dict[str, str],
    msg: OutboundMessage,
    expected_form: dict[str, list[str]],
) -> None:
    result = TwilioProvider(settings(api_url, **overrides)).send(msg)

    [request] = emu.log.find(method="POST")
    assert request["path"] == emu.messages_path
    assert request["auth"] == (ACCOUNT_SID, AUTH_TOKEN)
    assert request["form"] == expected_form
    [record] = emu.sent
    assert result.provider_message_id == record["sid"]
    assert result.provider_message_id.startswith("MM" if "MediaUrl" in expected_form else "SM")
    assert result.status == ("accepted" if "MessagingServiceSid" in expected_form else "queued")


def test_send_ignores_region_and_edge_from_the_environment(
    emu: TwilioEmulator, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    TwilioProvider(settings(api_url)).send(OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi"))
    assert len(emu.sent) == 1


ERROR_CASES = [
    ("invalid number", INVALID_TO, ErrorKind.RECIPIENT_INVALID, "21211", "not valid"),
    ("opted out", OPTED_OUT_TO, ErrorKind.OPTED_OUT, "21610", "replied STOP"),
    ("landline", NOT_MOBILE_TO, ErrorKind.RECIPIENT_INVALID, "21614", "landline"),
    ("trial account", UNVERIFIED_TO, ErrorKind.RECIPIENT_INVALID, "21608", "trial"),
    ("window closed", WINDOW_CLOSED_TO, ErrorKind.WINDOW_CLOSED, "63016", "24 hours"),
    ("too many requests", RATE_LIMITED_TO, ErrorKind.RATE_LIMITED, "20429", "too many requests"),
]


@pytest.mark.parametrize(
    ("case", "to", "kind", "code", "phrase"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_send_error_from_twilio(
    emu: TwilioEmulator, provider: TwilioProvider, case: str, to: str, kind: ErrorKind, code: str, phrase: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.send(OutboundMessage(to=to, channel=Channel.WHATSAPP, text="Olá"))
    assert caught.value.kind is kind
    assert caught.value.code == code
    assert phrase in caught.value.detail.lower() or phrase in caught.value.detail
    assert to not in caught.value.detail and to[1:] not in caught.value.detail
    assert len(emu.log.find(method="POST")) == 1
    assert emu.sent == []


FAULT_CASES: list[tuple[str, Callable[[TwilioEmulator], None], ErrorKind, str | None]] = [
    ("server error", lambda e: e.faults.fail_next(1, 500), ErrorKind.RETRYABLE, "500"),
    ("service unavailable", lambda e: e.faults.fail_next(1, 503), ErrorKind.RETRYABLE, "503"),
    ("429 without a Twilio code", lambda e: e.faults.fail_next(1, 429), ErrorKind.RATE_LIMITED, "429"),
    (
        "unknown Twilio code",
        lambda e: e.faults.fail_next(1, 400, {"code": 21999, "message": "?", "status": 400}),
        ErrorKind.PERMANENT,
        "21999",
    ),
    ("connection dropped", lambda e: e.faults.down(), ErrorKind.RETRYABLE, "connection"),
]


@pytest.mark.parametrize(("case", "inject", "kind", "code"), FAULT_CASES, ids=[c[0] for c in FAULT_CASES])
def test_send_transport_and_server_faults(
    emu: TwilioEmulator,
    provider: TwilioProvider,
    case: str,
    inject: Callable[[TwilioEmulator], None],
    kind: ErrorKind,
    code: str | None,
) -> None:
    inject(emu)
    with pytest.raises(ProviderError) as caught:
        provider.send(OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Olá"))
    assert caught.value.kind is kind
    assert caught.value.code == code
    assert emu.sent == []
    emu.faults.reset()
    provider.send(OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Olá"))
    assert len(emu.sent) == 1


def test_send_wrong_auth_token_is_auth(emu: TwilioEmulator, api_url: str) -> None:
    with pytest.raises(ProviderError) as caught:
        TwilioProvider(settings(api_url, auth_token="wrong")).send(
            OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Olá")
        )
    assert caught.value.kind is ErrorKind.AUTH
    assert caught.value.code == "20003"
    assert caught.value.status_code == 401


def test_send_timeout_is_retryable(
    emu: TwilioEmulator, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.3)
    emu.faults.delay(5)
    try:
        with pytest.raises(ProviderError) as caught:
            TwilioProvider(settings(api_url)).send(
                OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi")
            )
    finally:
        emu.faults.reset()
    assert caught.value.kind is ErrorKind.RETRYABLE
    assert caught.value.code == "timeout"


def test_send_to_nothing_listening_is_retryable() -> None:
    with pytest.raises(ProviderError) as caught:
        TwilioProvider(settings("http://127.0.0.1:9")).send(
            OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Olá")
        )
    assert caught.value.kind is ErrorKind.RETRYABLE


REFUSED_LOCALLY = [
    (
        "whatsapp template without ContentSid",
        {},
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            kind=MessageKind.TEMPLATE,
            text="Lembrete",
            template=TemplateRef(name="reminder", language="pt_BR"),
        ),
        "Content SID",
    ),
    (
        "whatsapp buttons without a content template",
        {},
        OutboundMessage(
            to=PATIENT,
            channel=Channel.WHATSAPP,
            kind=MessageKind.BUTTONS,
            text="?",
            buttons=(Button("a", "A"),),
        ),
        "Content SID",
    ),
    (
        "media without a URL",
        {},
        OutboundMessage(
            to=PATIENT, channel=Channel.WHATSAPP, kind=MessageKind.IMAGE, media=OutboundMedia(data=b"\x89PNG")
        ),
        "link",
    ),
    ("empty text", {}, OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text=""), "empty"),
    ("email channel", {}, OutboundMessage(to="a@b.c", channel=Channel.EMAIL, text="Oi"), "cannot send"),
    (
        "no sender configured",
        {"sms_from": ""},
        OutboundMessage(to=PATIENT, channel=Channel.SMS, text="Oi"),
        "sender",
    ),
]


@pytest.mark.parametrize(
    ("case", "overrides", "msg", "phrase"), REFUSED_LOCALLY, ids=[c[0] for c in REFUSED_LOCALLY]
)
def test_send_refuses_what_twilio_cannot_take(
    emu: TwilioEmulator, api_url: str, case: str, overrides: dict[str, str], msg: OutboundMessage, phrase: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        TwilioProvider(settings(api_url, **overrides)).send(msg)
    assert caught.value.kind is ErrorKind.PERMANENT
    assert phrase in caught.value.detail
    assert emu.log.entries == []


def test_status_callback_for_a_sent_message_verifies_and_parses(
    emu: TwilioEmulator, provider: TwilioProvider
) -> None:
    result = provider.send(
        OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Olá", status_callback_url=STATUS_URL)
    )
    signed = emu.status_form(result.provider_message_id, "undelivered", error_code=63016)
    req = signed.as_webhook_request()
    assert provider.verify_webhook(req)
    [update] = provider.parse_webhook(req)
    assert isinstance(update, StatusUpdate)
    assert (update.provider_message_id, update.status, update.error_code) == (
        result.provider_message_id,
        "failed",
        "63016",
    )
    assert update.route_key in TwilioProvider.route_keys_for_settings(provider.settings)


# --- media ---------------------------------------------------------------------------------------


def test_fetch_media_follows_the_redirect_without_credentials(
    emu: TwilioEmulator, api_url: str, provider: TwilioProvider
) -> None:
    path = emu.add_media(PNG_1X1, "image/png")
    data, content_type = provider.fetch_media(InboundMedia(url=api_url + path))
    assert (data, content_type) == (PNG_1X1, "image/png")
    media_request, cdn_request = emu.log.entries
    assert media_request["path"] == path and media_request["auth"] == (ACCOUNT_SID, AUTH_TOKEN)
    assert cdn_request["path"].startswith("/media-cdn/")
    assert "Authorization" not in cdn_request["headers"]


def test_fetch_media_direct(emu: TwilioEmulator, api_url: str, provider: TwilioProvider) -> None:
    path = emu.add_media(b"%PDF-1.4 test", "application/pdf", redirect=False)
    assert provider.fetch_media(InboundMedia(url=api_url + path)) == (b"%PDF-1.4 test", "application/pdf")


def test_fetch_media_never_sends_credentials_to_another_host(provider: TwilioProvider) -> None:
    foreign = TwilioEmulator()
    with serve(foreign) as foreign_url:
        path = foreign.add_media()
        with pytest.raises(ProviderError) as caught:
            provider.fetch_media(InboundMedia(url=foreign_url + path))
    assert caught.value.kind is ErrorKind.AUTH  # the foreign host wanted credentials and got none
    [request] = foreign.log.entries
    assert "Authorization" not in request["headers"]


def _media_after_502(emu: TwilioEmulator) -> str:
    emu.faults.fail_next(1, 502)
    return emu.add_media()


def _media_while_down(emu: TwilioEmulator) -> str:
    emu.faults.down()
    return emu.add_media()


MEDIA_FAILURES: list[tuple[str, Callable[[TwilioEmulator], str], dict[str, Any], ErrorKind]] = [
    ("wrong credentials", lambda e: e.add_media(), {"auth_token": "wrong"}, ErrorKind.AUTH),
    ("gone", lambda e: e.add_media().replace("/Media/ME", "/Media/MEgone"), {}, ErrorKind.PERMANENT),
    ("server error", _media_after_502, {}, ErrorKind.RETRYABLE),
    ("dropped", _media_while_down, {}, ErrorKind.RETRYABLE),
]


@pytest.mark.parametrize(
    ("case", "prepare", "overrides", "kind"), MEDIA_FAILURES, ids=[c[0] for c in MEDIA_FAILURES]
)
def test_fetch_media_failures(
    emu: TwilioEmulator,
    api_url: str,
    case: str,
    prepare: Callable[[TwilioEmulator], str],
    overrides: dict[str, str],
    kind: ErrorKind,
) -> None:
    path = prepare(emu)
    with pytest.raises(ProviderError) as caught:
        TwilioProvider(settings(api_url, **overrides)).fetch_media(InboundMedia(url=api_url + path))
    assert caught.value.kind is kind


def test_fetch_media_refuses_files_over_the_limit(
    emu: TwilioEmulator, api_url: str, provider: TwilioProvider
) -> None:
    provider.max_media_bytes = 1024  # type: ignore[misc]
    path = emu.add_media(b"x" * 4096, "application/pdf")
    with pytest.raises(ProviderError) as caught:
        provider.fetch_media(InboundMedia(url=api_url + path))
    assert caught.value.kind is ErrorKind.PERMANENT
    assert caught.value.code == "too_large"


def test_fetch_media_without_url(offline: TwilioProvider) -> None:
    with pytest.raises(ProviderError):
        offline.fetch_media(InboundMedia(mime_type="image/png"))


# --- health --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account_status", "overrides", "ok", "status"),
    [
        ("active", {}, True, "active"),
        ("suspended", {}, False, "suspended"),
        ("active", {"auth_token": "wrong"}, False, "auth failed"),
    ],
)
def test_health(
    emu: TwilioEmulator, api_url: str, account_status: str, overrides: dict[str, str], ok: bool, status: str
) -> None:
    emu.account_status = account_status
    health = TwilioProvider(settings(api_url, **overrides)).health()
    assert (health.ok, health.status) == (ok, status)
    [request] = emu.log.entries
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}.json"


def test_health_when_twilio_is_unreachable(emu: TwilioEmulator, provider: TwilioProvider) -> None:
    emu.faults.down()
    health = provider.health()
    assert (health.ok, health.status) == (False, "unreachable")


# --- the emulator's own controls (other suites rely on them) -------------------------------------


def test_emulator_fault_controls(emu: TwilioEmulator, provider: TwilioProvider) -> None:
    def outcome() -> str:
        try:
            provider.send(OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi"))
        except ProviderError as exc:
            return exc.kind.value
        return "ok"

    emu.faults.fail_rate(1.0, status=503)
    assert [outcome() for _ in range(3)] == ["retryable"] * 3
    emu.faults.fail_rate(0.0)
    emu.faults.fail_next(1, 500, path="/Accounts/nope")  # another path: not consumed by sends
    assert outcome() == "ok"
    emu.faults.down()
    assert outcome() == "retryable"
    emu.faults.up()
    assert outcome() == "ok"
    assert [e["status"] for e in emu.log.entries] == [503, 503, 503, 201, None, 201]


def test_emulator_serves_a_created_message(emu: TwilioEmulator, provider: TwilioProvider) -> None:
    result = provider.send(OutboundMessage(to=PATIENT, channel=Channel.WHATSAPP, text="Oi"))
    fetched = provider.client().messages(result.provider_message_id).fetch()
    assert (fetched.sid, fetched.status, fetched.to) == (
        result.provider_message_id,
        "queued",
        f"whatsapp:{PATIENT}",
    )
