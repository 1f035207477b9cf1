"""Amazon SES end to end (outbound email only): a reply to a patient who prefers email, through moto_server.

SES has no inbound messages here and reports bounces through SNS, which the portal does not take yet:
the connection has no webhook URL, and an email ends at "sent" with SES's MessageId.
"""

from __future__ import annotations

from tests.e2e.conftest import unescaped
from tests.emulators.moto import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, sent_emails, verify_email
from tests.helpers import patient_message, post_signed, sandbox_ids

PATIENT = "+34612345678"
PATIENT_EMAIL = "maria.lopez@example.org"
CLINIC_EMAIL = "reception@sunrise-clinic.example"


def test_ses_reply_by_email_end_to_end(portal, moto):
    verify_email(moto, CLINIC_EMAIL)  # like the SES sandbox, moto refuses unverified senders
    ses, url = portal.add_connection(
        "ses",
        from_email=CLINIC_EMAIL,
        region=REGION,
        endpoint_url=moto,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    assert url == "(outbound only: no webhook)"
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
