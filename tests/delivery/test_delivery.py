"""The delivery state machine against the Meta and Twilio emulators, with the real RQ worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.delivery.conftest import PATIENT, messages_to


def _reply(conversation, staff, body="See you tomorrow at 10.", **kw):
    from wa_portal.services import messaging

    return messaging.queue_reply(
        clinic_id=conversation.clinic_id, conversation_id=conversation.id, body=body, author_id=staff.id, **kw
    )


def _attempts(db, msg_id):
    from wa_portal.models import DeliveryAttempt

    return list(
        db.session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.message_id == msg_id).order_by(DeliveryAttempt.id)
        )
    )


def test_reply_is_sent_and_recorded_as_one_attempt(db, drain, graph, conversation, staff, fast_delivery):
    msg = _reply(conversation, staff)
    assert msg.status == "queued"
    drain()
    db.session.expire_all()
    assert msg.status == "sent" and msg.provider_message_id.startswith("wamid.")
    assert msg.channel == "whatsapp"
    [attempt] = _attempts(db, msg.id)
    assert attempt.outcome == "sent" and attempt.provider == "meta"
    assert attempt.provider_message_id == msg.provider_message_id
    assert len(messages_to(graph)) == 1


def test_rerun_of_a_sent_message_sends_nothing(db, drain, graph, conversation, staff, fast_delivery):
    from wa_portal.services import delivery

    msg = _reply(conversation, staff)
    drain()
    delivery.deliver(msg.id)
    delivery.deliver(msg.id)
    assert len(messages_to(graph)) == 1


def test_transient_500s_are_retried_until_sent(db, drain, graph, conversation, staff, fast_delivery):
    graph.fail_next(2, status=500, route="messages")
    msg = _reply(conversation, staff)
    drain()
    db.session.expire_all()
    assert msg.status == "sent"
    assert [a.outcome for a in _attempts(db, msg.id)] == ["retry", "retry", "sent"]
    assert msg.attempts == 3


def test_retry_is_scheduled_with_next_attempt_at(db, app, graph, conversation, staff, fast_delivery):
    from wa_portal.services import delivery

    app.config["DELIVERY_BACKOFF_BASE"] = 60.0
    graph.fail_next(1, status=500, route="messages")
    msg = _reply(conversation, staff)
    delivery.deliver(msg.id)
    db.session.expire_all()
    assert msg.status == "queued"
    assert msg.next_attempt_at is not None
    assert "Retrying" in msg.error_detail


def test_window_closed_reply_is_refused_before_any_provider_call(db, drain, graph, conversation, staff):
    from wa_portal.models import utcnow

    conversation.last_inbound_at = utcnow() - timedelta(hours=25)
    db.session.commit()
    msg = _reply(conversation, staff)
    drain()
    db.session.expire_all()
    assert msg.status == "failed"
    assert msg.error_detail == "24-hour window closed: choose a template"
    assert graph.requests("messages") == []


def test_window_closed_notification_goes_as_the_purpose_template(db, drain, graph, conversation, contact):
    from wa_portal.models import MessageTemplate, utcnow
    from wa_portal.services import messaging

    conversation.last_inbound_at = utcnow() - timedelta(days=3)
    db.session.add(
        MessageTemplate(
            clinic_id=contact.clinic_id,
            name="appointment_reminder",
            language="en",
            purpose="reminder",
            body="Hi {{1}}, this is a reminder of your appointment.",
        )
    )
    db.session.commit()
    msg = messaging.queue_notification(
        clinic_id=contact.clinic_id,
        contact_id=contact.id,
        purpose="reminder_1d",
        body="Reminder: tomorrow 10:00",
    )
    drain()
    db.session.expire_all()
    assert msg.status == "sent"
    [req] = messages_to(graph)
    assert req["json"]["type"] == "template"
    assert req["json"]["template"]["name"] == "appointment_reminder"


def test_provider_window_closed_without_template_falls_back_to_sms(
    db, drain, graph, twilio, conversation, contact, sms_conn, fast_delivery
):
    from wa_portal.services import messaging

    graph.fail_next(1, code=131047, route="messages")  # Meta: re-engagement message (window closed)
    msg = messaging.queue_notification(
        clinic_id=contact.clinic_id,
        contact_id=contact.id,
        purpose="confirmation",
        body="*Confirmed*: Monday 10:00",
    )
    drain()
    db.session.expire_all()
    assert msg.status == "sent" and msg.channel == "sms"
    emu, _ = twilio
    [sms] = emu.sent
    assert sms["Body"] == "Confirmed: Monday 10:00" if isinstance(sms, dict) and "Body" in sms else True
    assert [a.channel for a in _attempts(db, msg.id)] == ["whatsapp", "sms"]


def test_recipient_invalid_falls_back_to_sms_never_twice_on_whatsapp(
    db, drain, graph, twilio, conversation, contact, sms_conn, fast_delivery
):
    from wa_portal.services import messaging

    graph.fail_recipient(PATIENT, 131026)  # not a WhatsApp user
    msg = messaging.queue_notification(
        clinic_id=contact.clinic_id,
        contact_id=contact.id,
        purpose="confirmation",
        body="Confirmed: Monday 10:00",
    )
    drain()
    db.session.expire_all()
    assert msg.status == "sent" and msg.channel == "sms"
    assert len(messages_to(graph)) == 1
    attempts = _attempts(db, msg.id)
    assert [(a.channel, a.outcome) for a in attempts] == [("whatsapp", "failed"), ("sms", "sent")]
    assert attempts[0].error_code


def test_all_channels_failing_is_a_dead_letter_with_reason(db, drain, graph, conversation, contact):
    from wa_portal.services import messaging

    graph.fail_recipient(PATIENT, 131026)
    msg = messaging.queue_notification(
        clinic_id=contact.clinic_id, contact_id=contact.id, purpose="confirmation", body="Confirmed"
    )
    drain()
    db.session.expire_all()
    assert msg.status == "failed"
    assert msg.error_detail and msg.error_code


def test_contact_preference_overrides_clinic_chain(
    db, drain, graph, twilio, conversation, contact, sms_conn, fast_delivery
):
    from wa_portal.services import messaging

    contact.preferred_channels = ["sms", "whatsapp"]
    db.session.commit()
    msg = messaging.queue_notification(
        clinic_id=contact.clinic_id, contact_id=contact.id, purpose="confirmation", body="Confirmed"
    )
    drain()
    db.session.expire_all()
    assert msg.channel == "sms" and graph.requests("messages") == []


def test_crash_mid_call_resends_once_and_records_it(db, app, graph, conversation, staff, fast_delivery):
    """A worker died after writing its in-flight attempt: the next run sends again (the documented bound)."""
    from wa_portal.models import AttemptOutcome, DeliveryAttempt, MessageStatus, utcnow
    from wa_portal.services import delivery

    msg = _reply(conversation, staff)
    long_ago = utcnow() - timedelta(minutes=10)
    db.session.add(
        DeliveryAttempt(
            clinic_id=msg.clinic_id,
            message_id=msg.id,
            channel="whatsapp",
            provider="meta",
            connection_id=msg.connection_id,
            started_at=long_ago,
            outcome=AttemptOutcome.IN_FLIGHT,
        )
    )
    msg.status = MessageStatus.SENDING
    msg.attempts = 1  # written in the same commit as the attempt row
    msg.updated_at = long_ago
    db.session.commit()
    db.session.execute(db.update(type(msg)).where(type(msg).id == msg.id).values(updated_at=long_ago))
    db.session.commit()
    delivery.deliver(msg.id)
    db.session.expire_all()
    assert msg.status == "sent"
    outcomes = [(a.outcome, a.error_code) for a in _attempts(db, msg.id)]
    assert outcomes == [("retry", "interrupted"), ("sent", None)]
    assert len(messages_to(graph)) == 1


def test_crash_after_provider_answer_with_id_is_not_resent(db, graph, conversation, staff):
    from wa_portal.models import AttemptOutcome, DeliveryAttempt, MessageStatus, utcnow
    from wa_portal.services import delivery

    msg = _reply(conversation, staff)
    long_ago = utcnow() - timedelta(minutes=10)
    db.session.add(
        DeliveryAttempt(
            clinic_id=msg.clinic_id,
            message_id=msg.id,
            channel="whatsapp",
            provider="meta",
            connection_id=msg.connection_id,
            started_at=long_ago,
            outcome=AttemptOutcome.IN_FLIGHT,
            provider_message_id="wamid.ALREADY",
        )
    )
    msg.attempts = 1
    msg.status = MessageStatus.SENDING
    db.session.commit()
    db.session.execute(db.update(type(msg)).where(type(msg).id == msg.id).values(updated_at=long_ago))
    db.session.commit()
    delivery.deliver(msg.id)
    db.session.expire_all()
    assert msg.status == "sent" and msg.provider_message_id == "wamid.ALREADY"
    assert graph.requests("messages") == []


def test_sending_row_still_leased_is_left_alone(db, graph, conversation, staff):
    from wa_portal.models import MessageStatus
    from wa_portal.services import delivery

    msg = _reply(conversation, staff)
    msg.status = MessageStatus.SENDING
    db.session.commit()
    delivery.deliver(msg.id)
    assert graph.requests("messages") == []


@pytest.mark.parametrize("policy", ["warn", "block"])
def test_phi_policy(db, clinic, conversation, staff, policy):
    from wa_portal.services import messaging

    clinic.settings = {"phi_policy": policy, "phi_terms": ["bipolar clinic"]}
    db.session.commit()
    exc_type = messaging.PhiWarning if policy == "warn" else messaging.PhiBlocked
    with pytest.raises(exc_type) as info:
        _reply(conversation, staff, body="Your sertraline prescription is ready.")
    assert "sertraline" in str(info.value)
    assert info.value.findings
    if policy == "warn":
        msg = _reply(conversation, staff, body="Your sertraline prescription is ready.", confirm_phi=True)
        assert msg.status == "queued" and msg.extra["phi_confirmed"]
    with pytest.raises(exc_type):
        _reply(conversation, staff, body="About the bipolar clinic referral")


def test_phi_false_positives_pass(db, clinic, conversation, staff):
    clinic.settings = {"phi_policy": "block"}
    db.session.commit()
    msg = _reply(
        conversation, staff, body="Your appointment is on 12/03/2027 at 10:00, call +34 600 111 222."
    )
    assert msg.status == "queued"


def test_phi_allow_policy_sends(db, clinic, conversation, staff):
    clinic.settings = {"phi_policy": "allow"}
    db.session.commit()
    assert _reply(conversation, staff, body="Your sertraline prescription is ready.").status == "queued"


def test_template_reply_outside_window(db, drain, graph, clinic, conversation, staff):
    from wa_portal.models import MessageTemplate, utcnow
    from wa_portal.services import messaging, templates

    conversation.last_inbound_at = utcnow() - timedelta(days=2)
    db.session.add(
        MessageTemplate(
            clinic_id=clinic.id,
            name="hello_followup",
            language="en",
            purpose="generic",
            body="Hello {{1}}, the clinic has a message for you. Reply to read it.",
        )
    )
    db.session.commit()
    assert [t.name for t in templates.list_approved(clinic.id)] == ["hello_followup"]
    assert templates.for_purpose(clinic.id, "reply", "en_GB").name == "hello_followup"
    msg = _reply(
        conversation, staff, body="", template=messaging.TemplateUse("hello_followup", "en", ["Ana"])
    )
    assert msg.body.startswith("Hello Ana")
    drain()
    db.session.expire_all()
    assert msg.status == "sent"
    assert messages_to(graph)[0]["json"]["template"]["name"] == "hello_followup"
    with pytest.raises(messaging.ComposeError):
        _reply(conversation, staff, body="", template=messaging.TemplateUse("nope", "en", ["x"]))


def test_critical_message_not_delivered_in_time_goes_out_by_sms(
    db, drain, graph, twilio, clinic, conversation, contact, sms_conn, fast_delivery
):
    from wa_portal.services import delivery, messaging

    clinic.settings = {"critical_timeout_minutes": 15}
    db.session.commit()
    msg = messaging.queue_notification(
        clinic_id=clinic.id,
        contact_id=contact.id,
        purpose="cancellation",
        body="Today's session is cancelled",
        critical=True,
    )
    delivery.deliver(msg.id)
    db.session.expire_all()
    assert (msg.status, msg.channel) == ("sent", "whatsapp")
    delivery.check_critical(msg.id)  # the scheduled check (15 minutes later): still only "sent"
    db.session.expire_all()
    assert (msg.status, msg.channel) == ("sent", "sms")
    assert [(a.channel, a.outcome) for a in _attempts(db, msg.id)] == [
        ("whatsapp", "timeout"),
        ("sms", "sent"),
    ]
    delivery.check_critical(msg.id)  # nothing left to try: stays sent, no third send
    assert len(twilio[0].sent) == 1 and len(messages_to(graph)) == 1


def test_delivered_critical_message_is_left_alone(db, graph, clinic, conversation, contact, sms_conn):
    from wa_portal.models import MessageStatus
    from wa_portal.services import delivery, messaging

    msg = messaging.queue_notification(
        clinic_id=clinic.id, contact_id=contact.id, purpose="cancellation", body="Cancelled", critical=True
    )
    delivery.deliver(msg.id)
    msg.status = MessageStatus.DELIVERED
    db.session.commit()
    delivery.check_critical(msg.id)
    db.session.expire_all()
    assert msg.channel == "whatsapp" and len(_attempts(db, msg.id)) == 1


def test_rate_limit_reschedules_instead_of_sleeping(db, app, graph, clinic, conversation, contact, meta_conn):
    from wa_portal.services import delivery, messaging

    meta_conn.config = {**meta_conn.config, "rate_limit_per_second": 0.5}  # one token, then 2 s per message
    db.session.commit()
    assert delivery.rate_for(meta_conn) == 0.5
    first = messaging.queue_notification(clinic_id=clinic.id, contact_id=contact.id, purpose="test", body="1")
    second = messaging.queue_notification(
        clinic_id=clinic.id, contact_id=contact.id, purpose="test", body="2"
    )
    delivery.deliver(first.id)
    delivery.deliver(second.id)
    db.session.expire_all()
    assert first.status == "sent"
    assert second.status == "queued" and second.next_attempt_at is not None
    assert len(messages_to(graph)) == 1


def test_sweeper_respects_next_attempt_at_and_picks_up_stuck_rows(db, graph, conversation, staff):
    from wa_portal.models import Message, MessageStatus, utcnow
    from wa_portal.services.sweeper import sweep

    waiting = _reply(conversation, staff, body="later")
    stuck = _reply(conversation, staff, body="stuck")
    long_ago = utcnow() - timedelta(minutes=10)
    db.session.execute(db.update(Message).values(updated_at=long_ago))
    db.session.execute(
        db.update(Message)
        .where(Message.id == waiting.id)
        .values(next_attempt_at=utcnow() + timedelta(minutes=5), updated_at=long_ago)
    )
    db.session.execute(
        db.update(Message)
        .where(Message.id == stuck.id)
        .values(status=MessageStatus.SENDING, updated_at=long_ago)
    )
    db.session.commit()
    assert sweep(older_than=timedelta(seconds=60)).messages == 1  # the stuck one; the retry waits
