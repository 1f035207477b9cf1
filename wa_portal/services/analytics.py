"""Clinic analytics: how patients are answered, how messages arrive, how appointments turn out.

Every figure is an aggregate over one clinic's rows for a period (7, 30 or 90 days back from
now); nothing here reads or shows a patient's name, number or text. Each section is one or two
grouped queries on indexed columns, on PostgreSQL and on the embedded SQLite alike.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, cast, func, select

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
    zone_or_utc,
)
from .redis_conn import REDIS_DOWN, get_redis

PERIODS = (7, 30, 90)
CACHE_SECONDS = 300
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
    turns: int = 0  # patient turns answered (by staff or the assistant)
    median_wait: float | None = None  # seconds from a patient's first line to the reply
    answered_within_hour: float | None = None
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
    def sent(self) -> int:
        return sum(self.replies_by.values())

    @property
    def busiest(self) -> int:
        return max((max(d.received, d.sent) for d in self.series), default=0)


def period(value: str | int | None) -> int:
    try:
        days = int(value or DEFAULT_PERIOD)
    except (TypeError, ValueError):
        return DEFAULT_PERIOD
    return days if days in PERIODS else DEFAULT_PERIOD


def cached_report(*, clinic_id: int, days: int, tz: str, refresh: bool = False) -> tuple[Report, datetime]:
    """The report and when it was computed: kept in Redis for CACHE_SECONDS (a large clinic's
    90 days take a few seconds to count; figures a few minutes old are fine for this page)."""
    key = f"wa:analytics:{clinic_id}:{days}:{tz}"
    if not refresh:
        try:
            raw = get_redis().get(key)
        except REDIS_DOWN:
            raw = None
        if raw:
            data = json.loads(raw)
            return _from_json(data["report"]), datetime.fromisoformat(data["at"])
    at = utcnow()
    rep = report(clinic_id=clinic_id, days=days, tz=tz, now=at)
    with contextlib.suppress(*REDIS_DOWN):  # without Redis: counted every time until it is back
        get_redis().set(key, json.dumps({"report": _to_json(rep), "at": at.isoformat()}), ex=CACHE_SECONDS)
    return rep, at


def _to_json(rep: Report) -> dict[str, Any]:
    data = asdict(rep)
    data["since"] = rep.since.isoformat()
    data["series"] = [[d.day.isoformat(), d.received, d.sent] for d in rep.series]
    return data


def _from_json(data: dict[str, Any]) -> Report:
    data = dict(data)
    data["since"] = datetime.fromisoformat(data["since"])
    data["channels"] = [ChannelRow(**c) for c in data["channels"]]
    data["series"] = [Day(date.fromisoformat(d), r, s) for d, r, s in data["series"]]
    return Report(**data)


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
    rep.series = _series(clinic_id, since, now, zone_or_utc(tz))
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
    """Time from the first line of each patient turn to the next reply by a person or the assistant.

    Set-based, no per-turn lookups: the lines that matter (the patient's, and replies by staff or
    the assistant) are numbered by how many replies came before each; a patient's turn and the
    reply that ends it share that number, so the answer is the earliest reply in its group.
    """
    replies = (AuthorType.STAFF, AuthorType.ASSISTANT)
    is_reply = Message.direction == Direction.OUT
    lines = (
        select(
            Message.conversation_id,
            Message.created_at,
            Message.direction,
            func.lag(Message.direction)
            .over(partition_by=Message.conversation_id, order_by=Message.id)
            .label("before"),
            (
                func.count()
                .filter(is_reply)
                .over(partition_by=Message.conversation_id, order_by=Message.id, rows=(None, -1))
            ).label("replies_before"),
        )
        .where(
            Message.clinic_id == clinic_id,
            Message.created_at >= since - timedelta(days=1),  # the turn may have begun just before
            Message.kind.notin_(NOT_MESSAGES),
            (Message.direction == Direction.IN) | Message.author_type.in_(replies),
        )
        .subquery()
    )
    grouped = select(
        lines.c.created_at,
        lines.c.direction,
        lines.c.before,
        func.min(lines.c.created_at)
        .filter(lines.c.direction == Direction.OUT)
        .over(partition_by=(lines.c.conversation_id, func.coalesce(lines.c.replies_before, 0)))
        .label("answered_at"),
    ).subquery()
    waits = db.session.scalars(
        select(_seconds_between(grouped.c.created_at, grouped.c.answered_at)).where(
            grouped.c.direction == Direction.IN,
            grouped.c.created_at >= since,
            (grouped.c.before.is_(None)) | (grouped.c.before != Direction.IN),
        )
    ).all()
    answered = [max(0.0, float(w)) for w in waits if w is not None]
    rep.turns, rep.unanswered = len(answered), len(waits) - len(answered)
    if answered:
        rep.median_wait = statistics.median(answered)
        rep.answered_within_hour = sum(1 for w in answered if w <= 3600) / len(answered)


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


def _seconds_between(start, end):  # type: ignore[no-untyped-def]
    """end - start in seconds, in SQL (NULL when end is NULL)."""
    if db.engine.dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0
