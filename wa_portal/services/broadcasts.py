"""Broadcasts: one message to many patients (an emergency alert or an announcement).

``preview`` resolves the audience and predicts, per recipient, the channel delivery will use first
(the same rules as ``delivery.resolve_targets`` and ``delivery.consent_refusal``); ``send`` writes
the broadcast and one queued message per recipient in one transaction, then hands the messages to
the delivery worker in batches (``tasks.deliver_messages``). Delivery itself — consent at send
time, window → template, fallback chain, critical timeouts — is the delivery module's, unchanged.

Consent: announcements never reach opted-out contacts; emergencies do when the clinic's
``emergency_to_opted_out`` setting allows it (default on). Opted-out contacts are left out here
already, so they get no message row at all — and ``delivery.consent_refusal`` checks again at send time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import (
    AuthorType,
    Broadcast,
    BroadcastKind,
    BroadcastStatus,
    Clinic,
    Connection,
    Consent,
    Contact,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    MessageStatus,
    MessageTemplate,
    utcnow,
)
from . import appointments, connections, conversations, delivery, messaging, templates
from .messaging import ComposeError, TemplateUse

log = logging.getLogger(__name__)

BATCH_SIZE = 50  # messages per delivery job
SAMPLE_SIZE = 8
MAX_RECIPIENTS = 20_000
MAX_DAYS = 365
CHANNELS = ("whatsapp", "sms", "email")
CHANNEL_LABELS = {"whatsapp": "WhatsApp", "sms": "SMS", "email": "email"}
PENDING = (MessageStatus.QUEUED, MessageStatus.SENDING)
AUDIENCE_TYPES = {
    "appointments_on": "Patients with an appointment on a day",
    "all_opted_in": "All contacts who opted in",
    "wrote_within": "Contacts who wrote recently",
}
PURPOSE = {BroadcastKind.EMERGENCY: "emergency", BroadcastKind.ANNOUNCEMENT: "broadcast"}


class BroadcastError(ComposeError):
    """The broadcast cannot be sent as asked; the text says why (``field`` names the form field)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BroadcastNotFound(LookupError):
    pass


# --- audiences ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    type: str
    day: date | None = None
    therapist_id: int | None = None
    days: int | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Audience:
        """From stored JSON or a form ({"type", "date", "therapist_id", "days"}); raises BroadcastError."""
        kind = str(data.get("type") or "").strip()
        if kind == "therapist_day":  # the same audience, one therapist required
            kind = "appointments_on"
            if not data.get("therapist_id"):
                raise BroadcastError("Choose a therapist.", "therapist_id")
        if kind not in AUDIENCE_TYPES:
            raise BroadcastError("Choose who gets the message.", "audience")
        if kind == "appointments_on":
            try:
                day = date.fromisoformat(str(data.get("date") or ""))
            except ValueError:
                raise BroadcastError("Choose the day of the appointments.", "date") from None
            therapist = data.get("therapist_id")
            try:
                therapist_id = int(therapist) if therapist not in (None, "", "0") else None
            except (TypeError, ValueError):
                raise BroadcastError("Unknown therapist.", "therapist_id") from None
            return cls(kind, day=day, therapist_id=therapist_id)
        if kind == "wrote_within":
            try:
                days = int(data.get("days") or 0)
            except (TypeError, ValueError):
                days = 0
            if not 1 <= days <= MAX_DAYS:
                raise BroadcastError(f"Give a number of days between 1 and {MAX_DAYS}.", "days")
            return cls(kind, days=days)
        return cls(kind)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.day is not None:
            out["date"] = self.day.isoformat()
        if self.therapist_id:
            out["therapist_id"] = self.therapist_id
        if self.days:
            out["days"] = self.days
        return out


