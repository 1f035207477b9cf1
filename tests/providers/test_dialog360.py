"""Dialog360Provider: Meta's bodies over 360dialog's host, key header, media path and webhook URL token."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.meta_graph import (
    DEFAULT_API_KEY,
    DEFAULT_PNID,
    DEFAULT_WEBHOOK_TOKEN,
    LOOKASIDE_URL,
    MetaGraphEmulator,
    running_meta_graph,
)
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
    WebhookRequest,
    get_provider_class,
)
from wa_portal.providers.dialog360 import Dialog360Provider, token_key
from wa_portal.providers.meta import MetaProvider

PAYLOADS = Path(__file__).resolve().parents[1] / "payloads" / "360dialog"
PATIENT = "+16505551234"
WA = Channel.WHATSAPP


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def webhook(body: bytes = b"{}", token: str | None = DEFAULT_WEBHOOK_TOKEN) -> WebhookRequest:
    url = f"https://clinic.example.com/webhooks/360dialog/{token}"
    return WebhookRequest(method="POST", url=url, headers={}, body=body, path_token=token)


def msg(**kwargs: Any) -> OutboundMessage:
    return OutboundMessage(**{"to": PATIENT, "channel": WA, **kwargs})


@pytest.fixture(scope="module")
def server() -> Iterator[MetaGraphEmulator]:
    with running_meta_graph() as emulator:
        yield emulator


@pytest.fixture
def graph(server: MetaGraphEmulator) -> Iterator[MetaGraphEmulator]:
    server.reset()
    yield server
    assert server.wait_idle()


@pytest.fixture
def provider(graph: MetaGraphEmulator) -> Dialog360Provider:
    return Dialog360Provider(graph.dialog360_settings())


def test_registered_with_its_declared_shape() -> None:
    assert get_provider_class("dialog360") is Dialog360Provider
    assert Dialog360Provider.display_name == "360dialog"
    assert Capability.EMBEDDED_SIGNUP not in Dialog360Provider.capabilities
    assert {
        Capability.TEXT,
        Capability.MEDIA,
        Capability.TEMPLATE,
        Capability.BUTTONS,
    } <= Dialog360Provider.capabilities
    fields = {f.name: f for f in Dialog360Provider.settings_schema}
    assert set(fields) == {"api_key", "display_phone", "phone_number_id", "base_url", "webhook_token"}
    assert {n for n, f in fields.items() if f.secret} == {"api_key", "webhook_token"}
    assert fields["base_url"].default == "https://waba-v2.360dialog.io"
    assert Dialog360Provider({}).base_url == "https://waba-v2.360dialog.io"


def test_new_webhook_tokens_are_long_random_and_url_safe_for_360dialog() -> None:
    tokens = {Dialog360Provider.new_webhook_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(len(t) >= 32 and t.isalnum() for t in tokens)  # 360dialog refuses "_" in webhook URLs


# --- webhooks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "given", "expected"),
    [
        pytest.param(DEFAULT_WEBHOOK_TOKEN, DEFAULT_WEBHOOK_TOKEN, True, id="matching-token"),
        pytest.param(DEFAULT_WEBHOOK_TOKEN, DEFAULT_WEBHOOK_TOKEN[:-1], False, id="prefix-only"),
        pytest.param(DEFAULT_WEBHOOK_TOKEN, DEFAULT_WEBHOOK_TOKEN + "0", False, id="longer"),
        pytest.param(DEFAULT_WEBHOOK_TOKEN, "another-token", False, id="other-token"),
        pytest.param(DEFAULT_WEBHOOK_TOKEN, None, False, id="no-token-in-path"),
        pytest.param(DEFAULT_WEBHOOK_TOKEN, "", False, id="empty-token-in-path"),
        pytest.param(None, "anything", False, id="no-token-configured"),
        pytest.param("", "", False, id="both-empty"),
        pytest.param(DEFAULT_WEBHOOK_TOKEN, "tökén", False, id="non-ascii"),
    ],
)
def test_verify_webhook_by_path_token(configured: str | None, given: str | None, expected: bool) -> None:
    provider = Dialog360Provider({"webhook_token": configured})
    assert provider.verify_webhook(webhook(payload("inbound_text.json"), given)) is expected


def test_meta_signature_does_not_count_for_360dialog() -> None:
    req = WebhookRequest(
        method="POST",
        url="https://x/webhooks/360dialog/",
        headers={"X-Hub-Signature-256": "sha256=00"},
        body=b"{}",
    )
    assert not Dialog360Provider({"webhook_token": "t", "app_secret": "s"}).verify_webhook(req)


def test_route_keys_hash_the_token() -> None:
    settings_keys = Dialog360Provider.route_keys_for_settings({"webhook_token": DEFAULT_WEBHOOK_TOKEN})
    request_keys = Dialog360Provider.route_keys_for_request(webhook(payload("inbound_text.json")))
    expected = "token:" + hashlib.sha256(DEFAULT_WEBHOOK_TOKEN.encode()).hexdigest()
    assert settings_keys == request_keys == [expected]
    assert DEFAULT_WEBHOOK_TOKEN not in expected  # the lookup table never holds the secret itself
    assert Dialog360Provider.route_keys_for_settings({}) == []
    assert Dialog360Provider.route_keys_for_request(webhook(b"not even json", None)) == []


@pytest.mark.parametrize(
    ("name", "event_type", "fields"),
    [
        (
            "inbound_text.json",
            InboundMessage,
            {
                "provider_message_id": "wamid.D360TEXT01",
                "kind": MessageKind.TEXT,
                "text": "Oi, recebi o lembrete.",
                "from_phone": PATIENT,
                "contact_name": "Maria Souza",
                # Routed by the URL token, not by Meta's phone number id (no 360dialog route has it).
                "route_key": token_key(DEFAULT_WEBHOOK_TOKEN),
            },
        ),
        (
            "status_delivered.json",
            StatusUpdate,
            {
                "status": "delivered",
                "provider_message_id": "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
            },
        ),
    ],
)
def test_parse_reuses_the_cloud_api_envelope(name: str, event_type: type, fields: dict[str, Any]) -> None:
    events = Dialog360Provider({}).parse_webhook(webhook(payload(name)))
    key = token_key(DEFAULT_WEBHOOK_TOKEN)
    meta_events = MetaProvider({}).parse_webhook(webhook(payload(name)))
    assert events == [dataclasses.replace(e, route_key=key) for e in meta_events]
    (event,) = events
    assert isinstance(event, event_type)
    assert {k: getattr(event, k) for k in fields} == fields


# --- sending -------------------------------------------------------------------------------------------


def test_send_text_goes_to_messages_with_the_key_header(
    graph: MetaGraphEmulator, provider: Dialog360Provider
) -> None:
    result = provider.send(msg(text="Sua consulta está confirmada para 02/07 às 09:30."))
    (call,) = graph.requests("d360_messages")
    assert call["path"] == "/messages"  # no Graph version, no phone number id: 360dialog adds it
    assert call["headers"]["d360-api-key"] == DEFAULT_API_KEY
    assert "authorization" not in call["headers"]
    # The 360dialog sample omits preview_url (false is Meta's default); everything else is identical.
    expected = json.loads(payload("send_text_request.json"))
    expected["text"]["preview_url"] = False
    assert call["json"] == expected
    assert result.provider_message_id == call["response"]["messages"][0]["id"]
    assert graph.sent[result.provider_message_id]["pnid"] == DEFAULT_PNID


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            msg(
                kind=MessageKind.TEMPLATE,
                template=TemplateRef("lembrete_consulta", "pt_BR", params=("Maria",)),
            ),
            id="template",
        ),
        pytest.param(
            msg(kind=MessageKind.BUTTONS, text="Confirma?", buttons=(Button("Y", "Sim"), Button("N", "Não"))),
            id="buttons",
        ),
        pytest.param(
            msg(
                kind=MessageKind.DOCUMENT,
                media=OutboundMedia(url="https://f.example.com/a.pdf", filename="a.pdf"),
            ),
            id="document-link",
        ),
    ],
)
def test_send_bodies_are_metas(
    graph: MetaGraphEmulator, provider: Dialog360Provider, message: OutboundMessage
) -> None:
    provider.send(message)
    (call,) = graph.requests("d360_messages")
    assert call["json"] == MetaProvider({}).message_body(message)


def test_send_image_uploads_to_media(graph: MetaGraphEmulator, provider: Dialog360Provider) -> None:
    provider.send(
        msg(kind=MessageKind.IMAGE, text="Exame", media=OutboundMedia(data=b"png!", mime_type="image/png"))
    )
    (upload,) = graph.requests("d360_media_upload")
    assert upload["path"] == "/media"
    assert upload["headers"]["d360-api-key"] == DEFAULT_API_KEY
    assert upload["form"] == {"messaging_product": "whatsapp", "type": "image/png"}
    (send,) = graph.requests("d360_messages")
    assert send["json"]["image"] == {"id": upload["response"]["id"], "caption": "Exame"}


def test_invalid_api_key_is_auth(graph: MetaGraphEmulator) -> None:
    key = "revoked-key-0123456789"
    with pytest.raises(ProviderError) as caught:
        Dialog360Provider(graph.dialog360_settings(api_key=key)).send(msg(text="Olá"))
    err = caught.value
    assert (err.kind, err.status_code) == (ErrorKind.AUTH, 401)
    assert err.detail.startswith("The 360dialog API key is invalid or was revoked.")
    assert key not in str(err)
    assert graph.requests("d360_messages")[0]["response"]["meta"]["developerMessage"] == "Invalid api_key"


def test_missing_api_key_is_auth_without_a_call(graph: MetaGraphEmulator) -> None:
    with pytest.raises(ProviderError) as caught:
        Dialog360Provider(graph.dialog360_settings(api_key="")).send(msg(text="Olá"))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.AUTH, "not_configured")
    assert graph.requests() == []


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        pytest.param(
            {"status": 401, "body": json.loads(payload("error_invalid_api_key.json"))},
            ErrorKind.AUTH,
            id="key",
        ),
        pytest.param(
            {"status": 400, "body": json.loads(payload("error_usage_limit.json"))},
            ErrorKind.RATE_LIMITED,
            id="usage",
        ),
        pytest.param(
            {"status": 400, "body": json.loads(payload("error_131047_passthrough.json"))},
            ErrorKind.WINDOW_CLOSED,
            id="meta-code-passes-through",
        ),
        pytest.param(
            {"status": 403, "body": {"meta": {"httpCode": 403, "developerMessage": "This URL is blocked."}}},
            ErrorKind.PERMANENT,
            id="path-blocked",
        ),
        pytest.param({"status": 502, "body": "<html>Bad Gateway</html>"}, ErrorKind.RETRYABLE, id="gateway"),
    ],
)
def test_errors(
    graph: MetaGraphEmulator, provider: Dialog360Provider, fault: dict[str, Any], kind: ErrorKind
) -> None:
    graph.fail_next(1, route="d360_messages", **fault)
    with pytest.raises(ProviderError) as caught:
        provider.send(msg(text="Olá"))
    assert caught.value.kind is kind


def test_recipient_errors_pass_through(graph: MetaGraphEmulator, provider: Dialog360Provider) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.send(msg(to=graph.failing_recipient(131026), text="Olá"))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.RECIPIENT_INVALID, "131026")


# --- media, read receipts, health ----------------------------------------------------------------------


def test_fetch_media_downloads_the_lookaside_path_from_360dialog(
    graph: MetaGraphEmulator, provider: Dialog360Provider
) -> None:
    media_id = graph.add_media(b"%PDF patient letter", "application/pdf")

    data, mime = provider.fetch_media(InboundMedia(provider_media_id=media_id))

    assert (data, mime) == (b"%PDF patient letter", "application/pdf")
    lookup, download = graph.requests()
    assert (lookup["route"], lookup["path"], lookup["query"]) == ("d360_media_get", f"/{media_id}", {})
    assert lookup["response"]["url"].startswith(
        f"{LOOKASIDE_URL}/whatsapp_business/attachments/?mid={media_id}&"
    )
    # Same path and query as Meta's URL, asked of the 360dialog host with the key, never of lookaside.
    assert download["route"] == "download"
    assert download["path"] == "/whatsapp_business/attachments/"
    assert lookup["response"]["url"].endswith(
        "?" + "&".join(f"{k}={v}" for k, v in download["query"].items())
    )
    assert download["headers"]["d360-api-key"] == DEFAULT_API_KEY
    assert "authorization" not in download["headers"]


def test_download_url_keeps_a_base_path(provider: Dialog360Provider) -> None:
    proxied = Dialog360Provider({"base_url": "https://proxy.example.com/360/"})
    url = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2&hash=h"
    assert (
        proxied._download_url(url)
        == "https://proxy.example.com/360/whatsapp_business/attachments/?mid=1&ext=2&hash=h"
    )


def test_mark_read(graph: MetaGraphEmulator, provider: Dialog360Provider) -> None:
    provider.mark_read("wamid.X")
    (call,) = graph.requests("d360_messages")
    assert call["json"] == {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"}


@pytest.mark.parametrize(
    ("can_send", "errors", "ok", "status"),
    [
        pytest.param("AVAILABLE", [], True, "connected", id="available"),
        pytest.param("LIMITED", [], True, "limited", id="limited"),
        pytest.param(
            "BLOCKED",
            [{"error_code": 141010, "error_description": "The business has not passed verification."}],
            False,
            "blocked",
            id="blocked",
        ),
    ],
)
def test_health(
    graph: MetaGraphEmulator,
    provider: Dialog360Provider,
    can_send: str,
    errors: list[dict[str, Any]],
    ok: bool,
    status: str,
) -> None:
    graph.numbers[DEFAULT_PNID].update(can_send_message=can_send, health_errors=errors)
    health = provider.health()
    assert (health.ok, health.status) == (ok, status)
    assert health.data["can_send_message"] == can_send
    assert health.data["display_phone_number"] == "15550783881"
    assert health.detail == " ".join(e["error_description"] for e in errors)
    (call,) = graph.requests("d360_health")
    assert call["path"] == "/health_status"


def test_health_with_a_bad_key(graph: MetaGraphEmulator) -> None:
    health = Dialog360Provider(graph.dialog360_settings(api_key="nope")).health()
    assert (health.ok, health.status) == (False, "token invalid")
