"""Deliver outbound messages: one state machine, retries, a circuit breaker and send-rate limit per
connection, and a WhatsApp → SMS → email fallback chain. Every provider call is a DeliveryAttempt row.

States: ``queued → sending → sent → delivered → read``, or ``failed`` with the provider's code
(``error_code``) and a sentence a receptionist understands (``error_detail``).

One run of :func:`deliver` (the RQ job ``deliver_message``, or :func:`deliver_batch`):

1. **Claim** the row with one conditional UPDATE: ``queued → sending``, or a ``sending`` row whose
   ``updated_at`` is older than the lease (``DELIVERY_LEASE_SECONDS``, 60 s: its worker died). Any
   other state, or a ``sending`` row still leased, is left alone — so the job is idempotent and
   two workers never send the same message at once.
2. **Refuse before any provider call**: an opted-out contact (``"Patient opted out"``; consent
   confirmations, replies to a patient who wrote after opting out, and — per clinic setting —
   emergency alerts are allowed) and, on WhatsApp, free text outside the 24-hour window (a staff
   reply fails with ``"24-hour window closed: choose a template"``; a notification is resent as the
   clinic's approved template for its purpose, else it falls back to the next channel).
3. **Pick the channel**: the contact's ``preferred_channels`` or the clinic's
   ``settings["fallback_chain"]`` (default whatsapp, sms, email), minus channels this message
   already gave up on in this round (a person's Retry starts a new round). WhatsApp = the
   conversation's connection; SMS = a Twilio connection with ``sms_from`` or
   ``messaging_service_sid``; email = an SES connection and the contact's email.
4. **Circuit breaker** (services/circuit, Redis, per connection: 3 failures in 60 s open it, one
   probe after 30 s, a success closes it): open → skip to the next channel (a ``skipped`` attempt),
   or, on the last channel, wait for the probe time. **Rate limit** (services/ratelimit token
   bucket per connection; the adapter's ``rate_limit_per_second`` or
   ``connection.config["rate_limit_per_second"]``): a wait under half a second is slept, a longer
   one reschedules the job.
5. Write the attempt (``in_flight``) and commit, then call the adapter; then record the outcome
   and commit. Errors by ``ProviderError.kind``: ``retryable``/``rate_limited`` → the same channel
   again after ``backoff.retry_after_or_delay`` (full jitter, Retry-After honoured) within
   ``RetryBudget`` (6 attempts, 1 hour per channel), scheduled with ``jobs.enqueue(delay=…)`` and
   ``Message.next_attempt_at`` (the sweeper waits for it); ``window_closed`` → template as in 2;
   ``recipient_invalid``/``opted_out``/``auth``/``permanent`` → the next channel at once.
   All channels spent → ``failed`` (a dead letter on the "Failed deliveries" page).
6. A **critical** message not ``delivered`` within ``settings["critical_timeout_minutes"]`` (a
   scheduled :func:`check_critical`) goes out again on the next channel.

**Batches** (:func:`deliver_batch`, the RQ job ``deliver_messages``, enqueued by
``messaging.enqueue_deliveries`` for bulk sends): one ``UPDATE … FOR UPDATE SKIP LOCKED … RETURNING``
claims the whole batch; conversations and contacts load in one query; clinic rows, connections,
adapters and breakers once per batch. Messages whose first send needs no decision (never tried,
consent fine, window open or a template, breaker closed — asked once per connection per batch — and
no send-rate limit) get their ``in_flight`` attempt rows in the claim's commit; each is then sent
and marked ``sent`` by one autocommit statement right after the provider answers. Everything else
goes through the steps above one message at a time. Before each send a batch re-checks its claim
once a third of the lease has passed (a fencing check on ``updated_at``), a failure that leaves the
breaker open sends the rest of the batch through step 4 (their unused attempt rows are deleted), a
database error after a send stops the batch, and successes reach the breaker in one pipelined call
at most every 0.1 s (and before this worker asks it anything).

**Crash rule and the duplicate bound.** The attempt row is committed *before* the provider call and
its result in the same commit as the message's new state. A run that finds the round's last attempt
still ``in_flight`` knows a worker died during the call: when that attempt carries a provider
message id the message was sent and is not sent again; otherwise neither Meta's Cloud API nor
Twilio nor SES lets us look a message up by our own reference or send with an idempotency key, so
it is sent again and the interrupted attempt is recorded as ``interrupted``. Bound: **at most one
duplicate per message per crash** (a worker killed between the provider's answer and our commit),
and none from Redis outages, re-enqueues or concurrent workers (the claim in step 1). A worker sends
one message at a time, batch or not, so a crash duplicates **at most one message per worker**: the
one whose call was in flight. In a batch the later messages' attempt rows are ``interrupted`` too,
but they never reached the provider, so their resend is their first send.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import DateTime, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from ..models import (
    AttemptOutcome,
    AuthorType,
    Clinic,
    Connection,
    Consent,
    ConsentEvent,
    Contact,
    Conversation,
    DeliveryAttempt,
    Direction,
    Message,
    MessageStatus,
    utcnow,
)
from ..providers.base import (
    Button,
    Channel,
    ErrorKind,
    MessageKind,
    OutboundMedia,
    OutboundMessage,
    Provider,
    ProviderError,
    TemplateRef,
    get_provider_class,
)
from . import backoff, channel_text, connections, media_links, realtime, templates
from .circuit import CircuitBreaker
from .phones import mask
from .ratelimit import TokenBucket
from .redis_conn import REDIS_DOWN, get_redis
from .storage import get_storage

log = logging.getLogger(__name__)

WINDOW_CLOSED_REASON = "24-hour window closed: choose a template"
OPTED_OUT_REASON = "Patient opted out"
NO_CHANNEL_REASON = "No channel can reach this patient (no WhatsApp, SMS or email connection for them)."
INTERRUPTED_DETAIL = "The worker stopped during the provider call; sent again (the patient may get it twice)."
DEFAULT_CHAIN = ("whatsapp", "sms", "email")
# Purposes an opted-out contact still gets: the opt-out/opt-in confirmation itself.
ALWAYS_ALLOWED = frozenset({"consent"})
# Replies to a patient: allowed when the patient wrote after opting out.
REPLY_PURPOSES = frozenset({"reply", "assistant", "note"})
MAX_ATTEMPTS = 6  # per channel and round, the first send included
MAX_AGE_SECONDS = 3600.0
RATE_SLEEP_MAX = 0.5  # a rate-limit wait up to this is slept; longer ones reschedule the job


def _cfg(key: str, default: Any) -> Any:
    """A delivery setting: app config, else the environment variable ``WA_<KEY>``, else the default."""
    if key in current_app.config:
        return current_app.config[key]
    env = os.environ.get(f"WA_{key}")
    if env is None:
        return default
    if isinstance(default, bool):
        return env.strip().lower() not in ("0", "false", "no", "off", "")
    return env


# --- channel targets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    channel: str
    conn: Connection
    address: str  # E.164 phone or email address


def channel_chain(clinic: Clinic, contact: Contact) -> list[str]:
    """The order to try channels in: the contact's preference, else the clinic's chain, else the default."""
    raw = contact.preferred_channels or clinic.setting("fallback_chain") or list(DEFAULT_CHAIN)
    chain = [str(c).lower() for c in raw if str(c).lower() in DEFAULT_CHAIN]
    return list(dict.fromkeys(chain)) or list(DEFAULT_CHAIN)


class _BatchCache:
    """State shared by the messages of one batch job: clinic-level rows (read-only use), circuit
    breaker verdicts per connection, and the realtime events to publish in one pipeline at the end."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], Any] = {}
        self.breakers: dict[int, CircuitBreaker] = {}
        # connection id → may this batch send without asking Redis again? One ``allow()`` per
        # connection per batch; a failure that leaves the circuit open or opening drops it to False,
        # after which every message on that connection asks the breaker itself (the slow path).
        self.allowed: dict[int, bool] = {}
        self.events: list[tuple[int, int, int]] = []  # (clinic, conversation, message)
        # Successes not yet told to the breaker: connection id → when the first of them happened.
        self.successes: dict[int, float] = {}
        # An autocommit connection for the one-statement "sent" writes (see _mark_sent).
        self.autocommit: Any = None

    def close(self) -> None:
        if self.autocommit is not None:
            self.autocommit.close()
            self.autocommit = None

    def get(self, kind: str, key: int, load: Any) -> Any:
        if (kind, key) not in self.rows:
            self.rows[(kind, key)] = load()
        return self.rows[(kind, key)]


