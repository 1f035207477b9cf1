"""An admin connects numbers in real Chromium: a manual form, then Meta's embedded signup with the
Facebook part faked (a stub SDK served at its real URL, the window message dispatched by the test)
and the server side against the Meta Graph emulator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect
from sqlalchemy import select

from tests.conftest import ARTIFACTS, PASSWORD
from tests.emulators.meta_graph import DEFAULT_APP_ID, DEFAULT_APP_SECRET, running_meta_graph

pytestmark = pytest.mark.browser

FINISH = (Path("/work/shared/provider-samples/meta") / "embedded_signup_message_finish.json").read_text()
SDK_URL = "https://connect.facebook.net/en_US/sdk.js"
# Stands in for Facebook's SDK: FB.login keeps its callback and options for the test to drive.
FAKE_SDK = """
window.FB = {
  init: function (opts) { window.__fbInit = opts; },
  login: function (cb, opts) {
    window.__fbLogin = cb;
    sessionStorage.setItem("fbLoginOptions", JSON.stringify(opts));
  },
};
window.fbAsyncInit();
"""


@pytest.fixture
def graph(app, monkeypatch):
    with running_meta_graph() as g:
        monkeypatch.setitem(app.config, "META_APP_ID", DEFAULT_APP_ID)
        monkeypatch.setitem(app.config, "META_APP_SECRET", DEFAULT_APP_SECRET)
        monkeypatch.setitem(app.config, "META_CONFIG_ID", "cfg-777")
        monkeypatch.setitem(app.config, "META_GRAPH_BASE_URL", g.graph_url)
        yield g


def _sign_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))


def _message(page: Page, data: str, origin: str) -> None:
    page.evaluate(
        "([data, origin]) => window.dispatchEvent(new MessageEvent('message', {data, origin}))",
        [data, origin],
    )


def test_admin_connects_a_sandbox_number_then_meta_with_facebook(
    live_server, page: Page, clinic, make_user, db, graph
):
    from wa_portal.models import Connection
    from wa_portal.services import connections

    admin = make_user(clinic, "admin", email="ada@sunrise.test", name="Ada")
    base = live_server.url
    _sign_in(page, base, admin.email)

    # 1. The chooser, then a manual form: an error in words first, then the result page.
    page.goto(base + "/settings/connections")
    page.get_by_role("link", name="Add connection").click()
    expect(page.get_by_role("heading", name="Add a connection")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "connect-choose.png"), full_page=True)
    expect(page.get_by_role("link", name="WAHA (self-hosted)")).to_have_attribute(
        "href", "/settings/connections/new/waha"
    )
    page.get_by_role("link", name="Sandbox phone").click()
    page.get_by_label("Phone number shown to staff").fill("not a phone")
    page.get_by_role("button", name="Connect and check").click()
    expect(page.locator("#display_phone-error")).to_contain_text("Include the country code")
    page.get_by_label("Phone number shown to staff").fill("+34 910 000 002")
    page.get_by_role("button", name="Connect and check").click()
    expect(page.get_by_role("heading", name="Sandbox phone (simulated) is connected")).to_be_visible()
    expect(page.get_by_test_id("webhook-url")).to_have_text(base + "/webhooks/sandbox")

    # 2. Meta: the page renders (manual form included) even though facebook.com is out of reach.
    page.route("https://connect.facebook.net/**", lambda route: route.abort())
    page.goto(base + "/settings/connections/new/meta")
    expect(page.get_by_text("Facebook could not be reached from this browser")).to_be_visible()
    expect(page.get_by_role("button", name="Connect with Facebook")).to_be_disabled()
    page.get_by_text("Or enter the details by hand").click()
    expect(page.get_by_label("Access token")).to_be_visible()
    page.unroute("https://connect.facebook.net/**")

    # 3. With the (fake) SDK: the PIN is asked first, a CANCEL is explained, a stranger's message ignored.
    def fake_sdk(route: Route) -> None:
        route.fulfill(status=200, content_type="text/javascript", body=FAKE_SDK)

    page.route(SDK_URL, fake_sdk)
    page.goto(base + "/settings/connections/new/meta")
    button = page.get_by_role("button", name="Connect with Facebook")
    expect(button).to_be_enabled()
    assert page.evaluate("window.__fbInit") == {
        "appId": DEFAULT_APP_ID,
        "autoLogAppEvents": True,
        "xfbml": False,
        "version": "v23.0",
    }
    status = page.locator("[data-signup-status]")
    page.screenshot(path=str(ARTIFACTS / "connect-meta-page.png"), full_page=True)
    button.click()
    expect(status).to_have_text("Enter the 6-digit two-step verification PIN first.")

    page.get_by_label("Two-step verification PIN of the number").fill("147258")
    page.get_by_label("Name shown to staff (optional)").first.fill("Reception WhatsApp")
    button.click()
    expect(status).to_have_text("Continue in the Facebook window…")
    cancel = json.dumps(
        {"type": "WA_EMBEDDED_SIGNUP", "event": "CANCEL", "data": {"current_step": "PHONE_NUMBER_SETUP"}}
    )
    _message(page, cancel, "https://www.facebook.com")
    expect(status).to_contain_text("The Facebook window was closed before the end (at “PHONE_NUMBER_SETUP”)")
    page.evaluate("window.__fbLogin({authResponse: null, status: 'unknown'})")
    expect(status).to_contain_text("closed before the end")  # the CANCEL explanation stays

    graph.add_oauth_code("browser-code-1")
    button.click()
    _message(page, FINISH, "https://facebook.com.attacker.example")  # not Facebook: ignored
    page.evaluate("window.__fbLogin({authResponse: {code: 'browser-code-1'}, status: 'connected'})")
    expect(status).to_have_text("Facebook signed you in; waiting for the number you chose…")
    assert db.session.scalars(select(Connection).where(Connection.provider == "meta")).first() is None

    _message(page, FINISH, "https://www.facebook.com")
    expect(page.get_by_role("heading", name="Reception WhatsApp is connected")).to_be_visible()
    expect(page.get_by_test_id("conn-status")).to_contain_text("connected")
    page.screenshot(path=str(ARTIFACTS / "connect-meta-signup.png"), full_page=True)

    options = json.loads(page.evaluate("sessionStorage.getItem('fbLoginOptions')"))
    assert options == {
        "config_id": "cfg-777",
        "response_type": "code",
        "override_default_response_type": True,
        "extras": {"setup": {}, "sessionInfoVersion": "3"},
    }
    db.session.expire_all()
    conn = db.session.scalars(select(Connection).where(Connection.provider == "meta")).one()
    assert conn.clinic_id == clinic.id and conn.config["phone_number_id"] == "106540352242922"
    assert connections.get_secrets(conn)["app_secret"] == DEFAULT_APP_SECRET
    assert graph.requests("register")[0]["json"]["pin"] == "147258"

    # 4. The connections page lists both; deactivating asks first and swaps the row.
    page.get_by_role("link", name="Done: back to connections").click()
    row = page.locator(f"#conn-{conn.id}")
    expect(row.get_by_test_id("conn-status")).to_have_text("connected")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Deactivate").click()
    expect(row.get_by_test_id("conn-status")).to_have_text("inactive")
    expect(row.get_by_role("button", name="Reactivate")).to_be_visible()
    db.session.expire_all()
    assert db.session.get(Connection, conn.id).active is False
