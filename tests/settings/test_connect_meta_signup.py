"""Meta embedded signup, server side, against the Meta Graph emulator: the code is exchanged, the WABA
subscribed, the number registered, and only then is one connection stored; any failed step says why
in words and leaves nothing behind; secrets stay out of pages and logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_token
from tests.emulators.meta_graph import (
    DEFAULT_APP_ID,
    DEFAULT_APP_SECRET,
    DEFAULT_PNID,
    DEFAULT_WABA,
    running_meta_graph,
    signature_header,
)
from wa_portal.models import AuditEvent, Connection, ConnectionStatus, Message

SAMPLES = Path("/work/shared/provider-samples/meta")
PAGE = "/settings/connections/new/meta"
SIGNUP = "/settings/connections/meta/signup"
CONFIG_ID = "1234567890123456"


@pytest.fixture(scope="module")
def _graph():
    with running_meta_graph() as graph:
        yield graph


@pytest.fixture
def graph(_graph, app, monkeypatch):
    """The emulator, and the portal's platform Meta app aimed at it."""
    _graph.reset()
    monkeypatch.setitem(app.config, "META_APP_ID", DEFAULT_APP_ID)
    monkeypatch.setitem(app.config, "META_APP_SECRET", DEFAULT_APP_SECRET)
    monkeypatch.setitem(app.config, "META_CONFIG_ID", CONFIG_ID)
    monkeypatch.setitem(app.config, "META_GRAPH_BASE_URL", _graph.graph_url)
    yield _graph
    _graph.wait_idle()


def _signup(client, **fields):
    data = {
        "code": "signup-code-1",
        "phone_number_id": DEFAULT_PNID,
        "waba_id": DEFAULT_WABA,
        "business_id": "2729063490586005",
        "pin": "147258",
        **fields,
    }
    return client.post(SIGNUP, data={**data, "csrf_token": csrf_token(client, PAGE)})