_cache: _BatchCache | None = None


def _cached(kind: str, key: int, load: Any) -> Any:
    return _cache.get(kind, key, load) if _cache is not None else load()


def _sms_connection(clinic_id: int) -> Connection | None:
    return _cached("sms", clinic_id, lambda: _find_sms_connection(clinic_id))


def _find_sms_connection(clinic_id: int) -> Connection | None:
    for conn in connections.list_for_clinic(clinic_id, provider="twilio"):
        cfg = conn.config or {}
        if cfg.get("sms_from") or cfg.get("messaging_service_sid"):
            return conn
    return None


def _own_connection(conv: Conversation) -> Connection | None:
    return _cached("conn", conv.connection_id, lambda: db.session.get(Connection, conv.connection_id))


def resolve_targets(msg: Message, conv: Conversation, contact: Contact, clinic: Clinic) -> list[Target]:
    """Each channel of the chain that can reach this contact, with its connection and address."""
    out: list[Target] = []
    for channel in channel_chain(clinic, contact):
        if channel == "whatsapp":
            if msg.channel == "sms":
                continue  # the patient wrote by SMS: this conversation's number is not on WhatsApp
            conn = _own_connection(conv)
            if conn is not None and conn.active and conn.provider != "ses":
                out.append(Target(channel, conn, contact.phone))
        elif channel == "sms":
            conn = _sms_connection(clinic.id)
            if msg.channel == "sms":  # answer on the SMS number the patient wrote to
                own = _own_connection(conv)
                conn = own if own is not None and own.active else conn
            if conn is not None and contact.phone:
                out.append(Target(channel, conn, contact.phone))
        elif channel == "email" and contact.email:
            ses = _cached("ses", clinic.id, lambda: connections.list_for_clinic(clinic.id, provider="ses"))
            if ses:
                out.append(Target(channel, ses[0], contact.email))
    return out


# --- consent -----------------------------------------------------------------------------------


def consent_refusal(msg: Message, conv: Conversation, contact: Contact, clinic: Clinic) -> str | None:
    """Why this message may not reach this contact (``"Patient opted out"``), or None."""
    if contact.consent != Consent.OPTED_OUT or msg.purpose in ALWAYS_ALLOWED:
        return None
    if msg.purpose == "emergency":
        return None if clinic.setting("emergency_to_opted_out", True) else OPTED_OUT_REASON
    if msg.purpose in REPLY_PURPOSES:
        return None if _wrote_since_opt_out(conv, contact) else OPTED_OUT_REASON
    return OPTED_OUT_REASON


def _wrote_since_opt_out(conv: Conversation, contact: Contact) -> bool:
    """Did the patient write in this conversation after opting out? (Then a reply is an answer.)"""
    event = db.session.scalar(
        select(ConsentEvent)
        .where(ConsentEvent.contact_id == contact.id, ConsentEvent.new == Consent.OPTED_OUT)
        .order_by(ConsentEvent.id.desc())
        .limit(1)
    )
    if event is not None and event.message_id is not None:
        # Ids, not clocks: the STOP and the next message may share a provider timestamp second.
        later = db.session.scalar(
            select(Message.id)
            .where(
                Message.conversation_id == conv.id,
                Message.direction == Direction.IN,
                Message.id > event.message_id,
            )
            .limit(1)
        )
        return later is not None
    since = event.created_at if event is not None else contact.consent_at
    return conv.last_inbound_at is not None and (since is None or conv.last_inbound_at > since)


# --- breakers and buckets ----------------------------------------------------------------------


def breaker_for(conn_id: int) -> CircuitBreaker:
    return breaker_for_cache(_cache, conn_id) if _cache is not None else _new_breaker(conn_id)


