"""Chatwoot: patients write to a Chatwoot WhatsApp inbox; the portal reads its webhooks and replies.

Docs: https://www.chatwoot.com/developers/api/
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import requests

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
    WebhookError,
    WebhookRequest,
    hmac_hex,
    register,
)

log = logging.getLogger(__name__)

# Chatwoot rejects signatures older than this, and so do we (both directions, for clock skew).
SIGNATURE_TOLERANCE_SECONDS = 300

_FILE_KINDS = {
    "image": MessageKind.IMAGE,
    "audio": MessageKind.AUDIO,
    "video": MessageKind.VIDEO,
    "file": MessageKind.DOCUMENT,
}


def _body(req: WebhookRequest) -> dict[str, Any]:
    try:
        data = json.loads(req.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError("Chatwoot webhook body is not JSON") from exc
    if not isinstance(data, dict):
        raise WebhookError("Chatwoot webhook body is not a JSON object")
    return data


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _route_key(account: Any, inbox: Any) -> str | None:
    return f"{account}:{inbox}" if account not in (None, "") and inbox not in (None, "") else None


def _e164(phone: Any) -> str:
    value = str(phone or "").strip()
    digits = "".join(ch for ch in value if ch.isdigit())
    return f"+{digits}" if digits else ""


def _created_at(value: Any) -> datetime:
    """Chatwoot sends ISO 8601 in webhooks and Unix seconds in API answers, depending on the version."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return datetime.now(UTC)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _attachment_media(att: Mapping[str, Any]) -> tuple[MessageKind, InboundMedia | None, dict[str, Any]]:
    file_type = str(att.get("file_type") or "")
    if file_type == "location":
        lat, lon = att.get("coordinates_lat"), att.get("coordinates_long")
        return (
            MessageKind.LOCATION,
            None,
            {"latitude": lat, "longitude": lon, "label": att.get("fallback_title")},
        )
    if file_type == "contact":
        return MessageKind.CONTACTS, None, {"contact": att.get("fallback_title")}
    url = att.get("data_url")
    # Attachments carry an extension, not a MIME type; the file name is the URL's last segment.
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) if isinstance(url, str) and url else None
    extension = att.get("extension") or (
        filename.rsplit(".", 1)[-1] if filename and "." in filename else None
    )
    mime = mimetypes.guess_type(f"file.{extension}")[0] if extension else None
    kind = _FILE_KINDS.get(file_type, MessageKind.DOCUMENT if url else MessageKind.UNSUPPORTED)
    media = InboundMedia(
        provider_media_id=str(att["id"]) if att.get("id") is not None else None,
        url=url if isinstance(url, str) and url else None,
        mime_type=mime,
        filename=filename,
    )
    return kind, media, {}


