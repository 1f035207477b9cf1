"""Amazon SES end to end: a reply to a patient who prefers email, through moto_server, then SES's
feedback through SNS (a local stand-in that signs as SNS does): the subscription handshake, a delivery
tick, a bounce that turns the email into a failed delivery with its reason, and a spam complaint that
stops email to that patient.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import SignedIn, unescaped
from tests.emulators.moto import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, sent_emails, verify_email
from tests.emulators.sns import SnsEmulator, bounce, complaint, delivery, sns_server
from tests.helpers import patient_message, post_signed, sandbox_ids

PATIENT = "+34612345678"
PATIENT_EMAIL = "maria.lopez@example.org"
CLINIC_EMAIL = "reception@sunrise-clinic.example"


@pytest.fixture(scope="module")
def _sns():
    with sns_server() as emu:
        yield emu


@pytest.fixture
def sns_emu(_sns: SnsEmulator) -> SnsEmulator:
    from wa_portal.providers import sns

    sns.forget_certificates()
    _sns.confirmed.clear()
    return _sns


def test_ses_reply_by_email_end_to_end(portal, moto, sns_emu, make_user):
    verify_email(moto, CLINIC_EMAIL)  # like the SES sandbox, moto refuses unverified senders
    ses, url = portal.add_connection(
        "ses",
        from_email=CLINIC_EMAIL,
        region=REGION,
        endpoint_url=moto,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    token = re.fullmatch(r"https?://[^/]+/webhooks/ses/([0-9a-f]{48})", url)
    assert token, url  # the SNS subscription endpoint, with the connection's secret token
    assert ses.display_phone == CLINIC_EMAIL

    # The patient wrote on the clinic's WhatsApp (the simulated phone) and asked to be answered by email.
    phone, _ = portal.add_connection("sandbox", display_phone="+34910000001")
    body, _ = patient_message(phone, "Please answer me by email.", phone=PATIENT)
    assert post_signed(portal.app.test_client(), body, sandbox_ids(phone)[2]).status_code == 200
    portal.drain()
    conv = portal.conversation(phone, PATIENT)
    conv.contact.email = PATIENT_EMAIL
    conv.contact.preferred_channels = ["email"]
    portal.db.session.commit()

    text = "Your appointment moved to Friday at 10:00."
    msg = portal.reply(conv, text)
    portal.drain()
    [email] = sent_emails(moto)
    assert email["source"] == CLINIC_EMAIL
    assert email["destinations"]["ToAddresses"] == [PATIENT_EMAIL]
    assert email["subject"] == f"A message from {portal.clinic.name}"
    assert text in email["body"]
    portal.db.session.refresh(msg)
    assert (msg.status, msg.channel, msg.provider_message_id) == ("sent", "email", email["id"])
    page = unescaped(portal.assert_tick(conv, msg, "sent"))
    assert "EMAIL" in page  # the thread marks a reply that left by another channel

    # --- SES feedback through SNS, at the URL the CLI printed -------------------------------------
    def feed(data: dict) -> int:
        resp = portal.webhook(url, SnsEmulator.body(data), SnsEmulator.headers(data))
        portal.drain()
        return resp.status_code

    # Subscribing the URL to the topic: SNS asks to confirm; the worker follows the link once.
    confirm = sns_emu.envelope("", type_="SubscriptionConfirmation")
    assert feed(confirm) == 200
    assert sns_emu.confirmed == [{"topic_arn": confirm["TopicArn"], "token": confirm["Token"]}]
    portal.db.session.refresh(ses)
    assert ses.status_detail == "Email feedback: bounces and complaints arrive from clinic-email-feedback."

    # A forged notification (signed by another key) is refused and changes nothing.
    from cryptography.hazmat.primitives.asymmetric import rsa

    forged = sns_emu.envelope(
        bounce(email["id"], source=CLINIC_EMAIL, to=PATIENT_EMAIL),
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    assert feed(forged) == 401
    portal.assert_tick(conv, msg, "sent")

    # Delivered: the tick moves on.
    assert feed(sns_emu.envelope(delivery(email["id"], source=CLINIC_EMAIL, to=PATIENT_EMAIL))) == 200
    portal.assert_tick(conv, msg, "delivered")

    # A second email bounces: it becomes a failed delivery with the reason in words, on the thread and
    # on the Failed deliveries page, where a person can retry it.
    second = portal.reply(conv, "Please bring your insurance card.")
    portal.drain()
    portal.db.session.refresh(second)
    bounced = sns_emu.envelope(
        bounce(second.provider_message_id, source=CLINIC_EMAIL, to=PATIENT_EMAIL, sub_type="NoEmail")
    )
    assert feed(bounced) == 200
    stored = portal.stored()[0]
    assert feed(bounced) == 200  # SNS redelivers: acknowledged, stored once
    assert portal.stored()[0] == stored
    portal.db.session.refresh(second)
    assert (second.status, second.error_code) == ("failed", "bounce:Permanent:NoEmail")
    reason = "The email bounced: the address does not exist. (smtp; 550 5.1.1 user unknown)"
    assert second.error_detail == reason
    assert reason in unescaped(portal.assert_tick(conv, second, "failed"))
    failed_page = unescaped(portal.staff.get("/deliveries/failed").get_data(as_text=True))
    assert reason in failed_page

    # The patient marks the first email as spam: email is no longer used for them, and the trail says so.
    assert feed(sns_emu.envelope(complaint(email["id"], source=CLINIC_EMAIL, to=PATIENT_EMAIL))) == 200
    portal.db.session.refresh(conv.contact)
    assert "email" not in conv.contact.preferred_channels
    admin = SignedIn(portal.app.test_client(), make_user(portal.clinic, "admin"))
    trail = unescaped(admin.get("/settings/audit").get_data(as_text=True))
    assert "as spam in their mailbox" in trail
