"""Adding, editing and (de)activating a connection in the browser's forms, as an admin uses them:
the provider chooser, one form per provider with the add-connection keys, errors in words, secrets
stored encrypted and never rendered back, the webhook URL shown once, tenant isolation, the audit trail."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_token
from tests.emulators.meta_graph import DEFAULT_PNID, signature_header
from wa_portal.models import AuditEvent, Connection, ConnectionStatus

# The keys of `flask wa add-connection` per provider (CONTRACT.md), in the form's order.
CONTRACT_KEYS = {
    "sandbox": ["display_phone"],
    "meta": [
        "phone_number_id",
        "waba_id",
        "display_phone",
        "access_token",
        "app_secret",
        "verify_token",
        "base_url",
    ],
    "dialog360": ["api_key", "display_phone", "phone_number_id", "base_url"],
    "twilio": ["account_sid", "auth_token", "whatsapp_from", "sms_from", "messaging_service_sid", "base_url"],
    "chatwoot": ["base_url", "api_token", "account_id", "inbox_id", "webhook_secret"],
    "ses": ["from_email", "region", "endpoint_url", "access_key_id", "secret_access_key"],
}
SECRET_KEYS = {
    "access_token",
    "app_secret",
    "verify_token",
    "api_key",
    "auth_token",
    "api_token",
    "webhook_secret",
    "secret_access_key",
}
INPUT_RE = re.compile(r"<input[^>]*>")


def _inputs(html: str) -> dict[str, str]:
    """name → type of every input of the provider form (the page's first settings form)."""
    out = {}
    for tag in INPUT_RE.findall(html):
        name = re.search(r'name="([^"]+)"', tag)
        kind = re.search(r'type="([^"]+)"', tag)
        if name and name.group(1) not in ("csrf_token", "label"):
            out[name.group(1)] = kind.group(1) if kind else "text"
    return out


def _status_only_webhook() -> bytes:
    """A Cloud API POST for the emulator's number that only names it (enough to be routed)."""
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": DEFAULT_PNID}}
    entry = {"id": "1", "changes": [{"field": "messages", "value": value}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def _post(client, path, data, page="/settings/connections/new", **kw):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, page)}, **kw)


def _count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(Connection))


def _audit(db, action: str) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.object_type == "connection", AuditEvent.action == action)
        )
    )


# --- the chooser ------------------------------------------------------------------------------------


def test_connections_page_has_an_add_button_and_the_chooser_a_card_per_provider(admin_client):
    html = admin_client.get("/settings/connections").get_data(as_text=True)
    assert 'href="/settings/connections/new">Add connection</a>' in html
    html = admin_client.get("/settings/connections/new").get_data(as_text=True)
    for provider in ("meta", "dialog360", "twilio", "chatwoot", "ses", "sandbox"):
        assert f'href="/settings/connections/new/{provider}"' in html, provider
    assert 'href="/settings/connections/new/waha"' in html  # the QR flow of connect_waha
    assert "Enter the number's id and token from Meta" in html  # no platform app: manual form
    assert 'href="/settings/connections" aria-current="page">Connections' in html  # settings sub-nav


def test_sandbox_is_offered_only_when_enabled(admin_client, app, monkeypatch):
    monkeypatch.setitem(app.config, "SANDBOX_ENABLED", False)
    html = admin_client.get("/settings/connections/new").get_data(as_text=True)
    assert "/settings/connections/new/sandbox" not in html
    assert "/settings/connections/new/twilio" in html
    assert admin_client.get("/settings/connections/new/sandbox").status_code == 404


def test_chooser_says_facebook_sign_in_when_the_platform_app_is_configured(admin_client, app, monkeypatch):
    for key in ("META_APP_ID", "META_APP_SECRET", "META_CONFIG_ID"):
        monkeypatch.setitem(app.config, key, "x1")
    html = admin_client.get("/settings/connections/new").get_data(as_text=True)
    assert "Sign in with Facebook and pick the number" in html


@pytest.mark.parametrize("provider", sorted(CONTRACT_KEYS))
def test_each_form_asks_exactly_the_add_connection_keys_with_secrets_as_password_inputs(
    admin_client, provider
):
    resp = admin_client.get(f"/settings/connections/new/{provider}")
    assert resp.status_code == 200
    inputs = _inputs(resp.get_data(as_text=True))
    assert list(inputs) == CONTRACT_KEYS[provider]
    for name, kind in inputs.items():
        assert kind == ("password" if name in SECRET_KEYS else "text"), name


