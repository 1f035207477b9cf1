"""The team inbox in real Chromium: two staff members, live updates, ticks, the 24-hour lock."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from tests.conftest import ARTIFACTS, PASSWORD
from tests.helpers import patient_message, post_signed, sandbox_ids, status_body

pytestmark = pytest.mark.browser


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=10_000)


@pytest.fixture
def two_pages(browser: Browser, live_server, staff, make_user, clinic):
    ana = make_user(clinic, "therapist", email="ana@sunrise.test", name="Ana")
    ctx_a = browser.new_context(viewport={"width": 1440, "height": 900})
    ctx_b = browser.new_context(viewport={"width": 1440, "height": 900})
    rita, other = ctx_a.new_page(), ctx_b.new_page()
    sign_in(rita, live_server.url, staff.email)
    sign_in(other, live_server.url, ana.email)
    yield rita, other
    ctx_a.close()
    ctx_b.close()


def test_two_staff_members_work_one_conversation_live(app, live_server, two_pages, sandbox_conn, db, clinic):
    from wa_portal.models import Message, MessageTemplate

    db.session.add(
        MessageTemplate(
            clinic_id=clinic.id, name="follow_up", language="en", body="Hello {{1}}, please call us."
        )
    )
    db.session.commit()
    rita, ana = two_pages
    hook = app.test_client()
    secret = sandbox_ids(sandbox_conn)[2]

    # A patient writes: the conversation appears in both browsers without a reload.
    body, _ = patient_message(sandbox_conn, "Hello, can I book a *cleaning*?")
    assert post_signed(hook, body, secret).status_code == 200
    for page in (rita, ana):
        row = page.locator(".conv", has_text="Maria Lopez")
        expect(row).to_be_visible(timeout=10_000)
        expect(row).to_contain_text("can I book")
        expect(page).to_have_title(re.compile(r"^\(1\) Inbox"))
        expect(page.locator("#awaiting-badge")).to_have_text("1")
    rita.screenshot(path=str(ARTIFACTS / "inbox-list-1440.png"))

    # Both open it; Rita takes it and Ana sees that at once.
    for page in (rita, ana):
        page.locator(".conv", has_text="Maria Lopez").click()
        expect(page.locator(".thread")).to_contain_text("can I book a cleaning?")
    rita.get_by_role("button", name="Assign to me").click()
    expect(ana.locator(".conv-header .badge")).to_contain_text("assigned · Rita", timeout=10_000)
    expect(ana.locator(".thread")).to_contain_text("Rita took this conversation.")
    expect(ana.locator(".conv", has_text="Maria Lopez")).to_have_count(0)  # no longer awaiting

    # Ana types: Rita sees it.
    ana.get_by_label("Reply to Maria Lopez").press_sequentially("Hi Mar", delay=30)
    expect(rita.locator(".typing")).to_have_text("Ana is typing…", timeout=10_000)
    ana.get_by_label("Reply to Maria Lopez").fill("")

    # Rita replies: it shows as queued at once, then the ticks follow the delivery statuses.
    box = rita.get_by_label("Reply to Maria Lopez")
    box.fill("Of course! *Tuesday* at 10:00?")
    expect(rita.locator(".wa-preview strong")).to_have_text("Tuesday")
    box.press("Enter")
    reply = rita.locator(".msg-out", has_text="Tuesday at 10:00")
    expect(reply).to_be_visible()
    expect(box).to_be_focused()
    expect(box).to_have_value("")
    expect(reply.locator(".tick")).to_have_attribute("data-status", re.compile("queued|sending|sent"))
    expect(reply.locator(".tick")).to_have_attribute("data-status", "sent", timeout=15_000)
    db.session.expire_all()
    wamid = db.session.scalar(select(Message.provider_message_id).where(Message.body.like("%Tuesday%")))
    assert wamid
    for status in ("delivered", "read"):
        assert post_signed(hook, status_body(sandbox_conn, [wamid], status), secret).status_code == 200
        for page in (rita, ana):
            tick = page.locator(".msg-out", has_text="Tuesday at 10:00").locator(".tick")
            expect(tick).to_have_attribute("data-status", status, timeout=10_000)
    rita.screenshot(path=str(ARTIFACTS / "inbox-thread-1440.png"))
    rita.locator("#composer").screenshot(path=str(ARTIFACTS / "inbox-composer-1440.png"))

    # An internal note shows for the team (yellow) and never reaches the patient.
    rita.get_by_label("Internal note").check()
    rita.get_by_label("Reply to Maria Lopez").fill("Prefers mornings")
    rita.get_by_label("Reply to Maria Lopez").press("Enter")
    expect(ana.locator(".msg-note")).to_contain_text("Prefers mornings", timeout=10_000)

    # 25 hours later the composer locks free text and offers the templates.
    with time_machine.travel(timedelta(hours=25), tick=True):
        rita.reload()
        expect(rita.get_by_label("Reply to Maria Lopez")).to_have_count(0)
        expect(rita.locator(".composer-locked")).to_contain_text("24-hour window closed")
        rita.get_by_label("Template", exact=True).select_option(label="follow_up (en)")
        field = rita.get_by_label("Value for {{1}}")
        expect(field).to_be_visible()
        field.fill("Maria")
        expect(rita.locator(".template-vars:not([hidden]) .template-preview")).to_have_text(
            "Hello Maria, please call us."
        )
        rita.locator("#composer").screenshot(path=str(ARTIFACTS / "inbox-composer-locked-1440.png"))


def test_phone_width_is_usable(live_server, page: Page, staff, sandbox_conn, app):
    hook = app.test_client()
    body, _ = patient_message(sandbox_conn, "Hi from my phone")
    post_signed(hook, body, sandbox_ids(sandbox_conn)[2])
    page.set_viewport_size({"width": 360, "height": 780})
    sign_in(page, live_server.url, staff.email)
    row = page.locator(".conv", has_text="Maria Lopez")
    expect(row).to_be_visible(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "inbox-list-360.png"))
    row.click()
    expect(page.locator(".thread")).to_contain_text("Hi from my phone")
    expect(page.locator(".list-pane")).to_be_hidden()
    expect(page.get_by_label("Reply to Maria Lopez")).to_be_visible()
    no_overflow = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert no_overflow
    page.screenshot(path=str(ARTIFACTS / "inbox-thread-360.png"), full_page=True)
    # Keyboard: the back link, the actions and the composer are reachable and labelled.
    page.get_by_label("Reply to Maria Lopez").focus()
    page.keyboard.type("Thanks!")
    page.keyboard.press("Enter")
    expect(page.locator(".msg-out", has_text="Thanks!")).to_be_visible()
