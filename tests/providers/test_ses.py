"""SES adapter: boto3 against a real moto_server (sent mail read back from /moto-api/data.json)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.stub import Stubber

from tests.emulators.moto import (
    boto_kwargs,
    credentials,
    enforce_auth,
    moto_server,
    reset,
    sent_emails,
    verify_email,
)
from wa_portal.providers.base import (
    Capability,
    Channel,
    ErrorKind,
    MessageKind,
    OutboundMessage,
    ProviderError,
    get_provider_class,
)
from wa_portal.providers.ses import DEFAULT_SUBJECT, SesProvider

SENDER = "recepcao@clinic.example"
PATIENT = "maria.souza@example.com"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url: str) -> str:
    """A clean moto with the clinic's sender verified (SES refuses unverified senders)."""
    reset(moto_url)
    verify_email(moto_url, SENDER)
    return moto_url


def settings(endpoint_url: str, **overrides: str) -> dict[str, str]:
    return {"from_email": SENDER, "endpoint_url": endpoint_url, **credentials(), **overrides}


@pytest.fixture
def provider(aws: str) -> SesProvider:
    return SesProvider(settings(aws))


def capture_requests(provider: SesProvider) -> list[dict[str, list[str]]]:
    """The form bodies botocore sends, so a test sees the HTML part moto does not keep."""
    seen: list[dict[str, list[str]]] = []

    def before_send(request: Any, **_: Any) -> None:
        seen.append(parse_qs(request.body.decode() if isinstance(request.body, bytes) else request.body))

    provider.client().meta.events.register("before-send.ses.SendEmail", before_send)
    return seen


def _closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- registration --------------------------------------------------------------------------------


def test_registered_with_its_contract() -> None:
    cls = get_provider_class("ses")
    assert cls is SesProvider
    assert cls.channels == {Channel.EMAIL}
    assert cls.capabilities == {Capability.EMAIL}
    fields = {f.name: f for f in cls.settings_schema}
    assert list(fields) == [
        "from_email",
        "region",
        "endpoint_url",
        "access_key_id",
        "secret_access_key",
        "webhook_token",
    ]
    assert fields["secret_access_key"].secret and fields["webhook_token"].secret
    assert fields["region"].default == "eu-west-1"
    # Email feedback (SNS) is routed by the secret path token alone, stored only as its hash.
    assert SesProvider.route_keys_for_settings(settings("http://x")) == []
    [key] = SesProvider.route_keys_for_settings(settings("http://x", webhook_token="t0ken"))
    assert key.startswith("token:") and "t0ken" not in key


# --- send ----------------------------------------------------------------------------------------

SEND_CASES: list[tuple[str, OutboundMessage, str, str, dict[str, str]]] = [
    (
        "plain text",
        OutboundMessage(
            to=PATIENT,
            channel=Channel.EMAIL,
            kind=MessageKind.EMAIL,
            subject="Sua consulta",
            text="Sua consulta está confirmada para 02/07 às 09:30.",
        ),
        "Sua consulta",
        "Sua consulta está confirmada para 02/07 às 09:30.",
        {
            "Message.Body.Text.Data": "Sua consulta está confirmada para 02/07 às 09:30.",
            "Message.Subject.Data": "Sua consulta",
        },
    ),
    (
        "text and html",
        OutboundMessage(
            to=PATIENT,
            channel=Channel.EMAIL,
            kind=MessageKind.EMAIL,
            subject="Lembrete",
            text="Consulta amanhã às 09:30.",
            html="<p>Consulta <b>amanhã</b> às 09:30.</p>",
        ),
        "Lembrete",
        "<p>Consulta <b>amanhã</b> às 09:30.</p>",  # moto keeps only the HTML part
        {
            "Message.Body.Text.Data": "Consulta amanhã às 09:30.",
            "Message.Body.Html.Data": "<p>Consulta <b>amanhã</b> às 09:30.</p>",
        },
    ),
    (
        "default subject",
        OutboundMessage(to=PATIENT, channel=Channel.EMAIL, text="Olá"),
        DEFAULT_SUBJECT,
        "Olá",
        {"Message.Subject.Data": DEFAULT_SUBJECT},
    ),
]


@pytest.mark.parametrize(
    ("case", "msg", "subject", "stored_body", "request_fields"), SEND_CASES, ids=[c[0] for c in SEND_CASES]
)
def test_send(
    aws: str,
    provider: SesProvider,
    case: str,
    msg: OutboundMessage,
    subject: str,
    stored_body: str,
    request_fields: dict[str, str],
) -> None:
    requests_sent = capture_requests(provider)
    result = provider.send(msg)
    [mail] = sent_emails(aws)
    assert mail["id"] == result.provider_message_id
    assert mail["source"] == SENDER
    assert mail["destinations"] == {"ToAddresses": [PATIENT]}
    assert (mail["subject"], mail["body"]) == (subject, stored_body)
    [form] = requests_sent
    for name, value in request_fields.items():
        assert form[name] == [value]
    if msg.html is None:
        assert "Message.Body.Html.Data" not in form