def _portal_log(caplog) -> str:
    """What the portal logged: the emulator's own access log ("Meta's" server) is not ours."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")


def _count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(Connection))


# --- the page -----------------------------------------------------------------------------------------


def test_page_offers_facebook_sign_in_with_the_sdk_allowed_only_here(admin_client, graph):
    resp = admin_client.get(PAGE)
    html = resp.get_data(as_text=True)
    assert "Connect with Facebook" in html
    assert f'data-config-id="{CONFIG_ID}"' in html and f'data-app-id="{DEFAULT_APP_ID}"' in html
    assert 'data-version="v23.0"' in html
    assert '<script src="/static/connect_meta.js" defer></script>' in html
    assert "<script>" not in html  # no inline script: the CSP forbids it
    assert DEFAULT_APP_SECRET not in html
    csp = resp.headers["Content-Security-Policy"]
    assert (
        "script-src 'self' https://connect.facebook.net;" in csp and "frame-src https://*.facebook.com" in csp
    )
    assert resp.headers["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"
    assert 'action="/settings/connections/new/meta"' in html  # the manual form is still there
    # Every other page keeps the strict policy.
    other = admin_client.get("/settings/connections/new/twilio")
    assert "facebook" not in other.headers["Content-Security-Policy"]
    assert other.headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_without_a_platform_app_only_the_manual_form_and_no_signup_endpoint(admin_client, db):
    resp = admin_client.get(PAGE)
    html = resp.get_data(as_text=True)
    assert "Connect with Facebook" not in html and "connect_meta.js" not in html
    assert "facebook" not in resp.headers["Content-Security-Policy"]
    assert 'name="access_token"' in html
    assert _signup(admin_client).status_code == 404
    assert _count(db) == 0


# --- success ------------------------------------------------------------------------------------------


def test_signup_creates_one_connection_whose_webhooks_route(
    admin_client, graph, db, clinic, run_worker, caplog
):
    caplog.set_level(logging.INFO)
    token = graph.add_oauth_code("signup-code-1")
    resp = _signup(admin_client, label="Front desk")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 201, html[:3000]
    assert "Front desk is connected" in html and ">connected</span>" in html
    assert "/webhooks/meta" in html

    # The Graph calls, in order, with what Meta needs.
    routes = [r["route"] for r in graph.requests() if r["route"] != "phone_number"]
    assert routes == ["oauth", "subscribed_apps", "register"]
    (oauth,) = graph.requests("oauth")
    assert oauth["query"] == {
        "client_id": DEFAULT_APP_ID,
        "client_secret": DEFAULT_APP_SECRET,
        "code": "signup-code-1",
    }
    assert graph.requests("subscribed_apps")[0]["headers"]["authorization"] == f"Bearer {token}"
    assert graph.requests("register")[0]["json"] == {"messaging_product": "whatsapp", "pin": "147258"}
    assert DEFAULT_WABA in graph.subscribed_wabas

    conn = db.session.scalars(select(Connection)).one()
    from wa_portal.services import connections

    secrets = connections.get_secrets(conn)
    assert (conn.clinic_id, conn.provider, conn.label) == (clinic.id, "meta", "Front desk")
    assert conn.config["phone_number_id"] == DEFAULT_PNID and conn.config["waba_id"] == DEFAULT_WABA
    assert conn.config["base_url"] == graph.graph_url
    assert secrets["access_token"] == token and secrets["app_secret"] == DEFAULT_APP_SECRET
    assert len(secrets["verify_token"]) >= 20
    assert token not in conn.credentials_encrypted and token not in json.dumps(conn.config)
    assert conn.status == ConnectionStatus.CONNECTED and conn.display_phone == "+15550783881"  # from Meta
    assert token not in html and DEFAULT_APP_SECRET not in html and "signup-code-1" not in html

    # Meta's captured inbound text, signed with the platform app's secret, reaches this clinic's inbox.
    body = (SAMPLES / "inbound_text.json").read_bytes()
    hook = admin_client.post(
        "/webhooks/meta", data=body, headers={"Content-Type": "application/json", **signature_header(body)}
    )
    assert hook.status_code == 200
    run_worker()
    msg = db.session.scalars(select(Message)).one()
    assert msg.clinic_id == clinic.id and "remarcar minha consulta" in msg.body

    event = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "connection")).one()
    assert (event.action, event.object_id) == ("create", str(conn.id))
    for secret in (token, DEFAULT_APP_SECRET, "signup-code-1"):
        assert secret not in _portal_log(caplog)


# --- failures: a reason in words, nothing stored ------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "words", "calls"),
    [
        # A code Meta does not know (expired, used twice): refused at the exchange.
        (lambda g: None, "Facebook's sign-in could not be completed", ["oauth"]),
        # The PIN does not match the number's two-step verification.
        (
            lambda g: (
                g.add_oauth_code("signup-code-1"),
                g.fail_next(route="register", status=400, code=100),
            ),
            "Check the 6-digit two-step verification PIN",
            ["oauth", "subscribed_apps", "register"],
        ),
        (
            lambda g: (
                g.add_oauth_code("signup-code-1"),
                g.fail_next(route="subscribed_apps", status=403, code=200),
            ),
            "did not let the portal receive this number",
            ["oauth", "subscribed_apps"],
        ),
        (lambda g: g.down(), "Meta is not answering right now", ["oauth"]),
    ],
    ids=["bad-code", "register-fails", "subscribe-fails", "meta-down"],
)
def test_a_failed_step_shows_the_reason_and_creates_nothing(
    admin_client, graph, db, setup, words, calls, caplog
):
    caplog.set_level(logging.INFO)
    setup(graph)
    resp = _signup(admin_client)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True).replace("&#39;", "'")
    error = html[html.index('data-testid="signup-error"') :]
    assert words in error[:600]
    assert "Nothing was saved" in error[:600]
    assert "What Meta said:" in html
    assert [r["route"] for r in graph.requests()] == calls
    assert _count(db) == 0
    assert "signup-code-1" not in html and DEFAULT_APP_SECRET not in html
    assert "signup-code-1" not in _portal_log(caplog) and DEFAULT_APP_SECRET not in _portal_log(caplog)
    assert "meta signup for clinic" in _portal_log(caplog)  # the failure itself is logged
    audit = db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "create")
    )
    assert audit == 0


def test_a_wrong_platform_app_secret_is_explained_for_whoever_runs_the_server(admin_client, graph, app, db):
    graph.add_oauth_code("signup-code-1")
    app.config["META_APP_SECRET"] = "not-the-secret"  # the monkeypatch in `graph` restores it
    resp = _signup(admin_client)
    assert resp.status_code == 422
    assert "refused the portal&#39;s own app settings" in resp.get_data(as_text=True)
    assert "not-the-secret" not in resp.get_data(as_text=True)
    assert _count(db) == 0


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"pin": "12345"}, "Enter the 6-digit two-step verification PIN"),
        ({"code": ""}, "The Facebook window did not finish"),
        ({"waba_id": "abc"}, "Facebook sent ids the portal cannot read"),
    ],
)
def test_incomplete_posts_are_refused_before_any_call_to_meta(admin_client, graph, db, fields, words):
    graph.add_oauth_code("signup-code-1")
    resp = _signup(admin_client, **fields)
    assert resp.status_code == 422
    assert words in resp.get_data(as_text=True)
    assert graph.requests() == []  # the one-time code is not spent
    assert _count(db) == 0


def test_a_number_already_connected_is_not_signed_up_twice(admin_client, graph, db, clinic):
    from wa_portal.services import connections

    connections.create_connection(clinic=clinic, provider="meta", settings=graph.meta_settings())
    graph.add_oauth_code("signup-code-1")
    resp = _signup(admin_client)
    assert resp.status_code == 422
    assert "already connected in the portal" in resp.get_data(as_text=True)
    assert graph.requests("oauth") == [] and _count(db) == 1


def test_staff_get_403_and_meta_is_not_called(client, login, clinic, make_user, graph, db):
    login(make_user(clinic, "staff"))
    graph.add_oauth_code("signup-code-1")
    resp = client.post(
        SIGNUP,
        data={
            "csrf_token": csrf_token(client, "/inbox"),
            "code": "signup-code-1",
            "phone_number_id": DEFAULT_PNID,
            "waba_id": DEFAULT_WABA,
            "pin": "147258",
        },
    )
    assert resp.status_code == 403
    assert graph.requests() == [] and _count(db) == 0