def test_unknown_providers_are_404_and_waha_is_left_to_its_own_page(admin_client, app):
    assert admin_client.get("/settings/connections/new/whatsapp").status_code == 404
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match("/settings/connections/new/waha")
    except Exception:  # connect_waha not registered: nothing matches, which is fine too
        endpoint = None
    assert endpoint != "connect.new"


# --- who may use it -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "therapist"])
def test_non_admins_get_403_and_change_nothing(client, login, clinic, make_user, sandbox_conn, db, role):
    login(make_user(clinic, role))
    for path in [
        "/settings/connections/new",
        "/settings/connections/new/meta",
        "/settings/connections/1/edit",
    ]:
        assert client.get(path).status_code == 403, path
    token = csrf_token(client, "/inbox")
    data = {"csrf_token": token, "display_phone": "+34910000002"}
    for path in [
        "/settings/connections/new/sandbox",
        f"/settings/connections/{sandbox_conn.id}/edit",
        f"/settings/connections/{sandbox_conn.id}/deactivate",
        "/settings/connections/meta/signup",
    ]:
        assert client.post(path, data=data).status_code == 403, path
    db.session.refresh(sandbox_conn)
    assert _count(db) == 1 and sandbox_conn.active and sandbox_conn.display_phone == "+34910000001"


def test_a_post_without_csrf_token_creates_nothing(admin_client, db):
    resp = admin_client.post("/settings/connections/new/sandbox", data={"display_phone": "+34910000002"})
    assert resp.status_code == 400
    assert _count(db) == 0


# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "form", "field", "words"),
    [
        ("meta", {"phone_number_id": "1065", "app_secret": "s"}, "access_token", "Enter the access token."),
        ("meta", {"phone_number_id": "pn-1", "access_token": "t", "app_secret": "s"}, "phone_number_id",
         "digits"),
        ("dialog360", {"api_key": "k", "base_url": "ftp://waba.example"}, "base_url", "starts with https://"),
        ("chatwoot", {"base_url": "chat.example.com", "api_token": "t", "account_id": "1", "inbox_id": "2"},
         "base_url", "starts with https://"),
        ("twilio", {"account_sid": "AC1", "auth_token": "t", "whatsapp_from": "12"}, "whatsapp_from",
         "This is not a phone number"),
        ("twilio", {"account_sid": "AC1", "auth_token": "t"}, "whatsapp_from", "Enter a WhatsApp sender"),
        ("twilio", {"account_sid": "SK1", "auth_token": "t", "sms_from": "SUNRISE"}, "account_sid",
         "starts with AC"),
        ("ses", {"from_email": "reception"}, "from_email", "Enter an email address"),
        ("sandbox", {"display_phone": "call me"}, "display_phone", "Include the country code"),
    ],
)  # fmt: skip
def test_errors_are_shown_in_words_by_the_field_and_nothing_is_saved(
    admin_client, db, provider, form, field, words
):
    resp = _post(admin_client, f"/settings/connections/new/{provider}", form)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "Nothing was saved" in html
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', html)
    assert error and words in error.group(1).replace("&#39;", "'"), html[:3000]
    assert f'aria-describedby="{field}-error"' in html
    assert _count(db) == 0
    for secret in ("t", "s", "k"):  # what was typed into secret inputs is not sent back
        assert f'value="{secret}"' not in html


# --- creating -----------------------------------------------------------------------------------------