def test_send_from_an_unverified_sender_is_permanent(aws: str) -> None:
    with pytest.raises(ProviderError) as caught:
        SesProvider(settings(aws, from_email="unverified@clinic.example")).send(
            OutboundMessage(to=PATIENT, channel=Channel.EMAIL, text="Olá")
        )
    assert (caught.value.kind, caught.value.code) == (ErrorKind.PERMANENT, "MessageRejected")
    assert "verified" in caught.value.detail
    assert PATIENT not in caught.value.detail
    assert sent_emails(aws) == []


def test_send_with_an_unknown_access_key_is_auth(aws: str, provider: SesProvider) -> None:
    enforce_auth(aws, True)
    try:
        with pytest.raises(ProviderError) as caught:
            provider.send(OutboundMessage(to=PATIENT, channel=Channel.EMAIL, text="Olá"))
        health = provider.health()
    finally:
        enforce_auth(aws, False)
    assert (caught.value.kind, caught.value.code) == (ErrorKind.AUTH, "InvalidClientTokenId")
    assert (health.ok, health.status) == (False, "auth failed")


def test_send_to_an_unreachable_endpoint_is_retryable() -> None:
    provider = SesProvider(settings(_closed_port_url()))
    with pytest.raises(ProviderError) as caught:
        provider.send(OutboundMessage(to=PATIENT, channel=Channel.EMAIL, text="Olá"))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.RETRYABLE, "connection")
    health = provider.health()
    assert (health.ok, health.status) == (False, "unreachable")


CLIENT_ERRORS = [
    ("Throttling", 400, ErrorKind.RATE_LIMITED, "limiting"),
    ("TooManyRequestsException", 429, ErrorKind.RATE_LIMITED, "limiting"),
    ("MessageRejected", 400, ErrorKind.PERMANENT, "rejected"),
    ("MailFromDomainNotVerified", 400, ErrorKind.PERMANENT, "domain is not verified"),
    ("AccountSendingPausedException", 400, ErrorKind.PERMANENT, "paused"),
    ("InvalidClientTokenId", 403, ErrorKind.AUTH, "access key"),
    ("SignatureDoesNotMatch", 403, ErrorKind.AUTH, "access key"),
    ("AccessDenied", 403, ErrorKind.AUTH, "permissions"),
    ("ServiceUnavailable", 503, ErrorKind.RETRYABLE, "temporary"),
    ("InternalFailure", 500, ErrorKind.RETRYABLE, "temporary"),
    ("SomethingNew", 400, ErrorKind.PERMANENT, "SomethingNew"),
]


@pytest.mark.parametrize(
    ("code", "status", "kind", "phrase"), CLIENT_ERRORS, ids=[c[0] for c in CLIENT_ERRORS]
)
def test_send_maps_ses_error_codes(code: str, status: int, kind: ErrorKind, phrase: str) -> None:
    """Codes moto cannot produce on demand, answered by botocore's Stubber through the real client."""
    provider = SesProvider(settings("http://127.0.0.1:9"))
    with Stubber(provider.client()) as stub:
        stub.add_client_error("send_email", service_error_code=code, http_status_code=status)
        with pytest.raises(ProviderError) as caught:
            provider.send(OutboundMessage(to=PATIENT, channel=Channel.EMAIL, text="Olá"))
        stub.assert_no_pending_responses()
    assert (caught.value.kind, caught.value.code, caught.value.status_code) == (kind, code, status)
    assert phrase in caught.value.detail


@pytest.mark.parametrize(
    ("overrides", "msg"),
    [
        ({}, OutboundMessage(to="+16505551234", channel=Channel.SMS, text="Olá")),
        ({}, OutboundMessage(to="not-an-address", channel=Channel.EMAIL, text="Olá")),
        ({}, OutboundMessage(to=PATIENT, channel=Channel.EMAIL, text="")),
        ({"from_email": ""}, OutboundMessage(to=PATIENT, channel=Channel.EMAIL, text="Olá")),
    ],
    ids=["sms", "bad address", "empty", "no sender"],
)
def test_send_refuses_locally(aws: str, overrides: dict[str, str], msg: OutboundMessage) -> None:
    with pytest.raises(ProviderError) as caught:
        SesProvider(settings(aws, **overrides)).send(msg)
    assert caught.value.kind in (ErrorKind.PERMANENT, ErrorKind.RECIPIENT_INVALID)
    assert sent_emails(aws) == []


# --- health and the helper -----------------------------------------------------------------------


def test_health_reports_the_send_quota(aws: str, provider: SesProvider) -> None:
    provider.send(OutboundMessage(to=PATIENT, channel=Channel.EMAIL, text="Olá"))
    health = provider.health()
    assert (health.ok, health.status) == (True, "connected")
    assert health.data["sent_last_24_hours"] >= 1
    assert health.data["max_24_hour_send"] > 0


def test_moto_server_serves_s3_too(aws: str) -> None:
    s3 = boto3.client("s3", **boto_kwargs(aws))
    s3.create_bucket(Bucket="media", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="media", Key="a.txt", Body=b"hello")
    assert s3.get_object(Bucket="media", Key="a.txt")["Body"].read() == b"hello"
