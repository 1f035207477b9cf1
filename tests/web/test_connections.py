"""Provider connections in the running app: health checks, template and quality updates from Meta."""

from __future__ import annotations

import json

import pytest

from tests.emulators.meta_graph import running_meta_graph, signature_header
from wa_portal.models import ConnectionStatus, MessageTemplate, TemplateStatus


@pytest.fixture(scope="module")
def graph():
    with running_meta_graph() as g:
        yield g


@pytest.fixture
def meta_conn(clinic, graph):
    from wa_portal.services import connections

    graph.reset()
    return connections.create_connection(clinic=clinic, provider="meta", settings=graph.meta_settings())


def test_health_check_records_the_connection_state(app, db, meta_conn, graph):
    from wa_portal.services.connections import check_health

    health = check_health(meta_conn.id)
    assert health.ok
    db.session.refresh(meta_conn)
    assert meta_conn.status == ConnectionStatus.CONNECTED
    assert meta_conn.health_checked_at is not None

    graph.tokens.clear()  # the token was revoked at Meta
    health = check_health(meta_conn.id)
    assert not health.ok
    db.session.refresh(meta_conn)
    assert meta_conn.status == ConnectionStatus.DISCONNECTED
    assert "token" in meta_conn.status_detail.lower() or "expired" in meta_conn.status_detail.lower()


def test_check_connections_cli(app, meta_conn):
    out = app.test_cli_runner().invoke(args=["wa", "check-connections"]).output
    assert f"ok  connection {meta_conn.id} meta" in out


def _account_event(waba: str, field: str, value: dict) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": waba, "time": 1751457600, "changes": [{"field": field, "value": value}]}],
        }
    ).encode()


def test_template_status_update_changes_our_template(client, db, meta_conn, graph, run_worker):
    tpl = MessageTemplate(
        clinic_id=meta_conn.clinic_id,
        name="appointment_reminder",
        language="en",
        body="Hi {{1}}, see you {{2}}.",
        purpose="reminder",
    )
    db.session.add(tpl)
    db.session.commit()
    body = _account_event(
        meta_conn.config["waba_id"],
        "message_template_status_update",
        {
            "event": "REJECTED",
            "message_template_id": 1234567,
            "message_template_name": "appointment_reminder",
            "message_template_language": "en",
            "reason": "INVALID_FORMAT",
        },
    )
    secret = graph.meta_settings()["app_secret"]
    resp = client.post(
        "/webhooks/meta",
        data=body,
        headers={"Content-Type": "application/json", **signature_header(body, secret)},
    )
    assert resp.status_code == 200
    run_worker()
    db.session.refresh(tpl)
    assert tpl.status == TemplateStatus.REJECTED
    assert tpl.status_reason == "INVALID_FORMAT"
    assert tpl.provider_ids == {"meta": "1234567"}


def test_quality_update_changes_the_connection(client, db, meta_conn, graph, run_worker):
    body = _account_event(
        meta_conn.config["waba_id"],
        "phone_number_quality_update",
        {"display_phone_number": "15550001111", "event": "FLAGGED", "current_limit": "TIER_1K"},
    )
    resp = client.post(
        "/webhooks/meta",
        data=body,
        headers={
            "Content-Type": "application/json",
            **signature_header(body, graph.meta_settings()["app_secret"]),
        },
    )
    assert resp.status_code == 200
    run_worker()
    db.session.refresh(meta_conn)
    assert meta_conn.quality_rating == "YELLOW"
    assert meta_conn.messaging_limit == "TIER_1K"


def test_meta_verification_handshake(client, meta_conn, graph):
    token = graph.meta_settings()["verify_token"]
    ok = client.get(f"/webhooks/meta?hub.mode=subscribe&hub.challenge=8812&hub.verify_token={token}")
    assert (ok.status_code, ok.get_data(as_text=True)) == (200, "8812")
    bad = client.get("/webhooks/meta?hub.mode=subscribe&hub.challenge=8812&hub.verify_token=nope")
    assert bad.status_code == 403