def describe(audience: Mapping[str, Any], *, clinic_id: int) -> str:
    """A sentence for the audience: "Patients with an appointment on Fri 4 Dec 2026 (Dr. Ana Ruiz)"."""
    try:
        a = Audience.parse(audience)
    except BroadcastError:
        return "Unknown audience"
    if a.type == "appointments_on" and a.day is not None:
        text = f"Patients with an appointment on {a.day:%a %-d %b %Y}"
        if a.therapist_id:
            with contextlib.suppress(appointments.NotFound):
                therapist = appointments.get_therapist(clinic_id=clinic_id, therapist_id=a.therapist_id)
                text += f" ({therapist.display_name})"
        return text
    if a.type == "wrote_within":
        return f"Contacts who wrote in the last {a.days} day{'s' if a.days != 1 else ''}"
    return AUDIENCE_TYPES[a.type]


@dataclass
class _Member:
    contact: Contact
    name: str
    appointment_ids: list[int] = field(default_factory=list)


def _members(clinic: Clinic, audience: Audience) -> list[_Member]:
    """The distinct contacts of an audience, in a stable order (a patient with two appointments once)."""
    if audience.type == "appointments_on":
        assert audience.day is not None
        if audience.therapist_id:
            try:
                appointments.get_therapist(clinic_id=clinic.id, therapist_id=audience.therapist_id)
            except appointments.NotFound:
                raise BroadcastError("Unknown therapist.", "therapist_id") from None
        tz = appointments.zone(clinic)
        start = datetime.combine(audience.day, time(0), tz)
        end = datetime.combine(audience.day + timedelta(days=1), time(0), tz)
        rows = appointments.list_appointments(
            clinic_id=clinic.id,
            therapist_id=audience.therapist_id,
            status="active",
            start=start,
            end=end,
            limit=MAX_RECIPIENTS,
        )
        by_contact: dict[int, _Member] = {}
        for appt in rows:
            contact = appt.patient.contact
            member = by_contact.setdefault(contact.id, _Member(contact, appt.patient.full_name))
            member.appointment_ids.append(appt.id)
        return list(by_contact.values())
    query = select(Contact).where(Contact.clinic_id == clinic.id)
    if audience.type == "all_opted_in":
        query = query.where(Contact.consent == Consent.OPTED_IN)
    else:  # wrote_within
        since = utcnow() - timedelta(days=audience.days or 0)
        wrote = select(Conversation.contact_id).where(
            Conversation.clinic_id == clinic.id, Conversation.last_inbound_at >= since
        )
        query = query.where(Contact.id.in_(wrote))
    contacts = db.session.scalars(query.order_by(Contact.name, Contact.id).limit(MAX_RECIPIENTS))
    return [_Member(c, c.display_name) for c in contacts]


# --- channel prediction ------------------------------------------------------------------------


@dataclass
class Recipient:
    contact: Contact
    name: str
    channel: str | None  # the first channel delivery will use; None = skipped
    skipped: str | None = None  # "opted_out" | "no_route"
    appointment_ids: list[int] = field(default_factory=list)
    conversation: Conversation | None = None
    opted_out: bool = False


@dataclass
class Preview:
    kind: BroadcastKind
    audience: Audience
    recipients: list[Recipient]
    emergency_to_opted_out: bool

    @property
    def sending(self) -> list[Recipient]:
        return [r for r in self.recipients if r.channel is not None]

    @property
    def by_channel(self) -> dict[str, int]:
        counts = dict.fromkeys(CHANNELS, 0)
        for r in self.sending:
            counts[r.channel or ""] += 1
        return counts

    @property
    def total(self) -> int:
        return len(self.sending)

    @property
    def opted_out_skipped(self) -> int:
        return sum(1 for r in self.recipients if r.skipped == "opted_out")

    @property
    def opted_out_included(self) -> int:
        return sum(1 for r in self.sending if r.opted_out)

    @property
    def no_route(self) -> int:
        return sum(1 for r in self.recipients if r.skipped == "no_route")

    @property
    def appointments(self) -> int:
        return sum(len(r.appointment_ids) for r in self.sending)

    @property
    def sample(self) -> list[str]:
        return [r.name for r in self.sending[:SAMPLE_SIZE]]

    def sentence(self) -> str:
        """ "Send to 23 patients: 20 by WhatsApp, 2 by SMS, 1 by email"."""
        return send_sentence(self.total, self.by_channel)

    def counts(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_channel": self.by_channel,
            "opted_out_skipped": self.opted_out_skipped,
            "opted_out_included": self.opted_out_included,
            "no_route": self.no_route,
            "appointments": self.appointments,
            "sample": self.sample,
        }


