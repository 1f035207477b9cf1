"""Read models for the delivery pages: the notification log, failed deliveries and delivery health.

The log pages by keyset (``id < before`` newest first, never OFFSET) over the
``(clinic_id, direction|status|purpose, id)`` indexes; a date filter becomes an id range with one
index lookup each on ``(clinic_id, created_at)``, so a page costs the same at a million rows.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from ..extensions import db
from ..models import (
    AttemptOutcome,
    Clinic,
    Connection,
    Contact,
    Conversation,
    DeliveryAttempt,
    Direction,
    Message,
    MessageStatus,
)
from . import connections
from .phones import mask
from .redis_conn import REDIS_DOWN, get_redis

PAGE = 50
STATUSES = [s.value for s in MessageStatus if s not in (MessageStatus.RECEIVED,)]
CHANNELS = ["whatsapp", "sms", "email"]


def masked_last4(phone: str | None) -> str:
    """Only the last four digits: ``•••• 1222``."""
    digits = "".join(ch for ch in (phone or "") if ch.isdigit())
    return f"•••• {digits[-4:]}" if len(digits) > 4 else mask(phone)


@dataclass
class LogFilter:
    status: str = ""
    purpose: str = ""
    channel: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_args(cls, args: Any) -> LogFilter:
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat(args.get(name, "") or "")
            except ValueError:
                return None

        status = args.get("status", "")
        channel = args.get("channel", "")
        return cls(
            status=status if status in STATUSES else "",
            purpose=(args.get("type", "") or "")[:32],
            channel=channel if channel in CHANNELS else "",
            date_from=day("from"),
            date_to=day("to"),
        )

    def query_args(self) -> dict[str, str]:
        out = {"status": self.status, "type": self.purpose, "channel": self.channel}
        out["from"] = self.date_from.isoformat() if self.date_from else ""
        out["to"] = self.date_to.isoformat() if self.date_to else ""
        return {k: v for k, v in out.items() if v}


@dataclass
class LogRow:
    msg: Message
    recipient: str
    attempts: int


@dataclass
class LogPage:
    rows: list[LogRow] = field(default_factory=list)
    next_before: int | None = None


def _day_start(clinic: Clinic, day: date) -> datetime:
    try:
        tz = ZoneInfo(clinic.timezone or "UTC")
    except (KeyError, ValueError):
        tz = ZoneInfo("UTC")
    return datetime.combine(day, dtime.min, tzinfo=tz)


def _id_bounds(clinic: Clinic, flt: LogFilter) -> tuple[int | None, int | None]:
    """A date range as an id range (ids grow with created_at), one index probe per bound."""
    low = high = None
    if flt.date_from:
        start = _day_start(clinic, flt.date_from)
        low = db.session.scalar(
            select(Message.id)
            .where(Message.clinic_id == clinic.id, Message.created_at >= start)
            .order_by(Message.created_at, Message.id)
            .limit(1)
        )
        if low is None:
            return -1, -1  # nothing that late
    if flt.date_to:
        end = _day_start(clinic, flt.date_to + timedelta(days=1))
        high = db.session.scalar(
            select(Message.id)
            .where(Message.clinic_id == clinic.id, Message.created_at < end)
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(1)
        )
        if high is None:
            return -1, -1
    return low, high


def _log_query(clinic: Clinic, flt: LogFilter):
    q = (
        select(Message, Contact.phone)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Message.clinic_id == clinic.id, Message.direction == Direction.OUT)
    )
    if flt.status:
        q = q.where(Message.status == flt.status)
    if flt.purpose:
        q = q.where(Message.purpose == flt.purpose)
    if flt.channel:
        q = q.where(Message.channel == flt.channel)
    low, high = _id_bounds(clinic, flt)
    if low is not None:
        q = q.where(Message.id >= low)
    if high is not None:
        q = q.where(Message.id <= high)
    return q.order_by(Message.id.desc())


def _attempt_counts(ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    return dict(
        db.session.execute(
            select(DeliveryAttempt.message_id, func.count())
            .where(DeliveryAttempt.message_id.in_(ids))
            .group_by(DeliveryAttempt.message_id)
        ).all()
    )


def log_page(*, clinic_id: int, flt: LogFilter, before: int | None = None, limit: int = PAGE) -> LogPage:
    """One page of the notification log, newest first, after the keyset cursor ``before``."""
    clinic = db.session.get(Clinic, clinic_id)
    assert clinic is not None
    q = _log_query(clinic, flt)
    if before:
        q = q.where(Message.id < before)
    rows = db.session.execute(q.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    counts = _attempt_counts([m.id for m, _ in rows])
    page = LogPage(rows=[LogRow(m, masked_last4(phone), counts.get(m.id, 0)) for m, phone in rows])
    page.next_before = rows[-1][0].id if more and rows else None
    return page


CSV_HEADER = [
    "id", "created_at", "type", "recipient", "channel", "status", "provider_message_id",
    "error_code", "error", "attempts", "sent_at", "delivered_at", "read_at", "failed_at",
]  # fmt: skip


def iter_csv(*, clinic_id: int, flt: LogFilter, chunk: int = 1000) -> Iterator[str]:
    """The filtered log as CSV, streamed in keyset chunks (constant memory at any size)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_HEADER)
    yield buf.getvalue()
    before: int | None = None
    while True:
        page = log_page(clinic_id=clinic_id, flt=flt, before=before, limit=chunk)
        buf.seek(0)
        buf.truncate()
        for row in page.rows:
            m = row.msg
            writer.writerow(
                [
                    m.id,
                    _iso(m.created_at),
                    m.purpose,
                    row.recipient,
                    m.channel,
                    m.status,
                    m.provider_message_id or "",
                    m.error_code or "",
                    _csv_safe(m.error_detail or ""),
                    row.attempts,
                    _iso(m.sent_at),
                    _iso(m.delivered_at),
                    _iso(m.read_at),
                    _iso(m.failed_at),
                ]
            )
        yield buf.getvalue()
        db.session.expunge_all()
        if page.next_before is None:
            return
        before = page.next_before