def test_360dialog_shows_its_path_token_webhook_once_and_then_only_masked(admin_client, db, graph, clinic):
    resp = _post(
        admin_client,
        "/settings/connections/new/dialog360",
        {
            "label": "Front desk",
            "api_key": graph.dialog360_settings()["api_key"],
            "display_phone": "+1 555 078 3881",
            "phone_number_id": DEFAULT_PNID,
            "base_url": graph.root_url,
        },
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)[:2000]
    html = resp.get_data(as_text=True)
    conn = db.session.scalars(select(Connection)).one()
    from wa_portal.services import connections

    token = connections.get_secrets(conn)["webhook_token"]
    assert f"http://localhost/webhooks/360dialog/{token}" in html  # the request host: no PUBLIC_BASE_URL
    assert "shown only on this page" in html
    assert token not in conn.credentials_encrypted
    assert graph.dialog360_settings()["api_key"] not in str(conn.config)
    assert (conn.clinic_id, conn.label, conn.display_phone) == (clinic.id, "Front desk", "+15550783881")
    # The health check ran once, against the provider.
    assert conn.status == ConnectionStatus.CONNECTED and conn.health_checked_at is not None
    assert len(graph.requests("d360_health")) == 1
    assert ">connected</span> The provider answered" in html

    for page in ("/settings/connections", f"/settings/connections/{conn.id}/edit"):
        later = admin_client.get(page).get_data(as_text=True)
        assert token not in later, page
        assert "/webhooks/360dialog/••••" in later, page
    # The URL shown once is the one that routes.
    hook = admin_client.post(f"/webhooks/360dialog/{token}", data=b"{}", content_type="application/json")
    assert hook.status_code != 404


def test_manual_meta_connection_routes_its_webhooks_and_is_audited(admin_client, db, graph, app, monkeypatch):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://portal.example")
    settings = graph.meta_settings()
    form = {k: settings[k] for k in CONTRACT_KEYS["meta"] if k != "verify_token"}
    resp = _post(admin_client, "/settings/connections/new/meta", form)
    assert resp.status_code == 201
    html = resp.get_data(as_text=True)
    assert "https://portal.example/webhooks/meta" in html
    conn = db.session.scalars(select(Connection)).one()
    from wa_portal.services import connections

    secrets = connections.get_secrets(conn)
    assert secrets["access_token"] == settings["access_token"]
    assert settings["access_token"] not in conn.credentials_encrypted
    # The generated verify token is shown this once, and Meta's handshake accepts it.
    assert f'<code data-testid="verify-token">{secrets["verify_token"]}</code>' in html
    shake = admin_client.get(
        f"/webhooks/meta?hub.mode=subscribe&hub.challenge=42&hub.verify_token={secrets['verify_token']}"
    )
    assert shake.get_data(as_text=True) == "42"
    body = _status_only_webhook()
    hook = admin_client.post(
        "/webhooks/meta", data=body, headers=signature_header(body, settings["app_secret"])
    )
    assert hook.status_code == 200
    (event,) = _audit(db, "create")
    assert (event.object_id, event.summary) == (str(conn.id), "provider: meta")


def test_a_failed_health_check_still_saves_and_says_so(admin_client, db, graph):
    graph.tokens.clear()  # Meta refuses the token
    form = {**{k: v for k, v in graph.meta_settings().items() if k in CONTRACT_KEYS["meta"]}}
    resp = _post(admin_client, "/settings/connections/new/meta", form)
    assert resp.status_code == 201
    html = resp.get_data(as_text=True)
    assert ">disconnected</span>" in html and "did not confirm it yet" in html
    assert "access token has expired or is invalid" in html
    assert db.session.scalars(select(Connection)).one().status == ConnectionStatus.DISCONNECTED


def test_a_number_already_connected_is_refused(admin_client, db, graph, clinic):
    from wa_portal.services import connections

    connections.create_connection(clinic=clinic, provider="meta", settings=graph.meta_settings())
    form = {k: v for k, v in graph.meta_settings().items() if k in CONTRACT_KEYS["meta"]}
    resp = _post(admin_client, "/settings/connections/new/meta", form)
    assert resp.status_code == 422
    assert "already connected in the portal" in resp.get_data(as_text=True)
    assert _count(db) == 1


# --- editing ------------------------------------------------------------------------------------------


@pytest.fixture
def meta_conn(clinic, graph, db):
    from wa_portal.services import connections

    return connections.create_connection(
        clinic=clinic, provider="meta", settings=graph.meta_settings(), label="Front desk"
    )


def test_edit_page_shows_plain_settings_and_never_a_secret(admin_client, meta_conn, graph):
    html = admin_client.get(f"/settings/connections/{meta_conn.id}/edit").get_data(as_text=True)
    settings = graph.meta_settings()
    for key in ("access_token", "app_secret", "verify_token"):
        assert settings[key] not in html, key
        assert re.search(rf'<input[^>]*id="{key}"[^>]*type="password"[^>]*>', html)
        assert not re.search(rf'<input[^>]*id="{key}"[^>]*value="[^"]', html), key
    assert f'value="{settings["phone_number_id"]}"' in html and 'value="Front desk"' in html
    assert html.count("Saved: leave blank to keep it.") == 3