def send_sentence(total: int, by_channel: Mapping[str, int]) -> str:
    parts = [f"{n} by {CHANNEL_LABELS[c]}" for c in CHANNELS if (n := by_channel.get(c, 0))]
    noun = "patient" if total == 1 else "patients"
    return f"Send to {total} {noun}" + (": " + ", ".join(parts) if parts else "")


@dataclass
class _Routes:
    """The clinic's connections for each channel, looked up once per preview."""

    whatsapp: Connection | None
    sms: Connection | None
    email: Connection | None


def _routes(clinic_id: int) -> _Routes:
    sms = None
    for conn in connections.list_for_clinic(clinic_id, provider="twilio"):
        cfg = conn.config or {}
        if cfg.get("sms_from") or cfg.get("messaging_service_sid"):
            sms = conn
            break
    ses = connections.list_for_clinic(clinic_id, provider="ses")
    return _Routes(messaging.default_connection(clinic_id), sms, ses[0] if ses else None)


def _conversations(conn: Connection | None, contact_ids: Sequence[int]) -> dict[int, Conversation]:
    if conn is None or not contact_ids:
        return {}
    found: dict[int, Conversation] = {}
    for i in range(0, len(contact_ids), 500):
        chunk = contact_ids[i : i + 500]
        for conv in db.session.scalars(
            select(Conversation).where(
                Conversation.connection_id == conn.id, Conversation.contact_id.in_(chunk)
            )
        ):
            found[conv.contact_id] = conv
    return found


def _template_for(clinic_id: int, template: TemplateUse | None) -> MessageTemplate | None:
    if template is None:
        return None
    tpl = templates.get_approved(clinic_id, template.name, template.language)
    if tpl is None:
        raise BroadcastError("That template is not approved for this clinic.", "template")
    return tpl


def _resolve(
    clinic: Clinic, kind: BroadcastKind, audience: Audience, template: MessageTemplate | None
) -> Preview:
    members = _members(clinic, audience)
    routes = _routes(clinic.id)
    convs = _conversations(routes.whatsapp, [m.contact.id for m in members])
    purpose = PURPOSE[kind]
    probe = Message(purpose=purpose)  # transient: consent_refusal reads only the purpose here
    now = utcnow()
    generic: dict[str, bool] = {}

    def has_template(language: str | None) -> bool:
        if template is not None:
            return True
        lang = language or clinic.locale
        if lang not in generic:
            generic[lang] = templates.for_purpose(clinic.id, purpose, lang) is not None
        return generic[lang]

    out: list[Recipient] = []
    for m in members:
        contact = m.contact
        conv = convs.get(contact.id)
        r = Recipient(
            contact, m.name, None, appointment_ids=m.appointment_ids, conversation=conv,
            opted_out=contact.consent == Consent.OPTED_OUT,
        )  # fmt: skip
        out.append(r)
        if delivery.consent_refusal(probe, conv, contact, clinic):  # type: ignore[arg-type]
            r.skipped = "opted_out"
            continue
        for channel in delivery.channel_chain(clinic, contact):
            if channel == "whatsapp" and routes.whatsapp is not None and contact.phone:
                # Outside the 24-hour window WhatsApp takes only a template; without one, delivery
                # moves on to the next channel (delivery._checks).
                if (conv is not None and conv.window_open(now)) or has_template(contact.language):
                    r.channel = channel
            elif (channel == "sms" and routes.sms is not None and contact.phone) or (
                channel == "email" and routes.email is not None and contact.email
            ):
                r.channel = channel
            if r.channel:
                break
        if r.channel is None:
            r.skipped = "no_route"
    return Preview(kind, audience, out, bool(clinic.setting("emergency_to_opted_out", True)))