def _new_breaker(conn_id: int) -> CircuitBreaker:
    return CircuitBreaker(
        get_redis(),
        f"conn-{conn_id}",
        threshold=int(_cfg("CIRCUIT_THRESHOLD", 3)),
        window_seconds=float(_cfg("CIRCUIT_WINDOW_SECONDS", 60)),
        cooldown_seconds=float(_cfg("CIRCUIT_COOLDOWN_SECONDS", 30)),
    )


def rate_for(conn: Connection) -> float:
    """Messages per second for this connection: its config, else the adapter's documented rate."""
    override = (conn.config or {}).get("rate_limit_per_second")
    if override not in (None, ""):
        return float(override)
    return float(get_provider_class(conn.provider).rate_limit_per_second)


def bucket_for(conn: Connection) -> TokenBucket:
    rate = rate_for(conn) if _cfg("DELIVERY_RATE_LIMITS", True) else 0.0
    return TokenBucket(get_redis(), f"conn-{conn.id}", rate_per_second=rate)


_adapters: dict[tuple[int, Any], Provider] = {}


def _adapter(conn: Connection) -> Provider:
    # Decrypting credentials and building an SDK client per message costs more than the send
    # to a local emulator; cache per connection version (a settings change bumps updated_at).
    key = (conn.id, conn.updated_at)
    adapter = _adapters.get(key)
    if adapter is None:
        if len(_adapters) > 256:
            _adapters.clear()
        adapter = _adapters[key] = connections.adapter_for(conn)
    return adapter


# --- the job -----------------------------------------------------------------------------------


def deliver(message_id: int) -> None:
    """Send a queued message (idempotent: anything not claimable is left alone)."""
    session = db.session()
    # Objects stay readable after each commit: this job holds the message's claim, so nobody
    # else changes the rows it reads (saves a reload of every row after every commit).
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        now = utcnow()
        msg = _claim(message_id, now)
        if msg is None:
            return
        try:
            _run(msg, now)
        finally:
            _publish(msg)
    finally:
        session.expire_on_commit = expire


@dataclass(slots=True)
class _Prepared:
    """A fresh message whose first channel needs no decision a send could change (batch fast path)."""

    msg: Message
    conv: Conversation
    contact: Contact
    clinic: Clinic
    targets: list[Target]
    attempt: DeliveryAttempt | None = None


def deliver_batch(message_ids: list[int]) -> None:
    """Deliver several messages in one job: same per-message guarantees, a fraction of the round trips.

    1. One ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`` claims every claimable
       message of the batch (rows another worker holds are skipped, not waited for).
    2. Conversations and contacts are loaded in one query; clinic rows, connections, adapters and
       circuit breakers once per batch.
    3. Messages whose first channel is certain — never tried, consent fine, inside the window (or a
       template), the connection's breaker closed, no send-rate limit — get their ``in_flight``
       attempt rows in **one commit**, together with the claim. Every other message takes the
       one-at-a-time path (:func:`_run`), unchanged.
    4. Each prepared message is then sent and marked ``sent`` in its own commit right after the
       provider answers; errors go through the usual retry / fallback logic.

    One failure never stops the rest. Crash bound: see the module docstring.
    """
    global _cache
    _cache = _BatchCache()
    session = db.session()
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        try:
            prepared, slow = _claim_and_prepare(message_ids, utcnow())
        except Exception:
            # A database error while preparing rolls the claims back; fall back to one at a time.
            log.exception("batch preparation failed; delivering its %d messages one by one", len(message_ids))
            db.session.rollback()
            for mid in message_ids:
                _guarded(mid, lambda mid=mid: deliver(mid))
            return
        for n, item in enumerate(prepared):
            try:
                _send_prepared(item)
            except DBAPIError:
                # The database is failing: a message sent now could not be recorded as sent and would be
                # sent again later. Stop; the rest still carry their unsent attempt rows (resent once).
                log.exception("database error after message %s; leaving %d for the sweeper", item.msg.id,
                              len(prepared) - n - 1)  # fmt: skip
                db.session.rollback()
                return
            except Exception:
                log.exception("delivery of message %s crashed; the sweeper will pick it up", item.msg.id)
                db.session.rollback()
        for msg in slow:
            _guarded(msg.id, lambda msg=msg: _run(msg, utcnow()))
    finally:
        cache, _cache = _cache, None
        session.expire_on_commit = expire
        cache.close()
        _flush_successes(cache)
        _publish_many(cache.events)


def _guarded(message_id: int, run: Any) -> None:
    try:
        run()
    except Exception:
        log.exception("delivery of message %s crashed; the sweeper will pick it up", message_id)
        db.session.rollback()


def _publish(msg: Message) -> None:
    if _cache is not None:
        _cache.events.append((msg.clinic_id, msg.conversation_id, msg.id))
    else:
        realtime.publish(msg.clinic_id, "status", conversation_id=msg.conversation_id, message_id=msg.id)


def _publish_many(events: list[tuple[int, int, int]]) -> None:
    """The batch's status events in one Redis round trip (best effort, like realtime.publish)."""
    if not events:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for clinic_id, conv_id, msg_id in events:
            payload = json.dumps({"event": "status", "conversation_id": conv_id, "message_id": msg_id})
            pipe.publish(realtime.channel(clinic_id), payload)
        pipe.execute()
    except REDIS_DOWN:
        log.info("realtime publish skipped: redis unavailable")


def _lease() -> timedelta:
    return timedelta(seconds=float(_cfg("DELIVERY_LEASE_SECONDS", _cfg("SWEEP_STUCK_AFTER_SECONDS", 60))))


def _claimable(now: datetime) -> Any:
    return and_(
        Message.direction == Direction.OUT,
        or_(
            Message.status == MessageStatus.QUEUED,
            and_(Message.status == MessageStatus.SENDING, Message.updated_at < now - _lease()),
        ),
    )


def _claim(message_id: int, now: datetime) -> Message | None:
    """``queued`` (or a ``sending`` row whose lease ran out) → ``sending``; None when not claimable.

    Not committed here: the row lock is held until the first commit of this run (the attempt
    row, or a refusal), so a concurrent worker's claim waits and then finds it taken.
    """
    msg = db.session.scalars(
        update(Message)
        .where(Message.id == message_id, _claimable(now))
        .values(status=MessageStatus.SENDING, updated_at=now, next_attempt_at=None)
        .returning(Message),
        execution_options={"populate_existing": True},
    ).one_or_none()
    if msg is None:
        db.session.rollback()
    return msg


