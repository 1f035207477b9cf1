"""WhatsApp Cloud API (Meta Graph) adapter: send, webhooks, media, health and the embedded-signup calls.

Docs: https://developers.facebook.com/docs/whatsapp/cloud-api ("…/" in the comments below stands for
https://developers.facebook.com/docs/whatsapp).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from . import http, meta_errors
from .base import (
    Capability,
    Channel,
    ConnectionEvent,
    ErrorKind,
    Health,
    InboundMedia,
    InboundMessage,
    MessageKind,
    OutboundMedia,
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderEvent,
    SendResult,
    SettingField,
    StatusUpdate,
    TemplateRef,
    WebhookError,
    WebhookRequest,
    hmac_hex,
    register,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "MetaProvider",
    "exchange_code",
    "register_number",
    "request_verification_code",
    "subscribe_app",
    "verify_code",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com/v23.0"
SIGNATURE_HEADER = "X-Hub-Signature-256"
HEALTH_FIELDS = (
    "display_phone_number",
    "quality_rating",
    "verified_name",
    "code_verification_status",
    "status",
)
TEXT_MAX = 4096  # Docs: …/cloud-api/reference/messages#text-object
INTERACTIVE_BODY_MAX = 1024
BUTTON_TITLE_MAX = 20
MAX_REPLY_BUTTONS = 3
NOT_CONFIGURED = "not_configured"

_CAPTIONED = frozenset({MessageKind.IMAGE, MessageKind.VIDEO, MessageKind.DOCUMENT})
_SENDABLE_MEDIA = frozenset(
    {MessageKind.IMAGE, MessageKind.DOCUMENT, MessageKind.AUDIO, MessageKind.VIDEO, MessageKind.STICKER}
)
_INBOUND_MEDIA = {
    "image": MessageKind.IMAGE,
    "video": MessageKind.VIDEO,
    "audio": MessageKind.AUDIO,
    "sticker": MessageKind.STICKER,
    "document": MessageKind.DOCUMENT,
}
# "played" is a voice note listened to; the inbox only knows read. Anything else (older "deleted",
# "warning") is not a delivery state, so it is dropped; the raw event is stored by the web layer anyway.
_STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "read", "failed": "failed"}


# --- small JSON helpers: webhook payloads are trusted for origin, not for shape ----------------------------


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _objs(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _e164(wa_id: str) -> str:
    digits = re.sub(r"\D", "", wa_id)
    return f"+{digits}" if digits else ""


def _mask(number: str) -> str:
    """Enough of a phone number to correlate log lines, never the whole number."""
    digits = re.sub(r"\D", "", number)
    return f"…{digits[-4:]}" if digits else "?"


def _timestamp(value: Any) -> datetime:
    # Meta sends Unix seconds as a *string*; a missing or garbled one falls back to the arrival time.
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _missing(what: str) -> ProviderError:
    # A missing credential breaks every send on the connection, so it is an AUTH problem, not a message one.
    return ProviderError(
        ErrorKind.AUTH, NOT_CONFIGURED, f"The {what} is missing. Complete the connection in Settings."
    )


def _call(
    method: str,
    url: str,
    *,
    service: str,
    to_error: Callable[[requests.Response], ProviderError],
    hide_cause: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """One HTTP call; a JSON object on 2xx, otherwise a classified ProviderError."""
    try:
        resp = http.request(method, url, provider=service, **kwargs)
    except ProviderError as err:
        if not hide_cause:
            raise
        # The requests exception's text holds the URL; the OAuth exchange puts the app secret in its query.
        raise ProviderError(err.kind, err.code, err.detail) from None
    if resp.status_code >= 400:
        raise to_error(resp)
    body = _json(resp)
    if not isinstance(body, dict):
        raise ProviderError(
            ErrorKind.PERMANENT,
            f"http_{resp.status_code}",
            f"{service} gave an answer that could not be read.",
        )
    return body


def _graph_error(resp: requests.Response, *, secrets: tuple[str, ...] = ()) -> ProviderError:
    return meta_errors.error_from_response(
        resp.status_code, _json(resp), retry_after=http.retry_after(resp), secrets=secrets
    )


# --- inbound parsing -------------------------------------------------------------------------------------

Content = dict[str, Any]  # keyword arguments for InboundMessage, plus "extra" and "reply_to"


def _text(m: Mapping[str, Any]) -> Content:
    return {"kind": MessageKind.TEXT, "text": _str(_obj(m.get("text")).get("body"))}


def _media(m: Mapping[str, Any]) -> Content:
    mtype = _str(m.get("type"))
    obj = _obj(m.get(mtype))
    caption = _str(obj.get("caption"))
    # Some payloads carry a `url` too [pywa]; it needs our token and expires, so media is fetched by id only.
    media = InboundMedia(
        provider_media_id=_str(obj.get("id")) or None,
        mime_type=obj.get("mime_type") or None,
        filename=obj.get("filename") or None,
        sha256=obj.get("sha256") or None,
        caption=caption or None,
    )
    extra = {flag: True for flag in ("voice", "animated") if obj.get(flag)}
    return {"kind": _INBOUND_MEDIA[mtype], "text": caption, "media": media, "extra": extra}


def _location(m: Mapping[str, Any]) -> Content:
    loc = _obj(m.get("location"))
    lat, lon = loc.get("latitude"), loc.get("longitude")
    label = ", ".join(p for p in (_str(loc.get("name")), _str(loc.get("address"))) if p)
    coords = f"({lat}, {lon})" if lat is not None and lon is not None else ""
    text = " ".join(p for p in ("📍", label, coords) if p)
    extra = {"latitude": lat, "longitude": lon}
    extra.update({k: loc[k] for k in ("name", "address", "url") if loc.get(k)})
    return {"kind": MessageKind.LOCATION, "text": text, "extra": extra}


def _contacts(m: Mapping[str, Any]) -> Content:
    cards: list[dict[str, Any]] = []
    lines: list[str] = []
    for card in _objs(m.get("contacts")):
        name = _obj(card.get("name"))
        full = _str(name.get("formatted_name")) or " ".join(
            _str(name.get(k)) for k in ("first_name", "last_name") if name.get(k)
        )
        phones = [p for p in (_str(p.get("phone") or p.get("wa_id")) for p in _objs(card.get("phones"))) if p]
        cards.append({"name": full, "phones": phones})
        numbers = ", ".join(phones)
        lines.append(f"{full} ({numbers})" if full and numbers else full or numbers)
    summary = "; ".join(line for line in lines if line)
    return {
        "kind": MessageKind.CONTACTS,
        "text": f"👤 {summary or 'Shared contact'}",
        "extra": {"contacts": cards},
    }


def _reaction(m: Mapping[str, Any]) -> Content:
    reaction = _obj(m.get("reaction"))
    emoji = _str(reaction.get("emoji"))
    extra: dict[str, Any] = {"emoji": emoji}
    if not emoji:  # an empty emoji removes an earlier reaction
        extra["removed"] = True
    return {
        "kind": MessageKind.REACTION,
        "text": emoji,
        "reply_to": _str(reaction.get("message_id")) or None,
        "extra": extra,
    }


def _interactive(m: Mapping[str, Any]) -> Content:
    inter = _obj(m.get("interactive"))
    itype = _str(inter.get("type"))
    if itype not in ("button_reply", "list_reply"):  # e.g. nfm_reply (Flows): not something the inbox shows
        return _unsupported(m)
    reply = _obj(inter.get(itype))
    extra = {"interactive_type": itype}
    if reply.get("description"):
        extra["description"] = _str(reply["description"])
    return {
        "kind": MessageKind.BUTTON_REPLY,
        "text": _str(reply.get("title")),
        "button_payload": _str(reply.get("id")) or None,
        "extra": extra,
    }


def _button(m: Mapping[str, Any]) -> Content:
    # A quick-reply tap on a *template*: `button{payload,text}`, not `interactive`.
    button = _obj(m.get("button"))
    return {
        "kind": MessageKind.BUTTON_REPLY,
        "text": _str(button.get("text")),
        "button_payload": _str(button.get("payload")) or None,
        "extra": {"interactive_type": "template_button"},
    }


def _system(m: Mapping[str, Any]) -> Content:
    system = _obj(m.get("system"))
    extra = {k: system[k] for k in ("type", "wa_id", "new_wa_id", "customer") if k in system}
    return {"kind": MessageKind.SYSTEM, "text": _str(system.get("body")), "extra": extra}


def _unsupported(m: Mapping[str, Any]) -> Content:
    errors = _objs(m.get("errors"))
    title = _str(errors[0].get("title") or errors[0].get("message")) if errors else ""
    extra: dict[str, Any] = {"type": _str(m.get("type"))}
    if errors and errors[0].get("code") is not None:
        extra["error_code"] = _str(errors[0]["code"])
    text = f"Unsupported message ({title})" if title else "Unsupported message"
    return {"kind": MessageKind.UNSUPPORTED, "text": text, "extra": extra}


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Content]] = {
    "text": _text,
    **dict.fromkeys(_INBOUND_MEDIA, _media),
    "location": _location,
    "contacts": _contacts,
    "reaction": _reaction,
    "interactive": _interactive,
    "button": _button,
    "system": _system,
}


def _inbound(m: dict[str, Any], names: Mapping[str, str], route_key: str | None) -> InboundMessage | None:
    msg_id = _str(m.get("id"))
    if not msg_id:
        log.warning("meta webhook: message without id skipped (type %s)", _str(m.get("type"))[:30])
        return None
    sender = _str(m.get("from"))
    content = _PARSERS.get(_str(m.get("type")), _unsupported)(m)
    context = _obj(m.get("context"))
    extra = dict(content.pop("extra", {}))
    if context.get("forwarded") or context.get("frequently_forwarded"):
        extra["forwarded"] = True
    if "referral" in m:  # click-to-WhatsApp ad that started the chat
        extra["referral"] = m["referral"]
    reply_to = content.pop("reply_to", None) or _str(context.get("id")) or None
    return InboundMessage(
        provider_message_id=msg_id,
        from_phone=_e164(sender),
        timestamp=_timestamp(m.get("timestamp")),
        contact_name=names.get(sender) or None,  # system messages come without `contacts`
        reply_to_provider_id=reply_to,
        route_key=route_key,
        extra=extra,
        raw=m,
        **content,
    )


def _status(s: dict[str, Any], route_key: str | None) -> StatusUpdate | None:
    status = _STATUSES.get(_str(s.get("status")).lower())
    msg_id = _str(s.get("id"))
    if status is None or not msg_id:
        log.debug("meta webhook: status %r ignored", _str(s.get("status"))[:30])
        return None
    errors = _objs(s.get("errors"))
    err = errors[0] if errors else {}
    code = _str(err.get("code")) or None
    title = _str(err.get("title") or err.get("message")) or None
    if status == "failed":
        # The inbox shows error_title as the reason: a sentence for the receptionist, with Meta's own
        # title in parentheses ("Message undeliverable" alone does not say what to do).
        title = meta_errors.describe(code, title)
    return StatusUpdate(
        provider_message_id=msg_id,
        status=status,
        timestamp=_timestamp(s.get("timestamp")),
        error_code=code,
        error_title=title,
        route_key=route_key,
        raw=s,
    )


def _template_status(value: dict[str, Any], route_key: str | None) -> ConnectionEvent:
    # Docs: …/webhooks/reference/message_template_status_update (message_template_id is a JSON number)
    data = {
        "event": value.get("event"),
        "template_id": _str(value.get("message_template_id")) or None,
        "name": value.get("message_template_name"),
        "language": value.get("message_template_language"),
        "reason": value.get("reason"),
        "category": value.get("message_template_category"),
    }
    return ConnectionEvent(kind="template_status", data=data, route_key=route_key, raw=value)


def _quality_update(value: dict[str, Any], route_key: str | None) -> ConnectionEvent:
    # Docs: …/webhooks/reference/phone_number_quality_update (current_limit is going away; keep it optional)
    data = {
        "display_phone": value.get("display_phone_number"),
        "event": value.get("event"),
        "current_limit": value.get("current_limit"),
        "old_limit": value.get("old_limit"),
        "max_daily_conversations": value.get("max_daily_conversations_per_business"),
    }
    return ConnectionEvent(kind="quality_update", data=data, route_key=route_key, raw=value)


def _load_entries(body: bytes) -> list[dict[str, Any]]:
    try:
        payload = json.loads(body)
    # UnicodeDecodeError is a ValueError; RecursionError: this also runs before the signature is checked.
    except (ValueError, RecursionError) as exc:
        raise WebhookError("the webhook body is not JSON") from exc
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise WebhookError("not a WhatsApp Business Account webhook (no entry list)")
    return _objs(entries)


def _changes(entry: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for change in _objs(entry.get("changes")):
        yield _str(change.get("field")), _obj(change.get("value"))


def _pnid(value: Mapping[str, Any]) -> str:
    return _str(_obj(value.get("metadata")).get("phone_number_id"))


def parse_envelope(body: bytes) -> list[ProviderEvent]:
    """Every event of a Cloud API webhook POST: all entries, changes, messages and statuses, in order."""
    events: list[ProviderEvent] = []
    for entry in _load_entries(body):
        waba_key = f"waba:{entry['id']}" if entry.get("id") else None
        for field, value in _changes(entry):
            if field == "messages":
                pnid = _pnid(value)
                route_key = f"pnid:{pnid}" if pnid else waba_key
                names = {
                    _str(c.get("wa_id")): _str(_obj(c.get("profile")).get("name"))
                    for c in _objs(value.get("contacts"))
                }
                events.extend(
                    msg for m in _objs(value.get("messages")) if (msg := _inbound(m, names, route_key))
                )
                events.extend(st for s in _objs(value.get("statuses")) if (st := _status(s, route_key)))
            elif field == "message_template_status_update":
                events.append(_template_status(value, waba_key))
            elif field == "phone_number_quality_update":
                events.append(_quality_update(value, waba_key))
            # Other fields (account_update, security, calls, …) are not ours to act on yet.
    return events


# --- the adapter -----------------------------------------------------------------------------------------


@register
class MetaProvider(Provider):
    """Meta's own Cloud API: Bearer token, Graph paths with the phone number id, HMAC-signed webhooks."""

    name = "meta"
    display_name = "WhatsApp Cloud API (Meta)"
    docs_url = "https://developers.facebook.com/docs/whatsapp/cloud-api"
    channels = frozenset({Channel.WHATSAPP})
    capabilities = frozenset(
        {
            Capability.TEXT,
            Capability.MEDIA,
            Capability.TEMPLATE,
            Capability.BUTTONS,
            Capability.READ_RECEIPT,
            Capability.INBOUND,
            Capability.EMBEDDED_SIGNUP,
        }
    )
    # 80 msg/s per number by default, upgraded to 1,000 automatically. Docs: …/cloud-api/overview#throughput
    rate_limit_per_second = 80.0
    settings_schema: ClassVar[tuple[SettingField, ...]] = (
        SettingField(
            "phone_number_id", "Phone number ID", required=True, help="WhatsApp Manager → API Setup"
        ),
        SettingField("waba_id", "WhatsApp Business Account ID", help="Routes template and quality updates"),
        SettingField("display_phone", "Display phone number", help="Shown to staff, e.g. +34 600 111 222"),
        SettingField("access_token", "Access token", secret=True, required=True, help="A system-user token"),
        SettingField("app_secret", "App secret", secret=True, required=True, help="Signs the webhooks"),
        SettingField("verify_token", "Webhook verify token", secret=True, help="Any string; Meta echoes it"),
        SettingField("base_url", "Graph API base URL", default=DEFAULT_BASE_URL),
    )
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    auth_reason: ClassVar[str] = meta_errors.AUTH_REASON

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.base_url = _str(self.settings.get("base_url") or self.default_base_url).rstrip("/")

    # -- where and how to call: the hooks 360dialog overrides -----------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        token = self.settings.get("access_token")
        if not token:
            raise _missing("WhatsApp access token")
        return {"Authorization": f"Bearer {token}"}

    def _phone_number_id(self) -> str:
        pnid = _str(self.settings.get("phone_number_id"))
        if not pnid:
            raise _missing("WhatsApp phone number ID")
        return pnid

    def _messages_url(self) -> str:
        return f"{self.base_url}/{self._phone_number_id()}/messages"

    def _upload_url(self) -> str:
        return f"{self.base_url}/{self._phone_number_id()}/media"

    def _media_lookup(self, media_id: str) -> tuple[str, dict[str, str]]:
        # phone_number_id makes Graph check the media belongs to this number. Docs: …/reference/media
        pnid = _str(self.settings.get("phone_number_id"))
        return f"{self.base_url}/{media_id}", ({"phone_number_id": pnid} if pnid else {})

    def _download_url(self, url: str) -> str:
        return url  # lookaside.fbsbx.com, fetched with the same Bearer header

    def _secrets(self) -> tuple[str, ...]:
        return tuple(
            _str(self.settings.get(k)) for k in ("access_token", "app_secret", "verify_token", "api_key")
        )

    def _error(self, resp: requests.Response) -> ProviderError:
        return meta_errors.error_from_response(
            resp.status_code,
            _json(resp),
            service="WhatsApp",
            auth_reason=self.auth_reason,
            retry_after=http.retry_after(resp),
            secrets=self._secrets(),
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        headers = {**self._auth_headers(), **kwargs.pop("headers", {})}
        return _call(method, url, service=self.display_name, to_error=self._error, headers=headers, **kwargs)

    # -- routing and webhooks ---------------------------------------------------------------------------

    @classmethod
    def route_keys_for_settings(cls, settings: Mapping[str, Any]) -> list[str]:
        keys = [("pnid", settings.get("phone_number_id")), ("waba", settings.get("waba_id"))]
        return [f"{prefix}:{value}" for prefix, value in keys if value]

    @classmethod
    def route_keys_for_request(cls, req: WebhookRequest) -> list[str]:
        # Message events name the number (metadata.phone_number_id); account-level events (template status,
        # quality) only the WABA in entry.id. pnid keys come first: they are the more specific.
        pnids: list[str] = []
        wabas: list[str] = []
        for entry in _load_entries(req.body):
            if entry.get("id"):
                wabas.append(f"waba:{entry['id']}")
            pnids.extend(f"pnid:{p}" for _, value in _changes(entry) if (p := _pnid(value)))
        return list(dict.fromkeys(pnids + wabas))

    def verify_webhook(self, req: WebhookRequest) -> bool:
        # X-Hub-Signature-256: "sha256=" + hex HMAC-SHA256(app secret, raw body bytes) — not the access token,
        # not the verify token. Docs: …/webhooks/create-webhook-endpoint#validate-payloads
        secret = self.settings.get("app_secret")
        header = req.header(SIGNATURE_HEADER)
        if not secret or not header or not header.startswith("sha256="):
            return False
        expected = hmac_hex(secret, req.body)
        return hmac.compare_digest(expected.encode(), header.removeprefix("sha256=").strip().lower().encode())

    @staticmethod
    def verify_handshake(query: Mapping[str, str], verify_token: str | None) -> str | None:
        """The GET verification: the hub.challenge to echo back (200), or None to refuse (403)."""
        challenge, given = query.get("hub.challenge"), query.get("hub.verify_token")
        if query.get("hub.mode") != "subscribe" or not verify_token or not given or challenge is None:
            return None
        return challenge if hmac.compare_digest(given.encode(), verify_token.encode()) else None

    def parse_webhook(self, req: WebhookRequest) -> list[ProviderEvent]:
        return parse_envelope(req.body)

    # -- sending ----------------------------------------------------------------------------------------

    def send(self, msg: OutboundMessage) -> SendResult:
        body = self.message_body(msg)
        data = self._request("POST", self._messages_url(), json=body)
        messages = _objs(data.get("messages"))
        if not messages or not messages[0].get("id"):
            # Not retried: the message may have gone out, and a retry could send it twice.
            raise ProviderError(
                ErrorKind.PERMANENT, "no_id", "WhatsApp accepted the request but gave no message id."
            )
        log.debug("%s: sent %s to %s", self.name, msg.kind.value, _mask(msg.to))
        return SendResult(
            provider_message_id=_str(messages[0]["id"]),
            status=_str(messages[0].get("message_status")) or "accepted",
            raw=data,
        )

    def message_body(self, msg: OutboundMessage) -> dict[str, Any]:
        """The JSON for POST /messages (uploads media given as bytes first)."""
        if msg.channel is not Channel.WHATSAPP:
            raise ProviderError(
                ErrorKind.PERMANENT, "channel", f"{self.display_name} only sends WhatsApp messages."
            )
        to = re.sub(r"\D", "", msg.to)
        if not to:
            raise ProviderError(ErrorKind.RECIPIENT_INVALID, "to", "The patient's phone number is empty.")
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
        kind = msg.kind
        if kind is MessageKind.TEXT:
            body.update(
                type="text", text={"preview_url": False, "body": self._checked_text(msg.text, TEXT_MAX)}
            )
        elif kind in _SENDABLE_MEDIA:
            body.update({"type": kind.value, kind.value: self._media_object(kind, msg.media, msg.text)})
        elif kind is MessageKind.TEMPLATE:
            if msg.template is None:
                raise ProviderError(
                    ErrorKind.PERMANENT, "template", "No template was chosen for this message."
                )
            body.update(type="template", template=self._template_object(msg.template))
        elif kind is MessageKind.BUTTONS:
            body.update(type="interactive", interactive=self._buttons_object(msg))
        else:
            raise ProviderError(
                ErrorKind.PERMANENT, "kind", f"WhatsApp messages of kind {kind.value} are not sent."
            )
        if msg.reply_to:
            body["context"] = {"message_id": msg.reply_to}
        if msg.client_ref:
            # Echoed back on every status webhook of this message. Docs: …/reference/messages (512 chars max)
            body["biz_opaque_callback_data"] = msg.client_ref[:512]
        return body

    @staticmethod
    def _checked_text(text: str, limit: int) -> str:
        if not text.strip():
            raise ProviderError(ErrorKind.PERMANENT, "empty", "The message has no text.")
        if len(text) > limit:
            raise ProviderError(
                ErrorKind.PERMANENT,
                "too_long",
                f"The message is too long for WhatsApp ({len(text)} of {limit} characters).",
            )
        return text

    def _media_ref(self, media: OutboundMedia | None) -> dict[str, str]:
        """{"id"} after an upload when we hold the bytes, else {"link"} (exactly one of the two)."""
        if media is not None and media.data is not None:
            return {"id": self.upload_media(media)}
        if media is not None and media.url:
            return {"link": media.url}
        raise ProviderError(ErrorKind.PERMANENT, "no_media", "The message has no file attached.")

    def _media_object(self, kind: MessageKind, media: OutboundMedia | None, caption: str) -> dict[str, str]:
        obj = self._media_ref(media)
        if caption and kind in _CAPTIONED:  # audio and stickers take no caption
            obj["caption"] = caption
        if kind is MessageKind.DOCUMENT and media is not None and media.filename:
            obj["filename"] = media.filename  # what the patient sees instead of a media id
        return obj

    def upload_media(self, media: OutboundMedia) -> str:
        """POST /media as multipart (file, type, messaging_product); the media id to send by."""
        data = media.data or b""
        if len(data) > self.max_media_bytes:
            raise ProviderError(ErrorKind.PERMANENT, "too_large", self._too_large(len(data)))
        files = {"file": (media.filename or "upload", data, media.mime_type)}
        form = {"messaging_product": "whatsapp", "type": media.mime_type}
        answer = self._request("POST", self._upload_url(), files=files, data=form)
        if not answer.get("id"):
            raise ProviderError(
                ErrorKind.RETRYABLE, "no_id", "WhatsApp did not return an id for the uploaded file."
            )
        return _str(answer["id"])

    def _template_object(self, template: TemplateRef) -> dict[str, Any]:
        components: list[dict[str, Any]] = []
        if template.header_media is not None:
            media = template.header_media
            htype = _header_type(media)
            ref: dict[str, str] = self._media_ref(media)
            if htype == "document" and media.filename:
                ref["filename"] = media.filename
            components.append({"type": "header", "parameters": [{"type": htype, htype: ref}]})
        if template.params:
            params = [{"type": "text", "text": _template_param(p)} for p in template.params]
            components.append({"type": "body", "parameters": params})
        for index, payload in enumerate(template.button_payloads):
            components.append(
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": str(index),  # a string, per the API reference
                    "parameters": [{"type": "payload", "payload": payload}],
                }
            )
        obj: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
        if components:
            obj["components"] = components
        return obj

    def _buttons_object(self, msg: OutboundMessage) -> dict[str, Any]:
        buttons = list(msg.buttons)
        if not buttons:
            raise ProviderError(ErrorKind.PERMANENT, "buttons", "The message has no buttons.")
        if len(buttons) > MAX_REPLY_BUTTONS:
            # Refuse rather than drop an option the patient was meant to see.
            raise ProviderError(
                ErrorKind.PERMANENT, "buttons", f"WhatsApp allows at most {MAX_REPLY_BUTTONS} reply buttons."
            )
        return {
            "type": "button",
            "body": {"text": self._checked_text(msg.text, INTERACTIVE_BODY_MAX)},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": b.id, "title": b.title[:BUTTON_TITLE_MAX]}}
                    for b in buttons
                ]
            },
        }

    def mark_read(self, provider_message_id: str) -> None:
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": provider_message_id}
        self._request("POST", self._messages_url(), json=body)

    # -- media ------------------------------------------------------------------------------------------

    def _too_large(self, size: int) -> str:
        return (
            f"The file is too large to download ({size / 1_048_576:.1f} MB; "
            f"the limit is {self.max_media_bytes / 1_048_576:.0f} MB)."
        )

    def fetch_media(self, media: InboundMedia) -> tuple[bytes, str | None]:
        """Look the media id up (a URL valid ~5 minutes), then download it with the same credentials."""
        if not media.provider_media_id:
            raise ProviderError(
                ErrorKind.PERMANENT, "no_media", "This attachment has no media id to download."
            )
        url, params = self._media_lookup(media.provider_media_id)
        info = self._request("GET", url, params=params)
        size = _int(info.get("file_size"))  # a string in captured payloads
        if size is not None and size > self.max_media_bytes:
            raise ProviderError(ErrorKind.PERMANENT, "too_large", self._too_large(size))
        if not info.get("url"):
            raise ProviderError(
                ErrorKind.PERMANENT, "no_url", "WhatsApp gave no download link for this file."
            )
        data, content_type = self._download(self._download_url(_str(info["url"])))
        return data, _str(info.get("mime_type")) or content_type or media.mime_type

    def _download(self, url: str) -> tuple[bytes, str | None]:
        resp = http.request("GET", url, provider=self.display_name, headers=self._auth_headers(), stream=True)
        with resp:
            if resp.status_code == 401:
                raise self._error(resp)
            if resp.status_code >= 400:
                # The link expires after ~5 minutes; a retry looks the media id up again and gets a fresh one.
                raise ProviderError(
                    ErrorKind.RETRYABLE,
                    f"http_{resp.status_code}",
                    "The WhatsApp download link did not work (it may have expired). It will be tried again.",
                    status_code=resp.status_code,
                )
            chunks, total = [], 0
            for chunk in resp.iter_content(64 * 1024):
                total += len(chunk)
                if total > self.max_media_bytes:  # file_size may be missing or wrong: count what arrives
                    raise ProviderError(ErrorKind.PERMANENT, "too_large", self._too_large(total))
                chunks.append(chunk)
            return b"".join(chunks), resp.headers.get("Content-Type")

    # -- health -----------------------------------------------------------------------------------------

    def health(self) -> Health:
        try:
            data = self._request(
                "GET",
                f"{self.base_url}/{self._phone_number_id()}",
                params={"fields": ",".join(HEALTH_FIELDS)},
            )
        except ProviderError as err:
            return _failed_health(err)
        data = {k: data[k] for k in HEALTH_FIELDS if k in data}
        number_status = _str(data.get("status") or "CONNECTED").upper()
        quality = _str(data.get("quality_rating")).upper()
        ok = number_status == "CONNECTED"
        detail = "" if ok else f"WhatsApp reports the number as {number_status.lower()}."
        if quality == "RED":
            detail = (detail + " Quality rating is low (red): WhatsApp may limit this number.").strip()
        return Health(ok=ok, status="connected" if ok else number_status.lower(), detail=detail, data=data)


