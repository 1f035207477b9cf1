"""The walking skeleton in real Chromium: phone → webhook → worker → inbox → reply → phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = pytest.mark.browser


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))


def test_patient_message_round_trip(live_server, page: Page, staff, sandbox_conn):
    base = live_server.url
    sign_in(page, base, staff.email)

    page.goto(base + "/sandbox/phone")
    page.get_by_label("Message from the patient").fill("Hello, I'd like an appointment")
    page.get_by_label("Message from the patient").press("Enter")
    expect(page.locator("#phone-log")).to_contain_text("Hello, I'd like an appointment")

    page.goto(base + "/inbox")
    conv = page.locator(".conv", has_text="Maria Lopez")
    expect(conv).to_be_visible(timeout=15_000)
    expect(conv).to_contain_text("Hello, I'd like an appointment")
    page.screenshot(path=str(ARTIFACTS / "inbox.png"), full_page=True)

    conv.click()
    expect(page.locator(".thread")).to_contain_text("Hello, I'd like an appointment")
    box = page.get_by_label("Reply to Maria Lopez")
    box.fill("Of course! Would Tuesday at 10:00 suit you?")
    box.press("Enter")
    reply = page.locator(".msg-out", has_text="Would Tuesday at 10:00 suit you?")
    expect(reply).to_be_visible()
    expect(box).to_have_value("")
    expect(reply.locator(".tick")).to_have_attribute(
        "data-status", re.compile("sent|delivered|read"), timeout=15_000
    )
    page.screenshot(path=str(ARTIFACTS / "conversation.png"), full_page=True)

    page.goto(base + "/sandbox/phone")
    expect(page.locator("#phone-log")).to_contain_text("Would Tuesday at 10:00 suit you?", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "sandbox-phone.png"), full_page=True)

    # The phone showed the reply, so it reports "read": the tick turns blue in the inbox.
    page.goto(base + "/inbox")
    page.locator(".conv", has_text="Maria Lopez").click()
    expect(page.locator(".msg-out .tick")).to_have_attribute("data-status", "read", timeout=15_000)