def _claim_and_prepare(message_ids: list[int], now: datetime) -> tuple[list[_Prepared], list[Message]]:
    """Claim the batch, split it into prepared (attempt rows written) and one-at-a-time messages.

    The claim, the fast path's ``in_flight`` attempts and their ``attempts`` counters are one commit:
    until then the claimed rows stay locked, as in :func:`_claim`.
    """
    # A materialized CTE: the rows are picked and locked once, whatever plan the statistics suggest
    # (as a correlated IN-subquery a fresh table's estimates turned it into a loop over every row).
    locked = (
        select(Message.id)
        .where(Message.id.in_(message_ids), _claimable(now))
        .with_for_update(skip_locked=True)
        .cte("claimable")
        .prefix_with("MATERIALIZED")
    )
    msgs = sorted(
        db.session.scalars(
            update(Message)
            .where(Message.id == locked.c.id)
            .values(status=MessageStatus.SENDING, updated_at=now, next_attempt_at=None)
            .returning(Message),
            execution_options={"populate_existing": True, "synchronize_session": False},
        ).all(),
        key=lambda m: m.id,
    )
    if not msgs:
        db.session.rollback()
        return [], []
    rows = db.session.execute(
        select(Conversation, Contact)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Conversation.id.in_({m.conversation_id for m in msgs}))
    ).all()
    loaded = {conv.id: (conv, contact) for conv, contact in rows}
    prepared: list[_Prepared] = []
    slow: list[Message] = []
    for msg in msgs:
        conv, contact = loaded[msg.conversation_id]
        clinic = _clinic(msg.clinic_id)
        targets = _fast_targets(msg, conv, contact, clinic, now)
        if targets:
            prepared.append(_Prepared(msg, conv, contact, clinic, targets))
        else:
            slow.append(msg)
    if prepared:
        started = utcnow()
        db.session.execute(
            update(Message)
            .where(Message.id.in_([p.msg.id for p in prepared]))
            # updated_at explicitly: the column's onupdate would move it away from the claim's time,
            # which _hold compares with.
            .values(attempts=Message.attempts + 1, updated_at=now),
            execution_options={"synchronize_session": False},
        )
        for p in prepared:
            set_committed_value(p.msg, "attempts", (p.msg.attempts or 0) + 1)
            p.attempt = _new_attempt(p.msg, p.targets[0], started)
        db.session.add_all([p.attempt for p in prepared if p.attempt is not None])
    db.session.commit()  # the claim and the crash markers, before any provider sees anything
    return prepared, slow


def _fast_targets(
    msg: Message, conv: Conversation, contact: Contact, clinic: Clinic, now: datetime
) -> list[Target] | None:
    """The channel chain when the first send needs no decision of the one-at-a-time path; else None."""
    if msg.attempts or msg.delivery_round or consent_refusal(msg, conv, contact, clinic):
        return None
    targets = resolve_targets(msg, conv, contact, clinic)
    if not targets:
        return None
    first = targets[0]
    if first.channel == "whatsapp" and not msg.template_name and not conv.window_open(now):
        return None  # template switch or refusal: decided one at a time
    if not bucket_for(first.conn).unlimited:
        return None  # rate-limited connections pace each send through the token bucket
    return targets if _batch_allows(first.conn.id) else None


def _batch_allows(conn_id: int) -> bool:
    assert _cache is not None
    allowed = _cache.allowed.get(conn_id)
    if allowed is None:
        _flush_successes()
        try:
            allowed = breaker_for(conn_id).allow()
        except REDIS_DOWN:
            allowed = True  # fail open, as in _try_target
        _cache.allowed[conn_id] = allowed
    return allowed


def _send_prepared(item: _Prepared) -> None:
    """Send a message whose attempt row was written with the batch's claim; then as :func:`_run`."""
    msg, attempt = item.msg, item.attempt
    assert attempt is not None
    try:
        conn_id = item.targets[0].conn.id
        if _cache is not None and not _cache.allowed.get(conn_id, True):
            # The breaker opened during this batch: this attempt never reached the provider, so it is
            # withdrawn and the message takes the one-at-a-time path (skip to the next channel or wait).
            db.session.delete(attempt)
            msg.attempts = max((msg.attempts or 1) - 1, 0)
            if not _hold(msg):
                return
            db.session.commit()
            _run(msg, utcnow())
            return
        if utcnow() - msg.updated_at > _lease() / 3 and not _hold(msg, commit=True):
            return  # the batch ran long and another worker took the message over
        _run(msg, utcnow(), prepared=item)
    finally:
        _publish(msg)


def _hold(msg: Message, *, commit: bool = False, count_attempt: bool = False) -> bool:
    """Renew this run's lease on a ``sending`` message; False (rolled back) when another worker took it.

    A fencing check: the row must still carry the ``updated_at`` this run last wrote. A batch can
    outlive the lease (slow provider), and the sweeper then hands the row to another worker.
    """
    db.session.flush()  # pending changes bump updated_at (onupdate): compare with the stored value
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if count_attempt:
        values["attempts"] = Message.attempts + 1
    held = db.session.execute(  # type: ignore[attr-defined]  # an UPDATE's result has rowcount
        update(Message)
        .where(
            Message.id == msg.id,
            Message.status == MessageStatus.SENDING,
            Message.updated_at == msg.updated_at,
        )
        .values(**values),
        execution_options={"synchronize_session": False},
    ).rowcount
    if not held:
        db.session.rollback()
        log.warning("message %s: another worker took it over (lease ran out); leaving it", msg.id)
        return False
    set_committed_value(msg, "updated_at", now)
    if count_attempt:
        set_committed_value(msg, "attempts", (msg.attempts or 0) + 1)
    if commit:
        db.session.commit()
    return True


def _clinic(clinic_id: int) -> Clinic:
    clinic = _cached("clinic", clinic_id, lambda: db.session.get(Clinic, clinic_id))
    assert clinic is not None
    return clinic


