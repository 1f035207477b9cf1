"""WAHA (WhatsApp HTTP API): a self-hosted linked-device session, driven over plain HTTP.

Docs: https://waha.devlike.pro/docs/overview/introduction/
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit
from uuid import uuid4

import requests

from . import http
from .base import (
    MEDIA_KINDS,
    Capability,
    Channel,
    ConnectionEvent,
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
    hmac_hex,
    register,
)

log = logging.getLogger(__name__)

# message.ack values. Docs: https://waha.devlike.pro/docs/how-to/events/#messageack
_ACK = {-1: "failed", 1: "sent", 2: "delivered", 3: "read", 4: "read"}  # 0 PENDING: no event
_ACK_NAMES = {"ERROR": -1, "PENDING": 0, "SERVER": 1, "DEVICE": 2, "READ": 3, "PLAYED": 4}

# Phrases WAHA engines use when the number has no WhatsApp account (the wording differs per engine).
_NOT_ON_WHATSAPP = ("not registered", "not on whatsapp", "not exist", "no lid for user", "invalid wid")

# Where engines keep the phone-number JID of a contact that writes from a privacy id (@lid) [C-code].
_LID_PHONE_PATHS = (
    ("_data", "key", "senderPn"),
    ("_data", "key", "remoteJidAlt"),
    ("_data", "key", "participantPn"),
    ("_data", "Info", "SenderAlt"),
    ("_data", "Info", "RecipientAlt"),
)


def _chat_id(to: str) -> str:
    """'+1 650-555-1234' → '16505551234@c.us'; a full chat id (…@lid) passes through."""
    if "@" in to:
        return to
    digits = "".join(ch for ch in to if ch.isdigit())
    if not digits:
        raise ProviderError(ErrorKind.RECIPIENT_INVALID, "to", "The patient's phone number is not valid.")
    return f"{digits}@c.us"


def _jid_phone(jid: str | None) -> str | None:
    """'16505551234@c.us' or '…@s.whatsapp.net' → '+16505551234'; anything else → None."""
    if not jid or "@" not in jid:
        return None
    user, _, server = jid.partition("@")
    user = user.split(":", 1)[0]  # multi-device suffix "…:12@s.whatsapp.net"
    if server not in ("c.us", "s.whatsapp.net") or not user.isdigit():
        return None
    return f"+{user}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _media_kind(mime: str | None, engine_type: str | None = None) -> MessageKind:
    mime = (mime or "").lower()
    if mime == "image/webp":
        return MessageKind.STICKER
    for prefix, kind in (
        ("image/", MessageKind.IMAGE),
        ("audio/", MessageKind.AUDIO),
        ("video/", MessageKind.VIDEO),
    ):
        if mime.startswith(prefix):
            return kind
    if not mime and engine_type:  # media not downloaded: fall back on the engine's own type (WEBJS)
        return {
            "image": MessageKind.IMAGE,
            "sticker": MessageKind.STICKER,
            "video": MessageKind.VIDEO,
            "audio": MessageKind.AUDIO,
            "ptt": MessageKind.AUDIO,
        }.get(engine_type, MessageKind.DOCUMENT)
    return MessageKind.DOCUMENT


def _timestamp(seconds: Any) -> datetime:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return datetime.now(UTC)
    if value > 1e11:  # the envelope's timestamp is in milliseconds, a message's in seconds
        value /= 1000
    return datetime.fromtimestamp(value, UTC)


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError("WAHA webhook body is not JSON") from exc
    if not isinstance(data, dict):
        raise WebhookError("WAHA webhook body is not a JSON object")
    return data


def _message_id(data: Any) -> str | None:
    """The id of a sent message: a string, WEBJS's {_serialized, id, …}, or NOWEB's {key: {id}} [U]."""
    if isinstance(data, str):
        return data or None
    if not isinstance(data, Mapping):
        return None
    for candidate in (data.get("_serialized"), data.get("id"), _dig(data, ("key", "id"))):
        found = _message_id(candidate)
        if found:
            return found
    return None


@register
class WahaProvider(Provider):
    """A WhatsApp number linked to a WAHA session by scanning a QR code."""

    name = "waha"
    display_name = "WAHA"
    docs_url = "https://waha.devlike.pro/docs/overview/introduction/"
    channels = frozenset({Channel.WHATSAPP})
    capabilities = frozenset(
        {Capability.TEXT, Capability.MEDIA, Capability.INBOUND, Capability.QR_LOGIN, Capability.READ_RECEIPT}
    )
    # A linked personal/business app number has no official throughput; sending fast gets it banned.
    rate_limit_per_second = 1.0
    settings_schema = (
        SettingField("base_url", "WAHA URL", required=True, help="e.g. http://waha:3000"),
        SettingField("api_key", "API key", secret=True, help="WAHA_API_KEY"),
        SettingField("session", "Session name", default="default", help="Unique per clinic, e.g. clinic_42"),
        SettingField("webhook_hmac_key", "Webhook HMAC key", secret=True, help="config.webhooks[].hmac.key"),
        SettingField("display_phone", "Phone number", help="The linked number, for display"),
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.base_url: str = (self.settings.get("base_url") or "").rstrip("/")
        self.session: str = self.settings.get("session") or "default"

    # --- routing ---------------------------------------------------------------------------------

    @classmethod
    def route_keys_for_settings(cls, settings: Mapping[str, Any]) -> list[str]:
        return [f"session:{settings.get('session') or 'default'}"]

    @classmethod
    def route_keys_for_request(cls, req: WebhookRequest) -> list[str]:
        session = _envelope(req.body).get("session")
        return [f"session:{session}"] if isinstance(session, str) and session else []

    @classmethod
    def event_key(cls, req: WebhookRequest) -> str:
        """The envelope's ``evt_…`` id, which WAHA keeps across its own retries."""
        try:
            event_id = _envelope(req.body).get("id")
        except WebhookError:
            event_id = None
        return event_id if isinstance(event_id, str) and event_id else super().event_key(req)

    # --- HTTP ------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        key = self.settings.get("api_key")
        return {"X-Api-Key": key} if key else {}

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if not self.base_url:
            raise ProviderError(ErrorKind.PERMANENT, "config", "The WAHA URL is not configured.")
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        resp = http.request(method, self.base_url + path, provider="WAHA", headers=headers, **kwargs)
        if resp.status_code >= 400:
            raise self._error(resp)
        return resp

    def _error(self, resp: requests.Response) -> ProviderError:
        status = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        text = resp.text.lower()
        if status == 401:
            return ProviderError(ErrorKind.AUTH, 401, "WAHA rejected the API key.", status_code=status)
        if status == 429:
            return ProviderError(
                ErrorKind.RATE_LIMITED,
                429,
                "WAHA is limiting requests.",
                status_code=status,
                retry_after=http.retry_after(resp),
            )
        if status == 404:
            return ProviderError(
                ErrorKind.PERMANENT, 404, f"WAHA has no session named {self.session!r}.", status_code=status
            )
        session_status = body.get("status")
        if status == 422 and isinstance(session_status, str) and body.get("expected"):
            # "Session status is not as expected": the number is starting, or no longer linked.
            # Docs: https://waha.devlike.pro/docs/how-to/sessions/
            if session_status == "STARTING":
                return ProviderError(
                    ErrorKind.RETRYABLE,
                    "STARTING",
                    "The WhatsApp session is still starting.",
                    status_code=status,
                )
            return ProviderError(
                ErrorKind.AUTH,
                session_status,
                f"The WhatsApp number is not connected (session {session_status}): scan the QR code again.",
                status_code=status,
            )
        if any(p in text for p in _NOT_ON_WHATSAPP):
            # Engines answer 400, 422 or even 500 when the number has no WhatsApp account.
            return ProviderError(
                ErrorKind.RECIPIENT_INVALID, status, "This number is not on WhatsApp.", status_code=status
            )
        if status >= 500:
            return ProviderError(
                ErrorKind.RETRYABLE, status, "WAHA had a temporary problem.", status_code=status
            )
        return ProviderError(ErrorKind.PERMANENT, status, "WAHA refused the message.", status_code=status)

    # --- sending ---------------------------------------------------------------------------------

    def send(self, msg: OutboundMessage) -> SendResult:
        """POST /api/sendText, /api/sendImage or /api/sendFile.

        WAHA has no templates and no buttons: a template or button message goes out as its
        fallback text (there is no 24-hour window on a linked device).
        """
        if msg.channel is not Channel.WHATSAPP:
            raise ProviderError(ErrorKind.PERMANENT, "channel", f"WAHA cannot send {msg.channel} messages.")
        payload: dict[str, Any] = {"session": self.session, "chatId": _chat_id(msg.to)}
        if msg.reply_to:
            payload["reply_to"] = msg.reply_to
        if msg.kind in MEDIA_KINDS or msg.media is not None:
            media = msg.media
            if media is None or not (media.url or media.data):
                raise ProviderError(ErrorKind.PERMANENT, "no_media", "There is no file to send.")
            file: dict[str, Any] = {"mimetype": media.mime_type}
            if media.url:
                file["url"] = media.url
            else:
                file["data"] = base64.b64encode(media.data or b"").decode("ascii")
            if media.filename:
                file["filename"] = media.filename
            payload["file"] = file
            if msg.text:
                payload["caption"] = msg.text
            is_image = msg.kind is MessageKind.IMAGE or (
                msg.kind not in MEDIA_KINDS and media.mime_type.startswith("image/")
            )
            path = "/api/sendImage" if is_image else "/api/sendFile"
        else:
            if not msg.text:
                raise ProviderError(ErrorKind.PERMANENT, "empty", "The message is empty.")
            payload.update(text=msg.text, linkPreview=False)
            path = "/api/sendText"
        data = self._call("POST", path, json=payload).json()
        message_id = _message_id(data)
        if message_id is None:
            # Sent, but the engine's answer has no id we know: never raise (a retry would send twice).
            message_id = f"waha:{uuid4().hex}"
            log.warning("waha: sent without a recognizable id; status updates will not match")
        return SendResult(provider_message_id=message_id, status="sent", raw={"id": message_id})

    def mark_read(self, provider_message_id: str) -> None:
        """POST /api/sendSeen for the chat of an incoming ``false_<chatId>_<id>`` message."""
        parts = provider_message_id.split("_")
        if len(parts) < 3 or "@" not in parts[1]:
            return
        self._call(
            "POST",
            "/api/sendSeen",
            json={"session": self.session, "chatId": parts[1], "messageIds": [provider_message_id]},
        )

    # --- webhooks --------------------------------------------------------------------------------

    def verify_webhook(self, req: WebhookRequest) -> bool:
        """X-Webhook-Hmac: hex HMAC-SHA512(hmac.key, raw body).

        Docs: https://waha.devlike.pro/docs/how-to/events/#hmac-authentication
        Without a configured key this returns False: WAHA then sends nothing we could check,
        and whether to accept unsigned WAHA webhooks is the web layer's policy, not the adapter's.
        """
        key = self.settings.get("webhook_hmac_key")
        signature = req.header("X-Webhook-Hmac")
        if not key or not signature:
            return False
        algorithm = (req.header("X-Webhook-Hmac-Algorithm") or "sha512").lower()
        if algorithm != "sha512":
            return False
        return hmac.compare_digest(hmac_hex(key, req.body, "sha512"), signature.strip().lower())

    def parse_webhook(self, req: WebhookRequest) -> list[ProviderEvent]:
        envelope = _envelope(req.body)
        event = envelope.get("event")
        payload = envelope.get("payload")
        session = envelope.get("session")
        route_key = f"session:{session}" if session else None
        if not isinstance(payload, dict):
            if event in ("message", "message.any", "message.ack", "message.reaction", "session.status"):
                raise WebhookError(f"WAHA {event} without a payload")
            return []
        if event == "session.status":
            return [
                ConnectionEvent(
                    kind="session_status",
                    data={"status": payload.get("status"), "statuses": payload.get("statuses") or []},
                    route_key=route_key,
                    raw=envelope,
                )
            ]
        if event == "message.ack":
            return self._ack(envelope, payload, route_key)
        if event == "message.reaction":
            return self._reaction(payload, route_key)
        if event == "message":
            return self._message(payload, route_key)
        if event == "message.any":
            # message.any repeats every `message` and adds our own sends (source "api") and what the
            # clinic typed in the phone app (fromMe). Only an incoming one is kept: it carries the same
            # id as its `message` twin, so the ingest dedupe drops whichever arrives second.
            if payload.get("fromMe") or payload.get("source") == "api":
                return []
            return self._message(payload, route_key)
        return []  # state.change, presence, groups, calls …: nothing the inbox shows

    @staticmethod
    def _sender(payload: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """(E.164 phone, extra) of who wrote; None for groups, broadcasts and channels."""
        chat = payload.get("from") or ""
        if not isinstance(chat, str) or chat.endswith(("@g.us", "@broadcast", "@newsletter")):
            return None
        phone = _jid_phone(chat)
        if phone is not None:
            return phone, {"chat_id": chat}
        if chat.endswith("@lid"):
            # A privacy id, not a phone number: use a phone JID the engine supplied when there is one,
            # else the id's digits, and keep the raw id so replies can go back to it.
            for path in _LID_PHONE_PATHS:
                found = _jid_phone(_dig(payload, path))
                if found:
                    return found, {"chat_id": chat, "lid": chat}
            digits = chat.partition("@")[0].split(":", 1)[0]
            return (f"+{digits}" if digits.isdigit() else chat), {"chat_id": chat, "lid": chat}
        return None

    def _message(self, payload: Mapping[str, Any], route_key: str | None) -> list[ProviderEvent]:
        if payload.get("fromMe"):
            return []  # our own send, or the clinic typing in the phone app
        sender = self._sender(payload)
        message_id = payload.get("id")
        if sender is None or not message_id:
            return []
        phone, extra = sender
        body = payload.get("body") or ""
        data = _mapping(payload.get("_data"))
        engine_type = data.get("type") if isinstance(data.get("type"), str) else None
        media: InboundMedia | None = None
        location = payload.get("location")
        vcards = payload.get("vCards") or []
        if payload.get("hasMedia"):
            raw_media = _mapping(payload.get("media"))
            # media null or media.error: WAHA could not download it; the message still shows, without a file.
            usable = raw_media.get("url") and not raw_media.get("error")
            mime = raw_media.get("mimetype")
            media = InboundMedia(
                url=raw_media.get("url") if usable else None,
                mime_type=mime,
                filename=raw_media.get("filename"),
                caption=body or None,
            )
            kind = _media_kind(mime, engine_type)
            if raw_media.get("error"):
                extra["media_error"] = str(raw_media["error"])
        elif isinstance(location, Mapping) and location.get("latitude") is not None:
            kind = MessageKind.LOCATION
            extra.update(latitude=location.get("latitude"), longitude=location.get("longitude"))
            # Not `body`: WEBJS may carry the map thumbnail there, base64-encoded [U].
            body = (
                location.get("description")
                or location.get("name")
                or f"Location: {location.get('latitude')}, {location.get('longitude')}"
            )
        elif vcards:
            kind = MessageKind.CONTACTS
            extra["vcards"] = list(vcards)
            names = [line[3:] for card in vcards for line in str(card).splitlines() if line.startswith("FN:")]
            body = "Contact: " + ", ".join(names) if names else "Contact card"
        else:
            kind = MessageKind.TEXT
        reply_to = payload.get("replyTo")
        reply_id = reply_to.get("id") if isinstance(reply_to, Mapping) else None
        name = data.get("notifyName") or data.get("pushName")
        return [
            InboundMessage(
                provider_message_id=str(message_id),
                from_phone=phone,
                kind=kind,
                text=body,
                timestamp=_timestamp(payload.get("timestamp")),
                contact_name=name if isinstance(name, str) and name else None,
                media=media,
                reply_to_provider_id=reply_id,
                route_key=route_key,
                extra=extra,
                raw=dict(payload),
            )
        ]

    def _reaction(self, payload: Mapping[str, Any], route_key: str | None) -> list[ProviderEvent]:
        sender = self._sender(payload)
        reaction = _mapping(payload.get("reaction"))
        if payload.get("fromMe") or sender is None or not payload.get("id"):
            return []
        phone, extra = sender
        emoji = reaction.get("text") or ""
        extra.update(emoji=emoji, removed=not emoji)  # an empty text means the reaction was taken back
        return [
            InboundMessage(
                provider_message_id=str(payload["id"]),
                from_phone=phone,
                kind=MessageKind.REACTION,
                text=emoji,
                timestamp=_timestamp(payload.get("timestamp")),
                reply_to_provider_id=reaction.get("messageId"),
                route_key=route_key,
                extra=extra,
                raw=dict(payload),
            )
        ]

    @staticmethod
    def _ack(
        envelope: Mapping[str, Any], payload: Mapping[str, Any], route_key: str | None
    ) -> list[ProviderEvent]:
        if payload.get("fromMe") is False or not payload.get("id"):
            return []  # our own read receipts on incoming messages
        ack = payload.get("ack")
        if not isinstance(ack, int):
            ack = _ACK_NAMES.get(str(payload.get("ackName") or "").upper())
        status = _ACK.get(ack) if isinstance(ack, int) else None
        if status is None:
            return []
        return [
            StatusUpdate(
                provider_message_id=str(payload["id"]),
                status=status,
                timestamp=_timestamp(envelope.get("timestamp")),
                error_code="ERROR" if status == "failed" else None,
                error_title="WhatsApp could not deliver the message." if status == "failed" else None,
                route_key=route_key,
                raw=dict(payload),
            )
        ]

    # --- media -----------------------------------------------------------------------------------

    def fetch_media(self, media: InboundMedia) -> tuple[bytes, str | None]:
        """GET media.url with X-Api-Key.

        WAHA builds file URLs from its own WAHA_BASE_URL (default http://localhost:3000), which the
        portal often cannot reach: a /api/files/ path is fetched from the configured base URL instead,
        and the API key is sent to that base URL only.
        Docs: https://waha.devlike.pro/docs/how-to/receive-messages/#media-files
        """
        if not media.url:
            raise ProviderError(ErrorKind.PERMANENT, "no_media_url", "WAHA did not download this file.")
        parts = urlsplit(media.url)
        url = media.url
        if parts.path.startswith("/api/files/") and self.base_url:
            url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        for _ in range(5):
            headers = self._headers() if self._is_waha(url) else {}
            resp = http.request(
                "GET", url, provider="WAHA", headers=headers, allow_redirects=False, stream=True
            )
            if resp.is_redirect and resp.headers.get("Location"):
                url = urljoin(url, resp.headers["Location"])
                resp.close()
                continue
            return _read_limited(resp, self.max_media_bytes, "WAHA")
        raise ProviderError(ErrorKind.PERMANENT, "redirects", "WAHA redirected the download too many times.")

    def _is_waha(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.base_url)
        return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())

    # --- session operations (QR login) -----------------------------------------------------------

    def _session_path(self, suffix: str = "") -> str:
        return f"/api/sessions/{quote(self.session, safe='')}{suffix}"

    def start_session(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Start the session, creating it first when WAHA does not know it (start is idempotent)."""
        try:
            return dict(self._call("POST", self._session_path("/start")).json() or {})
        except ProviderError as exc:
            if exc.status_code != 404:
                raise
        body: dict[str, Any] = {"name": self.session, "start": True}
        if config is not None:
            body["config"] = dict(config)
        return dict(self._call("POST", "/api/sessions", json=body).json() or {})

    def configure_session(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Point the session at us: create it with ``config``, or replace an existing one's config
        (``PUT`` restarts it, so WAHA picks up the webhook URL and HMAC key)."""
        try:
            self.get_session()
        except ProviderError as exc:
            if exc.status_code != 404:
                raise
            body = {"name": self.session, "start": True, "config": dict(config)}
            return dict(self._call("POST", "/api/sessions", json=body).json() or {})
        body = {"name": self.session, "config": dict(config)}
        answer = dict(self._call("PUT", self._session_path(), json=body).json() or {})
        if str(answer.get("status") or "") in ("STOPPED", "FAILED"):
            answer = dict(self._call("POST", self._session_path("/start")).json() or {})
        return answer

    def restart_session(self) -> dict[str, Any]:
        return dict(self._call("POST", self._session_path("/restart")).json() or {})

    def stop_session(self) -> dict[str, Any]:
        return dict(self._call("POST", self._session_path("/stop")).json() or {})

    def get_session(self) -> dict[str, Any]:
        """{name, status, config, me, engine}."""
        return dict(self._call("GET", self._session_path()).json() or {})

    def get_qr(self) -> bytes:
        """The QR code to scan, as PNG bytes (asked as JSON {mimetype, data}; a raw PNG is accepted too)."""
        resp = self._call(
            "GET", f"/api/{quote(self.session, safe='')}/auth/qr", headers={"Accept": "application/json"}
        )
        if resp.headers.get("Content-Type", "").startswith("image/"):
            return resp.content
        try:
            return base64.b64decode(resp.json()["data"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ProviderError(ErrorKind.RETRYABLE, "qr", "WAHA did not return a QR code.") from exc

    def logout(self) -> dict[str, Any]:
        """Unlink the phone; the session restarts and shows a new QR code."""
        resp = self._call("POST", self._session_path("/logout"))
        try:
            return dict(resp.json() or {})
        except ValueError:
            return {}

    def health(self) -> Health:
        """GET /api/sessions/{session}: ok only while WORKING."""
        try:
            data = self.get_session()
        except ProviderError as exc:
            if exc.kind is ErrorKind.AUTH and exc.status_code == 401:
                return Health(ok=False, status="auth failed", detail=exc.detail)
            if exc.status_code == 404:
                return Health(ok=False, status="session not found", detail=exc.detail)
            return Health(ok=False, status="unreachable", detail=exc.detail)
        status = str(data.get("status") or "UNKNOWN")
        detail = {
            "SCAN_QR_CODE": "Scan the QR code with the clinic's phone to link it.",
            "STARTING": "The session is starting.",
            "STOPPED": "The session is stopped.",
            "FAILED": "The session failed: restart it, and scan the QR code again if asked.",
        }.get(status, "")
        return Health(ok=status == "WORKING", status=status, detail=detail, data={"me": data.get("me")})


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
