"""Meta's Cloud API end to end: CLI → signed webhooks → worker → inbox → composer → Graph → statuses."""

from __future__ import annotations

from tests.e2e import cloud_api
from tests.e2e.conftest import PUBLIC_BASE_URL, meta_envelope, sample
from tests.emulators.meta_graph import DEFAULT_PNID, DEFAULT_TOKEN, DEFAULT_VERIFY_TOKEN, signature_header


def test_meta_conversation_end_to_end(portal, graph):
    # 1. The operator adds the number with the CONTRACT.md keys, aimed at the Graph emulator.
    conn, url = portal.add_connection("meta", **graph.meta_settings())
    assert url == f"{PUBLIC_BASE_URL}/webhooks/meta"
    cloud_api.run(
        portal,
        graph,
        conn,
        url,
        cloud_api.Transport(
            sign=signature_header,  # X-Hub-Signature-256 with the app secret
            media_get="media_get",
            messages="messages",
            messages_path=f"/v23.0/{DEFAULT_PNID}/messages",
            auth=("authorization", f"Bearer {DEFAULT_TOKEN}"),
        ),
    )


def test_meta_refuses_a_bad_signature_and_an_unknown_number(portal, graph):
    _conn, url = portal.add_connection("meta", **graph.meta_settings())
    # Meta's verification GET when the URL is saved in the App Dashboard: the challenge comes back only
    # for this connection's verify token.
    hub = "/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token="
    answer = portal.app.test_client().get(hub + DEFAULT_VERIFY_TOKEN)
    assert (answer.status_code, answer.get_data(as_text=True)) == (200, "1158201444")
    assert portal.app.test_client().get(hub + "guess").status_code == 403
    body = sample("meta", "inbound_text.json")
    forged = portal.webhook(url, body, signature_header(body, "not-the-app-secret"))
    assert forged.status_code == 401
    unsigned = portal.webhook(url, body, {"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    other = meta_envelope(messages=[_text("16505559999")], pnid="999000111222333", waba="999000111222")
    assert portal.webhook(url, other, signature_header(other)).status_code == 404
    portal.drain()
    assert portal.stored() == (0, 0)


def _text(wa_id: str) -> dict:
    return {
        "from": wa_id,
        "id": "wamid.unknown-number",
        "timestamp": "1749416383",
        "type": "text",
        "text": {"body": "hi"},
    }
