"""Amazon SES: email, the last link of the channel chain, through boto3.

Docs: https://docs.aws.amazon.com/ses/latest/APIReference/API_SendEmail.html
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from . import http, sns
from .base import (
    Capability,
    Channel,
    ConnectionEvent,
    ErrorKind,
    Health,
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderEvent,
    SendResult,
    SettingField,
    StatusUpdate,
    WebhookError,
    WebhookRequest,
    register,
    token_key,
)

log = logging.getLogger(__name__)

DEFAULT_REGION = "eu-west-1"
DEFAULT_SUBJECT = "A message from your clinic"

# Docs: https://docs.aws.amazon.com/ses/latest/APIReference/CommonErrors.html
# and https://docs.aws.amazon.com/ses/latest/APIReference/API_SendEmail.html#API_SendEmail_Errors
_AUTH_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
    }
)
_THROTTLE_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequests", "TooManyRequestsException"}
)
_PERMANENT: dict[str, str] = {
    "MessageRejected": (
        "Amazon SES rejected the email. While the SES account is in the sandbox, both the sender "
        "and the recipient addresses must be verified."
    ),
    "MailFromDomainNotVerified": "The sender's domain is not verified in Amazon SES.",
    "AccountSendingPausedException": "Sending is paused for this Amazon SES account.",
    "ConfigurationSetSendingPausedException": "Sending is paused for this Amazon SES configuration set.",
    "ConfigurationSetDoesNotExist": "The Amazon SES configuration set does not exist.",
    "InvalidParameterValue": "Amazon SES refused the email address or content.",
}


def _error(exc: Exception) -> ProviderError:
    """Classify a botocore failure."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _THROTTLE_CODES or status == 429:
            # SES v1 reports both "Maximum sending rate exceeded" and a spent daily quota as Throttling.
            return ProviderError(
                ErrorKind.RATE_LIMITED,
                code,
                "Amazon SES is limiting how fast we can send.",
                status_code=status,
            )
        if code in _AUTH_CODES or status in (401, 403):
            return ProviderError(
                ErrorKind.AUTH,
                code,
                "Amazon SES rejected the access key or its permissions.",
                status_code=status,
            )
        if code in _PERMANENT:
            return ProviderError(ErrorKind.PERMANENT, code, _PERMANENT[code], status_code=status)
        if isinstance(status, int) and status >= 500:
            return ProviderError(
                ErrorKind.RETRYABLE, code, "Amazon SES had a temporary problem.", status_code=status
            )
        return ProviderError(
            ErrorKind.PERMANENT, code, f"Amazon SES refused the email ({code or status}).", status_code=status
        )
    if isinstance(exc, NoCredentialsError):
        return ProviderError(
            ErrorKind.AUTH, "no_credentials", "No AWS access key is configured for Amazon SES."
        )
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        # EndpointConnectionError, timeouts, dropped connections.
        return ProviderError(ErrorKind.RETRYABLE, "connection", "Could not reach Amazon SES.")
    return ProviderError(ErrorKind.PERMANENT, type(exc).__name__, "Amazon SES could not be used.")


