"""`make run` runs on SQLite: the demo's messages must really go out there too (single and batch)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tests.conftest import app_config

ROOT = Path(__file__).resolve().parents[1]


def test_demo_confirmations_are_delivered_on_sqlite(tmp_path, redis_url, redis):
    from flask_migrate import upgrade

    from wa_portal import create_app
    from wa_portal.extensions import db
    from wa_portal.models import DeliveryAttempt, Message
    from wa_portal.services import delivery, demo

    app = create_app(app_config(f"sqlite:///{tmp_path / 'demo.sqlite3'}", redis_url))
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
        demo.seed()
        queued = [m.id for m in db.session.scalars(select(Message).where(Message.status == "queued"))]
        assert len(queued) == 3  # the confirmations of the demo's appointments
        delivery.deliver(queued[0])  # one job per reply
        delivery.deliver_batch(queued[1:])  # batch jobs (broadcasts)
        db.session.expire_all()
        sent = db.session.scalars(select(Message).where(Message.id.in_(queued))).all()
        assert {(m.status, m.error_detail) for m in sent} == {("sent", None)}
        attempts = db.session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.message_id.in_(queued)))
        assert sorted(a.outcome for a in attempts) == ["sent", "sent", "sent"]
        db.session.remove()
        db.engine.dispose()


def test_demo_analytics_are_counted_on_sqlite(tmp_path, redis_url, redis):
    """The analytics queries (window functions, day buckets) give the same figures on SQLite."""
    from flask_migrate import upgrade

    from wa_portal import create_app
    from wa_portal.extensions import db
    from wa_portal.models import Clinic, Direction, Message
    from wa_portal.services import analytics, demo

    app = create_app(app_config(f"sqlite:///{tmp_path / 'demo.sqlite3'}", redis_url))
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
        demo.seed()
        clinic = db.session.scalars(select(Clinic)).first()
        rep = analytics.report(clinic_id=clinic.id, days=30, tz=clinic.timezone)
        inbound = db.session.scalars(select(Message).where(Message.direction == Direction.IN)).all()
        assert rep.received == len(inbound) > 0
        assert sum(d.received for d in rep.series) == rep.received  # every message lands on a day
        assert rep.sent == sum(d.sent for d in rep.series) > 0
        assert rep.turns or rep.unanswered
        db.session.remove()
        db.engine.dispose()
