"""The analytics page: reply times, delivery per channel, appointments, one clinic's rows only."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count

import pytest

from wa_portal.models import (
    Appointment,
    AuthorType,
    ConsentEvent,
    Contact,
    Conversation,
    DeliveryAttempt,
    Direction,
    Message,
    Patient,
    utcnow,
)

_ids = count(1)


def stat(page: str, name: str) -> str:
    m = re.search(rf'id="stat-{name}">([^<]*)<', page)
    assert m, f"no stat-{name} on the page"
    return m.group(1).strip()


@pytest.fixture
def timeline(db):
    """A conversation whose lines are given as (minutes ago, direction, author, extra fields)."""

    def make(conn, lines: list[tuple], phone: str | None = None) -> Conversation:
        n = next(_ids)
        contact = Contact(clinic_id=conn.clinic_id, phone=phone or f"+346120{n:05d}", name=f"Patient {n}")
        db.session.add(contact)
        db.session.flush()
        conv = Conversation(clinic_id=conn.clinic_id, connection_id=conn.id, contact_id=contact.id)
        db.session.add(conv)
        db.session.flush()
        now = utcnow()
        for minutes_ago, direction, author, *rest in lines:
            fields = rest[0] if rest else {}
            attempts = fields.pop("attempts", [])
            msg = Message(
                clinic_id=conn.clinic_id,
                conversation_id=conv.id,
                connection_id=conn.id,
                direction=direction,
                author_type=author,
                body="…",
                status=fields.pop("status", "received" if direction == Direction.IN else "delivered"),
                created_at=now - timedelta(minutes=minutes_ago),
                **fields,
            )
            db.session.add(msg)
            db.session.flush()
            for channel, outcome in attempts:
                db.session.add(
                    DeliveryAttempt(
                        clinic_id=conn.clinic_id,
                        message_id=msg.id,
                        channel=channel,
                        provider="sandbox",
                        outcome=outcome,
                    )
                )
        db.session.commit()
        return conv

    return make


@pytest.fixture
def other_clinic_busy(make_clinic, timeline):
    """Another clinic with plenty going on: none of it may show up."""
    from wa_portal.services import connections

    other = make_clinic("elsewhere")
    conn = connections.create_connection(
        clinic=other, provider="sandbox", settings={"display_phone": "+34910000002"}, label="Other"
    )
    for _ in range(3):
        timeline(
            conn,
            [
                (30, Direction.IN, AuthorType.PATIENT),
                (29, Direction.OUT, AuthorType.STAFF, {"status": "failed"}),
            ],
        )
    return other


IN, OUT = Direction.IN, Direction.OUT
PATIENT, STAFF, ASSISTANT, SYSTEM = (
    AuthorType.PATIENT,
    AuthorType.STAFF,
    AuthorType.ASSISTANT,
    AuthorType.SYSTEM,
)


def test_reply_times_count_each_patient_turn_once_and_ignore_internal_notes(
    client, login, staff, sandbox_conn, timeline, other_clinic_busy
):
    timeline(
        sandbox_conn,
        [
            (120, IN, PATIENT),  # a turn of two lines, answered 30 minutes after the first
            (118, IN, PATIENT),
            (90, OUT, STAFF),
        ],
    )
    timeline(sandbox_conn, [(60, IN, PATIENT), (59, OUT, ASSISTANT)])  # the assistant, a minute later
    timeline(
        sandbox_conn,
        [(10, IN, PATIENT), (5, OUT, STAFF, {"kind": "note", "status": "sent"})],  # a note is no reply
    )
    login(staff)
    page = client.get("/analytics/").get_data(as_text=True)
    assert stat(page, "received") == "4"
    assert stat(page, "new") == "3"
    assert stat(page, "staff") == "1"
    assert stat(page, "assistant") == "1"
    assert stat(page, "median-wait") == "16 min"  # median of 30 and 1 minutes
    assert stat(page, "within-hour") == "100 %"
    assert stat(page, "unanswered") == "1"
    assert "Patient 1" not in page and "+346120" not in page  # aggregates only


def test_delivery_per_channel_fallbacks_reminders_and_failures(
    client, login, staff, sandbox_conn, timeline, other_clinic_busy
):
    timeline(
        sandbox_conn,
        [
            (300, IN, PATIENT),
            (200, OUT, STAFF, {"status": "delivered"}),
            (190, OUT, STAFF, {"status": "read"}),
            (180, OUT, STAFF, {"status": "failed"}),
            (170, OUT, SYSTEM, {"status": "delivered", "purpose": "reminder_1d"}),
            (
                160,
                OUT,
                SYSTEM,
                {
                    "status": "delivered",
                    "channel": "sms",
                    "purpose": "reminder_2h",
                    "attempts": [("whatsapp", "failed"), ("sms", "sent")],
                },
            ),
            (150, OUT, SYSTEM, {"status": "queued", "channel": "email", "purpose": "confirmation"}),
        ],
    )
    login(staff)
    page = client.get("/analytics/").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-channel="(\w+)">(.*?)</tr>', page, re.S))
    cells = {k: re.findall(r"<td>([^<]*)</td>", v) for k, v in rows.items()}
    assert list(cells) == ["whatsapp", "sms", "email"]
    assert cells["whatsapp"] == ["4", "3", "1", "0", "75 %"]
    assert cells["sms"] == ["1", "1", "0", "0", "100 %"]
    assert cells["email"] == ["1", "0", "0", "1", "\u2013"]  # an en dash: nothing delivered or failed yet
    assert stat(page, "fallbacks") == "1"
    assert stat(page, "failed") == "1"
    assert 'href="/deliveries/failed"' in page
    assert stat(page, "reminders") == "2"
    assert stat(page, "automatic") == "3"


def test_appointments_due_in_the_period_and_opt_outs(client, login, staff, clinic, db, make_user):
    therapist = make_user(clinic, "therapist")
    contact = Contact(clinic_id=clinic.id, phone="+34612000999", name="Lucia")
    db.session.add(contact)
    db.session.flush()
    patient = Patient(clinic_id=clinic.id, contact_id=contact.id, first_name="Lucia")
    db.session.add(patient)
    db.session.flush()
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    for days_ago, status in (
        (1, "confirmed"),
        (2, "cancelled"),
        (3, "no_show"),
        (4, "completed"),
        (5, "booked"),
        (-2, "confirmed"),
        (40, "completed"),
    ):
        start = now - timedelta(days=days_ago)
        db.session.add(
            Appointment(
                clinic_id=clinic.id,
                patient_id=patient.id,
                therapist_id=therapist.id,
                starts_at=start,
                ends_at=start + timedelta(minutes=50),
                status=status,
            )
        )
    db.session.add(
        ConsentEvent(
            clinic_id=clinic.id,
            contact_id=contact.id,
            old="opted_in",
            new="opted_out",
            source="whatsapp keyword",
        )
    )
    db.session.commit()
    login(staff)
    page = client.get("/analytics/").get_data(as_text=True)
    # the one in two days has not happened yet; the one 40 days ago is outside the 30 days
    assert [
        stat(page, f"appt-{k}") for k in ("confirmed", "completed", "booked", "cancelled", "no_show")
    ] == ["1", "1", "1", "1", "1"]
    assert stat(page, "opt-outs") == "1"
    longer = client.get("/analytics/?days=90").get_data(as_text=True)
    assert stat(longer, "appt-completed") == "2"


def test_the_period_is_chosen_from_three_and_the_chart_shows_each_day(
    client, login, staff, sandbox_conn, timeline
):
    timeline(sandbox_conn, [(10 * 24 * 60, IN, PATIENT), (5, IN, PATIENT), (4, OUT, STAFF)])
    login(staff)
    month = client.get("/analytics/").get_data(as_text=True)
    week = client.get("/analytics/?days=7").get_data(as_text=True)
    assert stat(month, "received") == "2" and stat(week, "received") == "1"
    assert re.search(r'aria-current="page">Last 7 days<', week)
    assert month.count('class="bar-in"') == 31 and week.count('class="bar-in"') == 8
    assert re.search(r"<title>\d{4}-\d\d-\d\d: 1 received</title>", week)
    # anything else falls back to 30 days rather than failing
    odd = client.get("/analytics/?days=abc").get_data(as_text=True)
    assert re.search(r'aria-current="page">Last 30 days<', odd)


def test_only_staff_and_admins_see_analytics(client, login, clinic, make_user):
    assert client.get("/analytics/").status_code == 302  # to the sign-in page
    login(make_user(clinic, "therapist"))
    assert client.get("/analytics/").status_code == 403


def test_figures_are_kept_for_a_few_minutes_and_can_be_counted_again(
    client, login, staff, sandbox_conn, timeline
):
    timeline(sandbox_conn, [(30, IN, PATIENT)])
    login(staff)
    page = client.get("/analytics/").get_data(as_text=True)
    assert stat(page, "received") == "1"
    assert 'href="/analytics/?days=30&amp;refresh=1"' in page
    timeline(sandbox_conn, [(1, IN, PATIENT)])
    assert stat(client.get("/analytics/").get_data(as_text=True), "received") == "1"  # as counted before
    assert stat(client.get("/analytics/?days=30&refresh=1").get_data(as_text=True), "received") == "2"
    assert stat(client.get("/analytics/").get_data(as_text=True), "received") == "2"