@register
class SesProvider(Provider):
    """Email through Amazon SES (v1 API: SendEmail and GetSendQuota)."""

    name = "ses"
    display_name = "Amazon SES"
    docs_url = "https://docs.aws.amazon.com/ses/latest/dg/send-email-api.html"
    channels = frozenset({Channel.EMAIL})
    capabilities = frozenset({Capability.EMAIL})
    rate_limit_per_second = 1.0  # the sandbox rate; production accounts get more (GetSendQuota)
    settings_schema = (
        SettingField("from_email", "From address", required=True, help="A verified SES identity"),
        SettingField("region", "AWS region", default=DEFAULT_REGION),
        SettingField("endpoint_url", "Endpoint URL", help="Only for a local stand-in or a VPC endpoint"),
        SettingField("access_key_id", "Access key id", help="Empty: the server's own AWS credentials"),
        SettingField("secret_access_key", "Secret access key", secret=True),
        SettingField(
            "webhook_token",
            "Webhook token",
            secret=True,
            required=True,
            help="Random; part of the SNS subscription URL /webhooks/ses/<token>",
        ),
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """A boto3 SES client from its own session (the default session is not thread-safe)."""
        with self._lock:
            if self._client is None:
                session = boto3.session.Session(
                    aws_access_key_id=self.settings.get("access_key_id") or None,
                    aws_secret_access_key=self.settings.get("secret_access_key") or None,
                    region_name=self.settings.get("region") or DEFAULT_REGION,
                )
                self._client = session.client(
                    "ses",
                    endpoint_url=self.settings.get("endpoint_url") or None,
                    config=Config(
                        connect_timeout=http.CONNECT_TIMEOUT,
                        read_timeout=http.READ_TIMEOUT,
                        # The delivery layer owns retries, backoff and the circuit breaker.
                        retries={"total_max_attempts": 1},
                    ),
                )
            return self._client

    def send(self, msg: OutboundMessage) -> SendResult:
        """SendEmail with a plain-text part and, when given, an HTML part. Attachments are not sent."""
        if msg.channel is not Channel.EMAIL:
            raise ProviderError(
                ErrorKind.PERMANENT, "channel", f"Amazon SES cannot send {msg.channel} messages."
            )
        source = self.settings.get("from_email")
        if not source:
            raise ProviderError(ErrorKind.PERMANENT, "config", "No sender address is configured for email.")
        if not msg.to or "@" not in msg.to:
            raise ProviderError(
                ErrorKind.RECIPIENT_INVALID, "to", "The patient's email address is not valid."
            )
        if not (msg.text or msg.html):
            raise ProviderError(ErrorKind.PERMANENT, "empty", "The email is empty.")
        body: dict[str, Any] = {"Text": {"Data": msg.text, "Charset": "UTF-8"}}
        if msg.html:
            body["Html"] = {"Data": msg.html, "Charset": "UTF-8"}
        try:
            resp = self.client().send_email(
                Source=source,
                Destination={"ToAddresses": [msg.to]},
                Message={
                    "Subject": {"Data": msg.subject or DEFAULT_SUBJECT, "Charset": "UTF-8"},
                    "Body": body,
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc) from exc
        message_id = resp["MessageId"]
        log.info("ses: sent %s", message_id)
        return SendResult(provider_message_id=message_id, status="sent", raw={"MessageId": message_id})

    # -- feedback: bounces, complaints and deliveries through an SNS topic ------------------------------
    # Docs: https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html (notificationType) and
    # https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html (eventType).

    @classmethod
    def route_keys_for_settings(cls, settings: Mapping[str, Any]) -> list[str]:
        token = settings.get("webhook_token")
        return [token_key(str(token))] if token else []

    @classmethod
    def route_keys_for_request(cls, req: WebhookRequest) -> list[str]:
        sns.envelope(req.body)  # 400 for a body that is not an SNS message, before any lookup
        return [token_key(req.path_token)] if req.path_token else []

    @classmethod
    def event_key(cls, req: WebhookRequest) -> str:
        # SNS redelivers with the same MessageId.
        return "sns:" + str(sns.envelope(req.body).get("MessageId") or super().event_key(req))

    def verify_webhook(self, req: WebhookRequest) -> bool:
        """The connection's secret path token, then Amazon's RSA signature over the message."""
        expected = self.settings.get("webhook_token")
        if not expected or not req.path_token:
            return False
        if not hmac.compare_digest(req.path_token.encode(), str(expected).encode()):
            return False
        try:
            data = sns.envelope(req.body)
        except WebhookError:
            return False
        return sns.verify(data, endpoint_url=self.settings.get("endpoint_url") or None)

    def parse_webhook(self, req: WebhookRequest) -> list[ProviderEvent]:
        data = sns.envelope(req.body)
        key = token_key(req.path_token) if req.path_token else None
        if data["Type"] == "SubscriptionConfirmation":
            return [
                ConnectionEvent(
                    "sns_subscription",
                    {"subscribe_url": str(data.get("SubscribeURL") or ""), "topic_arn": data.get("TopicArn")},
                    route_key=key,
                )
            ]
        if data["Type"] != "Notification":
            return []  # UnsubscribeConfirmation: nothing to do
        try:
            note = json.loads(str(data.get("Message") or ""))
        except ValueError as exc:
            raise WebhookError("the SNS message does not carry an SES notification") from exc
        if not isinstance(note, dict):
            raise WebhookError("the SNS message does not carry an SES notification")
        return feedback_events(note, route_key=key)

    def confirm_subscription(self, url: str) -> None:
        """GET the SubscribeURL of a verified SubscriptionConfirmation (only from Amazon's SNS hosts)."""
        if not sns.trusted_url(url, self.settings.get("endpoint_url") or None):
            raise ProviderError(
                ErrorKind.PERMANENT, "sns_url", "The SNS subscription link does not point to Amazon SNS."
            )
        resp = http.request("GET", url, provider="Amazon SNS", allow_redirects=False)
        if resp.status_code != 200:
            raise ProviderError(
                ErrorKind.RETRYABLE if resp.status_code >= 500 else ErrorKind.PERMANENT,
                resp.status_code,
                f"Amazon SNS did not confirm the subscription (HTTP {resp.status_code}).",
                status_code=resp.status_code,
            )

    def health(self) -> Health:
        """GetSendQuota: proves the credentials and shows how much is left today."""
        try:
            quota = self.client().get_send_quota()
        except (ClientError, BotoCoreError) as exc:
            error = _error(exc)
            status = "auth failed" if error.kind is ErrorKind.AUTH else "unreachable"
            return Health(ok=False, status=status, detail=error.detail)
        data = {
            "max_24_hour_send": quota.get("Max24HourSend"),
            "sent_last_24_hours": quota.get("SentLast24Hours"),
            "max_send_rate": quota.get("MaxSendRate"),
        }
        return Health(ok=True, status="connected", data=data)


# Bounce subtypes in words a receptionist understands.
# Docs: https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html#bounce-types
_BOUNCE_REASONS: dict[tuple[str, str], str] = {
    ("Permanent", "General"): "The email bounced: the patient's mail server refused it for good.",
    ("Permanent", "NoEmail"): "The email bounced: the address does not exist.",
    ("Permanent", "Suppressed"): "Amazon SES did not send it: the address bounced before and is suppressed.",
    ("Permanent", "OnAccountSuppressionList"): (
        "Amazon SES did not send it: the address is on the account's suppression list."
    ),
    ("Transient", "MailboxFull"): "The email bounced: the patient's mailbox is full.",
    ("Transient", "MessageTooLarge"): "The email bounced: it was too large for the patient's mailbox.",
    ("Transient", "ContentRejected"): "The email bounced: the patient's mail server rejected its content.",
    (
        "Transient",
        "AttachmentRejected",
    ): "The email bounced: the patient's mail server rejected an attachment.",
}


def _when(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def feedback_events(note: Mapping[str, Any], *, route_key: str | None) -> list[ProviderEvent]:
    """An SES notification (``notificationType``) or published event (``eventType``) as status updates."""
    kind = str(note.get("notificationType") or note.get("eventType") or "")
    mail = _dict(note.get("mail"))
    message_id = str(mail.get("messageId") or "")
    if not message_id:
        return []
    if kind == "Delivery":
        delivery = _dict(note.get("delivery"))
        return [StatusUpdate(message_id, "delivered", _when(delivery.get("timestamp")), route_key=route_key)]
    if kind == "Bounce":
        bounce = _dict(note.get("bounce"))
        kind_, sub = str(bounce.get("bounceType") or ""), str(bounce.get("bounceSubType") or "")
        reason = _BOUNCE_REASONS.get((kind_, sub)) or (
            "The email bounced: the patient's mail server did not accept it for now."
            if kind_ == "Transient"
            else "The email bounced: the patient's mail server refused it."
        )
        recipients = [r for r in bounce.get("bouncedRecipients") or [] if isinstance(r, dict)]
        diagnostic = str(recipients[0].get("diagnosticCode") or "") if recipients else ""
        if diagnostic:
            reason = f"{reason} ({diagnostic[:200]})"
        return [
            StatusUpdate(
                message_id,
                "failed",
                _when(bounce.get("timestamp")),
                error_code=f"bounce:{kind_ or 'Undetermined'}:{sub or 'General'}"[:40],
                error_title=reason,
                route_key=route_key,
            )
        ]
    if kind == "Complaint":
        complaint = _dict(note.get("complaint"))
        return [
            ConnectionEvent(
                "email_complaint",
                {
                    "message_id": message_id,
                    "feedback_type": str(complaint.get("complaintFeedbackType") or ""),
                    "at": str(complaint.get("timestamp") or ""),
                },
                route_key=route_key,
            )
        ]
    if kind == "Reject":
        return [
            StatusUpdate(
                message_id,
                "failed",
                _when(mail.get("timestamp")),
                error_code="reject",
                error_title="Amazon SES rejected the email (it found a virus in it).",
                route_key=route_key,
            )
        ]
    return []  # Send, Open, Click, DeliveryDelay …: nothing the inbox shows