def _new_attempt(msg: Message, target: Target, started: datetime) -> DeliveryAttempt:
    return DeliveryAttempt(
        clinic_id=msg.clinic_id,
        message_id=msg.id,
        round=msg.delivery_round,
        channel=target.channel,
        provider=target.conn.provider,
        connection_id=target.conn.id,
        started_at=started,
        outcome=AttemptOutcome.IN_FLIGHT,
        retry_by_id=(msg.extra or {}).get("retried_by") if msg.delivery_round else None,
    )


def _round_attempts(msg: Message) -> list[DeliveryAttempt]:
    return list(
        db.session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.message_id == msg.id, DeliveryAttempt.round == msg.delivery_round)
            .order_by(DeliveryAttempt.id)
        )
    )


def _run(msg: Message, now: datetime, prepared: _Prepared | None = None) -> None:
    first: DeliveryAttempt | None = None
    if prepared is not None:  # checked and its attempt row written with the batch's claim
        conv, contact, clinic, targets = prepared.conv, prepared.contact, prepared.clinic, prepared.targets
        first, last_error = prepared.attempt, None
    else:
        conv, contact, clinic, targets, last_error, go = _start(msg, now)
        if not go:
            return

    i = 0
    while i < len(targets):
        target = targets[i]
        is_last = i == len(targets) - 1
        step = _try_target(msg, conv, contact, clinic, target, is_last=is_last, attempt=first)
        first = None
        if step.kind == "done":  # sent, scheduled or failed for good
            return
        if step.kind == "again":  # same channel once more (now as a template)
            continue
        last_error = step.error or last_error
        i += 1
    code, detail = last_error or ("no_channel", NO_CHANNEL_REASON)
    _fail(msg, code, detail)


def _start(
    msg: Message, now: datetime
) -> tuple[Conversation, Contact, Clinic, list[Target], tuple[str, str] | None, bool]:
    """The one-at-a-time path's checks: consent, an interrupted attempt, the channels left this round."""
    conv, contact = db.session.execute(
        select(Conversation, Contact)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Conversation.id == msg.conversation_id)
    ).one()
    clinic = _clinic(msg.clinic_id)

    refusal = consent_refusal(msg, conv, contact, clinic)
    if refusal:
        _fail(msg, "opted_out", refusal)
        return conv, contact, clinic, [], None, False

    fresh = not msg.attempts and not msg.delivery_round  # never tried: no history to read
    attempts = [] if fresh else _round_attempts(msg)
    last = attempts[-1] if attempts else None
    if last is not None and last.outcome == AttemptOutcome.IN_FLIGHT:
        if last.provider_message_id:  # it did go out: record it, never resend
            _mark_sent(msg, last, last.provider_message_id, conn_id=last.connection_id)
            return conv, contact, clinic, [], None, False
        last.outcome = AttemptOutcome.RETRY
        last.finished_at = now
        last.error_code, last.error_detail = "interrupted", INTERRUPTED_DETAIL
        log.warning("message %s: attempt %s was interrupted; sending again", msg.id, last.id)
        db.session.commit()

    done = {
        a.channel
        for a in attempts
        if a.outcome in (AttemptOutcome.FAILED, AttemptOutcome.SKIPPED, AttemptOutcome.TIMEOUT)
    }
    targets = [t for t in resolve_targets(msg, conv, contact, clinic) if t.channel not in done]
    last_error: tuple[str, str] | None = None
    if attempts:
        failed = [a for a in attempts if a.error_detail]
        if failed:
            last_error = (failed[-1].error_code or "failed", failed[-1].error_detail or "")
    return conv, contact, clinic, targets, last_error, True


@dataclass(frozen=True, slots=True)
class _Step:
    kind: str  # done | next | again
    error: tuple[str, str] | None = None


def _first_name(contact: Contact) -> str:
    return (contact.name or "").split(" ")[0] or "there"


def _switch_to_template(msg: Message, contact: Contact, clinic: Clinic) -> bool:
    """Turn free text into the clinic's approved template for its purpose; False when there is none."""
    tpl = templates.for_purpose(clinic.id, msg.purpose, contact.language or clinic.locale)
    if tpl is None:
        return False
    given = list(msg.template_params or [])
    params = (given + [_first_name(contact)] * tpl.variable_count)[: tpl.variable_count]
    msg.extra = {**(msg.extra or {}), "free_text_kind": msg.kind}
    msg.kind = "template"
    msg.template_name, msg.template_language, msg.template_params = tpl.name, tpl.language, params
    return True


def _try_target(
    msg: Message,
    conv: Conversation,
    contact: Contact,
    clinic: Clinic,
    target: Target,
    *,
    is_last: bool,
    attempt: DeliveryAttempt | None = None,
) -> _Step:
    """One channel: checks, the attempt row, the provider call, the outcome.

    ``attempt`` is an ``in_flight`` row the batch already committed after making the same checks
    (:func:`_claim_and_prepare`); then only the call and its outcome remain.
    """
    breaker = breaker_for(target.conn.id)
    if attempt is None:
        step = _checks(msg, conv, contact, clinic, target, breaker, is_last=is_last)
        if step is not None:
            return step
        now = utcnow()
        if not _hold(msg, count_attempt=True):
            return _Step("done")  # the lease ran out and another worker has the message now
        attempt = _new_attempt(msg, target, now)
        db.session.add(attempt)
        db.session.commit()  # the crash marker: committed before the provider sees anything
        started = attempt.started_at
    else:
        started = utcnow()  # a prepared row carries the batch's time; the call starts now

    try:
        result = _adapter(target.conn).send(_outbound(msg, conv, contact, clinic, target))
    except ProviderError as exc:
        attempt.started_at = started
        return _on_error(msg, contact, clinic, target, attempt, exc, breaker, is_last=is_last)
    _mark_sent(
        msg,
        attempt,
        result.provider_message_id,
        conn_id=target.conn.id,
        channel=target.channel,
        started=started,
    )
    _record_success(target.conn.id, breaker)
    log.info("message %s sent to %s via %s", msg.id, mask(target.address), target.conn.provider)
    if msg.critical:
        minutes = float(clinic.setting("critical_timeout_minutes", 30))
        from ..jobs import DELIVERY, enqueue, tasks

        enqueue(
            tasks.check_critical,
            msg.id,
            queue=DELIVERY,
            job_id=f"critical-{msg.id}-{attempt.id}",
            delay=timedelta(minutes=minutes),
        )
    return _Step("done")