def _clinic(clinic_id: int) -> Clinic:
    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        raise BroadcastError("Unknown clinic.")
    return clinic


def _kind(kind: str) -> BroadcastKind:
    try:
        return BroadcastKind(kind)
    except ValueError:
        raise BroadcastError("Choose emergency or announcement.", "kind") from None


def preview(
    *,
    clinic_id: int,
    audience: Mapping[str, Any],
    kind: str = BroadcastKind.ANNOUNCEMENT,
    template: TemplateUse | None = None,
) -> Preview:
    """Who the broadcast would reach, on which channel first; opted-out and unreachable contacts counted."""
    clinic = _clinic(clinic_id)
    return _resolve(clinic, _kind(kind), Audience.parse(audience), _template_for(clinic_id, template))


# --- send --------------------------------------------------------------------------------------


class SendOutcome(NamedTuple):
    broadcast: Broadcast
    duplicate: bool  # the same form was submitted before: nothing new was sent


def _existing(clinic_id: int, key: str | None) -> Broadcast | None:
    if not key:
        return None
    return db.session.scalar(
        select(Broadcast).where(Broadcast.clinic_id == clinic_id, Broadcast.idempotency_key == key)
    )


def _first_name(name: str) -> str:
    return (name or "").split(" ")[0] or "there"


def send(
    *,
    clinic_id: int,
    user_id: int,
    kind: str,
    audience: Mapping[str, Any],
    body: str,
    template: TemplateUse | None = None,
    cancel_appointments: bool = False,
    idempotency_key: str | None = None,
    confirm_phi: bool = False,
) -> SendOutcome:
    """Write the broadcast and one queued message per recipient in one transaction; enqueue delivery.

    A second call with the same ``idempotency_key`` (a double submit) returns the first broadcast.
    The clinic's PHI policy applies to ``body`` (``messaging.PhiBlocked`` / ``PhiWarning``).
    With ``cancel_appointments`` (emergencies for a day's appointments), those appointments are
    cancelled without their own cancellation notice: the broadcast is the notice.
    """
    key = (idempotency_key or "").strip()[:64] or None
    found = _existing(clinic_id, key)
    if found is not None:
        return SendOutcome(found, True)
    clinic = _clinic(clinic_id)
    kind_value = _kind(kind)
    text = (body or "").strip()
    if not text:
        raise BroadcastError("Write the message first.", "body")
    if len(text) > messaging.MAX_TEXT:
        raise BroadcastError(f"Messages can be at most {messaging.MAX_TEXT} characters.", "body")
    parsed = Audience.parse(audience)
    if cancel_appointments and (kind_value != BroadcastKind.EMERGENCY or parsed.type != "appointments_on"):
        raise BroadcastError("Only an emergency for a day's appointments can cancel them.", "cancel")
    tpl = _template_for(clinic_id, template)
    findings = messaging.check_phi(clinic_id=clinic_id, text=text, confirmed=confirm_phi)

    for attempt in range(2):
        pv = _resolve(clinic, kind_value, parsed, tpl)
        if not pv.sending:
            raise BroadcastError("Nobody in this audience can be reached.", "audience")
        try:
            broadcast, message_ids = _write(clinic, user_id, kind_value, pv, text, tpl, key, findings)
            break
        except IntegrityError:
            db.session.rollback()
            found = _existing(clinic_id, key)
            if found is not None:
                return SendOutcome(found, True)  # the other submit won the race
            if attempt:
                raise
            # A conversation created meanwhile (a patient wrote in): resolve again and retry once.
    log.info("broadcast %s queued: %d message(s)", broadcast.id, len(message_ids))

    from ..jobs import DELIVERY, enqueue_many, tasks

    chunks = [message_ids[i : i + BATCH_SIZE] for i in range(0, len(message_ids), BATCH_SIZE)]
    enqueued = enqueue_many(
        tasks.deliver_messages,
        [((chunk,), f"deliver-broadcast-{broadcast.id}-{n}") for n, chunk in enumerate(chunks)],
        queue=DELIVERY,
    )
    if enqueued:  # else it stays "queued": the sweeper re-enqueues the messages
        broadcast.status = BroadcastStatus.SENDING
        db.session.commit()
    if cancel_appointments:
        _cancel(clinic_id, broadcast, [a for r in pv.sending for a in r.appointment_ids])
    return SendOutcome(broadcast, False)


