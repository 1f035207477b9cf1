"""360dialog end to end: Meta's bodies, the D360-API-KEY, and webhooks routed by the secret in their path."""

from __future__ import annotations

import re

from tests.e2e import cloud_api
from tests.e2e.conftest import PUBLIC_BASE_URL, sample
from tests.emulators.meta_graph import DEFAULT_API_KEY


def _add(portal, graph):
    settings = graph.dialog360_settings()
    settings.pop("webhook_token")  # not a CONTRACT.md key: the portal makes one up
    conn, url = portal.add_connection("dialog360", **settings)
    token = re.fullmatch(rf"{re.escape(PUBLIC_BASE_URL)}/webhooks/360dialog/([0-9a-f]{{48}})", url)
    assert token, url  # hex only: 360dialog refuses "_" in webhook URLs
    return conn, url


def test_dialog360_conversation_end_to_end(portal, graph):
    conn, url = _add(portal, graph)
    cloud_api.run(
        portal,
        graph,
        conn,
        url,
        cloud_api.Transport(
            sign=lambda body: {},  # no signature: the per-connection token in the URL is the secret
            media_get="d360_media_get",
            messages="d360_messages",
            messages_path="/messages",  # no Graph version, no phone number id
            auth=("d360-api-key", DEFAULT_API_KEY),
        ),
    )
    # Not one call went out with a Meta token.
    assert not [r for r in graph.requests() if "authorization" in r["headers"]]


def test_dialog360_refuses_an_unknown_token(portal, graph):
    _conn, url = _add(portal, graph)
    body = sample("meta", "inbound_text.json")
    headers = {"Content-Type": "application/json"}
    wrong = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    assert portal.webhook(wrong, body, headers).status_code == 404
    assert portal.webhook(f"{PUBLIC_BASE_URL}/webhooks/360dialog/x", body, headers).status_code == 404
    portal.drain()
    assert portal.stored() == (0, 0)
