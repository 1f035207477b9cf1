"""The settings pages as an admin uses them: roles, tenant isolation, errors in words, saved policy
changing what delivery does, secrets never rendered, "Check now"."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tests.conftest import csrf_token
from tests.emulators.meta_graph import running_meta_graph

PAGES = ["/settings/clinic", "/settings/messaging", "/settings/connections"]

MESSAGING_FORM = {
    "phi_policy": "warn",
    "phi_terms": "",
    "fallback_1": "whatsapp",
    "fallback_2": "sms",
    "fallback_3": "email",
    "critical_timeout_minutes": "30",
    "max_attempts": "6",
    "emergency_to_opted_out": "y",
}


def _post(client, path, data, page="/settings/messaging", **kw):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, page)}, **kw)


# --- who may open them --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/settings", *PAGES])
def test_logged_out_goes_to_login(client, path):
    resp = client.get(path)
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]


@pytest.mark.parametrize("role", ["staff", "therapist"])
def test_staff_and_therapists_get_403(client, login, clinic, make_user, sandbox_conn, role):
    login(make_user(clinic, role))
    for path in ["/settings", *PAGES]:
        assert client.get(path).status_code == 403, path
    token = csrf_token(client, "/inbox")
    for path in ["/settings/clinic", "/settings/messaging", f"/settings/connections/{sandbox_conn.id}/check"]:
        assert client.post(path, data={"csrf_token": token}).status_code == 403, path
    assert 'href="/settings/clinic"' not in client.get("/inbox").get_data(as_text=True)


def test_admin_opens_every_page_from_the_nav(admin_client):
    resp = admin_client.get("/settings")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/settings/clinic")
    resp = _post(admin_client, "/settings", {})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/settings/clinic")
    for path in PAGES:
        html = admin_client.get(path).get_data(as_text=True)
        assert 'aria-label="Settings"' in html, path  # the shared settings sub-navigation
        assert f'href="{path}" aria-current="page"' in html, path
        assert '<a href="/settings/clinic" aria-current="page">Settings</a>' in html  # main nav
    appt = admin_client.get("/settings/appointments").get_data(as_text=True)
    assert 'href="/settings/messaging"' in appt
    assert 'href="/settings/appointments" aria-current="page">Appointments &amp; API keys' in appt


def test_posts_without_csrf_token_are_refused(admin_client, clinic, db):
    resp = admin_client.post("/settings/messaging", data={**MESSAGING_FORM, "phi_policy": "block"})
    assert resp.status_code == 400
    db.session.refresh(clinic)
    assert clinic.setting("phi_policy") is None


# --- clinic ---------------------------------------------------------------------------------------


def test_clinic_details_are_saved_with_a_flash(admin_client, clinic, db, admin, caplog):
    html = admin_client.get("/settings/clinic").get_data(as_text=True)
    assert 'value="Europe/Madrid"' in html and '<option selected value="ES">Spain (ES)</option>' in html
    caplog.set_level(logging.INFO, logger="wa_portal.services.clinic_settings")
    resp = _post(
        admin_client,
        "/settings/clinic",
        {"name": "Sunrise Therapy", "timezone": "America/Sao_Paulo", "locale": "pt", "country": "BR"},
        follow_redirects=True,
    )
    assert resp.status_code == 200
    assert "Clinic details saved." in resp.get_data(as_text=True)
    db.session.refresh(clinic)
    assert (clinic.name, clinic.timezone, clinic.locale, clinic.country) == (
        "Sunrise Therapy",
        "America/Sao_Paulo",
        "pt",
        "BR",
    )
    assert f"changed by user {admin.id}" in caplog.text
    assert "timezone: Europe/Madrid -> America/Sao_Paulo" in caplog.text


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"name": ""}, "Enter the clinic&#39;s name."),
        ({"timezone": "Europe/Atlantis"}, "is not a timezone this server knows"),
        ({"locale": "de"}, "Choose one of the languages offered"),
        ({"country": "ZZ"}, "is not a two-letter country code"),
    ],
)
def test_clinic_errors_are_shown_in_words_and_nothing_is_saved(admin_client, clinic, db, change, words):
    form = {"name": "Renamed", "timezone": "UTC", "locale": "en", "country": "US", **change}
    resp = _post(admin_client, "/settings/clinic", form)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert words in html
    assert "Nothing was saved" in html
    db.session.refresh(clinic)
    assert clinic.name == "Sunrise Clinic" and clinic.timezone == "Europe/Madrid"


# --- messaging ------------------------------------------------------------------------------------


def test_messaging_page_shows_the_defaults_delivery_uses(admin_client):
    html = admin_client.get("/settings/messaging").get_data(as_text=True)
    assert 'checked id="phi_policy-1" name="phi_policy" type="radio" value="warn"' in html
    assert 'name="critical_timeout_minutes" type="number" value="30"' in html
    assert 'name="max_attempts" type="number" value="6"' in html
    assert '<input checked id="emergency_to_opted_out" name="emergency_to_opted_out" type="checkbox"' in html
    for slot, channel in (("fallback_1", "whatsapp"), ("fallback_2", "sms"), ("fallback_3", "email")):
        start = html.index(f'name="{slot}"')
        assert f'<option selected value="{channel}">' in html[start : start + 400]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"phi_policy": "sometimes"}, "Choose what happens to health data: allow, warn or block."),
        ({"phi_terms": "\n".join(f"word{i}" for i in range(205))}, "At most 200 terms (there are 205"),
        ({"fallback_1": "", "fallback_2": "", "fallback_3": ""}, "Choose at least one channel."),
        ({"fallback_1": "email", "fallback_2": "email"}, "Email is chosen twice"),
        ({"critical_timeout_minutes": "2000"}, "Enter a whole number of minutes from 1 to 1440."),
        ({"max_attempts": "0"}, "Enter a whole number of attempts from 1 to 20."),
    ],
)
def test_messaging_errors_are_shown_in_words_and_nothing_is_saved(admin_client, clinic, db, change, words):
    resp = _post(admin_client, "/settings/messaging", {**MESSAGING_FORM, "phi_policy": "block", **change})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert words in html
    assert 'aria-invalid="true"' in html or "has-error" in html
    db.session.refresh(clinic)
    assert clinic.settings in ({}, None)


@pytest.fixture
def conversation(clinic, sandbox_conn, db):
    from wa_portal.models import Contact, Conversation, utcnow

    contact = Contact(clinic_id=clinic.id, phone="+34600111222", name="Ana", email="ana@example.test")
    db.session.add(contact)
    db.session.flush()
    conv = Conversation(
        clinic_id=clinic.id,
        connection_id=sandbox_conn.id,
        contact_id=contact.id,
        last_inbound_at=utcnow() - timedelta(minutes=1),
    )
    db.session.add(conv)
    db.session.commit()
    return conv


DOB_TEXT = "Hi Ana, please confirm date of birth: 14/03/1985."


def test_saved_phi_policy_changes_what_a_reply_may_say(admin_client, admin, clinic, conversation, db):
    from wa_portal.services import messaging

    # Default "warn": the author is asked to confirm.
    with pytest.raises(messaging.PhiWarning):
        messaging.queue_reply(
            clinic_id=clinic.id, conversation_id=conversation.id, body=DOB_TEXT, author_id=admin.id
        )

    resp = _post(
        admin_client, "/settings/messaging", {**MESSAGING_FORM, "phi_policy": "block"}, follow_redirects=True
    )
    assert "Messaging policy saved." in resp.get_data(as_text=True)
    db.session.expire_all()
    with pytest.raises(messaging.PhiBlocked, match="date of birth"):
        messaging.queue_reply(
            clinic_id=clinic.id,
            conversation_id=conversation.id,
            body=DOB_TEXT,
            author_id=admin.id,
            confirm_phi=True,
        )

    _post(admin_client, "/settings/messaging", {**MESSAGING_FORM, "phi_policy": "allow"})
    db.session.expire_all()
    msg = messaging.queue_reply(
        clinic_id=clinic.id, conversation_id=conversation.id, body=DOB_TEXT, author_id=admin.id
    )
    assert msg.extra["phi_confirmed"] == ["Looks like a date of birth"]


def test_saved_phi_terms_are_detected(admin_client, admin, clinic, conversation, db):
    from wa_portal.services import messaging

    text = "Your Mindful Steps session moved to Tuesday."
    assert messaging.check_phi(clinic_id=clinic.id, text=text) == []
    _post(
        admin_client,
        "/settings/messaging",
        {**MESSAGING_FORM, "phi_policy": "block", "phi_terms": " mindful steps \nMindful Steps\n"},
    )
    db.session.expire_all()
    assert clinic.setting("phi_terms") == ["mindful steps"]
    with pytest.raises(messaging.PhiBlocked, match="term your clinic marked as sensitive"):
        messaging.queue_reply(
            clinic_id=clinic.id, conversation_id=conversation.id, body=text, author_id=admin.id
        )


def test_saved_delivery_policy_is_what_delivery_reads(admin_client, clinic, conversation, db):
    from wa_portal.models import Consent, Contact, Message
    from wa_portal.services import delivery

    contact = db.session.get(Contact, conversation.contact_id)
    assert delivery.channel_chain(clinic, contact) == ["whatsapp", "sms", "email"]
    resp = _post(
        admin_client,
        "/settings/messaging",
        {
            **MESSAGING_FORM,
            "fallback_1": "sms",
            "fallback_2": "",
            "fallback_3": "",
            "critical_timeout_minutes": "90",
            "max_attempts": "2",
            "emergency_to_opted_out": "",  # an unticked checkbox is simply absent
        },
    )
    assert resp.status_code == 302
    db.session.expire_all()
    assert delivery.channel_chain(clinic, contact) == ["sms"]
    assert clinic.setting("critical_timeout_minutes") == 90
    assert clinic.setting("max_attempts") == 2
    # An emergency alert to a patient who opted out is now refused before any provider call.
    contact.consent = Consent.OPTED_OUT
    alert = Message(
        clinic_id=clinic.id, conversation_id=conversation.id, direction="out", purpose="emergency"
    )
    assert delivery.consent_refusal(alert, conversation, contact, clinic) == delivery.OPTED_OUT_REASON
    html = admin_client.get("/settings/messaging").get_data(as_text=True)
    assert (
        '<input id="emergency_to_opted_out" name="emergency_to_opted_out" type="checkbox"' in html
    )  # unticked
    assert 'name="max_attempts" type="number" value="2"' in html


def test_messaging_change_is_logged_without_the_terms(admin_client, admin, caplog):
    caplog.set_level(logging.INFO, logger="wa_portal.services.clinic_settings")
    _post(
        admin_client,
        "/settings/messaging",
        {**MESSAGING_FORM, "phi_policy": "block", "phi_terms": "zolpidem"},
    )
    assert f"changed by user {admin.id}" in caplog.text
    assert "phi_policy: warn -> block" in caplog.text
    assert "phi_terms: 0 terms -> 1 term" in caplog.text
    assert "zolpidem" not in caplog.text


def test_settings_of_another_clinic_are_untouched(admin_client, other_conn, db):
    from wa_portal.models import Clinic

    _post(admin_client, "/settings/messaging", {**MESSAGING_FORM, "phi_policy": "block"})
    other = db.session.get(Clinic, other_conn.clinic_id)
    db.session.refresh(other)
    assert other.setting("phi_policy") is None


# --- connections ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _graph():
    with running_meta_graph() as g:
        yield g


@pytest.fixture
def graph(_graph):
    _graph.reset()
    yield _graph
    _graph.reset()


@pytest.fixture
def meta_conn(clinic, graph, db):
    from wa_portal.services import connections

    return connections.create_connection(
        clinic=clinic, provider="meta", settings=graph.meta_settings(), label="Front desk WhatsApp"
    )


def test_connections_page_never_shows_a_secret(admin_client, clinic, meta_conn, graph, db):
    from wa_portal.services import connections

    d360 = connections.create_connection(
        clinic=clinic,
        provider="dialog360",
        settings={"api_key": "d360-key-very-secret", "display_phone": "+34600999888"},
        label="360",
    )
    d360_token = connections.get_secrets(d360)["webhook_token"]
    html = admin_client.get("/settings/connections").get_data(as_text=True)
    secrets = {
        **{
            k: v
            for k, v in graph.meta_settings().items()
            if k in ("access_token", "app_secret", "verify_token")
        },
        "d360_api_key": "d360-key-very-secret",
        "d360_token": d360_token,
    }
    for name, value in secrets.items():
        assert value not in html, name
    assert html.count("•••• set") == 5  # meta: token, app secret, verify token; 360dialog: key, token
    assert "Front desk WhatsApp" in html
    assert graph.meta_settings()["phone_number_id"] in html  # non-secret settings are shown
    assert meta_conn.config["display_phone"] not in html and "+34600999888" not in html  # masked
    assert "/webhooks/meta" in html
    assert "/webhooks/360dialog/••••" in html
    assert "flask --app wsgi wa add-connection" in html


def test_other_clinics_connections_are_not_listed_or_checkable(admin_client, other_conn, sandbox_conn, db):
    html = admin_client.get("/settings/connections").get_data(as_text=True)
    assert "Moonlight" not in html and "Sandbox" in html
    resp = _post(
        admin_client, f"/settings/connections/{other_conn.id}/check", {}, page="/settings/connections"
    )
    assert resp.status_code == 404
    db.session.refresh(other_conn)
    assert other_conn.health_checked_at is None


def test_check_now_swaps_the_row_with_fresh_health(admin_client, meta_conn, graph, db):
    html = admin_client.get("/settings/connections").get_data(as_text=True)
    assert "Never" in html
    token = csrf_token(admin_client, "/settings/connections")
    headers = {"HX-Request": "true", "X-CSRFToken": token}
    url = f"/settings/connections/{meta_conn.id}/check"

    graph.numbers[graph.meta_settings()["phone_number_id"]]["quality_rating"] = "YELLOW"
    resp = admin_client.post(url, headers=headers)
    assert resp.status_code == 200
    row = resp.get_data(as_text=True)
    assert row.lstrip().startswith(f'<tr id="conn-{meta_conn.id}"')
    assert "<html" not in row and "HX-Request" in resp.headers["Vary"]
    assert ">connected</span>" in row and ">yellow</span>" in row
    assert "Never" not in row

    graph.tokens.clear()  # the token was revoked at Meta
    row = admin_client.post(url, headers=headers).get_data(as_text=True)
    assert ">disconnected</span>" in row
    db.session.refresh(meta_conn)
    assert meta_conn.status_detail and meta_conn.status_detail in row.replace("&#39;", "'")
    assert graph.meta_settings()["access_token"] not in row


def test_check_now_without_htmx_redirects_with_a_flash(admin_client, sandbox_conn):
    resp = _post(
        admin_client,
        f"/settings/connections/{sandbox_conn.id}/check",
        {},
        page="/settings/connections",
        follow_redirects=True,
    )
    html = resp.get_data(as_text=True)
    assert "Sandbox: connected." in html
    assert "The simulated phone is ready" in html
