"""The assistant answers first: FAQ answers, booking a new appointment by message, hand-off to a person.

Runs last in the automation chain (after consent keywords and appointment replies), once per new
inbound message, when the clinic's switch is on (``clinic.settings["assistant_enabled"]``, default
on). What it does with a message, in order:

1. Quiet: a staff member replied in this conversation in the last ``QUIET_HOURS`` hours → nothing
   (people in the middle of a conversation do not want a bot cutting in; consent keywords and
   appointment answers, handled before, still work).
2. A number answering the assistant's own list of free times (``appointment_replies.SlotOffer`` with
   no appointment) books that time with ``appointments.book``, which sends the confirmation. A time
   taken meanwhile gets a fresh list; a number not on the list gets the question again.
3. ``HUMAN`` ("talk to a person", "hablar con alguien", "atendente") → "A member of the team will
   answer you here soon" in the patient's language, and the conversation waits for a person
   (status ``awaiting_human``, the inbox's "Awaiting human" view; an assigned one stays assigned).
4. ``BOOK`` ("I'd like to book", "quiero una cita", "marcar consulta"), when booking by message is
   on (``clinic.settings["assistant_booking"]``, default off: it writes to the calendar) and the
   patient has no upcoming appointment → the next free times as a numbered list, of the patient's
   usual therapist (their latest appointment's) or else of every therapist.
5. An enabled FAQ entry whose keywords match (services/assistant_faq.py) → its answer.
6. Anything else → False: the conversation waits for a person, as before.

Every message the assistant writes goes through ``messaging.queue_notification`` like the
appointment answers do (delivery, fallback, consent and the 24-hour window rules apply), as
author "assistant" with purpose "assistant": the inbox shows it as the Assistant's, and delivery
treats it as a reply (it reaches a patient who opted out but wrote again; never a template).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select

from ..extensions import db
from ..models import (
    Appointment,
    AuthorType,
    Clinic,
    Contact,
    Conversation,
    Direction,
    FaqEntry,
    Message,
    Patient,
    utcnow,
)
from . import appointments, messaging
from .appointment_replies import (
    OFFER_SLOTS,
    OfferedSlot,
    SlotOffer,
    clear_offer,
    hand_to_staff,
    load_offer,
    mark_answered,
    save_offer,
)
from .appointment_texts import format_when, resolve_language
from .assistant_faq import MAX_KEYWORD_LENGTH, MAX_KEYWORDS, Candidate, Match, best_match, split_keywords
from .clinic_settings import Validation
from .keywords import Intent, Reply, classify

log = logging.getLogger(__name__)

PURPOSE = "assistant"
ENABLED_KEY = "assistant_enabled"
BOOKING_KEY = "assistant_booking"
DEFAULT_ENABLED = True
DEFAULT_BOOKING = False
QUIET_HOURS = 12
MAX_QUESTION_LENGTH = 200
MAX_ANSWER_LENGTH = 1500
MAX_ENTRIES = 100

Action = Literal["off", "empty", "quiet", "handoff", "book", "faq", "none"]

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "handoff": "A member of the team will answer you here soon.",
        "no_times": "There are no free times to book by message right now.",
        "offer_one": "These are the next free times with {therapist}:",
        "offer_many": "These are the next free times:",
        "offer_tail": "Reply with the number of the time that suits you.",
        "taken": "Sorry, that time has just been taken.",
        "reask": "Please reply with a number from 1 to {count}.",
    },
    "es": {
        "handoff": "Una persona del equipo le responderá por aquí en breve.",
        "no_times": "Ahora mismo no hay horarios libres para reservar por mensaje.",
        "offer_one": "Estos son los próximos horarios libres con {therapist}:",
        "offer_many": "Estos son los próximos horarios libres:",
        "offer_tail": "Responda con el número del horario que prefiera.",
        "taken": "Lo sentimos, ese horario se acaba de ocupar.",
        "reask": "Responda con un número del 1 al {count}, por favor.",
    },
    "pt": {
        "handoff": "Alguém da equipe vai responder você por aqui em breve.",
        "no_times": "No momento não há horários livres para marcar por mensagem.",
        "offer_one": "Estes são os próximos horários livres com {therapist}:",
        "offer_many": "Estes são os próximos horários livres:",
        "offer_tail": "Responda com o número do horário que preferir.",
        "taken": "Desculpe, esse horário acabou de ser ocupado.",
        "reask": "Responda com um número de 1 a {count}, por favor.",
    },
    "hi": {
        "handoff": "टीम का कोई सदस्य जल्द ही यहीं आपको जवाब देगा।",
        "no_times": "अभी संदेश से बुक करने के लिए कोई समय खाली नहीं है।",
        "offer_one": "{therapist} के साथ अगले खाली समय ये हैं:",
        "offer_many": "अगले खाली समय ये हैं:",
        "offer_tail": "जो समय आपके लिए ठीक हो, उसका नंबर लिखकर भेजें।",
        "taken": "माफ़ कीजिए, वह समय अभी-अभी बुक हो गया।",
        "reask": "कृपया 1 से {count} तक का कोई नंबर लिखें।",
    },
}


class NotFound(LookupError):
    """No such FAQ entry in this clinic (another clinic's entries do not exist for you)."""


# --- the clinic's switches ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Switches:
    enabled: bool  # FAQ answers and hand-off
    booking: bool  # booking a new appointment by message


def switches(clinic: Clinic) -> Switches:
    return Switches(
        enabled=bool(clinic.setting(ENABLED_KEY, DEFAULT_ENABLED)),
        booking=bool(clinic.setting(BOOKING_KEY, DEFAULT_BOOKING)),
    )


def save_switches(*, clinic_id: int, user_id: int, enabled: bool, booking: bool) -> Switches:
    """Turn the assistant (and its booking by message) on or off for the clinic."""
    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        raise NotFound("clinic")
    old = switches(clinic)
    # A new dict, so the JSON column sees the change.
    clinic.settings = {**(clinic.settings or {}), ENABLED_KEY: bool(enabled), BOOKING_KEY: bool(booking)}
    db.session.commit()
    log.info(
        "clinic %s assistant changed by user %s: enabled %s -> %s, booking %s -> %s",
        clinic_id,
        user_id,
        old.enabled,
        bool(enabled),
        old.booking,
        bool(booking),
    )
    return switches(clinic)


# --- FAQ entries -------------------------------------------------------------------------------


def validate_entry(data: Mapping[str, Any]) -> Validation:
    """Question title, trigger keywords (comma or line separated) and answer, each checked in words."""
    errors: dict[str, str] = {}
    question = " ".join(str(data.get("question") or "").split())
    if not question:
        errors["question"] = "Enter the question, e.g. “What are your opening hours?”."
    elif len(question) > MAX_QUESTION_LENGTH:
        errors["question"] = f"The question can be at most {MAX_QUESTION_LENGTH} characters."
    keywords = split_keywords(str(data.get("keywords") or ""))
    if not keywords:
        errors["keywords"] = "Give at least one word or phrase a patient would write, e.g. “opening hours”."
    elif len(keywords) > MAX_KEYWORDS:
        errors["keywords"] = f"Use at most {MAX_KEYWORDS} keywords."
    elif too_long := [k for k in keywords if len(k) > MAX_KEYWORD_LENGTH]:
        errors["keywords"] = (
            f"Keywords can be at most {MAX_KEYWORD_LENGTH} characters (“{too_long[0][:30]}…” is longer)."
        )
    answer = str(data.get("answer") or "").strip()
    if not answer:
        errors["answer"] = "Write the answer the patient will get."
    elif len(answer) > MAX_ANSWER_LENGTH:
        errors["answer"] = f"Keep the answer to at most {MAX_ANSWER_LENGTH} characters."
    enabled = data.get("enabled")
    values = {
        "question": question,
        "keywords": keywords,
        "answer": answer,
        "enabled": True if enabled is None else bool(enabled),
    }
    return Validation(values=values if not errors else {}, errors=errors)


def list_entries(*, clinic_id: int, enabled_only: bool = False) -> list[FaqEntry]:
    query = select(FaqEntry).where(FaqEntry.clinic_id == clinic_id)
    if enabled_only:
        query = query.where(FaqEntry.enabled.is_(True))
    return list(db.session.scalars(query.order_by(FaqEntry.position, FaqEntry.id)))


def get_entry(*, clinic_id: int, entry_id: int) -> FaqEntry:
    entry = db.session.scalar(
        select(FaqEntry).where(FaqEntry.id == entry_id, FaqEntry.clinic_id == clinic_id)
    )
    if entry is None:
        raise NotFound("faq entry")
    return entry


def create_entry(*, clinic_id: int, user_id: int | None, values: Mapping[str, Any]) -> FaqEntry:
    """Add a validated entry at the end of the clinic's list."""
    count = db.session.scalar(
        select(func.count()).select_from(FaqEntry).where(FaqEntry.clinic_id == clinic_id)
    )
    if (count or 0) >= MAX_ENTRIES:
        raise ValueError(f"A clinic can keep at most {MAX_ENTRIES} answers.")
    last = db.session.scalar(select(func.max(FaqEntry.position)).where(FaqEntry.clinic_id == clinic_id))
    entry = FaqEntry(
        clinic_id=clinic_id,
        question=values["question"],
        keywords=list(values["keywords"]),
        answer=values["answer"],
        enabled=bool(values.get("enabled", True)),
        position=(last or 0) + 1,
    )
    db.session.add(entry)
    db.session.commit()
    forget_cached_entries()
    log.info("clinic %s FAQ entry %s added by user %s", clinic_id, entry.id, user_id)
    return entry


def update_entry(*, clinic_id: int, entry_id: int, user_id: int, values: Mapping[str, Any]) -> FaqEntry:
    entry = get_entry(clinic_id=clinic_id, entry_id=entry_id)
    entry.question = values["question"]
    entry.keywords = list(values["keywords"])
    entry.answer = values["answer"]
    entry.enabled = bool(values.get("enabled", entry.enabled))
    db.session.commit()
    forget_cached_entries()
    log.info("clinic %s FAQ entry %s changed by user %s", clinic_id, entry.id, user_id)
    return entry


def set_entry_enabled(*, clinic_id: int, entry_id: int, user_id: int, enabled: bool) -> FaqEntry:
    entry = get_entry(clinic_id=clinic_id, entry_id=entry_id)
    entry.enabled = enabled
    db.session.commit()
    forget_cached_entries()
    log.info("clinic %s FAQ entry %s %s by user %s", clinic_id, entry.id, "on" if enabled else "off", user_id)
    return entry


def delete_entry(*, clinic_id: int, entry_id: int, user_id: int) -> None:
    entry = get_entry(clinic_id=clinic_id, entry_id=entry_id)
    db.session.delete(entry)
    db.session.commit()
    forget_cached_entries()
    log.info("clinic %s FAQ entry %s deleted by user %s", clinic_id, entry_id, user_id)


# The worker matches every patient message against the clinic's entries: it keeps their keywords for
# a few seconds per process instead of reading them for each message (an edit applies within this).
CANDIDATES_TTL = 10.0
_candidates: dict[int, tuple[float, list[Candidate]]] = {}


def _enabled_candidates(clinic_id: int, *, cached: bool) -> list[Candidate]:
    now = time.monotonic()
    hit = _candidates.get(clinic_id) if cached else None
    if hit is not None and hit[0] > now:
        return hit[1]
    found = [
        Candidate(e.id, list(e.keywords or [])) for e in list_entries(clinic_id=clinic_id, enabled_only=True)
    ]
    if len(_candidates) > 1000:
        _candidates.clear()
    _candidates[clinic_id] = (now + CANDIDATES_TTL, found)
    return found


def forget_cached_entries() -> None:
    """Drop this process's kept keywords (after an edit here; tests between clinics)."""
    _candidates.clear()


def faq_match(*, clinic_id: int, text: str | None, cached: bool = False) -> tuple[FaqEntry, Match] | None:
    """The clinic's enabled entry that answers ``text``, with how it matched; None below the threshold.

    ``cached``: the worker's path (keywords kept CANDIDATES_TTL seconds); the settings preview reads afresh.
    """
    if not text:
        return None
    found = best_match(text, _enabled_candidates(clinic_id, cached=cached))
    if found is None:
        return None
    entry = db.session.get(FaqEntry, found.entry_id)
    if entry is None or entry.clinic_id != clinic_id or not entry.enabled:
        return None  # deleted or turned off in the last seconds
    return entry, found


# --- what the assistant would do with a message -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    entry: FaqEntry | None = None
    match: Match | None = None


def decide(*, clinic: Clinic, reply: Reply, text: str | None, cached: bool = False) -> Decision:
    """Steps 3-6 of the module docstring for one message (no offer open, not quiet)."""
    if reply.intent == Intent.HUMAN:
        return Decision("handoff")
    if reply.intent == Intent.BOOK and switches(clinic).booking:
        return Decision("book")
    found = faq_match(clinic_id=clinic.id, text=text, cached=cached)
    if found is not None:
        return Decision("faq", entry=found[0], match=found[1])
    return Decision("none")


@dataclass(frozen=True, slots=True)
class Preview:
    """For the settings page: "a patient writing … would get …", in words."""

    action: Action
    reply: str | None = None
    entry: FaqEntry | None = None
    match: Match | None = None


def preview(*, clinic_id: int, text: str) -> Preview:
    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        raise NotFound("clinic")
    text = (text or "").strip()[:1000]
    if not text:
        return Preview("empty")
    if not switches(clinic).enabled:
        return Preview("off")
    decision = decide(clinic=clinic, reply=classify(text), text=text)
    lang = resolve_language(clinic.locale)
    if decision.action == "handoff":
        return Preview("handoff", reply=TEXTS[lang]["handoff"])
    if decision.action == "faq" and decision.entry is not None:
        return Preview("faq", reply=decision.entry.answer, entry=decision.entry, match=decision.match)
    return Preview(decision.action)


# --- the automation hook -----------------------------------------------------------------------


def handle_inbound(msg: Message) -> bool:
    """Answer a patient's message if the assistant can (module docstring); True when it did."""
    if msg.direction != Direction.IN:
        return False
    conv = db.session.get(Conversation, msg.conversation_id)
    clinic = db.session.get(Clinic, msg.clinic_id)
    if conv is None or clinic is None or conv.clinic_id != clinic.id:
        return False
    if not switches(clinic).enabled:
        return False
    # Most messages are for a person: find that out first, without Redis or the quiet-hours query.
    payload = (msg.extra or {}).get("button_payload")
    reply = classify(msg.body, button_payload=payload, expecting_choice=False)
    as_choice = classify(msg.body, button_payload=payload, expecting_choice=True)
    booking_offer = None
    if as_choice != reply or as_choice.intent == Intent.CHOICE:  # a number: is a numbered offer open?
        offer = load_offer(conv.id)
        if offer is not None and offer.appointment_id is None:
            booking_offer, reply = offer, as_choice
    if reply.intent == Intent.CHOICE:
        if booking_offer is None or not switches(clinic).booking or staff_replied_recently(conv):
            return False
        return _book_choice(conv, clinic, booking_offer, reply.choice or 0)

    decision = decide(clinic=clinic, reply=reply, text=msg.body, cached=True)
    if decision.action == "none" or staff_replied_recently(conv):
        return False
    if decision.action == "handoff":
        return _hand_off(conv, clinic, "handoff")
    if decision.action == "book":
        return _offer_booking(conv, clinic)
    if decision.action == "faq" and decision.entry is not None:
        assert decision.match is not None
        if not _send(conv, decision.entry.answer, kind="faq", extra={"faq_entry_id": decision.entry.id}):
            return False
        log.info(
            "conversation %s: assistant answered FAQ entry %s (%s%%)",
            conv.id,
            decision.entry.id,
            decision.match.percent,
        )
        mark_answered(conv)
        return True
    return False


def staff_replied_recently(conv: Conversation, *, now: datetime | None = None) -> bool:
    """Did a person on the team write to the patient in this conversation in the last QUIET_HOURS?"""
    since = (now or utcnow()) - timedelta(hours=QUIET_HOURS)
    return (
        db.session.scalar(
            select(Message.id)
            .where(
                Message.clinic_id == conv.clinic_id,
                Message.conversation_id == conv.id,
                Message.direction == Direction.OUT,
                Message.author_type == AuthorType.STAFF,
                # Replies (text, templates, files): not internal notes, not broadcasts.
                Message.purpose == "reply",
                Message.created_at >= since,
            )
            .limit(1)
        )
        is not None
    )


def _language(clinic: Clinic, contact: Contact | None) -> str:
    patient = (
        appointments.patient_for_contact(clinic_id=clinic.id, contact_id=contact.id) if contact else None
    )
    return resolve_language(
        (patient.language if patient else None) or (contact.language if contact else None) or clinic.locale
    )


def _texts(clinic: Clinic, conv: Conversation) -> dict[str, str]:
    return TEXTS[_language(clinic, db.session.get(Contact, conv.contact_id))]


def _send(conv: Conversation, body: str, *, kind: str, extra: Mapping[str, Any] | None = None) -> bool:
    """Queue one assistant message in the conversation; False (logged) when it cannot be recorded."""
    try:
        messaging.queue_notification(
            clinic_id=conv.clinic_id,
            contact_id=conv.contact_id,
            purpose=PURPOSE,
            body=body,
            connection_id=conv.connection_id,
            author_type=AuthorType.ASSISTANT,
            extra={"assistant": kind, **(extra or {})},
        )
    except messaging.ComposeError as exc:
        db.session.rollback()
        log.warning("conversation %s: assistant %s not sent: %s", conv.id, kind, exc)
        return False
    return True


def _hand_off(conv: Conversation, clinic: Clinic, text_key: str) -> bool:
    texts = _texts(clinic, conv)
    body = texts["handoff"] if text_key == "handoff" else f"{texts[text_key]} {texts['handoff']}"
    clear_offer(conv.id)  # a number after this answers the person, not an old list of times
    _send(conv, body, kind="handoff")
    hand_to_staff(conv)
    log.info("conversation %s: assistant handed over to a person", conv.id)
    return True


# --- booking by message ------------------------------------------------------------------------


def _usual_therapist(clinic_id: int, patient: Patient | None) -> int | None:
    if patient is None:
        return None
    return db.session.scalar(
        select(Appointment.therapist_id)
        .where(Appointment.clinic_id == clinic_id, Appointment.patient_id == patient.id)
        .order_by(Appointment.starts_at.desc())
        .limit(1)
    )


def free_times(*, clinic_id: int, patient: Patient | None, count: int = OFFER_SLOTS) -> list[OfferedSlot]:
    """The next ``count`` free times of the patient's usual therapist, else of every therapist."""
    active = [t.id for t in appointments.therapists(clinic_id=clinic_id)]
    usual = _usual_therapist(clinic_id, patient)
    for group in ([usual] if usual in active else [], active):
        found: dict[datetime, int] = {}
        for therapist_id in group:  # in the clinic's order: at one time, the first therapist is offered
            for start in appointments.next_free_slots(
                clinic_id=clinic_id, therapist_id=therapist_id, count=count
            ):
                found.setdefault(start, therapist_id)
        if found:
            return [OfferedSlot(start, found[start]) for start in sorted(found)[:count]]
    return []


def _offer_text(clinic: Clinic, texts: Mapping[str, str], lang: str, slots: Sequence[OfferedSlot]) -> str:
    tz, clinic_locale = clinic.timezone or "UTC", _clinic_locale(clinic)
    names = {
        t.id: t.display_name
        for t in appointments.therapists(clinic_id=clinic.id)
        if t.id in {s.therapist_id for s in slots}
    }
    one = len(names) == 1
    head = texts["offer_one"].format(therapist=next(iter(names.values()))) if one else texts["offer_many"]
    lines = [
        f"{n}. {format_when(s.starts_at, tz=tz, lang=lang, clinic_locale=clinic_locale)}"
        + ("" if one or s.therapist_id not in names else f" ({names[s.therapist_id]})")
        for n, s in enumerate(slots, 1)
    ]
    return "\n".join([head, *lines, texts["offer_tail"]])


def _clinic_locale(clinic: Clinic) -> str:
    # As reminders do: a bare "en" in Spain formats like en_ES (24-hour clock).
    locale = (clinic.locale or "en").strip()
    if "_" in locale or "-" in locale or not clinic.country:
        return locale
    return f"{locale}_{clinic.country.upper()}"


def _offer_booking(conv: Conversation, clinic: Clinic, *, lead: str | None = None) -> bool:
    patient = appointments.patient_for_contact(clinic_id=clinic.id, contact_id=conv.contact_id)
    if patient is not None and appointments.next_active_for_patient(
        clinic_id=clinic.id, patient_id=patient.id
    ):
        return False  # they have an appointment: "book" may mean many things, a person reads it
    slots = free_times(clinic_id=clinic.id, patient=patient)
    if not slots:
        return _hand_off(conv, clinic, "no_times")
    contact = db.session.get(Contact, conv.contact_id)
    lang = _language(clinic, contact)
    texts = TEXTS[lang]
    body = _offer_text(clinic, texts, lang, slots)
    if lead:
        body = f"{texts[lead]}\n{body}"
    save_offer(conv.id, SlotOffer(tuple(slots)))
    if not _send(conv, body, kind="book_offer"):
        clear_offer(conv.id)
        return False
    mark_answered(conv)
    return True


def _book_choice(conv: Conversation, clinic: Clinic, offer: SlotOffer, choice: int) -> bool:
    slot = offer.pick(choice)
    if slot is None or slot.therapist_id is None:
        texts = _texts(clinic, conv)
        if not _send(conv, texts["reask"].format(count=len(offer.slots)), kind="book_reask"):
            return False
        mark_answered(conv)
        return True
    contact = db.session.get(Contact, conv.contact_id)
    if contact is None:
        return False
    try:
        appt = appointments.book(
            clinic_id=clinic.id,
            therapist_id=slot.therapist_id,
            starts_at=slot.starts_at,
            source=PURPOSE,
            **_patient_args(clinic, contact),
        )
    except appointments.AppointmentError as exc:
        # Taken since we offered it (or no longer bookable): offer what is free now.
        db.session.rollback()
        log.info("conversation %s: offered time not booked (%s); offering again", conv.id, exc.code)
        return _offer_booking(conv, clinic, lead="taken")
    clear_offer(conv.id)
    log.info("conversation %s: assistant booked appointment %s", conv.id, appt.id)
    mark_answered(conv)
    return True


def _patient_args(clinic: Clinic, contact: Contact) -> dict[str, Any]:
    """Who the booking is for: the contact's patient record, else one made from the contact."""
    patient = appointments.patient_for_contact(clinic_id=clinic.id, contact_id=contact.id)
    if patient is not None:
        return {"patient_id": patient.id}
    if contact.name.strip():
        # Written in the booking's own transaction: a refused booking leaves no patient behind.
        return {
            "patient": appointments.PatientInput(
                name=contact.name, phone=contact.phone, email=contact.email, language=contact.language
            )
        }
    # No name from WhatsApp: a nameless patient record ("Hi there, …"), which staff can complete.
    patient = Patient(
        clinic_id=clinic.id,
        contact_id=contact.id,
        email=contact.email,
        language=contact.language,
        preferred_channels=["whatsapp"],
    )
    db.session.add(patient)
    db.session.flush()
    return {"patient_id": patient.id}


__all__ = [
    "BOOKING_KEY",
    "ENABLED_KEY",
    "QUIET_HOURS",
    "TEXTS",
    "Decision",
    "NotFound",
    "Preview",
    "Switches",
    "Validation",
    "create_entry",
    "decide",
    "delete_entry",
    "faq_match",
    "free_times",
    "get_entry",
    "handle_inbound",
    "list_entries",
    "preview",
    "save_switches",
    "set_entry_enabled",
    "staff_replied_recently",
    "switches",
    "update_entry",
    "validate_entry",
]
