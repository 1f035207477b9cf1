"""A local Amazon SNS stand-in for SES feedback: signs messages as SNS does and serves what SNS serves.

- ``GET /SimpleNotificationService-<id>.pem``: the X.509 certificate whose RSA key signs every message
  (a fresh self-signed one per emulator);
- ``GET /?Action=ConfirmSubscription&TopicArn=…&Token=…``: the SubscribeURL; records the confirmation and
  answers SNS's XML ``ConfirmSubscriptionResponse`` (``emu.refuse_confirm`` → 403 ``AuthorizationError``).

``emu.envelope(...)`` builds the JSON document SNS POSTs to an HTTP(S) subscriber, with the string to sign
of the SNS docs, SignatureVersion 1 (SHA1withRSA) or 2 (SHA256withRSA); ``emu.headers(body)`` the
``x-amz-sns-*`` headers. ``bounce``/``delivery``/``complaint`` build SES notification contents.

Docs: https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html,
https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from werkzeug.wrappers import Request, Response

from tests.emulators.server import serve

REGION = "eu-west-1"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:clinic-email-feedback"
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def _certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sns.{REGION}.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class SnsEmulator:
    def __init__(self) -> None:
        self.key, self.pem = _certificate()
        self.cert_path = f"/SimpleNotificationService-{uuid.uuid4().hex}.pem"
        self.base_url = ""
        self.confirmed: list[dict[str, str]] = []
        self.cert_fetches = 0
        self.refuse_confirm = False
        self.lock = threading.Lock()

    # --- what SNS sends ----------------------------------------------------------------------------

    def envelope(
        self,
        message: dict[str, Any] | str,
        *,
        type_: str = "Notification",
        subject: str | None = None,
        version: str = "1",
        topic_arn: str = TOPIC_ARN,
        cert_url: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "Type": type_,
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic_arn,
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "SignatureVersion": version,
            "SigningCertURL": cert_url or self.base_url + self.cert_path,
        }
        if subject is not None:
            data["Subject"] = subject
        if type_ != "Notification":
            token = uuid.uuid4().hex * 2
            data["Token"] = token
            data["SubscribeURL"] = (
                f"{self.base_url}/?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={token}"
            )
            data["Message"] = (
                f"You have chosen to subscribe to the topic {topic_arn}.\n"
                "To confirm the subscription, visit the SubscribeURL included in this message."
            )
        else:
            data["UnsubscribeURL"] = f"{self.base_url}/?Action=Unsubscribe&SubscriptionArn={topic_arn}:1"
        data["Signature"] = self.sign(data, version=version, key=key)
        return data

    def sign(self, data: dict[str, Any], *, version: str = "1", key: rsa.RSAPrivateKey | None = None) -> str:
        fields = NOTIFICATION_FIELDS if data["Type"] == "Notification" else CONFIRMATION_FIELDS
        lines: list[str] = []
        for name in fields:
            if name in data:
                lines += [name, str(data[name])]
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1 is SHA1
        signature = (key or self.key).sign(("\n".join(lines) + "\n").encode(), padding.PKCS1v15(), digest)
        return base64.b64encode(signature).decode()

    @staticmethod
    def body(data: dict[str, Any]) -> bytes:
        return json.dumps(data, indent=2).encode()

    @staticmethod
    def headers(data: dict[str, Any]) -> dict[str, str]:
        return {
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": data["Type"],
            "x-amz-sns-message-id": data["MessageId"],
            "x-amz-sns-topic-arn": data["TopicArn"],
            "User-Agent": "Amazon Simple Notification Service Agent",
        }

    # --- the HTTP side -----------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        if req.method == "GET" and req.path == self.cert_path:
            with self.lock:
                self.cert_fetches += 1
            resp = Response(self.pem, content_type="application/x-x509-ca-cert")
        elif req.method == "GET" and req.path == "/" and req.args.get("Action") == "ConfirmSubscription":
            if self.refuse_confirm:
                resp = Response(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>AuthorizationError</Code>"
                    "<Message>Not authorized</Message></Error></ErrorResponse>",
                    status=403,
                    content_type="text/xml",
                )
            else:
                with self.lock:
                    self.confirmed.append(
                        {"topic_arn": req.args.get("TopicArn", ""), "token": req.args.get("Token", "")}
                    )
                resp = Response(
                    "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>"
                    f"{req.args.get('TopicArn', '')}:{uuid.uuid4()}"
                    "</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>",
                    content_type="text/xml",
                )
        else:
            resp = Response("Not Found", status=404)
        return resp(environ, start_response)


@contextmanager
def sns_server() -> Iterator[SnsEmulator]:
    emu = SnsEmulator()
    with serve(emu) as url:
        emu.base_url = url
        yield emu


# --- SES notification contents ---------------------------------------------------------------------


def _mail(message_id: str, source: str, to: str) -> dict[str, Any]:
    return {
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "messageId": message_id,
        "source": source,
        "sourceArn": f"arn:aws:ses:{REGION}:123456789012:identity/{source}",
        "destination": [to],
    }


def bounce(
    message_id: str,
    *,
    source: str,
    to: str,
    bounce_type: str = "Permanent",
    sub_type: str = "General",
    diagnostic: str = "smtp; 550 5.1.1 user unknown",
) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "bouncedRecipients": [
                {"emailAddress": to, "action": "failed", "status": "5.1.1", "diagnosticCode": diagnostic}
            ],
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "feedbackId": f"{uuid.uuid4().hex}-000000",
            "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
        },
        "mail": _mail(message_id, source, to),
    }


def delivery(message_id: str, *, source: str, to: str) -> dict[str, Any]:
    return {
        "notificationType": "Delivery",
        "delivery": {
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "processingTimeMillis": 546,
            "recipients": [to],
            "smtpResponse": "250 ok:  Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        },
        "mail": _mail(message_id, source, to),
    }


def complaint(message_id: str, *, source: str, to: str, feedback: str = "abuse") -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": to}],
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "feedbackId": f"{uuid.uuid4().hex}-000000",
            "complaintFeedbackType": feedback,
        },
        "mail": _mail(message_id, source, to),
    }
