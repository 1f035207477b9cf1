"""Sending broadcasts on the real stack: PostgreSQL, a real RQ worker, the sandbox phone, the Twilio
emulator and moto's SES. What patients received is counted at the providers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.broadcasts.conftest import received

EMERGENCY = "The clinic is closed tomorrow because of a flood; your appointment will be moved."


def _send(clinic, staff, audience, body=EMERGENCY, kind="emergency", **kw):
    from wa_portal.services import broadcasts

    return broadcasts.send(
        clinic_id=clinic.id, user_id=staff.id, kind=kind, audience=audience, body=body, **kw
    ).broadcast


def _appointments_on(day):
    return {"type": "appointments_on", "date": day.isoformat()}


def _expected_received(day_of_appointments, skip=()):
    return {
        p.contact.phone: [channel]
        for name, p in day_of_appointments.patients.items()
        if (channel := day_of_appointments.expected[name]) and name not in skip
    }


def test_emergency_for_tomorrow_reaches_each_reachable_patient_exactly_once(
    app, db, clinic, staff, day_of_appointments, channels, twilio, moto, run_worker
):
    from wa_portal.models import BroadcastStatus, Message
    from wa_portal.services import broadcasts

    audience = _appointments_on(day_of_appointments.day)
    pv = broadcasts.preview(clinic_id=clinic.id, audience=audience, kind="emergency")
    assert pv.by_channel == {"whatsapp": 3, "sms": 1, "email": 1}
    assert (pv.total, pv.no_route, pv.opted_out_included, pv.opted_out_skipped) == (5, 1, 1, 0)
    assert pv.sentence() == "Send to 5 patients: 3 by WhatsApp, 1 by SMS, 1 by email"

    b = _send(clinic, staff, audience)
    assert b.recipients_count == 5
    # Scheduled jobs are left alone: the critical-timeout check would (rightly) resend on SMS.
    run_worker(include_scheduled=False)

    assert received(channels, twilio, moto) == _expected_received(day_of_appointments)
    db.session.expire_all()
    msgs = list(db.session.scalars(select(Message).where(Message.broadcast_id == b.id)))
    assert {(m.purpose, m.critical, m.extra["broadcast_id"], m.status) for m in msgs} == {
        ("emergency", True, b.id, "sent")
    }
    # The preview said which channel each patient gets first; that is what delivery used.
    assert sorted(m.channel for m in msgs) == sorted(c for c, n in pv.by_channel.items() for _ in range(n))
    b, progress = broadcasts.progress(clinic_id=clinic.id, broadcast_id=b.id)
    assert b.status == BroadcastStatus.DONE
    assert (progress.sent, progress.pending, progress.failed) == (5, 0, 0)
    # WhatsApp outside the 24-hour window went out as the clinic's approved template.
    ana = day_of_appointments.patients["ana"].contact
    from wa_portal.services import sandbox

    (entry,) = sandbox.phone_log(channels["whatsapp"], ana.phone)
    assert entry["template"]["name"] == "hello_followup"


def test_emergency_skips_opted_out_patients_when_the_clinic_says_so(
    app, db, clinic, staff, day_of_appointments, channels, twilio, moto, run_worker
):
    from wa_portal.services import broadcasts

    clinic.settings = {**(clinic.settings or {}), "emergency_to_opted_out": False}
    db.session.commit()
    audience = _appointments_on(day_of_appointments.day)
    pv = broadcasts.preview(clinic_id=clinic.id, audience=audience, kind="emergency")
    assert (pv.total, pv.opted_out_skipped, pv.opted_out_included) == (4, 1, 0)

    b = _send(clinic, staff, audience)
    run_worker(include_scheduled=False)

    assert received(channels, twilio, moto) == _expected_received(day_of_appointments, skip={"dan"})
    assert {s["name"] for s in b.details["skipped"]} == {"Dan Test", "Hugo Test"}


def test_announcement_never_reaches_opted_out_contacts(
    app, db, clinic, staff, channels, make_patient, twilio, moto, run_worker
):
    """Contacts who wrote in the last 30 days: those inside the window get the words as written."""
    from wa_portal.models import Consent, Conversation, utcnow
    from wa_portal.services import broadcasts, sandbox

    now = utcnow()
    wrote = {
        "+34611000001": (now - timedelta(hours=2), Consent.OPTED_IN),
        "+34611000002": (now - timedelta(days=3), Consent.UNKNOWN),
        "+34611000003": (now - timedelta(days=1), Consent.OPTED_OUT),
        "+34611000004": (now - timedelta(days=40), Consent.OPTED_IN),  # too long ago
    }
    for n, (phone, (at, consent)) in enumerate(wrote.items()):
        p = make_patient(f"P{n}", phone, consent=consent)
        db.session.add(
            Conversation(
                clinic_id=clinic.id,
                connection_id=channels["whatsapp"].id,
                contact_id=p.contact_id,
                last_inbound_at=at,
            )
        )
    db.session.commit()
    audience = {"type": "wrote_within", "days": 30}
    pv = broadcasts.preview(clinic_id=clinic.id, audience=audience, kind="announcement")
    assert (pv.total, pv.opted_out_skipped, pv.by_channel["whatsapp"]) == (2, 1, 2)

    _send(clinic, staff, audience, body="New opening hours from January: 8:00 to 20:00.", kind="announcement")
    run_worker(include_scheduled=False)

    got = received(channels, twilio, moto)
    assert got == {"+34611000001": ["whatsapp"], "+34611000002": ["whatsapp"]}
    (entry,) = sandbox.phone_log(channels["whatsapp"], "+34611000001")
    assert entry["text"] == "New opening hours from January: 8:00 to 20:00."


def test_all_opted_in_audience_and_a_chosen_template(
    app, db, clinic, staff, channels, make_patient, run_worker
):
    from wa_portal.models import Consent, Message, MessageTemplate
    from wa_portal.services import broadcasts, sandbox
    from wa_portal.services.messaging import TemplateUse

    db.session.add(
        MessageTemplate(
            clinic_id=clinic.id, name="clinic_notice", language="en", purpose="broadcast",
            body="Hello {{1}}, an important notice from the clinic. Reply to read it.",
        )
    )  # fmt: skip
    make_patient("Ines", "+34622000001", consent=Consent.OPTED_IN)
    make_patient("Jon", "+34622000002", consent=Consent.UNKNOWN)  # never opted in
    make_patient("Kai", "+34622000003", consent=Consent.OPTED_OUT)
    audience = {"type": "all_opted_in"}
    tpl = TemplateUse("clinic_notice", "en")
    assert broadcasts.preview(clinic_id=clinic.id, audience=audience, template=tpl).total == 1

    b = _send(clinic, staff, audience, body="Flu shots are available.", kind="announcement", template=tpl)
    run_worker(include_scheduled=False)

    (msg,) = db.session.scalars(select(Message).where(Message.broadcast_id == b.id))
    assert (msg.purpose, msg.critical, msg.template_params) == ("broadcast", False, ["Ines"])
    (entry,) = sandbox.phone_log(channels["whatsapp"], "+34622000001")
    assert entry["template"] == {"name": "clinic_notice", "params": ["Ines"]}
    assert sandbox.phone_log(channels["whatsapp"], "+34622000002") == []


def test_a_double_submit_sends_once(
    app, db, clinic, staff, day_of_appointments, channels, twilio, moto, run_worker
):
    from wa_portal.models import Broadcast, Message
    from wa_portal.services import broadcasts

    audience = _appointments_on(day_of_appointments.day)
    kw = {"clinic_id": clinic.id, "user_id": staff.id, "kind": "emergency", "audience": audience,
          "body": EMERGENCY, "idempotency_key": "form-token-1"}  # fmt: skip
    first = broadcasts.send(**kw)
    second = broadcasts.send(**kw)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.broadcast.id == first.broadcast.id
    run_worker(include_scheduled=False)

    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 1
    assert db.session.scalar(select(func.count()).select_from(Message)) == 5
    assert received(channels, twilio, moto) == _expected_received(day_of_appointments)


def test_phi_block_policy_refuses_a_date_of_birth(app, db, clinic, staff, day_of_appointments):
    from wa_portal.models import Broadcast, Message
    from wa_portal.services.messaging import PhiBlocked

    clinic.settings = {**(clinic.settings or {}), "phi_policy": "block"}
    db.session.commit()
    with pytest.raises(PhiBlocked):
        _send(
            clinic,
            staff,
            _appointments_on(day_of_appointments.day),
            body="Ana Test, date of birth 12/03/1980: closed.",
        )
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 0
    assert db.session.scalar(select(func.count()).select_from(Message)) == 0


def test_emergency_can_cancel_the_days_appointments_without_their_own_notice(
    app, db, clinic, staff, day_of_appointments, run_worker
):
    from wa_portal.models import Appointment, Message

    b = _send(clinic, staff, _appointments_on(day_of_appointments.day), cancel_appointments=True)
    run_worker(include_scheduled=False)

    db.session.expire_all()
    day_patients = {p.id for n, p in day_of_appointments.patients.items() if n not in ("finn", "gil", "hugo")}
    appts = list(db.session.scalars(select(Appointment)))
    assert {a.patient_id for a in appts if a.status == "cancelled" and a.cancelled_at} >= day_patients
    # Finn's appointment is the day after; Hugo could not be told, so his stays.
    assert {
        n for n, p in day_of_appointments.patients.items()
        if any(a.patient_id == p.id and a.status != "cancelled" for a in appts)
    } == {"finn", "hugo"}  # fmt: skip
    assert b.details["cancelled_appointments"] == 6  # Eva had two
    purposes = set(db.session.scalars(select(Message.purpose)))
    assert purposes == {"emergency"}  # no cancellation notices


def test_announcement_cannot_cancel_appointments(app, db, clinic, staff, day_of_appointments):
    from wa_portal.services.broadcasts import BroadcastError

    with pytest.raises(BroadcastError):
        _send(
            clinic,
            staff,
            _appointments_on(day_of_appointments.day),
            kind="announcement",
            cancel_appointments=True,
        )


def test_two_simultaneous_submits_of_one_form_send_once(
    app, db, clinic, staff, day_of_appointments, run_worker
):
    """Two requests with the same form token at the same moment: the unique key lets one broadcast in."""
    import threading

    from wa_portal.models import Broadcast, Message
    from wa_portal.services import broadcasts

    kw = {"clinic_id": clinic.id, "user_id": staff.id, "kind": "emergency", "body": EMERGENCY,
          "audience": _appointments_on(day_of_appointments.day), "idempotency_key": "same-click"}  # fmt: skip
    barrier = threading.Barrier(2)
    outcomes: list[tuple[int, bool]] = []

    def submit() -> None:
        with app.app_context():
            barrier.wait()
            out = broadcasts.send(**kw)
            outcomes.append((out.broadcast.id, out.duplicate))
            db.session.remove()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 2 and len({bid for bid, _ in outcomes}) == 1
    assert sorted(dup for _, dup in outcomes) == [False, True]
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 1
    assert db.session.scalar(select(func.count()).select_from(Message)) == 5