def _write(
    clinic: Clinic,
    user_id: int,
    kind: BroadcastKind,
    pv: Preview,
    text: str,
    tpl: MessageTemplate | None,
    key: str | None,
    findings: Sequence[Any],
) -> tuple[Broadcast, list[int]]:
    now = utcnow()
    wa = messaging.default_connection(clinic.id)
    if wa is None:
        # Messages live in a conversation of the clinic's WhatsApp number, SMS and email ones too.
        raise BroadcastError("The clinic has no WhatsApp connection yet.")
    broadcast = Broadcast(
        clinic_id=clinic.id,
        created_by_id=user_id,
        kind=kind,
        audience=pv.audience.as_dict(),
        body=text,
        template_name=tpl.name if tpl else None,
        template_language=tpl.language if tpl else None,
        recipients_count=pv.total,
        status=BroadcastStatus.QUEUED,
        idempotency_key=key,
        details={
            "planned": pv.by_channel,
            "skipped": [
                {"contact_id": r.contact.id, "name": r.name, "reason": r.skipped}
                for r in pv.recipients
                if r.skipped
            ][:500],
            "opted_out_included": pv.opted_out_included,
            **({"phi_confirmed": [f.label for f in findings]} if findings else {}),
        },
        created_at=now,
    )
    db.session.add(broadcast)
    db.session.flush()
    purpose = PURPOSE[kind]
    messages: list[Message] = []
    for r in pv.sending:
        conv = r.conversation
        if conv is None:
            conv = Conversation(
                clinic_id=clinic.id,
                connection_id=wa.id,
                contact_id=r.contact.id,
                status=ConversationStatus.BOT,
            )
            db.session.add(conv)
        # Inside the window WhatsApp takes the words as written; outside it, the chosen template
        # (none chosen: delivery picks the clinic's generic one, or the next channel).
        use_tpl = tpl if tpl is not None and not conv.window_open(now) else None
        msg = Message(
            clinic_id=clinic.id,
            conversation=conv,
            connection_id=wa.id,
            direction=Direction.OUT,
            kind="template" if use_tpl else "text",
            body=text,
            author_type=AuthorType.STAFF,
            author_id=user_id,
            status=MessageStatus.QUEUED,
            purpose=purpose,
            critical=kind == BroadcastKind.EMERGENCY,
            template_name=use_tpl.name if use_tpl else None,
            template_language=use_tpl.language if use_tpl else None,
            template_params=[_first_name(r.name)] * use_tpl.variable_count if use_tpl else None,
            extra={"broadcast_id": broadcast.id},
            broadcast_id=broadcast.id,
            created_at=now,
        )
        messages.append(msg)
        conversations.touch(conv, at=now, preview=text, inbound=False)
    db.session.add_all(messages)
    db.session.commit()
    return broadcast, [m.id for m in messages]


def _cancel(clinic_id: int, broadcast: Broadcast, appointment_ids: Iterable[int]) -> None:
    cancelled = 0
    for appt_id in dict.fromkeys(appointment_ids):
        try:
            appointments.cancel(clinic_id=clinic_id, appointment_id=appt_id, notify=False)
            cancelled += 1
        except (appointments.AppointmentError, appointments.NotFound):
            db.session.rollback()  # changed meanwhile (completed, deleted): leave it
    broadcast.details = {**(broadcast.details or {}), "cancelled_appointments": cancelled}
    db.session.commit()
    log.info("broadcast %s cancelled %d appointment(s)", broadcast.id, cancelled)