def _checks(
    msg: Message,
    conv: Conversation,
    contact: Contact,
    clinic: Clinic,
    target: Target,
    breaker: CircuitBreaker,
    *,
    is_last: bool,
) -> _Step | None:
    """Window, circuit breaker and send-rate limit before a send; None when the send may go."""
    now = utcnow()
    if target.channel == "whatsapp" and not msg.template_name and not conv.window_open(now):
        if msg.purpose in REPLY_PURPOSES and msg.author_type != AuthorType.SYSTEM:
            _fail(msg, "window_closed", WINDOW_CLOSED_REASON)
            return _Step("done")
        if not _switch_to_template(msg, contact, clinic):
            return _Step("next", ("window_closed", WINDOW_CLOSED_REASON))
        db.session.commit()

    # Circuit breaker: skip an open one to the next channel; on the last channel, wait for the probe.
    _flush_successes()  # the breaker hears this worker's successes before it is asked
    try:
        allowed = breaker.allow()
    except REDIS_DOWN:
        allowed = True  # fail open: a Redis outage must not stop delivery
    if not allowed:
        detail = f"{target.conn.label or target.conn.provider} is failing; its circuit breaker is open."
        if not is_last:
            _record(msg, target, AttemptOutcome.SKIPPED, "circuit_open", detail)
            return _Step("next", ("circuit_open", detail))
        try:
            retry_at = breaker.state().retry_at or time.time() + 5
        except REDIS_DOWN:
            retry_at = time.time() + 5
        wait = max(retry_at - time.time(), 0.05)
        if not _within_age(msg, now):
            return _Step("next", ("circuit_open", detail))
        _reschedule(msg, wait, "circuit_open", f"Waiting: {detail}")
        return _Step("done")

    # Send-rate limit, shared by every worker.
    try:
        bucket = bucket_for(target.conn)
        wait = bucket.try_acquire()
        if 0 < wait <= RATE_SLEEP_MAX:
            time.sleep(wait)
            wait = bucket.try_acquire()
    except REDIS_DOWN:
        wait = 0.0
    if wait > 0:
        _reschedule(msg, wait, msg.error_code or "", msg.error_detail or "")
        return _Step("done")
    return None


SUCCESS_FLUSH_SECONDS = 0.1  # a batch tells the breaker of its successes at least this often


def _record_success(conn_id: int, breaker: CircuitBreaker) -> None:
    """A success closes the circuit (and clears its failures). One job, one call; a batch coalesces
    its successes per connection into one pipelined call at most every ``SUCCESS_FLUSH_SECONDS``, and
    always before this worker asks or tells the breaker anything else and when the batch ends."""
    if _cache is None:
        with contextlib.suppress(*REDIS_DOWN):
            breaker.record_success()
        return
    now = time.monotonic()
    _cache.successes.setdefault(conn_id, now)
    if now - min(_cache.successes.values()) >= SUCCESS_FLUSH_SECONDS:
        _flush_successes()


def _flush_successes(cache: _BatchCache | None = None) -> None:
    cache = cache or _cache
    if cache is None or not cache.successes:
        return
    conn_ids, cache.successes = list(cache.successes), {}
    try:
        pipe = get_redis().pipeline(transaction=False)
        for conn_id in conn_ids:
            pipe.delete(breaker_for_cache(cache, conn_id).key)  # what record_success() does
        pipe.execute()
    except REDIS_DOWN:
        pass


def breaker_for_cache(cache: _BatchCache, conn_id: int) -> CircuitBreaker:
    breaker = cache.breakers.get(conn_id)
    if breaker is None:
        breaker = cache.breakers[conn_id] = _new_breaker(conn_id)
    return breaker


def _on_error(
    msg: Message,
    contact: Contact,
    clinic: Clinic,
    target: Target,
    attempt: DeliveryAttempt,
    exc: ProviderError,
    breaker: CircuitBreaker,
    *,
    is_last: bool,
) -> _Step:
    now = utcnow()
    if exc.kind in (ErrorKind.RETRYABLE, ErrorKind.AUTH):
        try:
            _flush_successes()
            transition = breaker.record_failure()
            if _cache is not None and transition != "closed":
                _cache.allowed[target.conn.id] = False  # the rest of the batch asks the breaker
            if transition == "opened":
                log.warning("circuit opened for connection %s", target.conn.id)
        except REDIS_DOWN:
            pass
    attempt.finished_at = now
    attempt.error_code = (exc.code or exc.kind.value)[:40]
    attempt.error_detail = exc.detail[:500]
    log.info("message %s: %s failed on %s (%s)", msg.id, target.channel, target.conn.provider, exc.kind.value)

    if exc.retryable:
        channel_attempts = [
            a
            for a in _round_attempts(msg)
            if a.channel == target.channel and a.connection_id == target.conn.id
        ]
        n = len(channel_attempts)
        budget = backoff.RetryBudget(
            max_attempts=int(clinic.setting("max_attempts", MAX_ATTEMPTS)),
            max_age_seconds=float(_cfg("DELIVERY_MAX_AGE_SECONDS", MAX_AGE_SECONDS)),
        )
        first = channel_attempts[0].started_at if channel_attempts else now
        if budget.allows(n, first, now):
            attempt.outcome = AttemptOutcome.RETRY
            wait = backoff.retry_after_or_delay(
                exc.retry_after, n - 1, base=float(_cfg("DELIVERY_BACKOFF_BASE", 2.0)), cap=300.0
            )
            _reschedule(msg, wait, attempt.error_code, f"Retrying: {exc.detail}")
            return _Step("done")
        attempt.outcome = AttemptOutcome.FAILED
        db.session.commit()
        return _Step("next", (attempt.error_code, exc.detail))

    if exc.kind == ErrorKind.WINDOW_CLOSED and target.channel == "whatsapp":
        attempt.outcome = AttemptOutcome.FAILED
        attempt.error_detail = WINDOW_CLOSED_REASON
        can_switch = msg.template_name is None and msg.purpose not in REPLY_PURPOSES
        if can_switch and _switch_to_template(msg, contact, clinic):
            attempt.outcome = AttemptOutcome.RETRY  # the channel is not spent: resend as template
            db.session.commit()
            return _Step("again")
        if msg.purpose in REPLY_PURPOSES and msg.author_type != AuthorType.SYSTEM:
            db.session.flush()
            _fail(msg, "window_closed", WINDOW_CLOSED_REASON)
            return _Step("done")
        db.session.commit()
        return _Step("next", ("window_closed", WINDOW_CLOSED_REASON))

    # recipient_invalid, opted_out, auth, permanent: never again on this channel.
    attempt.outcome = AttemptOutcome.FAILED
    db.session.commit()
    return _Step("next", (attempt.error_code, exc.detail))


