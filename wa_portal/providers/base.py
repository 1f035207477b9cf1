"""The provider interface: every channel adapter translates between its wire format and these types.

Adapters import no Flask, no models and no extensions. The web layer builds a
``WebhookRequest``; the delivery layer builds an ``OutboundMessage``; the ingest
layer consumes the normalized events. Every adapter takes its base URL from its
settings so tests aim the real client code at local emulators.
"""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from .errors import ErrorKind, ProviderError, WebhookError

__all__ = [
    "Button",
    "Capability",
    "Channel",
    "ConnectionEvent",
    "ErrorKind",
    "Health",
    "InboundMedia",
    "InboundMessage",
    "MessageKind",
    "OutboundMedia",
    "OutboundMessage",
    "Provider",
    "ProviderError",
    "ProviderEvent",
    "SendResult",
    "SettingField",
    "StatusUpdate",
    "TemplateRef",
    "WebhookError",
    "WebhookRequest",
    "get_provider_class",
    "hmac_hex",
    "provider_names",
    "register",
]


class Channel(StrEnum):
    WHATSAPP = "whatsapp"
    SMS = "sms"
    EMAIL = "email"


class Capability(StrEnum):
    TEXT = "text"
    MEDIA = "media"  # image and document
    TEMPLATE = "template"
    BUTTONS = "buttons"  # interactive reply buttons
    READ_RECEIPT = "read_receipt"
    SMS = "sms"
    EMAIL = "email"
    INBOUND = "inbound"
    QR_LOGIN = "qr_login"  # WAHA: the number is linked by scanning a QR code
    EMBEDDED_SIGNUP = "embedded_signup"


class MessageKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    DOCUMENT = "document"
    AUDIO = "audio"
    VIDEO = "video"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    REACTION = "reaction"
    BUTTON_REPLY = "button_reply"  # interactive button/list reply or template quick reply
    TEMPLATE = "template"
    BUTTONS = "buttons"  # outbound text with reply buttons
    EMAIL = "email"
    UNSUPPORTED = "unsupported"
    SYSTEM = "system"


MEDIA_KINDS = frozenset(
    {MessageKind.IMAGE, MessageKind.DOCUMENT, MessageKind.AUDIO, MessageKind.VIDEO, MessageKind.STICKER}
)


