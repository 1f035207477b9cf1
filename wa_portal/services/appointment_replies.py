"""Patients answering confirmations and reminders: confirm, cancel, reschedule.

Called by the automation hook after the consent handler, once per new inbound message. A reply
button (``appt:confirm`` …) or a keyword in the patient's words ("sí", "2", "remarcar") acts on
the patient's next active appointment and answers them; "reschedule" offers the therapist's next
free times as a numbered list, remembered in Redis for a day, and the next number books one.
Anything else is left for a person: the handler returns False and the conversation waits in the inbox.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import datetime

from ..extensions import db
from ..models import Appointment, Conversation, ConversationStatus, Message, utcnow
from . import appointments, reminders
from .keywords import Intent, classify
from .redis_conn import REDIS_DOWN, get_redis

log = logging.getLogger(__name__)

OFFER_TTL_SECONDS = 24 * 3600
OFFER_SLOTS = 5


def _offer_key(conversation_id: int) -> str:
    return f"wa:appt:offer:{conversation_id}"


def _load_offer(conversation_id: int) -> dict | None:
    try:
        raw = get_redis().get(_offer_key(conversation_id))
    except REDIS_DOWN:
        return None
    return json.loads(raw) if raw else None


def _save_offer(conversation_id: int, appointment_id: int, slots: list[datetime]) -> None:
    data = {"appointment_id": appointment_id, "slots": [s.isoformat() for s in slots]}
    try:
        get_redis().set(_offer_key(conversation_id), json.dumps(data), ex=OFFER_TTL_SECONDS)
    except REDIS_DOWN:
        log.warning("reschedule offer for conversation %s not remembered: redis down", conversation_id)


def _clear_offer(conversation_id: int) -> None:
    with contextlib.suppress(*REDIS_DOWN):
        get_redis().delete(_offer_key(conversation_id))


def _handled(conv: Conversation) -> None:
    """The assistant answered: the conversation leaves the awaiting-human queue (unless someone owns it)."""
    if conv.status == ConversationStatus.AWAITING_HUMAN:
        conv.status = ConversationStatus.BOT
        conv.awaiting_since = None
    db.session.commit()


def _to_staff(conv: Conversation) -> bool:
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
    offer = _load_offer(conv.id)
    payload = (msg.extra or {}).get("button_payload")
    reply = classify(msg.body, button_payload=payload, expecting_choice=offer is not None)
    if reply.intent in (Intent.NONE, Intent.STOP, Intent.START):
        return False

    if reply.intent == Intent.CHOICE:
        if offer is None:
            return False
        return _book_choice(msg, conv, offer, reply.choice or 0)

    appt = appointments.next_active_for_patient(clinic_id=msg.clinic_id, patient_id=patient.id)
    if appt is None:
        return _to_staff(conv)
    if reply.intent == Intent.CONFIRM:
        appointments.confirm(clinic_id=msg.clinic_id, appointment_id=appt.id)
        _clear_offer(conv.id)
        reminders.answer(appt, "confirmed_ack")
    elif reply.intent == Intent.CANCEL:
        appointments.cancel(clinic_id=msg.clinic_id, appointment_id=appt.id, notify=False)
        _clear_offer(conv.id)
        reminders.answer(appt, "cancelled_ack")
    elif reply.intent == Intent.RESCHEDULE:
        return _offer_slots(conv, appt)
    else:  # pragma: no cover - every intent is listed above
        return False
    log.info("appointment %s: patient replied %s", appt.id, reply.intent)
    _handled(conv)
    return True


def _offer_slots(conv: Conversation, appt: Appointment) -> bool:
    slots = appointments.next_free_slots(
        clinic_id=appt.clinic_id,
        therapist_id=appt.therapist_id,
        count=OFFER_SLOTS,
        exclude_appointment_id=appt.id,
    )
    if not slots:
        return _to_staff(conv)  # nothing to offer: a person finds a time
    _save_offer(conv.id, appt.id, slots)
    reminders.answer(appt, "reschedule_offer", offered_slots=slots)
    _handled(conv)
    return True


def _book_choice(msg: Message, conv: Conversation, offer: dict, choice: int) -> bool:
    slots = offer.get("slots") or []
    if not 1 <= choice <= len(slots):
        return _to_staff(conv)
    try:
        appt = appointments.reschedule(
            clinic_id=msg.clinic_id,
            appointment_id=int(offer["appointment_id"]),
            starts_at=datetime.fromisoformat(slots[choice - 1]),
            notify=False,
        )
    except appointments.SlotTaken:
        # Someone took that time since we offered it: offer what is free now.
        appt = appointments.get(clinic_id=msg.clinic_id, appointment_id=int(offer["appointment_id"]))
        return _offer_slots(conv, appt)
    except (appointments.AppointmentError, appointments.NotFound):
        _clear_offer(conv.id)
        return _to_staff(conv)
    _clear_offer(conv.id)
    reminders.answer(appt, "rescheduled_ack")
    _handled(conv)
    return True