# --- reading -----------------------------------------------------------------------------------


@dataclass
class Progress:
    by_status: dict[str, int]
    by_channel: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def pending(self) -> int:
        return sum(self.by_status.get(s, 0) for s in PENDING)

    @property
    def sent(self) -> int:
        """Left the clinic: sent, delivered or read."""
        return sum(self.by_status.get(s, 0) for s in ("sent", "delivered", "read"))

    @property
    def failed(self) -> int:
        return self.by_status.get("failed", 0)

    @property
    def percent(self) -> int:
        return round(100 * (self.total - self.pending) / self.total) if self.total else 100


def get(*, clinic_id: int, broadcast_id: int) -> Broadcast:
    b = db.session.scalar(
        select(Broadcast).where(Broadcast.id == broadcast_id, Broadcast.clinic_id == clinic_id)
    )
    if b is None:
        raise BroadcastNotFound(broadcast_id)
    return b


def _progress_rows(clinic_id: int, ids: Sequence[int]) -> dict[int, Progress]:
    out = {i: Progress({}, {}) for i in ids}
    if not ids:
        return out
    rows = db.session.execute(
        select(Message.broadcast_id, Message.status, Message.channel, func.count())
        .where(Message.clinic_id == clinic_id, Message.broadcast_id.in_(ids))
        .group_by(Message.broadcast_id, Message.status, Message.channel)
    )
    for bid, status, channel, n in rows:
        if bid is None:
            continue
        p = out[bid]
        p.by_status[str(status)] = p.by_status.get(str(status), 0) + n
        if status not in PENDING:
            p.by_channel[str(channel)] = p.by_channel.get(str(channel), 0) + n
    return out


def _settle(b: Broadcast, p: Progress) -> bool:
    """Move the broadcast's status to what its messages say; True when it changed."""
    if p.total and not p.pending and b.status != BroadcastStatus.DONE:
        b.status, b.finished_at = BroadcastStatus.DONE, utcnow()
        return True
    if p.pending and b.status == BroadcastStatus.DONE:  # a critical message went out again
        b.status, b.finished_at = BroadcastStatus.SENDING, None
        return True
    return False


def progress(*, clinic_id: int, broadcast_id: int) -> tuple[Broadcast, Progress]:
    """The broadcast and its delivery counts; its status follows its messages (done when none is pending)."""
    b = get(clinic_id=clinic_id, broadcast_id=broadcast_id)
    p = _progress_rows(clinic_id, [b.id])[b.id]
    if _settle(b, p):
        db.session.commit()
    return b, p


def list_recent(*, clinic_id: int, limit: int = 50) -> list[tuple[Broadcast, Progress]]:
    """The clinic's broadcasts, newest first, each with its delivery counts."""
    rows = list(
        db.session.scalars(
            select(Broadcast)
            .where(Broadcast.clinic_id == clinic_id)
            .order_by(Broadcast.created_at.desc(), Broadcast.id.desc())
            .limit(limit)
        )
    )
    progress_by_id = _progress_rows(clinic_id, [b.id for b in rows])
    changed = [_settle(b, progress_by_id[b.id]) for b in rows]  # every row, not up to the first
    if any(changed):
        db.session.commit()
    return [(b, progress_by_id[b.id]) for b in rows]


@dataclass
class RecipientRow:
    message: Message
    name: str
    masked_phone: str


def recipients(*, clinic_id: int, broadcast_id: int, limit: int = 5000) -> list[RecipientRow]:
    """Each recipient's message: name, masked phone (last 4 digits), channel used, status."""
    rows = db.session.execute(
        select(Message, Contact)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Message.clinic_id == clinic_id, Message.broadcast_id == broadcast_id)
        .order_by(Message.id)
        .limit(limit)
    )
    return [RecipientRow(m, c.display_name, c.masked_phone) for m, c in rows]
