"""Patients answering confirmations and reminders: confirm, cancel, reschedule.

Called by the automation hook after the consent handler, once per new inbound message. A reply
button (``appt:confirm`` …) or a keyword in the patient's words ("sí", "2", "remarcar") acts on
the patient's next active appointment and answers them; "reschedule" offers the therapist's next
free times as a numbered list, remembered in Redis for a day, and the next number books one.
Anything else is left for a person: the handler returns False and the conversation waits in the inbox.

The numbered offer (:class:`SlotOffer`, ``load_offer`` / ``save_offer`` / ``clear_offer``) and the
conversation bookkeeping (``mark_answered`` / ``hand_to_staff``) are shared with the assistant
(services/assistant.py), whose offers book a new appointment instead of moving one: one offer per
conversation, so a number always answers the last list the patient was sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from ..extensions import db
from ..models import Appointment, Conversation, ConversationStatus, Message, utcnow
from . import appointments, reminders
from .keywords import Intent, classify
from .redis_conn import REDIS_DOWN, get_redis

log = logging.getLogger(__name__)

OFFER_TTL_SECONDS = 24 * 3600
OFFER_SLOTS = 5


@dataclass(frozen=True, slots=True)
class OfferedSlot:
    starts_at: datetime
    therapist_id: int | None = None  # None: the therapist of the appointment being moved


@dataclass(frozen=True, slots=True)
class SlotOffer:
    """Numbered free times sent to a patient; their next number picks one (``pick(n)``, 1-based)."""

    slots: tuple[OfferedSlot, ...]
    appointment_id: int | None = None  # the appointment to move; None: a new appointment to book

    def pick(self, number: int) -> OfferedSlot | None:
        return self.slots[number - 1] if 1 <= number <= len(self.slots) else None


def _offer_key(conversation_id: int) -> str:
    return f"wa:appt:offer:{conversation_id}"


def load_offer(conversation_id: int) -> SlotOffer | None:
    """The conversation's open offer; None when there is none, it expired, or Redis is down."""
    try:
        raw = get_redis().get(_offer_key(conversation_id))
    except REDIS_DOWN:
        return None
    if not raw:
        return None
    data = json.loads(raw)
    starts = data.get("slots") or []
    # Offers stored before the assistant existed have no therapist list: they move an appointment.
    therapists = data.get("therapists") or [None] * len(starts)
    return SlotOffer(
        slots=tuple(
            OfferedSlot(datetime.fromisoformat(s), t) for s, t in zip(starts, therapists, strict=False)
        ),
        appointment_id=data.get("appointment_id"),
    )


def save_offer(conversation_id: int, offer: SlotOffer) -> None:
    data = {
        "appointment_id": offer.appointment_id,
        "slots": [s.starts_at.isoformat() for s in offer.slots],
        "therapists": [s.therapist_id for s in offer.slots],
    }
    try:
        get_redis().set(_offer_key(conversation_id), json.dumps(data), ex=OFFER_TTL_SECONDS)
    except REDIS_DOWN:
        log.warning("slot offer for conversation %s not remembered: redis down", conversation_id)


def clear_offer(conversation_id: int) -> None:
    with contextlib.suppress(*REDIS_DOWN):
        get_redis().delete(_offer_key(conversation_id))


def mark_answered(conv: Conversation) -> None:
    """The assistant answered: the conversation leaves the awaiting-human queue (unless someone owns it)."""
    if conv.status == ConversationStatus.AWAITING_HUMAN:
        conv.status = ConversationStatus.BOT
        conv.awaiting_since = None
    db.session.commit()


def hand_to_staff(conv: Conversation) -> bool:
    """The conversation waits for a person (an assigned one stays with its assignee); always False."""
    if conv.status in (ConversationStatus.BOT, ConversationStatus.CLOSED):
        conv.status = ConversationStatus.AWAITING_HUMAN
        conv.awaiting_since = conv.awaiting_since or utcnow()
        db.session.commit()
    return False


def handle_inbound(msg: Message) -> bool:
    """Apply a reply to the patient's next appointment; True when it was handled and answered."""
    conv = db.session.get(Conversation, msg.conversation_id)
    if conv is None:
        return False
    patient = appointments.patient_for_contact(clinic_id=msg.clinic_id, contact_id=conv.contact_id)
    if patient is None:
        return False
    offer = load_offer(conv.id)
    payload = (msg.extra or {}).get("button_payload")
    # Any open offer makes a bare number a choice, not "2 = cancel": it answers the list just sent.
    reply = classify(msg.body, button_payload=payload, expecting_choice=offer is not None)
    if reply.intent not in (Intent.CONFIRM, Intent.CANCEL, Intent.RESCHEDULE, Intent.CHOICE):
        return False  # opt-out/in, booking, a person, free text: someone else's

    if reply.intent == Intent.CHOICE:
        if offer is None or offer.appointment_id is None:
            return False  # no offer, or the assistant's offer of a new appointment
        return _book_choice(msg, conv, offer, reply.choice or 0)

    appt = appointments.next_active_for_patient(clinic_id=msg.clinic_id, patient_id=patient.id)
    if appt is None:
        return hand_to_staff(conv)
    if reply.intent == Intent.CONFIRM:
        appointments.confirm(clinic_id=msg.clinic_id, appointment_id=appt.id)
        clear_offer(conv.id)
        reminders.answer(appt, "confirmed_ack")
    elif reply.intent == Intent.CANCEL:
        appointments.cancel(clinic_id=msg.clinic_id, appointment_id=appt.id, notify=False)
        clear_offer(conv.id)
        reminders.answer(appt, "cancelled_ack")
    elif reply.intent == Intent.RESCHEDULE:
        return _offer_slots(conv, appt)
    else:  # pragma: no cover - every intent is listed above
        return False
    log.info("appointment %s: patient replied %s", appt.id, reply.intent)
    mark_answered(conv)
    return True


def _offer_slots(conv: Conversation, appt: Appointment) -> bool:
    slots = appointments.next_free_slots(
        clinic_id=appt.clinic_id,
        therapist_id=appt.therapist_id,
        count=OFFER_SLOTS,
        exclude_appointment_id=appt.id,
    )
    if not slots:
        return hand_to_staff(conv)  # nothing to offer: a person finds a time
    save_offer(conv.id, SlotOffer(tuple(OfferedSlot(s) for s in slots), appointment_id=appt.id))
    reminders.answer(appt, "reschedule_offer", offered_slots=slots)
    mark_answered(conv)
    return True


def _book_choice(msg: Message, conv: Conversation, offer: SlotOffer, choice: int) -> bool:
    slot = offer.pick(choice)
    if slot is None or offer.appointment_id is None:
        return hand_to_staff(conv)
    try:
        appt = appointments.reschedule(
            clinic_id=msg.clinic_id,
            appointment_id=offer.appointment_id,
            starts_at=slot.starts_at,
            notify=False,
        )
    except appointments.SlotTaken:
        # Someone took that time since we offered it: offer what is free now.
        appt = appointments.get(clinic_id=msg.clinic_id, appointment_id=offer.appointment_id)
        return _offer_slots(conv, appt)
    except (appointments.AppointmentError, appointments.NotFound):
        clear_offer(conv.id)
        return hand_to_staff(conv)
    clear_offer(conv.id)
    reminders.answer(appt, "rescheduled_ack")
    mark_answered(conv)
    return True
