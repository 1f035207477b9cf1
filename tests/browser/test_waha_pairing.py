"""An admin links a WAHA number in real Chromium: the form, the QR code that appears by itself, and the
page turning to "Linked" once the phone scans it, without a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_roundtrip import sign_in
from tests.conftest import ARTIFACTS
from tests.emulators.server import serve
from tests.emulators.waha import API_KEY, WahaEmulator

pytestmark = pytest.mark.browser


def test_admin_links_a_waha_number_by_qr_code(live_server, page: Page, clinic, make_user, db):
    admin = make_user(clinic, "admin", email="ada@sunrise.test", name="Ada")
    emu = WahaEmulator()
    with serve(emu) as waha_url:
        sign_in(page, live_server.url, admin.email)
        page.goto(live_server.url + "/settings/connections")
        page.get_by_role("link", name="Add connection").click()
        page.get_by_role("link", name="WAHA (self-hosted)").click()
        expect(page.get_by_role("heading", name="Link a WhatsApp number (WAHA)")).to_be_visible()

        page.get_by_label("WAHA server address").fill(waha_url)
        page.get_by_label("API key").fill(API_KEY)
        page.get_by_label("Session name").fill("front_desk")
        page.get_by_role("button", name="Start and show the QR code").click()
        expect(page).to_have_url(re.compile(r"/settings/connections/\d+/waha$"))
        expect(page.locator("#waha-status")).to_have_attribute("data-status", "STARTING")

        emu.step("front_desk")  # WAHA shows a code: the page polls and shows it by itself
        qr = page.get_by_role("img", name="QR code to link the clinic's phone")
        expect(qr).to_be_visible(timeout=10_000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=qr.element_handle())
        page.screenshot(path=str(ARTIFACTS / "waha-qr.png"), full_page=True)
        assert API_KEY not in page.content()

        emu.scan("front_desk", "+34600111222")
        expect(page.get_by_test_id("linked-phone")).to_have_text("+34 600 11 12 22", timeout=10_000)
        expect(page.get_by_role("button", name="Unlink the phone")).to_be_visible()

        page.goto(live_server.url + "/settings/connections")
        row = page.locator("tr", has_text="front_desk")
        expect(row.get_by_test_id("conn-status")).to_have_text("connected")
