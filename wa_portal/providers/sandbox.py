"""The sandbox: a simulated patient phone for demos and tests, on the same code path as a real provider.

Inbound: the phone page posts a Meta Cloud API-shaped body, signed with
``X-Hub-Signature-256`` under the connection's ``app_secret``, to ``/webhooks/sandbox``
over HTTP, so it is routed, verified, stored, deduplicated and ingested exactly as a
real provider's webhook. Outbound: ``send`` delivers to the phone's message log in
Redis, which the phone page shows, and the phone answers with delivery and read
statuses the same way a real provider would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import redis

from .base import (
    Capability,
    Channel,
    Health,
    InboundMedia,
    InboundMessage,
    MessageKind,
    OutboundMessage,
    Provider,
    ProviderEvent,
    SendResult,
    SettingField,
    StatusUpdate,
    WebhookRequest,
    register,
)
from .errors import ErrorKind, ProviderError, WebhookError

PHONE_LOG_LIMIT = 500


def phone_key(phone_number_id: str, patient_phone: str) -> str:
    return f"sandbox:phone:{phone_number_id}:{patient_phone}"


def sign(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _envelope(phone_number_id: str, display_phone: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": f"waba-{phone_number_id}",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": display_phone.lstrip("+"),
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def inbound_payload(
    *,
    phone_number_id: str,
    display_phone: str,
    patient_phone: str,
    patient_name: str,
    text: str,
    button_payload: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The body the simulated phone sends for a typed message (or a tapped button)."""
    wa_id = patient_phone.lstrip("+")
    msg_id = "wamid.SBXIN" + secrets.token_hex(10)
    message: dict[str, Any] = {"from": wa_id, "id": msg_id, "timestamp": str(int(time.time()))}
    if button_payload:
        message["type"] = "interactive"
        message["interactive"] = {
            "type": "button_reply",
            "button_reply": {"id": button_payload, "title": text},
        }
    else:
        message["type"] = "text"
        message["text"] = {"body": text}
    value = {"contacts": [{"profile": {"name": patient_name}, "wa_id": wa_id}], "messages": [message]}
    return _envelope(phone_number_id, display_phone, value), msg_id


def status_payload(
    *, phone_number_id: str, display_phone: str, patient_phone: str, message_ids: list[str], status: str
) -> dict[str, Any]:
    now = str(int(time.time()))
    statuses = [
        {"id": mid, "status": status, "timestamp": now, "recipient_id": patient_phone.lstrip("+")}
        for mid in message_ids
    ]
    return _envelope(phone_number_id, display_phone, {"statuses": statuses})