def _within_age(msg: Message, now: datetime) -> bool:
    age = float(_cfg("DELIVERY_MAX_AGE_SECONDS", MAX_AGE_SECONDS))
    return (now - msg.created_at).total_seconds() < age


def _reschedule(msg: Message, wait: float, code: str, detail: str) -> None:
    """Back to ``queued`` with a retry time; the job is scheduled and the sweeper waits for it."""
    from ..jobs import DELIVERY, enqueue, tasks

    wait = max(wait, 0.01)
    msg.status = MessageStatus.QUEUED
    msg.next_attempt_at = utcnow() + timedelta(seconds=wait)
    msg.error_code = (code or None) and code[:40]
    msg.error_detail = (detail or None) and detail[:500]
    db.session.commit()
    enqueue(
        tasks.deliver_message,
        msg.id,
        queue=DELIVERY,
        job_id=f"deliver-{msg.id}-a{msg.attempts}-r{msg.delivery_round}",
        delay=timedelta(seconds=wait),
    )


def _mark_sent(
    msg: Message,
    attempt: DeliveryAttempt,
    provider_message_id: str,
    *,
    conn_id: int | None,
    channel: str | None = None,
    started: datetime | None = None,
) -> None:
    """Attempt and message ``sent`` in one statement and one commit, right after the provider answered.

    Core, not the unit of work: this runs once per message sent, and a writable CTE saves the ORM
    flush and a round trip (the in-memory objects are updated to match after the commit).
    """
    db.session.flush()  # anything pending on these rows goes first
    now = utcnow()
    # Parameter names must not be column names: Core would add those columns to the SET clauses.
    params = {
        "p_attempt": attempt.id,
        "p_message": msg.id,
        "p_pid": provider_message_id,
        "p_now": now,
        "p_started": started,
        "p_channel": channel or attempt.channel,
        # status webhooks find the message by (connection, provider id)
        "p_conn": conn_id or msg.connection_id,
        "p_outcome": AttemptOutcome.SENT.value,
        "p_status": MessageStatus.SENT.value,
    }
    attempt_values: dict[str, Any] = {
        "outcome": AttemptOutcome.SENT,
        "finished_at": attempt.finished_at or now,
        "provider_message_id": provider_message_id,
        "started_at": started or attempt.started_at,
    }
    msg_values: dict[str, Any] = {
        "provider_message_id": provider_message_id,
        "status": MessageStatus.SENT,
        "sent_at": msg.sent_at or now,
        "channel": params["p_channel"],
        "connection_id": params["p_conn"],
        "error_code": None,
        "error_detail": None,
        "next_attempt_at": None,
        "updated_at": now,
    }
    if db.session.get_bind().dialect.name != "postgresql":
        # SQLite (the embedded default of `make run`) has no writable CTEs: the same two updates
        # through the unit of work, in one commit.
        for key, value in attempt_values.items():
            setattr(attempt, key, value)
        for key, value in msg_values.items():
            setattr(msg, key, value)
        db.session.commit()
        return
    stmt = _sent_statement()
    if _cache is not None and not db.session().in_transaction():
        # In a batch, with no transaction (no row lock) open in the session: one autocommit statement
        # on the batch's own connection — one round trip, no BEGIN/COMMIT, no pool checkout and ping.
        if _cache.autocommit is None:
            _cache.autocommit = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        _cache.autocommit.execute(stmt, params)
    else:
        db.session.connection().execute(stmt, params)
        db.session.commit()
    for key, value in attempt_values.items():
        set_committed_value(attempt, key, value)
    for key, value in msg_values.items():
        set_committed_value(msg, key, value)


_SENT_STATEMENT: Any = None


def _sent_statement() -> Any:
    """``UPDATE delivery_attempt … ; UPDATE message …`` as one statement, built once (bound parameters)."""
    global _SENT_STATEMENT
    if _SENT_STATEMENT is None:
        now = bindparam("p_now", type_=DateTime(timezone=True))
        sent_attempt = (
            update(DeliveryAttempt)
            .where(DeliveryAttempt.id == bindparam("p_attempt"))
            .values(
                outcome=bindparam("p_outcome"),
                finished_at=func.coalesce(DeliveryAttempt.finished_at, now),
                provider_message_id=bindparam("p_pid"),
                started_at=func.coalesce(
                    bindparam("p_started", type_=DateTime(timezone=True)), DeliveryAttempt.started_at
                ),
            )
            .cte("sent_attempt")
        )
        _SENT_STATEMENT = (
            update(Message)
            .where(Message.id == bindparam("p_message"))
            .values(
                provider_message_id=bindparam("p_pid"),
                status=bindparam("p_status"),
                sent_at=func.coalesce(Message.sent_at, now),
                channel=bindparam("p_channel"),
                connection_id=bindparam("p_conn"),
                error_code=None,
                error_detail=None,
                next_attempt_at=None,
                updated_at=now,
            )
            .add_cte(sent_attempt)
        )
    return _SENT_STATEMENT


def _record(msg: Message, target: Target, outcome: AttemptOutcome, code: str, detail: str) -> None:
    now = utcnow()
    db.session.add(
        DeliveryAttempt(
            clinic_id=msg.clinic_id,
            message_id=msg.id,
            round=msg.delivery_round,
            channel=target.channel,
            provider=target.conn.provider,
            connection_id=target.conn.id,
            started_at=now,
            finished_at=now,
            outcome=outcome,
            error_code=code,
            error_detail=detail[:500],
        )
    )
    db.session.commit()


