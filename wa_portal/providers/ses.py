"""Amazon SES: email, the last link of the channel chain, through boto3.

Docs: https://docs.aws.amazon.com/ses/latest/APIReference/API_SendEmail.html
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from . import http
from .base import (
    Capability,
    Channel,
    ErrorKind,
    Health,
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderEvent,
    SendResult,
    SettingField,
    WebhookRequest,
    register,
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

    def verify_webhook(self, req: WebhookRequest) -> bool:
        """SES reports bounces through SNS, which this adapter does not handle yet."""
        return False

    def parse_webhook(self, req: WebhookRequest) -> list[ProviderEvent]:
        return []

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