@register
class SandboxProvider(Provider):
    name: ClassVar[str] = "sandbox"
    display_name: ClassVar[str] = "Sandbox phone (simulated)"
    docs_url: ClassVar[str] = "/sandbox/phone"
    channels = frozenset({Channel.WHATSAPP})
    capabilities = frozenset(
        {Capability.TEXT, Capability.MEDIA, Capability.TEMPLATE, Capability.BUTTONS, Capability.INBOUND}
    )
    settings_schema = (
        SettingField("display_phone", "Phone number shown to staff", default="+15550100000"),
        SettingField("phone_number_id", "Sandbox number id"),
        SettingField("app_secret", "Webhook signing secret", secret=True),
    )
    rate_limit_per_second: ClassVar[float] = 0.0  # unlimited: nothing real is protected

    @classmethod
    def route_keys_for_settings(cls, settings: Mapping[str, Any]) -> list[str]:
        pnid = settings.get("phone_number_id")
        return [f"pnid:{pnid}"] if pnid else []

    @classmethod
    def route_keys_for_request(cls, req: WebhookRequest) -> list[str]:
        data = _load(req.body)
        keys = []
        for entry in data.get("entry") or []:
            for change in entry.get("changes") or []:
                pnid = ((change.get("value") or {}).get("metadata") or {}).get("phone_number_id")
                if pnid:
                    keys.append(f"pnid:{pnid}")
        return list(dict.fromkeys(keys))

    # -- outbound -----------------------------------------------------------------------------

    def _redis(self) -> redis.Redis:
        url = self.settings.get("_redis_url")
        if not url:
            raise ProviderError(ErrorKind.PERMANENT, "config", "The sandbox phone has no Redis to live in")
        return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)

    def send(self, msg: OutboundMessage) -> SendResult:
        if msg.channel != Channel.WHATSAPP:
            raise ProviderError(ErrorKind.PERMANENT, "channel", "The sandbox phone only receives WhatsApp")
        if msg.to.endswith("0000"):
            # A documented way to see a failure in the demo: numbers ending in 0000 are "not on WhatsApp".
            raise ProviderError(
                ErrorKind.RECIPIENT_INVALID, "131026", "This number cannot receive WhatsApp messages."
            )
        mid = "wamid.SBX" + secrets.token_hex(10)
        entry: dict[str, Any] = {
            "id": mid,
            "direction": "to_patient",
            "kind": msg.kind.value,
            "text": msg.text,
            "ts": time.time(),
            "status": "delivered",
        }
        if msg.media:
            entry["media"] = {"filename": msg.media.filename, "mime_type": msg.media.mime_type}
        if msg.template:
            entry["template"] = {"name": msg.template.name, "params": list(msg.template.params)}
        if msg.buttons:
            entry["buttons"] = [{"id": b.id, "title": b.title} for b in msg.buttons]
        key = phone_key(str(self.settings.get("phone_number_id")), msg.to)
        try:
            pipe = self._redis().pipeline()
            pipe.rpush(key, json.dumps(entry))
            pipe.ltrim(key, -PHONE_LOG_LIMIT, -1)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise ProviderError(ErrorKind.RETRYABLE, "redis", "The sandbox phone is unreachable") from exc
        return SendResult(provider_message_id=mid, status="accepted", raw={"messages": [{"id": mid}]})

    # -- inbound ------------------------------------------------------------------------------

    def verify_webhook(self, req: WebhookRequest) -> bool:
        secret = self.settings.get("app_secret")
        header = req.header("X-Hub-Signature-256") or ""
        if not secret or not header.startswith("sha256="):
            return False
        return hmac.compare_digest(header, sign(secret, req.body))

    def parse_webhook(self, req: WebhookRequest) -> list[ProviderEvent]:
        data = _load(req.body)
        events: list[ProviderEvent] = []
        for entry in data.get("entry") or []:
            for change in entry.get("changes") or []:
                value = change.get("value") or {}
                pnid = (value.get("metadata") or {}).get("phone_number_id")
                route = f"pnid:{pnid}" if pnid else None
                names = {
                    c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts") or []
                }
                for m in value.get("messages") or []:
                    events.append(_parse_message(m, names, route))
                for s in value.get("statuses") or []:
                    events.append(
                        StatusUpdate(
                            provider_message_id=str(s["id"]),
                            status=str(s["status"]),
                            timestamp=_ts(s.get("timestamp")),
                            route_key=route,
                            raw=s,
                        )
                    )
        return events

    def health(self) -> Health:
        try:
            self._redis().ping()
        except (redis.exceptions.RedisError, ProviderError) as exc:
            return Health(ok=False, status="unreachable", detail=str(exc))
        return Health(ok=True, status="connected", detail="The simulated phone is ready")


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError("body is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("entry", []), list):
        raise WebhookError("not a WhatsApp webhook envelope")
    return data


def _ts(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


def _parse_message(m: dict[str, Any], names: dict[str, Any], route: str | None) -> InboundMessage:
    try:
        wa_id = str(m["from"])
        mid = str(m["id"])
    except KeyError as exc:
        raise WebhookError(f"message without {exc.args[0]}") from None
    kind = MessageKind.UNSUPPORTED
    text = "Unsupported message"
    payload = None
    media = None
    mtype = m.get("type")
    if mtype == "text":
        kind, text = MessageKind.TEXT, str((m.get("text") or {}).get("body", ""))
    elif mtype == "interactive":
        reply = (m.get("interactive") or {}).get("button_reply") or {}
        kind, text, payload = MessageKind.BUTTON_REPLY, str(reply.get("title", "")), reply.get("id")
    elif mtype in ("image", "document"):
        obj = m.get(mtype) or {}
        kind = MessageKind(mtype)
        text = str(obj.get("caption") or "")
        media = InboundMedia(
            provider_media_id=obj.get("id"), mime_type=obj.get("mime_type"), filename=obj.get("filename")
        )
    return InboundMessage(
        provider_message_id=mid,
        from_phone="+" + wa_id.lstrip("+"),
        kind=kind,
        text=text,
        timestamp=_ts(m.get("timestamp")),
        contact_name=names.get(wa_id),
        button_payload=payload,
        media=media,
        route_key=route,
        raw=m,
    )
