"""Clinic analytics: how patients are answered, how messages arrive, how appointments turn out.

Every figure is an aggregate over one clinic's rows for a period (7, 30 or 90 days back from
now); nothing here reads or shows a patient's name, number or text. Each section is one or two
grouped queries on indexed columns, on PostgreSQL and on the embedded SQLite alike.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Integer, and_, cast, func, select
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import (
    Appointment,
    AppointmentStatus,
    AuthorType,
    ConsentEvent,
    Conversation,
    DeliveryAttempt,
    Direction,
    Message,
    MessageStatus,
    utcnow,
)

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30
# Lines in a thread that are not messages to or from the patient.
NOT_MESSAGES = ("note", "system")
DELIVERED = (MessageStatus.DELIVERED, MessageStatus.READ)


@dataclass
class Day:
    day: date
    received: int = 0
    sent: int = 0


@dataclass
class ChannelRow:
    channel: str
    total: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0

    @property
    def delivered_share(self) -> float | None:
        done = self.delivered + self.failed
        return self.delivered / done if done else None


@dataclass
class Report:
    days: int
    since: datetime
    received: int = 0
    replies_by: dict[str, int] = field(default_factory=dict)  # staff / assistant / system (automatic)
    new_conversations: int = 0
    waits: list[float] = field(default_factory=list)  # seconds from a patient's first line to the reply
    unanswered: int = 0
    channels: list[ChannelRow] = field(default_factory=list)
    fallbacks: int = 0
    failed_open: int = 0  # failed and not retried: what needs a person
    reminders: int = 0
    reminders_delivered: int = 0
    appointments: dict[str, int] = field(default_factory=dict)
    opt_outs: int = 0
    series: list[Day] = field(default_factory=list)

    @property
    def median_wait(self) -> float | None:
        return statistics.median(self.waits) if self.waits else None

    @property
    def answered_within_hour(self) -> float | None:
        return sum(1 for w in self.waits if w <= 3600) / len(self.waits) if self.waits else None

    @property
    def sent(self) -> int:
        return sum(self.replies_by.values())

    @property
    def busiest(self) -> int:
        return max((max(d.received, d.sent) for d in self.series), default=0)

    @property
    def appointments_total(self) -> int:
        return sum(self.appointments.values())


def period(value: str | int | None) -> int:
    try:
        days = int(value or DEFAULT_PERIOD)
    except (TypeError, ValueError):
        return DEFAULT_PERIOD
    return days if days in PERIODS else DEFAULT_PERIOD


def report(*, clinic_id: int, days: int, tz: str, now: datetime | None = None) -> Report:
    now = now or utcnow()
    since = now - timedelta(days=days)
    rep = Report(days=days, since=since)
    _messages(rep, clinic_id, since)
    _waits(rep, clinic_id, since)
    _delivery(rep, clinic_id, since)
    _appointments(rep, clinic_id, since, now)
    rep.opt_outs = (
        db.session.scalar(
            select(func.count()).where(
                ConsentEvent.clinic_id == clinic_id,
                ConsentEvent.new == "opted_out",
                ConsentEvent.created_at >= since,
            )
        )
        or 0
    )
    rep.series = _series(clinic_id, since, now, _zone(tz))
    return rep


def _messages(rep: Report, clinic_id: int, since: datetime) -> None:
    rows = db.session.execute(
        select(Message.direction, Message.author_type, func.count())
        .where(
            Message.clinic_id == clinic_id,
            Message.created_at >= since,
            Message.kind.notin_(NOT_MESSAGES),
        )
        .group_by(Message.direction, Message.author_type)
    ).all()
    for direction, author, n in rows:
        if direction == Direction.IN:
            rep.received += n
        else:
            rep.replies_by[str(author)] = rep.replies_by.get(str(author), 0) + n
    rep.new_conversations = (
        db.session.scalar(
            select(func.count()).where(Conversation.clinic_id == clinic_id, Conversation.created_at >= since)
        )
        or 0
    )


def _waits(rep: Report, clinic_id: int, since: datetime) -> None:
    """Time from the first line of each patient turn to the next reply by a person or the assistant."""
    lines = (
        select(
            Message.id,
            Message.conversation_id,
            Message.created_at,
            Message.direction,
            func.lag(Message.direction)
            .over(partition_by=Message.conversation_id, order_by=Message.id)
            .label("before"),
        )
        .where(
            Message.clinic_id == clinic_id,
            Message.created_at >= since - timedelta(days=1),  # the turn may have begun just before
            Message.kind.notin_(NOT_MESSAGES),
        )
        .subquery()
    )
    reply = aliased(Message)
    answered_at = (
        select(func.min(reply.created_at))
        .where(
            reply.conversation_id == lines.c.conversation_id,
            reply.id > lines.c.id,
            reply.direction == Direction.OUT,
            reply.author_type.in_((AuthorType.STAFF, AuthorType.ASSISTANT)),
            reply.kind.notin_(NOT_MESSAGES),
        )
        .correlate(lines)
        .scalar_subquery()
    )
    turns = db.session.execute(
        select(lines.c.created_at, answered_at.label("answered_at")).where(
            lines.c.direction == Direction.IN,
            lines.c.created_at >= since,
            (lines.c.before.is_(None)) | (lines.c.before != Direction.IN),
        )
    ).all()
    for asked, answered in turns:
        if answered is None:
            rep.unanswered += 1
        else:
            rep.waits.append(max(0.0, (_aware(answered) - _aware(asked)).total_seconds()))


def _delivery(rep: Report, clinic_id: int, since: datetime) -> None:
    outbound = and_(
        Message.clinic_id == clinic_id,
        Message.created_at >= since,
        Message.direction == Direction.OUT,
        Message.kind.notin_(NOT_MESSAGES),
    )
    by_channel: dict[str, ChannelRow] = {}
    for channel, status, n in db.session.execute(
        select(Message.channel, Message.status, func.count())
        .where(outbound)
        .group_by(Message.channel, Message.status)
    ):
        row = by_channel.setdefault(channel, ChannelRow(channel))
        row.total += n
        if status in DELIVERED:
            row.delivered += n
        elif status == MessageStatus.FAILED:
            row.failed += n
        else:
            row.pending += n
    order = {"whatsapp": 0, "sms": 1, "email": 2}
    rep.channels = sorted(by_channel.values(), key=lambda r: (order.get(r.channel, 9), r.channel))
    rep.failed_open = sum(r.failed for r in rep.channels)
    # A fallback: the message was tried on more than one channel before it got through (or failed).
    tried = (
        select(DeliveryAttempt.message_id)
        .join(Message, Message.id == DeliveryAttempt.message_id)
        .where(outbound)
        .group_by(DeliveryAttempt.message_id)
        .having(func.count(func.distinct(DeliveryAttempt.channel)) > 1)
        .subquery()
    )
    rep.fallbacks = db.session.scalar(select(func.count()).select_from(tried)) or 0
    reminders = db.session.execute(
        select(
            func.count(),
            func.sum(cast(Message.status.in_(DELIVERED), Integer)),
        ).where(outbound, Message.purpose.like("reminder%"))
    ).one()
    rep.reminders, rep.reminders_delivered = int(reminders[0] or 0), int(reminders[1] or 0)


def _appointments(rep: Report, clinic_id: int, since: datetime, now: datetime) -> None:
    """Appointments that were due in the period, by how they turned out."""
    rows = db.session.execute(
        select(Appointment.status, func.count())
        .where(
            Appointment.clinic_id == clinic_id, Appointment.starts_at >= since, Appointment.starts_at < now
        )
        .group_by(Appointment.status)
    ).all()
    rep.appointments = {str(s): 0 for s in AppointmentStatus} | {str(s): n for s, n in rows}


def _series(clinic_id: int, since: datetime, now: datetime, zone: ZoneInfo) -> list[Day]:
    """Messages in and out per day of the clinic's calendar."""
    offset = int((now.astimezone(zone).utcoffset() or timedelta()).total_seconds())
    bucket = _day_bucket(offset).label("bucket")
    rows = db.session.execute(
        select(bucket, Message.direction, func.count())
        .where(
            Message.clinic_id == clinic_id,
            Message.created_at >= since,
            Message.kind.notin_(NOT_MESSAGES),
        )
        .group_by(bucket, Message.direction)
    ).all()
    first = since.astimezone(zone).date()
    days = [Day(first + timedelta(days=i)) for i in range((now.astimezone(zone).date() - first).days + 1)]
    index = {d.day: d for d in days}
    epoch = date(1970, 1, 1)
    for n_day, direction, n in rows:
        day = index.get(epoch + timedelta(days=int(n_day)))
        if day is None:
            continue
        if direction == Direction.IN:
            day.received += n
        else:
            day.sent += n
    return days


def _day_bucket(offset: int):  # type: ignore[no-untyped-def]
    """Days since 1970-01-01 on the clinic's clock, for created_at (SQL, per backend)."""
    if db.engine.dialect.name == "postgresql":
        return func.floor((func.extract("epoch", Message.created_at) + offset) / 86400)
    return cast((cast(func.strftime("%s", Message.created_at), Integer) + offset) / 86400, Integer)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
