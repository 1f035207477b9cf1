"""Amazon SNS HTTP(S) deliveries: the envelope, its signature check, and the subscription handshake.

SES reports bounces, complaints and deliveries through an SNS topic that POSTs to our webhook.
Every SNS message is signed with RSA (SignatureVersion 1: SHA1, 2: SHA256) by the key of an X.509
certificate at ``SigningCertURL``; we fetch that certificate only from Amazon's SNS hosts over
HTTPS (or, for a local stand-in or VPC endpoint, from the host of the connection's configured
endpoint), keep it in memory, and check the signature over the documented string to sign.

Docs: https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
and https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import http
from .base import ProviderError, WebhookError

log = logging.getLogger(__name__)

# sns.<region>.amazonaws.com, and .com.cn in the China regions.
AMAZON_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]{3,}\.amazonaws\.com(\.cn)?$")
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})
MAX_CERT_BYTES = 64 * 1024

_certs: dict[str, Any] = {}  # SigningCertURL -> public key
_certs_lock = threading.Lock()


def envelope(body: bytes) -> dict[str, Any]:
    """The SNS JSON document (sent as text/plain); WebhookError when it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError("the body is not JSON") from exc
    if not isinstance(data, dict) or data.get("Type") not in TYPES:
        raise WebhookError("not an Amazon SNS message")
    return data


def string_to_sign(data: Mapping[str, Any]) -> bytes:
    """Each field name and value on its own line, in the documented order; Subject only when present."""
    fields = NOTIFICATION_FIELDS if data.get("Type") == "Notification" else CONFIRMATION_FIELDS
    lines: list[str] = []
    for name in fields:
        if name not in data:
            if name == "Subject":
                continue
            raise WebhookError(f"the SNS message has no {name}")
        lines += [name, str(data[name])]
    return ("\n".join(lines) + "\n").encode()


def trusted_url(url: str, endpoint_url: str | None = None) -> bool:
    """A certificate or subscribe URL we may fetch: Amazon's SNS host over HTTPS, or the stand-in's host.

    ``endpoint_url`` is the connection's own AWS endpoint (a local stand-in or a VPC endpoint): its
    host is trusted too, with its scheme. Anything else (another host, plain HTTP to Amazon) is not.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and AMAZON_SNS_HOST.match(host):
        return True
    if endpoint_url:
        own = urlsplit(endpoint_url)
        return bool(host) and host == (own.hostname or "").lower() and parts.scheme == own.scheme
    return False


def _public_key(url: str) -> Any:
    with _certs_lock:
        key = _certs.get(url)
    if key is not None:
        return key
    resp = http.request("GET", url, provider="Amazon SNS", stream=True, allow_redirects=False)
    with resp:
        if resp.status_code != 200:
            raise WebhookError(f"the signing certificate could not be fetched (HTTP {resp.status_code})")
        pem = resp.raw.read(MAX_CERT_BYTES + 1, decode_content=True)
    if len(pem) > MAX_CERT_BYTES:
        raise WebhookError("the signing certificate is too large")
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError as exc:
        raise WebhookError("the signing certificate is not a PEM certificate") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookError("the signing certificate has no RSA key")
    with _certs_lock:
        if len(_certs) > 100:
            _certs.clear()
        _certs[url] = key
    return key


def verify(data: Mapping[str, Any], *, endpoint_url: str | None = None) -> bool:
    """Check an SNS message's signature; False (logged, without the body) when it does not hold."""
    digest: hashes.HashAlgorithm
    version = str(data.get("SignatureVersion") or "")
    if version == "1":
        digest = hashes.SHA1()  # noqa: S303 - SNS SignatureVersion 1 is SHA1withRSA
    elif version == "2":
        digest = hashes.SHA256()
    else:
        log.info("sns: unknown signature version %r", version[:8])
        return False
    cert_url = str(data.get("SigningCertURL") or data.get("SigningCertUrl") or "")
    if not trusted_url(cert_url, endpoint_url):
        log.warning(
            "sns: signing certificate from an untrusted URL refused (host %s)", urlsplit(cert_url).hostname
        )
        return False
    try:
        signature = base64.b64decode(str(data.get("Signature") or ""), validate=True)
        key = _public_key(cert_url)
        key.verify(signature, string_to_sign(data), padding.PKCS1v15(), digest)
    except (binascii.Error, ValueError, InvalidSignature, WebhookError, ProviderError) as exc:
        log.info("sns: signature check failed (%s)", type(exc).__name__)
        return False
    return True


def forget_certificates() -> None:
    with _certs_lock:
        _certs.clear()
