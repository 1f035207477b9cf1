"""Consent and opt-out: STOP / START keywords, the audit of every change, and who may be messaged.

The delivery rules themselves (no reminder or broadcast to an opted-out contact, replies to a
patient who wrote again are fine, emergency alerts per ``clinic.settings["emergency_to_opted_out"]``)
live in ``delivery.consent_refusal`` so they are checked right before every provider call.
"""

from __future__ import annotations

import logging

from ..extensions import db
from ..models import (
    Clinic,
    Consent,
    ConsentEvent,
    Contact,
    Conversation,
    ConversationStatus,
    Message,
    utcnow,
)
from .keywords import Intent, classify

log = logging.getLogger(__name__)

SOURCE_KEYWORD = "whatsapp keyword"

CONFIRM_TEXT = {
    Consent.OPTED_OUT: {
        "en": "You will no longer receive messages from {clinic}. Reply START to subscribe again.",
        "es": "Ya no recibirás mensajes de {clinic}. Responde ALTA para volver a suscribirte.",
        "pt": "Você não receberá mais mensagens de {clinic}. Responda VOLTAR para assinar novamente.",
        "hi": "अब आपको {clinic} से संदेश नहीं मिलेंगे। फिर से सदस्यता लेने के लिए START लिखें।",
    },
    Consent.OPTED_IN: {
        "en": "You will receive messages from {clinic} again. Reply STOP to unsubscribe.",
        "es": "Volverás a recibir mensajes de {clinic}. Responde BAJA para darte de baja.",
        "pt": "Você voltará a receber mensagens de {clinic}. Responda SAIR para cancelar.",
        "hi": "आपको {clinic} से फिर से संदेश मिलेंगे। सदस्यता रद्द करने के लिए STOP लिखें।",
    },
}


def change(
    *,
    contact: Contact,
    new: Consent,
    source: str,
    message_id: int | None = None,
    user_id: int | None = None,
) -> bool:
    """Set a contact's consent and record the change (no commit); False when nothing changed."""
    old = Consent(contact.consent or Consent.UNKNOWN)
    if old == new:
        return False
    contact.consent = new
    contact.consent_at = utcnow()
    contact.consent_source = source[:64]
    db.session.add(
        ConsentEvent(
            clinic_id=contact.clinic_id,
            contact_id=contact.id,
            old=old.value,
            new=new.value,
            source=source[:64],
            message_id=message_id,
            user_id=user_id,
        )
    )
    return True


def handle_inbound(msg: Message) -> bool:
    """Opt a contact out (or back in) on STOP / START words; True when the message was one."""
    if msg.direction != "in" or not msg.body:
        return False
    intent = classify(msg.body).intent
    if intent not in (Intent.STOP, Intent.START):
        return False
    conv = db.session.get(Conversation, msg.conversation_id)
    if conv is None:
        return False
    contact = db.session.get(Contact, conv.contact_id)
    clinic = db.session.get(Clinic, msg.clinic_id)
    if contact is None or clinic is None:
        return False
    new = Consent.OPTED_OUT if intent == Intent.STOP else Consent.OPTED_IN
    changed = change(contact=contact, new=new, source=SOURCE_KEYWORD, message_id=msg.id)
    # The keyword needs no person: the conversation is handled.
    if conv.status in (ConversationStatus.AWAITING_HUMAN, ConversationStatus.BOT):
        conv.status = ConversationStatus.CLOSED
    conv.awaiting_since = None
    conv.unread_count = 0
    db.session.commit()
    if changed:  # exactly one confirmation per change (a second STOP gets none)
        from . import messaging

        lang = (contact.language or clinic.locale or "en").split("_")[0].split("-")[0]
        texts = CONFIRM_TEXT[new]
        messaging.queue_notification(
            clinic_id=clinic.id,
            contact_id=contact.id,
            purpose="consent",
            body=texts.get(lang, texts["en"]).format(clinic=clinic.name),
            connection_id=conv.connection_id,
        )
    log.info("contact %s consent %s via keyword", contact.id, new.value)
    return True


def set_by_staff(*, clinic_id: int, contact_id: int, new: Consent, user_id: int) -> Contact:
    """Staff record a consent given or withdrawn in person (audited)."""
    contact = db.first_or_404(
        db.select(Contact).where(Contact.id == contact_id, Contact.clinic_id == clinic_id)
    )
    change(contact=contact, new=new, source="staff", user_id=user_id)
    db.session.commit()
    return contact