@register
class ChatwootProvider(Provider):
    """Inbound messages from a Chatwoot inbox, replies posted into its conversations."""

    name = "chatwoot"
    display_name = "Chatwoot"
    docs_url = "https://www.chatwoot.com/developers/api/"
    channels = frozenset({Channel.WHATSAPP})
    capabilities = frozenset({Capability.TEXT, Capability.MEDIA, Capability.INBOUND})
    rate_limit_per_second = 5.0  # Chatwoot relays to the inbox's own provider; stay well under it
    settings_schema = (
        SettingField("base_url", "Chatwoot URL", required=True, help="e.g. https://chat.example.com"),
        SettingField(
            "api_token", "API access token", secret=True, required=True, help="Profile → Access token"
        ),
        SettingField("account_id", "Account id", required=True),
        SettingField("inbox_id", "Inbox id", required=True),
        SettingField(
            "webhook_secret", "Webhook secret", secret=True, help="Set it in Chatwoot to have webhooks signed"
        ),
    )

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.base_url: str = (self.settings.get("base_url") or "").rstrip("/")
        self.account_id = str(self.settings.get("account_id") or "")
        self.inbox_id = str(self.settings.get("inbox_id") or "")

    # --- routing ---------------------------------------------------------------------------------

    @classmethod
    def route_keys_for_settings(cls, settings: Mapping[str, Any]) -> list[str]:
        key = _route_key(settings.get("account_id"), settings.get("inbox_id"))
        return [key] if key else []

    @classmethod
    def route_keys_for_request(cls, req: WebhookRequest) -> list[str]:
        data = _body(req)
        account = _get(data, "account", "id") or data.get("account_id")
        # message_* events carry `inbox`; conversation_* events are the conversation itself.
        inboxes = (_get(data, "inbox", "id"), _get(data, "conversation", "inbox_id"), data.get("inbox_id"))
        keys = (_route_key(account, inbox) for inbox in inboxes)
        return list(dict.fromkeys(k for k in keys if k))

    @classmethod
    def event_key(cls, req: WebhookRequest) -> str:
        """X-Chatwoot-Delivery: one UUID per delivery, kept across retries."""
        return req.header("X-Chatwoot-Delivery") or super().event_key(req)

    # --- webhooks --------------------------------------------------------------------------------

    def verify_webhook(self, req: WebhookRequest) -> bool:
        """X-Chatwoot-Signature = "sha256=" + hex HMAC-SHA256(secret, f"{timestamp}." + raw body).

        Docs: https://github.com/chatwoot/chatwoot/pull/13573 (lib/webhooks/trigger.rb)
        Chatwoot signs only when the webhook has a secret (and versions before that PR never sign),
        so with no secret configured every request passes: the connection chose not to check.
        """
        secret = self.settings.get("webhook_secret")
        if not secret:
            return True
        signature = req.header("X-Chatwoot-Signature")
        timestamp = req.header("X-Chatwoot-Timestamp")
        if not signature or not timestamp or not timestamp.strip().isdigit():
            return False
        if abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
            return False  # a replay, or a clock far off
        expected = "sha256=" + hmac_hex(secret, f"{timestamp.strip()}.".encode() + req.body)
        return hmac.compare_digest(expected, signature.strip())

    def parse_webhook(self, req: WebhookRequest) -> list[ProviderEvent]:
        data = _body(req)
        if data.get("event") != "message_created":
            return []
        # Only what the patient wrote: agent replies (ours included), activity lines, bot
        # templates and private notes come back as message_created too.
        if data.get("message_type") not in ("incoming", 0) or data.get("private"):
            return []
        message_id = data.get("id")
        if message_id is None:
            raise WebhookError("Chatwoot message_created without an id")
        sender = _mapping(data.get("sender"))
        conversation = _mapping(data.get("conversation"))
        phone = (
            sender.get("phone_number")
            or _get(conversation, "meta", "sender", "phone_number")
            or _get(conversation, "contact_inbox", "source_id")  # the WhatsApp id, digits only
        )
        sid = f"chatwoot:{message_id}"
        text = data.get("content") or ""
        reply_to = _get(data, "content_attributes", "in_reply_to")
        common: dict[str, Any] = {
            "from_phone": _e164(phone),
            "timestamp": _created_at(data.get("created_at")),
            "contact_name": sender.get("name") or None,
            "route_key": _route_key(
                _get(data, "account", "id"), _get(data, "inbox", "id") or conversation.get("inbox_id")
            ),
            "conversation_ref": str(conversation["id"]) if conversation.get("id") is not None else None,
            "raw": data,
        }
        base_extra = {
            k: v for k, v in (("contact_id", sender.get("id")), ("source_id", data.get("source_id"))) if v
        }
        attachments = [a for a in data.get("attachments") or [] if isinstance(a, Mapping)]
        if not attachments:
            return [
                InboundMessage(
                    provider_message_id=sid,
                    kind=MessageKind.TEXT,
                    text=text,
                    reply_to_provider_id=f"chatwoot:{reply_to}" if reply_to else None,
                    extra=base_extra,
                    **common,
                )
            ]
        events: list[ProviderEvent] = []
        # The first attachment rides on the message; each further one becomes its own message
        # ("#n"), so the inbox shows every file and a redelivery gives the same ids.
        for n, att in enumerate(attachments):
            kind, media, extra = _attachment_media(att)
            if media is not None and n == 0:
                media = InboundMedia(**{**_media_fields(media), "caption": text or None})
            body = text if n == 0 else ""
            if kind is MessageKind.LOCATION and not body:
                body = extra.get("label") or f"Location: {extra.get('latitude')}, {extra.get('longitude')}"
            events.append(
                InboundMessage(
                    provider_message_id=sid if n == 0 else f"{sid}#{n}",
                    kind=kind,
                    text=body,
                    media=media,
                    reply_to_provider_id=f"chatwoot:{reply_to}" if reply_to and n == 0 else None,
                    extra={**base_extra, **{k: v for k, v in extra.items() if v is not None}},
                    **common,
                )
            )
        return events

    # --- API -------------------------------------------------------------------------------------

    def _account_url(self, path: str) -> str:
        if not self.base_url or not self.account_id:
            raise ProviderError(
                ErrorKind.PERMANENT, "config", "The Chatwoot URL or account is not configured."
            )
        return f"{self.base_url}/api/v1/accounts/{self.account_id}{path}"

    def _headers(self) -> dict[str, str]:
        # Chatwoot documents the header as `api_access_token`, but nginx (underscores_in_headers off) and
        # many WSGI/ASGI servers silently drop header names with underscores. Rails reads the dashed
        # spelling too: both arrive as HTTP_API_ACCESS_TOKEN, which Chatwoot checks.
        # Docs: https://www.chatwoot.com/developers/api/#section/Authentication
        # (and app/helpers/access_token_auth_helper.rb in chatwoot/chatwoot)
        token = self.settings.get("api_token")
        return {"api-access-token": token} if token else {}

    def _error(self, resp: requests.Response, what: str) -> ProviderError:
        status = resp.status_code
        if status == 401:
            return ProviderError(
                ErrorKind.AUTH, 401, "Chatwoot rejected the API access token.", status_code=401
            )
        if status == 403:
            return ProviderError(
                ErrorKind.AUTH,
                403,
                f"The Chatwoot access token has no access to this {what}.",
                status_code=403,
            )
        if status == 404:
            return ProviderError(
                ErrorKind.PERMANENT, 404, f"The Chatwoot {what} no longer exists.", status_code=404
            )
        if status == 429:
            return ProviderError(
                ErrorKind.RATE_LIMITED,
                429,
                "Chatwoot is limiting requests.",
                status_code=429,
                retry_after=http.retry_after(resp),
            )
        if status >= 500:
            return ProviderError(
                ErrorKind.RETRYABLE, status, "Chatwoot had a temporary problem.", status_code=status
            )
        return ProviderError(ErrorKind.PERMANENT, status, "Chatwoot refused the message.", status_code=status)

    def send(self, msg: OutboundMessage) -> SendResult:
        """POST a reply into the patient's conversation as an outgoing (agent) message.

        Docs: https://www.chatwoot.com/developers/api/#tag/Messages/operation/create-a-new-message-in-a-conversation
        Chatwoot relays it to WhatsApp through the inbox. It has no template or button call here:
        such messages go out as their fallback text.
        """
        if msg.channel is not Channel.WHATSAPP:
            raise ProviderError(
                ErrorKind.PERMANENT, "channel", f"Chatwoot cannot send {msg.channel} messages."
            )
        if not msg.conversation_ref:
            # Chatwoot starts conversations itself when the patient writes; the portal only answers.
            raise ProviderError(
                ErrorKind.PERMANENT, "no_conversation", "No Chatwoot conversation to reply in yet."
            )
        url = self._account_url(f"/conversations/{msg.conversation_ref}/messages")
        fields: dict[str, Any] = {"content": msg.text, "message_type": "outgoing", "private": False}
        if msg.reply_to and msg.reply_to.startswith("chatwoot:"):
            reply_id = msg.reply_to.removeprefix("chatwoot:")
            fields["content_attributes"] = {"in_reply_to": int(reply_id) if reply_id.isdigit() else reply_id}
        if msg.kind in MEDIA_KINDS or msg.media is not None:
            if msg.media is None or msg.media.data is None:
                raise ProviderError(
                    ErrorKind.PERMANENT,
                    "no_media_data",
                    "Chatwoot needs the file itself, not a link, to send it.",
                )
            media = msg.media
            # Attachments go as multipart attachments[]; form fields are plain strings there.
            form = {"content": msg.text, "message_type": "outgoing", "private": "false"}
            filename = media.filename or "file" + (mimetypes.guess_extension(media.mime_type) or "")
            files = [("attachments[]", (filename, media.data, media.mime_type))]
            resp = http.request(
                "POST", url, provider="Chatwoot", headers=self._headers(), data=form, files=files
            )
        else:
            if not msg.text:
                raise ProviderError(ErrorKind.PERMANENT, "empty", "The message is empty.")
            resp = http.request("POST", url, provider="Chatwoot", headers=self._headers(), json=fields)
        if resp.status_code >= 400:
            raise self._error(resp, "conversation")
        try:
            data = resp.json()
            message_id = data["id"]
        except (ValueError, KeyError, TypeError):
            log.warning("chatwoot: reply accepted without a message id (HTTP %s)", resp.status_code)
            data, message_id = {}, None
        return SendResult(
            provider_message_id=f"chatwoot:{message_id}" if message_id is not None else "",
            status=str(data.get("status") or "sent"),
            raw={"id": message_id, "conversation_id": data.get("conversation_id")},
        )

    def fetch_media(self, media: InboundMedia) -> tuple[bytes, str | None]:
        """GET the attachment's data_url (an ActiveStorage link that redirects to the file store).

        The access token goes to the Chatwoot host only, never to a redirect target elsewhere.
        """
        if not media.url:
            raise ProviderError(ErrorKind.PERMANENT, "no_media_url", "This message has no file to download.")
        url = media.url
        base = urlsplit(self.base_url)
        for _ in range(5):
            target = urlsplit(url)
            same_host = (target.scheme, target.netloc.lower()) == (base.scheme, base.netloc.lower())
            headers = self._headers() if same_host else {}
            resp = http.request(
                "GET", url, provider="Chatwoot", headers=headers, allow_redirects=False, stream=True
            )
            if resp.is_redirect and resp.headers.get("Location"):
                url = urljoin(url, resp.headers["Location"])
                resp.close()
                continue
            return _read_limited(resp, self.max_media_bytes, "Chatwoot")
        raise ProviderError(
            ErrorKind.PERMANENT, "redirects", "Chatwoot redirected the download too many times."
        )

    def health(self) -> Health:
        """GET the inbox: proves the token, the account and the inbox id together."""
        try:
            resp = http.request(
                "GET",
                self._account_url(f"/inboxes/{self.inbox_id}"),
                provider="Chatwoot",
                headers=self._headers(),
            )
        except ProviderError as exc:
            return Health(ok=False, status="unreachable", detail=exc.detail)
        if resp.status_code in (401, 403):
            return Health(ok=False, status="auth failed", detail=self._error(resp, "inbox").detail)
        if resp.status_code == 404:
            return Health(
                ok=False, status="inbox not found", detail="Check the Chatwoot account and inbox ids."
            )
        if resp.status_code >= 400:
            return Health(ok=False, status="unreachable", detail=self._error(resp, "inbox").detail)
        try:
            data = resp.json()
        except ValueError:
            data = {}
        return Health(
            ok=True,
            status="connected",
            data={"name": data.get("name"), "channel_type": data.get("channel_type")},
        )


def _media_fields(media: InboundMedia) -> dict[str, Any]:
    return {
        "provider_media_id": media.provider_media_id,
        "url": media.url,
        "mime_type": media.mime_type,
        "filename": media.filename,
    }


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