def test_edit_keeps_blank_secrets_replaces_typed_ones_and_rechecks(admin_client, meta_conn, graph, db):
    from wa_portal.services import connections

    before = connections.get_secrets(meta_conn)
    page = f"/settings/connections/{meta_conn.id}/edit"
    form = {**meta_conn.config, "label": "Reception", "display_phone": "+34 600 111 222"}
    resp = _post(admin_client, page, form, page=page)
    assert resp.status_code == 303
    db.session.refresh(meta_conn)
    assert connections.get_secrets(meta_conn) == before
    assert (meta_conn.label, meta_conn.display_phone) == ("Reception", "+34600111222")
    assert meta_conn.health_checked_at is not None

    graph.tokens.add("EAAG-new-token")
    resp = _post(admin_client, page, {**form, "access_token": "EAAG-new-token"}, page=page)
    assert resp.status_code == 303
    db.session.refresh(meta_conn)
    assert connections.get_secrets(meta_conn) == {**before, "access_token": "EAAG-new-token"}
    assert [e.summary for e in _audit(db, "update")] == ["settings edited", "settings edited"]

    # A required plain setting cannot be emptied.
    resp = _post(admin_client, page, {**form, "phone_number_id": ""}, page=page)
    assert resp.status_code == 422 and "Enter the phone number ID." in resp.get_data(as_text=True)


def test_another_clinics_connection_is_404_everywhere(admin_client, other_conn, db):
    base = f"/settings/connections/{other_conn.id}"
    assert admin_client.get(base + "/edit").status_code == 404
    page = "/settings/connections"
    assert (
        _post(admin_client, base + "/edit", {"display_phone": "+34910000055"}, page=page).status_code == 404
    )
    assert _post(admin_client, base + "/deactivate", {}, page=page).status_code == 404
    db.session.refresh(other_conn)
    assert other_conn.active and other_conn.display_phone == "+34910000099"


def test_deactivate_stops_its_webhooks_and_reactivate_brings_them_back(admin_client, meta_conn, graph, db):
    page = "/settings/connections"
    body = _status_only_webhook()
    headers = signature_header(body, graph.meta_settings()["app_secret"])
    html = admin_client.get(page).get_data(as_text=True)
    assert 'hx-confirm="Deactivate Front desk?' in html  # the browser asks first

    resp = _post(admin_client, f"{page}/{meta_conn.id}/deactivate", {}, page=page, follow_redirects=True)
    assert "Front desk: deactivated." in resp.get_data(as_text=True)
    db.session.refresh(meta_conn)
    assert not meta_conn.active
    assert admin_client.post("/webhooks/meta", data=body, headers=headers).status_code == 404

    # From the table, htmx swaps the row in place.
    token = csrf_token(admin_client, page)
    row = admin_client.post(
        f"{page}/{meta_conn.id}/reactivate",
        headers={"HX-Request": "true", "HX-Target": f"conn-{meta_conn.id}", "X-CSRFToken": token},
    )
    assert row.status_code == 200
    fragment = row.get_data(as_text=True)
    assert (
        fragment.lstrip().startswith(f'<tr id="conn-{meta_conn.id}"') and ">Deactivate</button>" in fragment
    )
    db.session.refresh(meta_conn)
    assert meta_conn.active and meta_conn.health_checked_at is not None
    assert admin_client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    assert sorted(e.summary for e in _audit(db, "update")) == ["deactivated", "reactivated"]


def test_sandbox_connection_end_to_end(admin_client, db):
    resp = _post(admin_client, "/settings/connections/new/sandbox", {"display_phone": "+34 910 000 002"})
    assert resp.status_code == 201
    conn = db.session.scalars(select(Connection)).one()
    assert resp.headers["Location"].endswith(f"/settings/connections/{conn.id}/edit")
    assert conn.status == ConnectionStatus.CONNECTED and conn.display_phone == "+34910000002"
    assert "/webhooks/sandbox" in resp.get_data(as_text=True)
