"""Failed deliveries in real Chromium: the reason is on screen (not only in the HTML); Retry sends again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_roundtrip import sign_in
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.browser

REASON = "This number is not on WhatsApp and the clinic has no SMS sender set up."


def test_staff_see_why_a_message_failed_and_retry_it(live_server, page: Page, staff, sandbox_conn, db):
    from wa_portal.models import Contact, Conversation, Message, utcnow

    now = utcnow()
    contact = Contact(clinic_id=staff.clinic_id, phone="+34611223344", name="Ana Souza")
    db.session.add(contact)
    db.session.flush()
    conv = Conversation(
        clinic_id=staff.clinic_id,
        connection_id=sandbox_conn.id,
        contact_id=contact.id,
        last_inbound_at=now - timedelta(minutes=5),
    )
    db.session.add(conv)
    db.session.flush()
    msg = Message(
        clinic_id=staff.clinic_id,
        conversation_id=conv.id,
        connection_id=sandbox_conn.id,
        direction="out",
        author_type="staff",
        author_id=staff.id,
        kind="text",
        body="Here is the invoice you asked for.",
        status="failed",
        error_code="131026",
        error_detail=REASON,
        failed_at=now,
        created_at=now - timedelta(minutes=1),
    )
    db.session.add(msg)
    db.session.commit()

    sign_in(page, live_server.url, staff.email)
    page.goto(live_server.url + "/deliveries/failed")
    item = page.locator(f"#failed-{msg.id}")
    expect(item.get_by_text(REASON)).to_be_visible()
    expect(item).not_to_contain_text("+34611223344")  # the number is masked
    page.screenshot(path=str(ARTIFACTS / "failed-deliveries.png"), full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    item.get_by_role("button", name="Retry").click()
    expect(page.locator(".flash")).to_contain_text("Sending again")
    # The worker sends it through the simulated phone: it leaves the list of failures.
    expect(page.locator(f"#failed-{msg.id}")).to_have_count(0)

    def sent() -> str:
        db.session.expire_all()
        return db.session.get(Message, msg.id).status

    for _ in range(50):
        if sent() in ("sent", "delivered", "read"):
            break
        page.wait_for_timeout(200)
    assert sent() in ("sent", "delivered", "read")