def _failed_health(err: ProviderError) -> Health:
    if err.code == NOT_CONFIGURED:
        status = "not configured"
    else:
        status = {
            ErrorKind.AUTH: "token invalid",
            ErrorKind.RETRYABLE: "unreachable",
            ErrorKind.RATE_LIMITED: "rate limited",
        }.get(err.kind, "error")
    return Health(ok=False, status=status, detail=err.detail)


def _header_type(media: OutboundMedia) -> str:
    # OutboundMedia defaults to application/octet-stream, so only a clear signal makes the header a document.
    if media.mime_type.startswith("video/"):
        return "video"
    if media.mime_type == "application/pdf" or media.filename:
        return "document"
    return "image"


def _template_param(value: str) -> str:
    # Meta refuses body parameters with newlines, tabs or more than 4 consecutive spaces ("Param text
    # cannot have new-line/tab characters or more than 4 consecutive spaces").
    # Docs: …/cloud-api/guides/send-message-templates
    return re.sub(r" {5,}", "    ", re.sub(r"[\r\n\t]+", " ", value))


# --- embedded signup: module functions, the connection does not exist yet --------------------------------
# Docs: …/embedded-signup/onboarding-customers-as-a-tech-provider


def _signup_call(method: str, url: str, *, token: str | None = None, **kwargs: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    secrets = tuple(s for s in (token, _str(_obj(kwargs.get("params")).get("client_secret"))) if s)
    return _call(
        method,
        url,
        service="WhatsApp",
        to_error=lambda resp: _graph_error(resp, secrets=secrets),
        hide_cause=True,
        headers=headers,
        **kwargs,
    )


def _require_success(answer: Mapping[str, Any], what: str) -> None:
    if answer.get("success") is not True:
        raise ProviderError(ErrorKind.PERMANENT, "no_success", f"WhatsApp did not confirm {what}.")


def exchange_code(base_url: str, app_id: str, app_secret: str, code: str) -> str:
    """Trade the short-lived code from FB.login for a business integration token."""
    answer = _signup_call(
        "GET",
        f"{base_url.rstrip('/')}/oauth/access_token",
        params={"client_id": app_id, "client_secret": app_secret, "code": code},
    )
    # The docs say access_token; pywa's docstring says business_token. Accept either.
    token = answer.get("access_token") or answer.get("business_token")
    if not token:
        raise ProviderError(
            ErrorKind.AUTH, "no_token", "Meta did not return an access token for this signup."
        )
    return _str(token)


def subscribe_app(
    base_url: str,
    token: str,
    waba_id: str,
    *,
    override_callback_uri: str | None = None,
    verify_token: str | None = None,
) -> None:
    """Subscribe our app to the customer's WABA, so its webhooks reach us."""
    body = {}
    if override_callback_uri:
        body = {"override_callback_uri": override_callback_uri, "verify_token": verify_token or ""}
    answer = _signup_call(
        "POST", f"{base_url.rstrip('/')}/{waba_id}/subscribed_apps", token=token, json=body or None
    )
    _require_success(answer, "the webhook subscription")


def register_number(base_url: str, token: str, phone_number_id: str, pin: str) -> None:
    """Register the number on the Cloud API with its 6-digit two-step verification PIN."""
    if not re.fullmatch(r"\d{6}", pin):
        raise ProviderError(ErrorKind.PERMANENT, "pin", "The two-step verification PIN must be 6 digits.")
    answer = _signup_call(
        "POST",
        f"{base_url.rstrip('/')}/{phone_number_id}/register",
        token=token,
        json={"messaging_product": "whatsapp", "pin": pin},
    )
    _require_success(answer, "the number registration")


def request_verification_code(
    base_url: str, token: str, phone_number_id: str, *, method: str = "SMS", language: str = "en"
) -> None:
    """Ask Meta to send the number's ownership code by SMS or voice call."""
    answer = _signup_call(
        "POST",
        f"{base_url.rstrip('/')}/{phone_number_id}/request_code",
        token=token,
        json={"code_method": method, "language": language},
    )
    _require_success(answer, "that the code was sent")


def verify_code(base_url: str, token: str, phone_number_id: str, code: str) -> None:
    """Confirm the number's ownership code."""
    answer = _signup_call(
        "POST", f"{base_url.rstrip('/')}/{phone_number_id}/verify_code", token=token, json={"code": code}
    )
    _require_success(answer, "the verification code")
