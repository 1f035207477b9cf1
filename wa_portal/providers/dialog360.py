"""360dialog adapter: Meta's Cloud API hosted by 360dialog, with its own host, key header and webhook URL.

Bodies and webhooks are Meta's, so everything but the transport is inherited from MetaProvider.
Docs: https://docs.360dialog.com/docs/messaging
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from . import http
from .base import (
    Capability,
    ErrorKind,
    Health,
    ProviderError,
    ProviderEvent,
    SettingField,
    WebhookRequest,
    register,
    token_key,
)
from .meta import MetaProvider, _failed_health, _json, _missing, _obj, _objs, _str

__all__ = ["DEFAULT_BASE_URL", "Dialog360Provider"]

DEFAULT_BASE_URL = "https://waba-v2.360dialog.io"
HEALTH_FIELDS = ("display_phone_number", "quality_rating", "verified_name")
_HEALTHY = {"AVAILABLE": "connected", "LIMITED": "limited"}


@register
class Dialog360Provider(MetaProvider):
    """Cloud API through 360dialog: `D360-API-KEY`, no Graph version or phone number id in the path."""

    name = "dialog360"
    display_name = "360dialog"
    docs_url = "https://docs.360dialog.com/docs/messaging"
    # 360dialog onboards numbers through its own Connect flow, not Meta's embedded signup.
    capabilities = MetaProvider.capabilities - {Capability.EMBEDDED_SIGNUP}
    settings_schema = (
        SettingField("api_key", "API key", secret=True, required=True, help="From the 360dialog Hub"),
        SettingField("display_phone", "Display phone number", help="Shown to staff, e.g. +34 600 111 222"),
        SettingField("phone_number_id", "Phone number ID", help="Meta's id of the number, for reference"),
        SettingField("base_url", "API base URL", default=DEFAULT_BASE_URL),
        SettingField(
            "webhook_token",
            "Webhook token",
            secret=True,
            required=True,
            help="Random; part of the webhook URL /webhooks/360dialog/<token>",
        ),
    )
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    auth_reason: ClassVar[str] = (
        "The 360dialog API key is invalid or was revoked. Enter a new key in Settings."
    )

    @staticmethod
    def new_webhook_token() -> str:
        # Hex, not token_urlsafe: 360dialog refuses webhook URLs containing "_".
        # Docs: https://docs.360dialog.com/partner/messaging/receiving-messages-via-webhook
        return secrets.token_hex(24)

    # -- transport: same bodies, another host and header --------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        key = self.settings.get("api_key")
        if not key:
            raise _missing("360dialog API key")
        return {"D360-API-KEY": str(key)}

    def _messages_url(self) -> str:
        # 360dialog injects the phone number id; adding it (or a Graph version) "may cause errors".
        return f"{self.base_url}/messages"

    def _upload_url(self) -> str:
        return f"{self.base_url}/media"

    def _media_lookup(self, media_id: str) -> tuple[str, dict[str, str]]:
        return f"{self.base_url}/{media_id}", {}

    def _download_url(self, url: str) -> str:
        # GET /{media_id} answers with Meta's lookaside.fbsbx.com URL, which our key cannot open; 360dialog
        # serves the same path and query on its own host.
        # Docs: https://docs.360dialog.com/partner/messaging/media-messages/upload-retrieve-delete-media
        parts = urlsplit(url)
        return f"{self.base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def _error(self, resp: requests.Response) -> ProviderError:
        # 360dialog's own errors come as {"meta": {"httpCode", "developerMessage", "success": false}};
        # Meta's Graph errors pass through unchanged. Docs: https://docs.360dialog.com/docs/useful/api-error-message-list
        body = _json(resp)
        meta = _obj(body.get("meta")) if isinstance(body, dict) else {}
        message = _str(meta.get("developerMessage"))
        if message and "error" not in body:
            lowered = message.lower()
            if resp.status_code == 401 or "api_key" in lowered:
                kind, reason = ErrorKind.AUTH, self.auth_reason
            elif "exceeded the limit" in lowered or resp.status_code == 429:
                kind, reason = (
                    ErrorKind.RATE_LIMITED,
                    "360dialog is limiting calls from this key. It will be retried.",
                )
            elif resp.status_code >= 500:
                kind, reason = (
                    ErrorKind.RETRYABLE,
                    "360dialog is temporarily unavailable. It will be retried.",
                )
            else:
                kind, reason = ErrorKind.PERMANENT, "360dialog refused the request."
            return ProviderError(
                kind,
                f"http_{resp.status_code}",
                f"{reason} ({message[:200]})",
                status_code=resp.status_code,
                retry_after=http.retry_after(resp),
            )
        return super()._error(resp)

    # -- webhooks: a secret token in the URL path instead of a signature ----------------------------------

    @classmethod
    def route_keys_for_settings(cls, settings: Mapping[str, Any]) -> list[str]:
        token = settings.get("webhook_token")
        return [token_key(str(token))] if token else []

    @classmethod
    def route_keys_for_request(cls, req: WebhookRequest) -> list[str]:
        return [token_key(req.path_token)] if req.path_token else []

    def verify_webhook(self, req: WebhookRequest) -> bool:
        # No HMAC is documented for 360dialog messaging webhooks, so the URL carries a per-connection secret.
        expected = self.settings.get("webhook_token")
        if not expected or not req.path_token:
            return False
        return hmac.compare_digest(req.path_token.encode(), str(expected).encode())

    def parse_webhook(self, req: WebhookRequest) -> list[ProviderEvent]:
        # Meta's envelope names the number (pnid:…), but a 360dialog connection is routed by its URL token
        # only: ingest drops an event whose route key is not the verified connection's, so every event of
        # this request carries the token's key.
        key = token_key(req.path_token) if req.path_token else None
        return [dataclasses.replace(event, route_key=key) for event in super().parse_webhook(req)]

    # -- health -------------------------------------------------------------------------------------------

    def health(self) -> Health:
        # Docs: https://docs.360dialog.com/docs/messaging/health-status
        try:
            data = self._request(
                "GET", f"{self.base_url}/health_status", params={"fields": ",".join(HEALTH_FIELDS)}
            )
        except ProviderError as err:
            return _failed_health(err)
        health = _obj(data.get("health_status"))
        can_send = _str(health.get("can_send_message")).upper() or "UNKNOWN"
        problems = [
            _str(e.get("error_description"))
            for entity in _objs(health.get("entities"))
            for e in _objs(entity.get("errors"))
            if e.get("error_description")
        ]
        summary = {k: data[k] for k in HEALTH_FIELDS if k in data}
        summary["can_send_message"] = can_send
        return Health(
            ok=can_send in _HEALTHY,
            status=_HEALTHY.get(can_send, can_send.lower()),
            detail=" ".join(problems),
            data=summary,
        )
