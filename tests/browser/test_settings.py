"""An admin changes the clinic's PHI policy in real Chromium and sees it saved."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = pytest.mark.browser


def test_admin_blocks_health_data_from_the_settings_page(
    live_server, page: Page, clinic, make_user, db, sandbox_conn
):
    admin = make_user(clinic, "admin", email="ada@sunrise.test", name="Ada")
    base = live_server.url
    page.goto(base + "/login")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(r"/settings/clinic$"))
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Messaging").click()
    expect(page.get_by_role("heading", name="Messaging")).to_be_visible()
    expect(page.get_by_label("Warn")).to_be_checked()  # the default the delivery code uses

    page.get_by_label("Block").check()
    page.get_by_label("Extra sensitive words").fill("Mindful Steps\nmindful steps\n")
    page.get_by_role("button", name="Save messaging policy").click()

    expect(page.locator(".flash")).to_contain_text("Messaging policy saved.")
    expect(page.get_by_label("Block")).to_be_checked()
    expect(page.get_by_label("Extra sensitive words")).to_have_value("Mindful Steps")
    page.screenshot(path=str(ARTIFACTS / "settings-messaging.png"), full_page=True)

    # An invalid value is refused in words and the saved policy stays.
    page.get_by_label("Attempts per channel").fill("50")
    page.get_by_role("button", name="Save messaging policy").click()
    expect(page.locator("#max_attempts-error")).to_have_text("Enter a whole number of attempts from 1 to 20.")

    # Connections: "Check now" swaps the row in place (htmx under the CSP, CSRF from <body>).
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Connections").click()
    row = page.locator(f"#conn-{sandbox_conn.id}")
    expect(row.get_by_test_id("conn-health")).to_have_text("Never")
    row.get_by_role("button", name="Check now").click()
    expect(row.get_by_test_id("conn-health")).to_contain_text("The simulated phone is ready")
    expect(page.locator(".flash")).to_have_count(0)  # swapped by htmx, not a full reload with a flash
    expect(page.get_by_text("•••• set")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "settings-connections.png"), full_page=True)

    db.session.expire_all()
    db.session.refresh(clinic)
    assert clinic.setting("phi_policy") == "block"
    assert clinic.setting("phi_terms") == ["Mindful Steps"]
    assert clinic.setting("max_attempts") == 6