# --- requests --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What a provider sent, built by the web layer; adapters never see ``flask.request``."""

    method: str
    url: str  # the external URL the provider called (Twilio signs it)
    headers: Mapping[str, str]  # case-insensitive mapping
    body: bytes  # raw bytes (Meta, WAHA, Chatwoot sign them)
    form: Mapping[str, list[str]] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    path_token: str | None = None  # 360dialog: the secret token in the URL path

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None:
            lowered = name.lower()
            for key, val in self.headers.items():
                if key.lower() == lowered:
                    return val
        return value

    def form_value(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    url: str | None = None  # a URL the provider can fetch (signed, short-lived)
    data: bytes | None = None  # the bytes, for providers that take uploads
    mime_type: str = "application/octet-stream"
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateRef:
    name: str
    language: str  # e.g. "en", "pt_BR"
    params: Sequence[str] = ()  # body variables {{1}}, {{2}} …
    provider_template_id: str | None = None  # Twilio ContentSid (HX…)
    button_payloads: Sequence[str] = ()  # quick-reply payloads, in button order
    header_media: OutboundMedia | None = None


@dataclass(frozen=True, slots=True)
class Button:
    id: str  # the payload that comes back when tapped
    title: str  # at most 20 characters on WhatsApp


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to one recipient on one channel."""

    to: str  # E.164 (+34600111222) for WhatsApp/SMS, an address for email
    channel: Channel
    kind: MessageKind = MessageKind.TEXT
    text: str = ""  # body, caption for media, fallback text for templates
    media: OutboundMedia | None = None
    template: TemplateRef | None = None
    buttons: Sequence[Button] = ()
    subject: str | None = None  # email
    html: str | None = None  # email
    reply_to: str | None = None  # provider id of the message this answers
    client_ref: str | None = None  # our own id, echoed back where the provider allows
    conversation_ref: str | None = None  # the provider's own thread id (Chatwoot conversation id)
    status_callback_url: str | None = None  # Twilio StatusCallback


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_message_id: str
    status: str = "sent"  # what the provider said: accepted, queued, sent …
    raw: Mapping[str, Any] = field(default_factory=dict)


# --- normalized events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundMedia:
    provider_media_id: str | None = None  # Meta media id
    url: str | None = None  # Twilio MediaUrl, WAHA file URL, Chatwoot data_url
    mime_type: str | None = None
    filename: str | None = None
    sha256: str | None = None
    caption: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    provider_message_id: str
    from_phone: str  # E.164 with "+" where the provider gives a number
    kind: MessageKind
    text: str = ""  # body, caption, button title, a readable summary for location/contacts
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    contact_name: str | None = None
    media: InboundMedia | None = None
    button_payload: str | None = None  # interactive/list/template button id
    reply_to_provider_id: str | None = None  # context.id
    channel: Channel = Channel.WHATSAPP
    route_key: str | None = None  # which of our numbers it was sent to (Meta phone_number_id …)
    conversation_ref: str | None = None  # the provider's own thread id (Chatwoot conversation id)
    extra: Mapping[str, Any] = field(default_factory=dict)  # location, contacts, reaction emoji …
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return self.provider_message_id


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    provider_message_id: str
    status: str  # sent | delivered | read | failed (normalized)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    error_code: str | None = None
    error_title: str | None = None
    route_key: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return f"{self.provider_message_id}:{self.status}"


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """Something about the connection itself (WAHA session status, Meta quality or template status)."""

    kind: str  # session_status | quality_update | template_status
    data: Mapping[str, Any]
    route_key: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


ProviderEvent = InboundMessage | StatusUpdate | ConnectionEvent


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    status: str  # e.g. "connected", "WORKING", "SCAN_QR_CODE", "token invalid"
    detail: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SettingField:
    name: str
    label: str
    secret: bool = False  # stored encrypted, never logged, never rendered back in full
    required: bool = False
    default: str | None = None
    help: str = ""


# --- the adapter base class ----------------------------------------------------------------------


class Provider(ABC):
    """Base of every adapter. Subclasses fill the class attributes and the abstract hooks."""

    name: ClassVar[str]
    display_name: ClassVar[str]
    docs_url: ClassVar[str] = ""
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.WHATSAPP})
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    settings_schema: ClassVar[tuple[SettingField, ...]] = ()
    # Documented send rate (messages per second per number); the delivery layer enforces it.
    rate_limit_per_second: ClassVar[float] = 10.0
    max_media_bytes: ClassVar[int] = 16 * 1024 * 1024

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    # Routing: which connection a webhook belongs to, before its signature can be checked.
    @classmethod
    def route_keys_for_settings(cls, settings: Mapping[str, Any]) -> list[str]:
        """The keys under which a connection with these settings receives webhooks."""
        return []

    @classmethod
    def route_keys_for_request(cls, req: WebhookRequest) -> list[str]:
        """Candidate route keys found in a webhook (raises WebhookError if the body is unreadable)."""
        return []

    @classmethod
    def event_key(cls, req: WebhookRequest) -> str:
        """The provider's own id for this delivery, used to refuse a redelivered duplicate.

        The default, a hash of the body, catches byte-identical redeliveries (Meta's,
        Twilio's); providers with a delivery id (Chatwoot, WAHA) override it.
        """
        return "sha256:" + hashlib.sha256(req.body).hexdigest()

    @abstractmethod
    def send(self, msg: OutboundMessage) -> SendResult:
        """Send one message; raise ProviderError on failure."""

    @abstractmethod
    def verify_webhook(self, req: WebhookRequest) -> bool:
        """Check the provider's signature with a constant-time comparison."""

    @abstractmethod
    def parse_webhook(self, req: WebhookRequest) -> list[ProviderEvent]:
        """Normalize a verified webhook into events (raise WebhookError if unreadable)."""

    def health(self) -> Health:
        return Health(ok=True, status="unknown", detail="no health check for this provider")

    def fetch_media(self, media: InboundMedia) -> tuple[bytes, str | None]:
        """Download inbound media: (bytes, content type). Raise ProviderError on failure."""
        raise ProviderError(ErrorKind.PERMANENT, None, f"{self.display_name} does not serve media")

    def mark_read(self, provider_message_id: str) -> None:  # noqa: B027 - optional hook
        """Send a read receipt where the provider supports it."""

    def external_url_hint(self) -> str | None:
        return None


_REGISTRY: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    """Class decorator: make an adapter available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def get_provider_class(name: str) -> type[Provider]:
    from . import load_all

    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}") from None


def provider_names() -> list[str]:
    from . import load_all

    load_all()
    return sorted(_REGISTRY)


def token_key(token: str) -> str:
    """The route key for a webhook path token: its hash, so the lookup table never holds the secret itself."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()


def hmac_hex(key: str | bytes, msg: bytes, digest: str = "sha256") -> str:
    k = key.encode() if isinstance(key, str) else key
    return hmac.new(k, msg, digest).hexdigest()
