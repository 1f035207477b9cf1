"""Twilio Messages API: WhatsApp and SMS through the official SDK; form webhooks signed with the auth token.

Docs: https://www.twilio.com/docs/messaging/api/message-resource
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from werkzeug.datastructures import MultiDict

from . import http
from .base import (
    MEDIA_KINDS,
    Capability,
    Channel,
    ErrorKind,
    Health,
    InboundMedia,
    InboundMessage,
    MessageKind,
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
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.twilio.com"
_WA = "whatsapp:"

# Twilio error code → (kind when the API refuses a send, a sentence for the receptionist).
# Docs: https://www.twilio.com/docs/api/errors
_ERRORS: dict[int, tuple[ErrorKind, str]] = {
    20003: (ErrorKind.AUTH, "Twilio rejected the account SID or auth token."),
    20429: (ErrorKind.RATE_LIMITED, "Twilio is receiving too many requests right now."),
    21211: (ErrorKind.RECIPIENT_INVALID, "The patient's phone number is not valid."),
    21408: (ErrorKind.PERMANENT, "This Twilio account is not allowed to send messages to that country."),
    21602: (ErrorKind.PERMANENT, "The message is empty."),
    21606: (ErrorKind.PERMANENT, "The sending number cannot send messages to this destination."),
    21608: (ErrorKind.RECIPIENT_INVALID, "A Twilio trial account can only send to verified numbers."),
    21610: (
        ErrorKind.OPTED_OUT,
        "The patient replied STOP and cannot receive messages until they reply START.",
    ),
    21612: (ErrorKind.RECIPIENT_INVALID, "Twilio cannot deliver messages to this number."),
    21614: (
        ErrorKind.RECIPIENT_INVALID,
        "The number cannot receive text messages (it is a landline or not a mobile number).",
    ),
    30003: (ErrorKind.RECIPIENT_INVALID, "The patient's phone is switched off or unreachable."),
    30005: (ErrorKind.RECIPIENT_INVALID, "The number does not exist or is no longer in service."),
    30006: (ErrorKind.RECIPIENT_INVALID, "The number is a landline or its carrier cannot receive messages."),
    30007: (ErrorKind.PERMANENT, "The carrier filtered the message as unwanted."),
    30008: (ErrorKind.PERMANENT, "The message could not be delivered for an unknown reason."),
    63003: (ErrorKind.RECIPIENT_INVALID, "This number is not on WhatsApp."),
    63016: (
        ErrorKind.WINDOW_CLOSED,
        "More than 24 hours have passed since the patient's last message: only an approved template "
        "can be sent.",
    ),
    63018: (ErrorKind.RATE_LIMITED, "WhatsApp is limiting how fast this number can send."),
    63024: (ErrorKind.RECIPIENT_INVALID, "WhatsApp does not accept messages for this recipient."),
}

# Docs: https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks
_STATUS = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
# Intermediate states the portal already shows as "queued": no event.
_NO_EVENT_STATUS = frozenset({"queued", "accepted", "scheduled", "sending"})


def error_title(code: str | int | None) -> str | None:
    """A readable title for a Twilio error code (status callbacks carry only the number)."""
    if code in (None, ""):
        return None
    try:
        entry = _ERRORS.get(int(str(code)))
    except ValueError:
        entry = None
    return entry[1] if entry else f"Twilio error {code}."


def _strip_channel(address: str) -> str:
    return address[len(_WA) :] if address.lower().startswith(_WA) else address


def _e164(address: str | None) -> str:
    """'whatsapp:+1 650-555-1234' → '+16505551234'; alphanumeric senders and short codes stay as they are."""
    value = _strip_channel((address or "").strip())
    if not value or any(ch.isalpha() for ch in value):
        return value
    digits = "".join(ch for ch in value if ch.isdigit())
    return f"+{digits}" if digits else value


def _media_kind(mime: str | None, channel: Channel) -> MessageKind:
    mime = (mime or "").lower()
    if mime == "image/webp" and channel is Channel.WHATSAPP:
        return MessageKind.STICKER  # WhatsApp stickers arrive as WebP images
    for prefix, kind in (
        ("image/", MessageKind.IMAGE),
        ("audio/", MessageKind.AUDIO),
        ("video/", MessageKind.VIDEO),
    ):
        if mime.startswith(prefix):
            return kind
    return MessageKind.DOCUMENT


def _form(req: WebhookRequest) -> Mapping[str, list[str]]:
    """The posted form; parsed from the raw body when the web layer did not fill it."""
    if req.form:
        return req.form
    try:
        return parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise WebhookError("Twilio webhook body is not UTF-8 form data") from exc


def _first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _same_origin(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


@register
class TwilioProvider(Provider):
    """WhatsApp and SMS through Twilio's Programmable Messaging."""

    name = "twilio"
    display_name = "Twilio"
    docs_url = "https://www.twilio.com/docs/messaging/api/message-resource"
    channels = frozenset({Channel.WHATSAPP, Channel.SMS})
    capabilities = frozenset(
        {
            Capability.TEXT,
            Capability.MEDIA,
            Capability.TEMPLATE,
            Capability.BUTTONS,  # quick-reply buttons exist only as Content templates (ContentSid)
            Capability.SMS,
            Capability.INBOUND,
        }
    )
    # Docs: https://help.twilio.com/articles/115002943027 (rate limits and message queues)
    rate_limit_per_second = 10.0
    settings_schema = (
        SettingField("account_sid", "Account SID", required=True, help="Starts with AC"),
        SettingField("auth_token", "Auth token", secret=True, required=True),
        SettingField("whatsapp_from", "WhatsApp sender", help="E.164, e.g. +15550783881"),
        SettingField("sms_from", "SMS sender", help="E.164 number or alphanumeric sender id"),
        SettingField("messaging_service_sid", "Messaging Service SID", help="Starts with MG; optional"),
        SettingField("base_url", "API base URL", default=DEFAULT_BASE_URL),
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.account_sid: str = self.settings.get("account_sid") or ""
        self.auth_token: str = self.settings.get("auth_token") or ""
        self.base_url: str = (self.settings.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self._client: Client | None = None

    # --- routing ---------------------------------------------------------------------------------

    @classmethod
    def route_keys_for_settings(cls, settings: Mapping[str, Any]) -> list[str]:
        sid = settings.get("account_sid") or ""
        if not sid:
            return []
        senders = [
            _e164(settings.get("whatsapp_from")),
            _e164(settings.get("sms_from")),
            # A connection that sends only through a Messaging Service has no fixed number;
            # its webhooks carry MessagingServiceSid, which route_keys_for_request also offers.
            settings.get("messaging_service_sid") or "",
        ]
        return list(dict.fromkeys(f"{sid}:{s}" for s in senders if s))

    @classmethod
    def route_keys_for_request(cls, req: WebhookRequest) -> list[str]:
        form = _form(req)
        sid = _first(form, "AccountSid")
        if not sid:
            raise WebhookError("not a Twilio webhook: AccountSid is missing")
        # Inbound messages name our number in To, status callbacks in From: offer both.
        candidates = [
            _e164(_first(form, "To")),
            _e164(_first(form, "From")),
            _first(form, "MessagingServiceSid"),
        ]
        return list(dict.fromkeys(f"{sid}:{c}" for c in candidates if c))

    # --- sending ---------------------------------------------------------------------------------

    def client(self) -> Client:
        """The SDK client, aimed at ``base_url`` (an emulator in tests)."""
        if self._client is None:
            http_client = TwilioHttpClient(timeout=http.READ_TIMEOUT)
            if http_client.session is not None:
                # Same policy as providers/http.py: no proxy from the environment.
                http_client.session.trust_env = False
            client = Client(self.account_sid, self.auth_token, http_client=http_client)
            # TWILIO_REGION/TWILIO_EDGE from the environment would make get_hostname() rewrite the
            # host (127.0.0.1 became 127.ie1.0.1); base_url alone decides where requests go.
            client.region = None
            client.edge = None
            client.api.base_url = self.base_url
            self._client = client
        return self._client

    def _addresses(self, msg: OutboundMessage) -> dict[str, str]:
        service = self.settings.get("messaging_service_sid") or ""
        if msg.channel is Channel.WHATSAPP:
            sender = _e164(self.settings.get("whatsapp_from"))
            to = f"{_WA}{_e164(msg.to)}"
            origin = {"from_": f"{_WA}{sender}"} if sender else {}
        elif msg.channel is Channel.SMS:
            sender = _e164(self.settings.get("sms_from"))
            to = _e164(msg.to)
            origin = {"from_": sender} if sender else {}
        else:
            raise ProviderError(ErrorKind.PERMANENT, "channel", f"Twilio cannot send {msg.channel} messages.")
        if not origin:
            if not service:
                raise ProviderError(
                    ErrorKind.PERMANENT,
                    "no_sender",
                    f"No Twilio {msg.channel.value} sender number is configured for this connection.",
                )
            origin = {"messaging_service_sid": service}
        return {"to": to, **origin}

    def _content(self, msg: OutboundMessage) -> dict[str, Any]:
        kind = msg.kind
        if kind in (MessageKind.TEMPLATE, MessageKind.BUTTONS):
            content_sid = msg.template.provider_template_id if msg.template else None
            if content_sid and msg.template is not None:
                # Docs: https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder
                # ContentVariables is a JSON *string* keyed "1", "2", …
                variables = {str(i): str(v) for i, v in enumerate(msg.template.params, start=1)}
                return {
                    "content_sid": content_sid,
                    "content_variables": json.dumps(variables, ensure_ascii=False),
                }
            if msg.channel is Channel.SMS and msg.text:
                return {"body": msg.text}  # SMS has no templates or buttons: the fallback text is the message
            # Since 2025-04-01 a WhatsApp template must go by ContentSid; as Body it fails with 63016.
            what = "template" if kind is MessageKind.TEMPLATE else "message with reply buttons"
            raise ProviderError(
                ErrorKind.PERMANENT,
                "no_content_sid",
                f"This WhatsApp {what} has no Twilio Content SID (HX…), so Twilio cannot send it. "
                "Add the Content SID to the template settings.",
            )
        if kind in MEDIA_KINDS or msg.media is not None:
            if msg.media is None or not msg.media.url:
                raise ProviderError(
                    ErrorKind.PERMANENT,
                    "no_media_url",
                    "Twilio needs a link to the file to send it, and none was given.",
                )
            # Twilio downloads MediaUrl itself; the caption travels as Body.
            content: dict[str, Any] = {"media_url": [msg.media.url]}
            if msg.text:
                content["body"] = msg.text
            return content
        if kind is not MessageKind.TEXT:
            raise ProviderError(ErrorKind.PERMANENT, "kind", f"Twilio cannot send {kind.value} messages.")
        if not msg.text:
            raise ProviderError(ErrorKind.PERMANENT, "empty", "The message is empty.")
        return {"body": msg.text}

    def send(self, msg: OutboundMessage) -> SendResult:
        params = {**self._addresses(msg), **self._content(msg)}
        if msg.status_callback_url:
            params["status_callback"] = msg.status_callback_url
        try:
            message = self.client().messages.create(**params)
        except (TwilioException, requests.RequestException) as exc:
            raise self._error(exc) from exc
        log.info("twilio: sent %s (%s)", message.sid, message.status)
        return SendResult(
            provider_message_id=message.sid or "",
            status=message.status or "queued",
            raw={
                "sid": message.sid,
                "status": message.status,
                "num_segments": message.num_segments,
                "num_media": message.num_media,
                "messaging_service_sid": message.messaging_service_sid,
                "error_code": message.error_code,
            },
        )

    @staticmethod
    def _error(exc: TwilioException | requests.RequestException) -> ProviderError:
        """Classify what the SDK raised: an HTTP answer by its Twilio code, else a transport problem."""
        if isinstance(exc, requests.Timeout):
            return ProviderError(ErrorKind.RETRYABLE, "timeout", "Twilio did not answer in time.")
        if not isinstance(exc, TwilioRestException | TwilioServiceException):
            # requests' ConnectionError, or a TwilioException raised without an HTTP answer.
            return ProviderError(ErrorKind.RETRYABLE, "connection", "Could not reach Twilio.")
        status: int | None = exc.status
        code: int | None = exc.code
        # With a non-JSON error body the SDK reports the HTTP status as the code.
        entry = _ERRORS.get(code) if code is not None and code != status else None
        if code == 20429 or status == 429:
            kind, detail = _ERRORS[20429]
        elif entry is not None:
            kind, detail = entry
        elif status == 401:
            kind, detail = _ERRORS[20003]
        elif status is not None and status >= 500:
            kind, detail = ErrorKind.RETRYABLE, "Twilio had a temporary problem."
        else:
            # Twilio's own message can quote the phone number: show the code and where to read about it.
            kind = ErrorKind.PERMANENT
            detail = f"Twilio refused the message (error {code or status}, see twilio.com/docs/errors)."
        return ProviderError(kind, code if code is not None else status, detail, status_code=status)

    # --- webhooks --------------------------------------------------------------------------------

    def verify_webhook(self, req: WebhookRequest) -> bool:
        """X-Twilio-Signature over the public URL and every posted value, checked by the SDK.

        Docs: https://www.twilio.com/docs/usage/webhooks/webhooks-security
        The web layer must pass the URL Twilio called (PUBLIC_BASE_URL behind a proxy).
        """
        signature = req.header("X-Twilio-Signature")
        if not signature or not self.auth_token:
            return False
        validator = RequestValidator(self.auth_token)
        if "bodySHA256" in parse_qs(urlsplit(req.url).query):
            # JSON webhooks: Twilio signs the URL and puts the body's hash in it.
            try:
                return bool(validator.validate(req.url, req.body.decode("utf-8"), signature))
            except UnicodeDecodeError:
                return False
        # Every name and every value, never a whitelist: Twilio adds parameters without notice.
        params = MultiDict([(k, v) for k, values in _form(req).items() for v in values])
        return bool(validator.validate(req.url, params, signature))

    def parse_webhook(self, req: WebhookRequest) -> list[ProviderEvent]:
        form = _form(req)
        sid = _first(form, "MessageSid") or _first(form, "SmsMessageSid") or _first(form, "SmsSid")
        account = _first(form, "AccountSid")
        if not sid or not account:
            raise WebhookError("Twilio webhook without MessageSid/AccountSid")
        raw = {k: (v[0] if len(v) == 1 else list(v)) for k, v in form.items()}
        status = (_first(form, "MessageStatus") or "").lower()
        if status and status not in ("received", "receiving"):
            return self._status(form, sid, account, status, raw)
        return list(self._inbound(form, sid, account, raw))

    @staticmethod
    def _status(
        form: Mapping[str, list[str]], sid: str, account: str, status: str, raw: Mapping[str, Any]
    ) -> list[ProviderEvent]:
        normalized = _STATUS.get(status)
        if normalized is None:
            if status not in _NO_EVENT_STATUS:
                log.info("twilio: ignoring status %r for %s", status, sid)
            return []
        code = _first(form, "ErrorCode") or None
        return [
            StatusUpdate(
                provider_message_id=sid,
                status=normalized,
                error_code=code,
                error_title=error_title(code) if code else None,
                route_key=f"{account}:{_e164(_first(form, 'From'))}",
                raw=raw,
            )
        ]

    @staticmethod
    def _inbound(
        form: Mapping[str, list[str]], sid: str, account: str, raw: Mapping[str, Any]
    ) -> list[InboundMessage]:
        sender = _first(form, "From") or ""
        channel = Channel.WHATSAPP if sender.lower().startswith(_WA) else Channel.SMS
        body = _first(form, "Body") or ""
        common: dict[str, Any] = {
            "from_phone": _e164(sender),
            "contact_name": _first(form, "ProfileName") or None,
            "channel": channel,
            "route_key": f"{account}:{_e164(_first(form, 'To'))}",
            "raw": raw,
        }
        extra = {
            k: v
            for k, v in (
                ("wa_id", _first(form, "WaId")),
                ("forwarded", _first(form, "Forwarded")),
                ("message_type", _first(form, "MessageType")),
            )
            if v
        }
        try:
            num_media = int(_first(form, "NumMedia") or 0)
        except ValueError:
            num_media = 0
        media = [
            InboundMedia(
                provider_media_id=url.rstrip("/").rsplit("/", 1)[-1],
                url=url,
                mime_type=_first(form, f"MediaContentType{n}"),
            )
            for n in range(num_media)
            if (url := _first(form, f"MediaUrl{n}"))
        ]

        button_payload = _first(form, "ButtonPayload")
        button_text = _first(form, "ButtonText")
        lat, lon = _first(form, "Latitude"), _first(form, "Longitude")
        first_media: InboundMedia | None = None
        if button_payload or button_text:
            kind = MessageKind.BUTTON_REPLY
            text = button_text or body
        elif lat and lon:
            kind = MessageKind.LOCATION
            label, address = _first(form, "Label"), _first(form, "Address")
            extra.update(
                latitude=lat,
                longitude=lon,
                **{k: v for k, v in (("label", label), ("address", address)) if v},
            )
            text = body or ", ".join(p for p in (label, address) if p) or f"Location: {lat}, {lon}"
        elif media:
            first_media = InboundMedia(**{**_media_fields(media[0]), "caption": body or None})
            kind = _media_kind(first_media.mime_type, channel)
            text = body
        else:
            kind, text = MessageKind.TEXT, body

        events = [
            InboundMessage(
                provider_message_id=sid,
                kind=kind,
                text=text,
                media=first_media,
                button_payload=(button_payload or button_text) if kind is MessageKind.BUTTON_REPLY else None,
                reply_to_provider_id=_first(form, "OriginalRepliedMessageSid"),
                extra=extra,
                **common,
            )
        ]
        # One message can carry up to ten files; each further file becomes its own message so the
        # inbox shows every one, and the "#n" suffix keeps a redelivery deduplicated.
        for n, item in enumerate(media):
            if n == 0 and first_media is not None:
                continue
            events.append(
                InboundMessage(
                    provider_message_id=f"{sid}#{n}",
                    kind=_media_kind(item.mime_type, channel),
                    media=item,
                    **common,
                )
            )
        return events

    # --- media and health ------------------------------------------------------------------------

    def _sends_credentials_to(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        return _same_origin(url, self.base_url) or host == "twilio.com" or host.endswith(".twilio.com")

    def fetch_media(self, media: InboundMedia) -> tuple[bytes, str | None]:
        """GET the MediaUrl with Basic auth; Twilio answers with a redirect to its storage.

        Docs: https://www.twilio.com/docs/messaging/api/media-resource
        The auth token goes only to Twilio (or the configured base URL), never to a redirect target.
        """
        if not media.url:
            raise ProviderError(ErrorKind.PERMANENT, "no_media_url", "This message has no file to download.")
        url = media.url
        for _ in range(5):
            auth = (self.account_sid, self.auth_token) if self._sends_credentials_to(url) else None
            resp = http.request("GET", url, provider="Twilio", auth=auth, allow_redirects=False, stream=True)
            if resp.is_redirect and resp.headers.get("Location"):
                url = requests.compat.urljoin(url, resp.headers["Location"])
                resp.close()
                continue
            return _read_limited(resp, self.max_media_bytes, "Twilio")
        raise ProviderError(
            ErrorKind.PERMANENT, "redirects", "Twilio redirected the download too many times."
        )

    def health(self) -> Health:
        """Fetch the account: proves the credentials and shows whether it is active or suspended."""
        try:
            account = self.client().api.v2010.accounts(self.account_sid).fetch()
        except (TwilioException, requests.RequestException) as exc:
            error = self._error(exc)
            if error.kind is ErrorKind.AUTH:
                return Health(ok=False, status="auth failed", detail=error.detail)
            return Health(ok=False, status="unreachable", detail=error.detail)
        status = account.status or "unknown"
        return Health(
            ok=status == "active",
            status=status,
            detail="" if status == "active" else f"The Twilio account is {status}.",
            data={"friendly_name": account.friendly_name, "type": account.type},
        )


def _media_fields(media: InboundMedia) -> dict[str, Any]:
    return {"provider_media_id": media.provider_media_id, "url": media.url, "mime_type": media.mime_type}


def _read_limited(resp: requests.Response, limit: int, provider: str) -> tuple[bytes, str | None]:
    """Read a streamed download, refusing anything over ``limit`` bytes."""
    with resp:
        if resp.status_code in (401, 403):
            raise ProviderError(ErrorKind.AUTH, resp.status_code, f"{provider} refused the download.")
        if resp.status_code == 404:
            raise ProviderError(ErrorKind.PERMANENT, 404, f"The file is no longer available at {provider}.")
        if resp.status_code == 429 or resp.status_code >= 500:
            kind = ErrorKind.RATE_LIMITED if resp.status_code == 429 else ErrorKind.RETRYABLE
            raise ProviderError(kind, resp.status_code, f"{provider} could not serve the file right now.")
        if resp.status_code >= 400:
            raise ProviderError(ErrorKind.PERMANENT, resp.status_code, f"{provider} refused the download.")
        too_big = ProviderError(
            ErrorKind.PERMANENT, "too_large", f"The file is larger than {limit // 2**20} MB."
        )
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_big
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise ProviderError(
                ErrorKind.RETRYABLE, "connection", f"The download from {provider} broke off."
            ) from exc
        return b"".join(chunks), resp.headers.get("Content-Type")
