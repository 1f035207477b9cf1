"""SES feedback through SNS: the path token, Amazon's RSA signature (fetched certificate), and parsing of
bounces, complaints, deliveries and the subscription handshake, against a local SNS stand-in that signs
as SNS does."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.emulators.sns import TOPIC_ARN, SnsEmulator, bounce, complaint, delivery, sns_server
from wa_portal.providers import sns
from wa_portal.providers.base import (
    ConnectionEvent,
    ProviderError,
    StatusUpdate,
    WebhookError,
    WebhookRequest,
    token_key,
)
from wa_portal.providers.ses import SesProvider

TOKEN = "f00dfeed" * 6
SENDER = "reception@clinic.example"
PATIENT = "maria.souza@example.com"
MESSAGE_ID = "0102018c1a2b3c4d-5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9-000000"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def _sns() -> Iterator[SnsEmulator]:
    with sns_server() as emu:
        yield emu


@pytest.fixture
def emu(_sns: SnsEmulator) -> SnsEmulator:
    sns.forget_certificates()
    _sns.confirmed.clear()
    _sns.refuse_confirm = False
    _sns.cert_fetches = 0
    return _sns


def provider(emu: SnsEmulator, **overrides: Any) -> SesProvider:
    # The stand-in is this connection's AWS endpoint (as moto is in the e2e test): its host is trusted.
    return SesProvider(
        {"from_email": SENDER, "endpoint_url": emu.base_url, "webhook_token": TOKEN, **overrides}
    )


def request(data: dict[str, Any] | bytes, token: str | None = TOKEN) -> WebhookRequest:
    body = data if isinstance(data, bytes) else SnsEmulator.body(data)
    return WebhookRequest(
        method="POST",
        url=f"https://portal.example/webhooks/ses/{token}",
        headers=SnsEmulator.headers(json.loads(body)) if not isinstance(data, bytes) else {},
        body=body,
        path_token=token,
    )


# --- verify ----------------------------------------------------------------------------------------------


def _tamper(data: dict[str, Any]) -> dict[str, Any]:
    note = json.loads(data["Message"])
    note["mail"]["messageId"] = "someone-elses-message"
    return {**data, "Message": json.dumps(note)}


def _other_key_signed(emu: SnsEmulator) -> dict[str, Any]:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return emu.envelope(bounce(MESSAGE_ID, source=SENDER, to=PATIENT), key=other)


VERIFY_CASES: list[tuple[str, Callable[[SnsEmulator], WebhookRequest], Callable[..., SesProvider], bool]] = [
    (
        "valid, SignatureVersion 1",
        lambda e: request(e.envelope(bounce(MESSAGE_ID, source=SENDER, to=PATIENT))),
        provider,
        True,
    ),
    (
        "valid, SignatureVersion 2 with a Subject",
        lambda e: request(
            e.envelope(delivery(MESSAGE_ID, source=SENDER, to=PATIENT), version="2", subject="x")
        ),
        provider,
        True,
    ),
    (
        "valid subscription confirmation",
        lambda e: request(e.envelope("", type_="SubscriptionConfirmation")),
        provider,
        True,
    ),
    (
        "tampered message",
        lambda e: request(_tamper(e.envelope(bounce(MESSAGE_ID, source=SENDER, to=PATIENT)))),
        provider,
        False,
    ),
    (
        "signed by another key",
        lambda e: request(_other_key_signed(e)),
        provider,
        False,
    ),
    (
        "signature missing",
        lambda e: request({**e.envelope(bounce(MESSAGE_ID, source=SENDER, to=PATIENT)), "Signature": ""}),
        provider,
        False,
    ),
    (
        "unknown signature version",
        lambda e: request(
            {**e.envelope(bounce(MESSAGE_ID, source=SENDER, to=PATIENT)), "SignatureVersion": "3"}
        ),
        provider,
        False,
    ),
    (
        "wrong path token",
        lambda e: request(e.envelope(bounce(MESSAGE_ID, source=SENDER, to=PATIENT)), token="0" * 48),
        provider,
        False,
    ),
    (
        "no path token",
        lambda e: request(e.envelope(bounce(MESSAGE_ID, source=SENDER, to=PATIENT)), token=None),
        provider,
        False,
    ),
    (
        # Without a stand-in endpoint only Amazon's SNS hosts are trusted: the local certificate is refused.
        "certificate outside Amazon",
        lambda e: request(e.envelope(bounce(MESSAGE_ID, source=SENDER, to=PATIENT))),
        lambda e: provider(e, endpoint_url=""),
        False,
    ),
    (
        "certificate from an attacker's host",
        lambda e: request(
            e.envelope(bounce(MESSAGE_ID, source=SENDER, to=PATIENT), cert_url="http://203.0.113.9/cert.pem")
        ),
        provider,
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "make", "make_provider", "ok"), VERIFY_CASES, ids=[c[0] for c in VERIFY_CASES]
)
def test_verify(
    emu: SnsEmulator,
    case: str,
    make: Callable[[SnsEmulator], WebhookRequest],
    make_provider: Callable[..., SesProvider],
    ok: bool,
) -> None:
    assert make_provider(emu).verify_webhook(make(emu)) is ok


def test_the_certificate_is_fetched_once(emu: SnsEmulator) -> None:
    ses = provider(emu)
    for _ in range(3):
        assert ses.verify_webhook(request(emu.envelope(delivery(MESSAGE_ID, source=SENDER, to=PATIENT))))
    assert emu.cert_fetches == 1


@pytest.mark.parametrize(
    ("url", "endpoint", "trusted"),
    [
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem", None, True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem", None, True),
        ("http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem", None, False),
        ("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem", None, False),
        ("https://evil.example/sns.eu-west-1.amazonaws.com/x.pem", None, False),
        ("https://s3.amazonaws.com/x.pem", None, False),
        ("http://127.0.0.1:4566/x.pem", "http://127.0.0.1:5000", True),
        ("https://127.0.0.1:4566/x.pem", "http://127.0.0.1:5000", False),
        ("http://10.0.0.1/x.pem", "http://127.0.0.1:5000", False),
    ],
)
def test_trusted_urls(url: str, endpoint: str | None, trusted: bool) -> None:
    assert sns.trusted_url(url, endpoint) is trusted


# --- route and parse -------------------------------------------------------------------------------------


def test_routed_by_the_hash_of_the_path_token(emu: SnsEmulator) -> None:
    req = request(emu.envelope(delivery(MESSAGE_ID, source=SENDER, to=PATIENT)))
    assert SesProvider.route_keys_for_request(req) == [token_key(TOKEN)]
    assert SesProvider.route_keys_for_settings({"webhook_token": TOKEN}) == [token_key(TOKEN)]
    data = json.loads(req.body)
    assert SesProvider.event_key(req) == "sns:" + data["MessageId"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"Type": "Something"}', b'{"hello": 1}'])
def test_a_body_that_is_not_sns_is_unreadable(body: bytes) -> None:
    with pytest.raises(WebhookError):
        SesProvider.route_keys_for_request(request(body))


PARSE_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "permanent bounce, address unknown",
        bounce(MESSAGE_ID, source=SENDER, to=PATIENT, sub_type="NoEmail"),
        {
            "type": StatusUpdate,
            "status": "failed",
            "error_code": "bounce:Permanent:NoEmail",
            "error_title": "The email bounced: the address does not exist. (smtp; 550 5.1.1 user unknown)",
        },
    ),
    (
        "transient bounce, mailbox full",
        bounce(
            MESSAGE_ID,
            source=SENDER,
            to=PATIENT,
            bounce_type="Transient",
            sub_type="MailboxFull",
            diagnostic="",
        ),
        {
            "type": StatusUpdate,
            "status": "failed",
            "error_code": "bounce:Transient:MailboxFull",
            "error_title": "The email bounced: the patient's mailbox is full.",
        },
    ),
    (
        "suppressed address",
        bounce(MESSAGE_ID, source=SENDER, to=PATIENT, sub_type="Suppressed", diagnostic=""),
        {"type": StatusUpdate, "status": "failed", "error_code": "bounce:Permanent:Suppressed"},
    ),
    (
        "delivery",
        delivery(MESSAGE_ID, source=SENDER, to=PATIENT),
        {"type": StatusUpdate, "status": "delivered", "error_code": None},
    ),
    (
        "complaint",
        complaint(MESSAGE_ID, source=SENDER, to=PATIENT),
        {"type": ConnectionEvent, "kind": "email_complaint", "data": {"message_id": MESSAGE_ID}},
    ),
    (
        # Configuration-set event publishing names the kind eventType instead of notificationType.
        "event publishing format",
        {
            **{
                k: v
                for k, v in delivery(MESSAGE_ID, source=SENDER, to=PATIENT).items()
                if k != "notificationType"
            },
            "eventType": "Delivery",
        },
        {"type": StatusUpdate, "status": "delivered"},
    ),
]


@pytest.mark.parametrize(("case", "note", "expected"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse(emu: SnsEmulator, case: str, note: dict[str, Any], expected: dict[str, Any]) -> None:
    [event] = provider(emu).parse_webhook(request(emu.envelope(note)))
    assert isinstance(event, expected.pop("type"))
    assert event.route_key == token_key(TOKEN)
    if isinstance(event, StatusUpdate):
        assert event.provider_message_id == MESSAGE_ID
    data = expected.pop("data", {})
    for name, value in expected.items():
        assert getattr(event, name) == value, name
    for name, value in data.items():
        assert event.data[name] == value  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "note",
    [
        {"eventType": "Send", "mail": {"messageId": MESSAGE_ID}},
        {"eventType": "Open", "mail": {"messageId": MESSAGE_ID}},
        {"notificationType": "Bounce", "bounce": {}, "mail": {}},  # no message id: nothing to update
    ],
)
def test_events_the_inbox_does_not_show_are_skipped(emu: SnsEmulator, note: dict[str, Any]) -> None:
    assert provider(emu).parse_webhook(request(emu.envelope(note))) == []


def test_a_notification_without_an_ses_message_is_unreadable(emu: SnsEmulator) -> None:
    with pytest.raises(WebhookError):
        provider(emu).parse_webhook(request(emu.envelope("plain text, not SES")))


def test_subscription_confirmation_and_its_link(emu: SnsEmulator) -> None:
    data = emu.envelope("", type_="SubscriptionConfirmation")
    [event] = provider(emu).parse_webhook(request(data))
    assert isinstance(event, ConnectionEvent) and event.kind == "sns_subscription"
    assert event.data == {"subscribe_url": data["SubscribeURL"], "topic_arn": TOPIC_ARN}
    provider(emu).confirm_subscription(event.data["subscribe_url"])
    assert emu.confirmed == [{"topic_arn": TOPIC_ARN, "token": data["Token"]}]
    assert provider(emu).parse_webhook(request(emu.envelope("", type_="UnsubscribeConfirmation"))) == []


def test_a_subscribe_link_elsewhere_is_never_followed(emu: SnsEmulator) -> None:
    with pytest.raises(ProviderError) as err:
        provider(emu).confirm_subscription("http://203.0.113.9/?Action=ConfirmSubscription&Token=x")
    assert "does not point to Amazon SNS" in err.value.detail
    emu.refuse_confirm = True
    data = emu.envelope("", type_="SubscriptionConfirmation")
    with pytest.raises(ProviderError) as err:
        provider(emu).confirm_subscription(data["SubscribeURL"])
    assert "did not confirm" in err.value.detail and emu.confirmed == []
