"""Linking a WAHA number in real Chromium, end to end: the form, the QR code that loads by itself, the page
turning to "Linked" without a reload, and then WAHA's own signed webhook (the key the portal configured)
reaching the inbox through the live server and its worker. Also: a wrong key or a server that does not
answer is said in words and stores nothing; Unlink asks first.

(tests/browser/test_waha_pairing.py walks the same pages from the connections chooser.)
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from tests.browser.test_roundtrip import sign_in
from tests.conftest import ARTIFACTS
from tests.emulators.server import serve
from tests.emulators.waha import API_KEY, WahaEmulator, message_payload
from wa_portal.models import Connection

pytestmark = pytest.mark.browser

SESSION = "sunrise_desk"
PHONE = "+16505550123"


def _fill(page: Page, url: str, api_key: str = API_KEY) -> None:
    page.get_by_label("WAHA server address").fill(url)
    page.get_by_label("API key").fill(api_key)
    page.get_by_label("Session name").fill(SESSION)
    page.get_by_role("button", name="Start and show the QR code").click()


def _waha_count(db) -> int:
    db.session.expire_all()
    return db.session.scalar(
        select(func.count()).select_from(Connection).where(Connection.provider == "waha")
    )


def test_link_by_qr_then_waha_webhooks_reach_the_inbox(live_server, page: Page, clinic, make_user, db):
    admin = make_user(clinic, "admin", email="ada@sunrise.test", name="Ada")
    emu = WahaEmulator()
    with serve(emu) as waha_url:
        sign_in(page, live_server.url, admin.email)
        page.goto(live_server.url + "/settings/connections/new/waha")
        expect(page.get_by_label("Session name")).to_have_value(clinic.slug)  # the default
        expect(page.get_by_label("API key")).to_have_attribute("type", "password")
        _fill(page, waha_url)
        expect(page).to_have_url(re.compile(r"/settings/connections/\d+/waha$"))
        status = page.locator("#waha-status")
        expect(status).to_have_attribute("data-status", "STARTING")
        page.evaluate("window.__samePage = true")  # gone if the page reloads

        emu.step(SESSION)  # WAHA shows a code; the page polls and shows it by itself
        qr = page.get_by_role("img", name="QR code to link the clinic's phone")
        expect(qr).to_be_visible(timeout=10_000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=qr.element_handle())
        assert qr.get_attribute("src").startswith("/settings/connections/")  # our origin, not WAHA's
        assert API_KEY not in page.content() and waha_url not in (qr.get_attribute("src") or "")
        page.screenshot(path=str(ARTIFACTS / "connect-waha-qr.png"), full_page=True)

        emu.scan(SESSION, PHONE)  # the clinic's phone scans it
        expect(page.get_by_test_id("linked-phone")).to_have_text("+1 650-555-0123", timeout=10_000)
        expect(status).to_contain_text("Linked to")
        expect(status).not_to_have_attribute("hx-trigger", re.compile("every"))  # polling stopped
        assert page.evaluate("window.__samePage") is True

        # WAHA posts a patient's message to the webhook it was given, signed with the key it was given.
        [hook] = emu.sessions[SESSION]["config"]["webhooks"]
        assert hook["url"] == live_server.url + "/webhooks/waha"
        payload = message_payload(from_phone="+16505551234", body="Is Friday free?", me_phone=PHONE)
        assert emu.deliver(SESSION, "message", payload) == [200]
        page.goto(live_server.url + "/inbox")
        conv = page.locator(".conv", has_text="Maria Souza")
        expect(conv).to_be_visible(timeout=15_000)
        expect(conv).to_contain_text("Is Friday free?")

        # Unlink asks first; saying no changes nothing, yes logs the phone out of WAHA.
        page.goto(live_server.url + "/settings/connections")
        page.get_by_role("link", name=re.compile(r"^Session")).click()
        page.once("dialog", lambda d: d.dismiss())
        page.get_by_role("button", name="Unlink the phone").click()
        expect(status).to_have_attribute("data-status", "WORKING")
        assert emu.log.find(method="POST", path=f"/api/sessions/{SESSION}/logout") == []
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Unlink the phone").click()
        expect(status).to_have_attribute("data-status", "STARTING")
        assert emu.sessions[SESSION]["me"] is None


@pytest.mark.parametrize(
    ("case", "expected"),
    [("wrong API key", "WAHA refused the API key"), ("nothing listening", "The WAHA server did not answer")],
)
def test_a_waha_that_refuses_or_is_down_is_explained(
    live_server, page: Page, clinic, make_user, db, case, expected
):
    admin = make_user(clinic, "admin", email="ada@sunrise.test", name="Ada")
    emu = WahaEmulator()
    with serve(emu) as waha_url:
        sign_in(page, live_server.url, admin.email)
        page.goto(live_server.url + "/settings/connections/new/waha")
        if case == "wrong API key":
            _fill(page, waha_url, api_key="not-the-key")
        else:
            _fill(page, "http://127.0.0.1:9")
        expect(page.get_by_test_id("form-error")).to_contain_text(expected)
        expect(page).to_have_url(re.compile(r"/settings/connections/new/waha$"))
        expect(page.get_by_label("API key")).to_have_value("")  # a secret is not sent back
        expect(page.get_by_label("Session name")).to_have_value(SESSION)
        assert _waha_count(db) == 0 and emu.sessions == {}