def _fail(msg: Message, code: str, detail: str) -> None:
    msg.status = MessageStatus.FAILED
    msg.failed_at = utcnow()
    msg.next_attempt_at = None
    msg.error_code = (code or "failed")[:40]
    msg.error_detail = (detail or "The message could not be delivered.")[:500]
    db.session.commit()
    log.info("message %s failed: %s", msg.id, code)


def _outbound(
    msg: Message, conv: Conversation, contact: Contact, clinic: Clinic, target: Target
) -> OutboundMessage:
    extra = msg.extra or {}
    callback = _status_callback(target.conn)
    if target.channel == "sms":
        return OutboundMessage(
            to=target.address,
            channel=Channel.SMS,
            text=channel_text.fit_sms(_plain_body(msg, clinic)),
            client_ref=f"msg-{msg.id}",
            status_callback_url=callback,
        )
    if target.channel == "email":
        parts = channel_text.email_parts(
            _plain_body(msg, clinic), subject=f"A message from {clinic.name}", clinic_name=clinic.name
        )
        return OutboundMessage(
            to=target.address,
            channel=Channel.EMAIL,
            kind=MessageKind.EMAIL,
            text=parts.text,
            subject=parts.subject,
            html=parts.html,
            client_ref=f"msg-{msg.id}",
        )
    template = None
    if msg.template_name:
        tpl = templates.get_approved(clinic.id, msg.template_name, msg.template_language or "en")
        template = TemplateRef(
            name=msg.template_name,
            language=msg.template_language or "en",
            params=tuple(msg.template_params or ()),
            provider_template_id=(tpl.provider_ids or {}).get(target.conn.provider) if tpl else None,
        )
    kind = (
        MessageKind.TEMPLATE
        if template
        else MessageKind(msg.kind)
        if msg.kind in set(MessageKind)
        else MessageKind.TEXT
    )
    media = None
    if msg.media_key and not template:
        media = OutboundMedia(
            url=media_links.url_for_message(msg.clinic_id, msg.id),
            data=get_storage().get(msg.media_key),
            mime_type=msg.media_mime or "application/octet-stream",
            filename=msg.media_filename,
        )
    return OutboundMessage(
        to=target.address,
        channel=Channel.WHATSAPP,
        kind=kind,
        text=msg.body,
        media=media,
        template=template,
        buttons=[Button(b["id"], b["title"]) for b in extra.get("buttons", [])],
        client_ref=f"msg-{msg.id}",
        conversation_ref=conv.provider_thread_ref,
        status_callback_url=callback,
    )


def _status_callback(conn: Connection) -> str | None:
    """Twilio reports delivery to the URL given with each message; only a public URL is useful."""
    if conn.provider != "twilio" or not current_app.config.get("PUBLIC_BASE_URL"):
        return None
    return connections.webhook_url(conn).rstrip("/") + "/status"  # /webhooks/twilio/status


def _plain_body(msg: Message, clinic: Clinic) -> str:
    """The words of a message for SMS and email, which carry no WhatsApp attachment."""
    if msg.media_key:
        what = "a photo" if msg.kind == "image" else f"a document ({msg.media_filename or 'file'})"
        note = f"{clinic.name} tried to send you {what}. Please contact the clinic to receive it."
        return f"{msg.body}\n\n{note}" if msg.body else note
    if msg.body:
        return msg.body
    if msg.template_name:
        tpl = templates.get_approved(msg.clinic_id, msg.template_name, msg.template_language or "en")
        if tpl is not None:
            return tpl.render(list(msg.template_params or ()))
    return ""


# --- critical messages, a person's retry ---------------------------------------------------------


def check_critical(message_id: int) -> None:
    """A critical message still not delivered after the clinic's timeout goes out on the next channel."""
    msg = db.session.get(Message, message_id)
    if msg is None or not msg.critical or msg.status != MessageStatus.SENT:
        return
    attempts = _round_attempts(msg)
    sent = [a for a in attempts if a.outcome == AttemptOutcome.SENT]
    if not sent:
        return
    carrier = sent[-1]
    conv = db.session.get(Conversation, msg.conversation_id)
    contact = db.session.get(Contact, conv.contact_id) if conv else None
    clinic = db.session.get(Clinic, msg.clinic_id)
    if conv is None or contact is None or clinic is None:
        return
    spent = {a.channel for a in attempts if a.outcome != AttemptOutcome.RETRY} | {carrier.channel}
    if not any(t.channel not in spent for t in resolve_targets(msg, conv, contact, clinic)):
        return  # nowhere else to go: it stays "sent"
    minutes = clinic.setting("critical_timeout_minutes", 30)
    carrier.outcome = AttemptOutcome.TIMEOUT
    carrier.error_code = "not_delivered"
    carrier.error_detail = f"Not delivered within {minutes} minutes; sent on the next channel."
    msg.status = MessageStatus.QUEUED
    db.session.commit()
    deliver(msg.id)


class RetryError(ValueError):
    """The message cannot be retried; the text says why."""


def retry(*, clinic_id: int, message_id: int, user_id: int) -> Message:
    """A person retries a failed message: a new round on every channel, as a new attempt in its history."""
    msg = db.session.scalar(
        select(Message).where(
            Message.id == message_id, Message.clinic_id == clinic_id, Message.direction == Direction.OUT
        )
    )
    if msg is None:
        from flask import abort

        abort(404)
    if msg.status != MessageStatus.FAILED:
        raise RetryError("Only failed messages can be retried.")
    msg.delivery_round = (msg.delivery_round or 0) + 1
    msg.status = MessageStatus.QUEUED
    msg.next_attempt_at = None
    msg.failed_at = None
    msg.extra = {**(msg.extra or {}), "retried_by": user_id}
    db.session.commit()
    from ..jobs import DELIVERY, enqueue, tasks

    enqueue(
        tasks.deliver_message, msg.id, queue=DELIVERY, job_id=f"deliver-{msg.id}-retry{msg.delivery_round}"
    )
    realtime.publish(clinic_id, "status", conversation_id=msg.conversation_id, message_id=msg.id)
    return msg
