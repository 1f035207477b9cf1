"""Delivery fixtures: the Meta and Twilio emulators and a clinic wired to them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.emulators.meta_graph import MetaGraphEmulator, running_meta_graph
from tests.emulators.server import serve
from tests.emulators.twilio_api import TwilioEmulator

PATIENT = "+34600111222"


@pytest.fixture(scope="module")
def _graph() -> Iterator[MetaGraphEmulator]:
    with running_meta_graph() as graph:
        yield graph


@pytest.fixture
def graph(_graph: MetaGraphEmulator) -> Iterator[MetaGraphEmulator]:
    _graph.reset()
    yield _graph
    _graph.wait_idle()
    _graph.reset()


@pytest.fixture(scope="module")
def _twilio() -> Iterator[tuple[TwilioEmulator, str]]:
    emu = TwilioEmulator()
    with serve(emu) as url:
        yield emu, url


@pytest.fixture
def twilio(_twilio: tuple[TwilioEmulator, str]) -> Iterator[tuple[TwilioEmulator, str]]:
    _twilio[0].reset()
    yield _twilio
    _twilio[0].reset()


@pytest.fixture
def fast_delivery(app) -> Iterator[None]:
    """Tiny backoff and circuit cooldown so retries happen within a test (restored afterwards)."""
    keys = {
        "DELIVERY_BACKOFF_BASE": 0.01,
        "CIRCUIT_COOLDOWN_SECONDS": 0.3,
        "DELIVERY_RATE_LIMITS": False,
    }
    saved = {k: app.config.get(k, _MISSING) for k in keys}
    app.config.update(keys)
    yield
    for k, v in saved.items():
        if v is _MISSING:
            app.config.pop(k, None)
        else:
            app.config[k] = v


_MISSING = object()


@pytest.fixture
def meta_conn(clinic, graph, db):
    from wa_portal.services import connections

    return connections.create_connection(
        clinic=clinic, provider="meta", settings=graph.meta_settings(), label="Clinic WhatsApp"
    )


@pytest.fixture
def sms_conn(clinic, twilio, db):
    from wa_portal.services import connections

    emu, url = twilio
    return connections.create_connection(
        clinic=clinic,
        provider="twilio",
        settings={
            "account_sid": emu.account_sid,
            "auth_token": emu.auth_token,
            "sms_from": "+15005550006",
            "base_url": url,
        },
        label="Clinic SMS",
    )


@pytest.fixture
def contact(clinic, db):
    from wa_portal.models import Contact

    c = Contact(clinic_id=clinic.id, phone=PATIENT, name="Ana Lopez", language="en")
    db.session.add(c)
    db.session.commit()
    return c


@pytest.fixture
def conversation(meta_conn, contact, db):
    """A conversation where the patient wrote a minute ago (the 24-hour window is open)."""
    from wa_portal.models import Conversation, utcnow

    conv = Conversation(
        clinic_id=meta_conn.clinic_id,
        connection_id=meta_conn.id,
        contact_id=contact.id,
        last_inbound_at=utcnow() - timedelta(minutes=1),
    )
    db.session.add(conv)
    db.session.commit()
    return conv


def messages_to(graph: MetaGraphEmulator, phone: str = PATIENT) -> list[dict[str, Any]]:
    digits = phone.lstrip("+")
    return [
        r for r in graph.requests("messages") if (r.get("json") or {}).get("to", "").lstrip("+") == digits
    ]


@pytest.fixture
def drain(app):
    """Run the real RQ worker (non-forking, burst) until no job is queued or scheduled, up to ``rounds``."""
    from rq.registry import ScheduledJobRegistry

    from wa_portal.jobs import QUEUES, get_queue, make_worker

    def run(rounds: int = 50) -> int:
        passes = 0
        for _ in range(rounds):
            pending = 0
            for name in QUEUES:
                q = get_queue(name)
                reg = ScheduledJobRegistry(queue=q)
                for job_id in reg.get_job_ids():
                    job = q.fetch_job(job_id)
                    reg.remove(job_id)
                    if job is not None:
                        q.enqueue_job(job)
                pending += q.count
            if not pending:
                break
            make_worker(app).work(burst=True, logging_level="WARNING")
            passes += 1
        return passes

    return run


@pytest.fixture
def generic_template(clinic, db):
    """An approved utility template, so messages to patients who never wrote can go out on WhatsApp."""
    from wa_portal.models import MessageTemplate

    tpl = MessageTemplate(
        clinic_id=clinic.id,
        name="hello_followup",
        language="en",
        purpose="generic",
        body="Hello {{1}}, the clinic has a message for you. Reply to this message to read it.",
    )
    db.session.add(tpl)
    db.session.commit()
    return tpl
