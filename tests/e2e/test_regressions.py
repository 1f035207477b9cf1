"""Focused regressions for app bugs the end-to-end tests found (each also covered end to end)."""

from __future__ import annotations

from tests.e2e.conftest import meta_envelope, sample
from wa_portal.providers.base import InboundMessage, StatusUpdate, WebhookRequest
from wa_portal.providers.dialog360 import Dialog360Provider, token_key

TOKEN = "ab" * 24


def _request(body: bytes, path_token: str | None) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url=f"https://clinic.example.com/webhooks/360dialog/{path_token}",
        headers={"Content-Type": "application/json"},
        body=body,
        path_token=path_token,
    )


def test_dialog360_events_are_routed_by_the_url_token_not_metas_phone_number_id():
    # The inbound text was answered 200 and then dropped by ingest ("event for an unverified route"):
    # its route key was Meta's pnid, which a 360dialog connection never registers.
    provider = Dialog360Provider({"api_key": "k", "webhook_token": TOKEN})
    status = {"id": "wamid.X", "status": "delivered", "timestamp": "1750263774", "recipient_id": "1650"}
    for body, kind in (
        (sample("meta", "inbound_text.json"), InboundMessage),
        (meta_envelope(statuses=[status]), StatusUpdate),
    ):
        req = _request(body, TOKEN)
        assert provider.verify_webhook(req)
        [event] = provider.parse_webhook(req)
        assert isinstance(event, kind)
        assert event.route_key == token_key(TOKEN)
        assert event.route_key in Dialog360Provider.route_keys_for_settings({"webhook_token": TOKEN})
        assert event.raw  # the event is otherwise Meta's, untouched