def _iso(dt: datetime | None) -> str:
    return dt.isoformat() if dt else ""


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ is a formula in spreadsheets (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# --- failed deliveries (dead letters) ------------------------------------------------------------


@dataclass
class FailedRow:
    msg: Message
    recipient: str
    attempts: list[DeliveryAttempt]


def failed(
    *, clinic_id: int, before: int | None = None, limit: int = PAGE
) -> tuple[list[FailedRow], int | None]:
    """Outbound messages that failed on every channel, newest first, with their attempt history."""
    q = (
        select(Message, Contact.phone)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(
            Message.clinic_id == clinic_id,
            Message.status == MessageStatus.FAILED,
            Message.direction == Direction.OUT,
        )
        .order_by(Message.id.desc())
    )
    if before:
        q = q.where(Message.id < before)
    rows = db.session.execute(q.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [m.id for m, _ in rows]
    history: dict[int, list[DeliveryAttempt]] = {i: [] for i in ids}
    if ids:
        for a in db.session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.message_id.in_(ids)).order_by(DeliveryAttempt.id)
        ):
            history[a.message_id].append(a)
    out = [FailedRow(m, masked_last4(phone), history[m.id]) for m, phone in rows]
    return out, (rows[-1][0].id if more and rows else None)


def attempts_for(*, clinic_id: int, message_id: int) -> list[DeliveryAttempt]:
    return list(
        db.session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.message_id == message_id, DeliveryAttempt.clinic_id == clinic_id)
            .order_by(DeliveryAttempt.id)
        )
    )


# --- delivery health -------------------------------------------------------------------------------


@dataclass
class HealthRow:
    conn: Connection
    circuit: str  # closed | open | half_open | unknown
    failures: int
    retry_at: datetime | None
    rate_per_second: float
    last_error: DeliveryAttempt | None
    sent_last_hour: int


def health(*, clinic_id: int) -> list[HealthRow]:
    """Every connection of the clinic: circuit state, send rate and the last error."""
    from . import delivery

    conns = connections.list_for_clinic(clinic_id)
    since = datetime.now(tz=ZoneInfo("UTC")) - timedelta(hours=1)
    sent = dict(
        db.session.execute(
            select(DeliveryAttempt.connection_id, func.count())
            .where(
                DeliveryAttempt.clinic_id == clinic_id,
                DeliveryAttempt.outcome == AttemptOutcome.SENT,
                DeliveryAttempt.started_at >= since,
            )
            .group_by(DeliveryAttempt.connection_id)
        ).all()
    )
    rows: list[HealthRow] = []
    for conn in conns:
        last_error = db.session.scalar(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.connection_id == conn.id, DeliveryAttempt.error_code.is_not(None))
            .order_by(DeliveryAttempt.id.desc())
            .limit(1)
        )
        circuit: str
        try:
            state = delivery.breaker_for(conn.id).state()
            circuit, failures = state.state, state.failures
            retry_at = datetime.fromtimestamp(state.retry_at, tz=ZoneInfo("UTC")) if state.retry_at else None
        except REDIS_DOWN:
            circuit, failures, retry_at = "unknown", 0, None
        rows.append(
            HealthRow(
                conn=conn,
                circuit=circuit,
                failures=failures,
                retry_at=retry_at,
                rate_per_second=delivery.rate_for(conn),
                last_error=last_error,
                sent_last_hour=int(sent.get(conn.id, 0)),
            )
        )
    return rows


def redis_ok() -> bool:
    try:
        start = time.monotonic()
        get_redis().ping()
        return time.monotonic() - start < 2
    except REDIS_DOWN:
        return False
