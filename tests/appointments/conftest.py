"""Fixtures for appointments: a therapist with weekly hours, booking helpers, API keys, due RQ jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time
from typing import Any

import pytest


@pytest.fixture
def therapist(clinic, make_user, db):
    """Dr. Ana Ruiz, Monday-Friday 09:00-13:00 clinic time (Europe/Madrid)."""
    from wa_portal.models import AvailabilityKind, AvailabilitySlot

    user = make_user(clinic, "therapist", email="ana@sunrise.test", name="Dr. Ana Ruiz")
    for weekday in range(5):
        db.session.add(
            AvailabilitySlot(
                clinic_id=clinic.id,
                therapist_id=user.id,
                kind=AvailabilityKind.WEEKLY,
                weekday=weekday,
                start_time=time(9),
                end_time=time(13),
            )
        )
    db.session.commit()
    return user


@pytest.fixture
def book(clinic, therapist) -> Callable[..., Any]:
    from wa_portal.services import appointments

    def do(starts_at: datetime, phone: str = "+34612345678", name: str = "Maria Lopez", **kw: Any):
        return appointments.book(
            clinic_id=kw.pop("clinic_id", clinic.id),
            therapist_id=kw.pop("therapist_id", therapist.id),
            starts_at=starts_at,
            patient=appointments.PatientInput(name=name, phone=phone, language=kw.pop("language", None)),
            **kw,
        )

    return do


@pytest.fixture
def api_key(clinic) -> str:
    from wa_portal.services import api_keys

    return api_keys.create(clinic_id=clinic.id, name="Booking site")[1]


@pytest.fixture
def run_due_jobs(app, run_worker) -> Callable[[], int]:
    """What RQ's scheduler does at the (travelled) current time: move due scheduled jobs, then work."""
    from rq.registry import ScheduledJobRegistry

    from wa_portal.jobs import QUEUES, get_queue

    def run() -> int:
        now = datetime.now().timestamp()
        for name in QUEUES:
            q = get_queue(name)
            reg = ScheduledJobRegistry(queue=q)
            for job_id in reg.get_job_ids(0, -1):
                score = reg.get_expiration_time(q.fetch_job(job_id)).timestamp()
                if score <= now:
                    q.enqueue_job(q.fetch_job(job_id))
                    reg.remove(job_id)
        return run_worker(include_scheduled=False)

    return run


def sandbox_log(conn, phone: str = "+34612345678") -> list[dict]:
    from wa_portal.services import sandbox

    return sandbox.phone_log(conn, phone)
