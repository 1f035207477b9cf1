"""A clinic's approved WhatsApp templates: list them for the composer, pick one by purpose and language."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import MessageTemplate, TemplateStatus

# What a message's purpose is resent as when the 24-hour window is closed.
PURPOSE_TEMPLATE = {
    "confirmation": "confirmation",
    "reminder_7d": "reminder",
    "reminder_1d": "reminder",
    "reminder_2h": "reminder",
    "reminder": "reminder",
    "cancellation": "cancellation",
    "reschedule": "reschedule",
}


def template_purpose(message_purpose: str) -> str:
    """The template purpose a message purpose maps to (anything else: "generic")."""
    return PURPOSE_TEMPLATE.get(message_purpose, "generic")


def list_approved(clinic_id: int, language: str | None = None) -> list[MessageTemplate]:
    """The clinic's approved templates (optionally in one language), by name."""
    q = select(MessageTemplate).where(
        MessageTemplate.clinic_id == clinic_id, MessageTemplate.status == TemplateStatus.APPROVED
    )
    if language:
        q = q.where(MessageTemplate.language == language)
    return list(db.session.scalars(q.order_by(MessageTemplate.name, MessageTemplate.language)))


def get_approved(clinic_id: int, name: str, language: str) -> MessageTemplate | None:
    return db.session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.clinic_id == clinic_id,
            MessageTemplate.name == name,
            MessageTemplate.language == language,
            MessageTemplate.status == TemplateStatus.APPROVED,
        )
    )


def for_purpose(clinic_id: int, purpose: str, language: str | None) -> MessageTemplate | None:
    """The approved template for ``purpose`` in ``language`` (or its base language, then any language).

    ``purpose`` may be a template purpose ("reminder") or a message purpose ("reminder_1d").
    """
    wanted = (
        template_purpose(purpose) if purpose not in set(PURPOSE_TEMPLATE.values()) | {"generic"} else purpose
    )
    rows = list(
        db.session.scalars(
            select(MessageTemplate)
            .where(
                MessageTemplate.clinic_id == clinic_id,
                MessageTemplate.purpose == wanted,
                MessageTemplate.status == TemplateStatus.APPROVED,
            )
            .order_by(MessageTemplate.id)
        )
    )
    if not rows:
        return None
    lang = (language or "").lower()
    base = lang.replace("-", "_").split("_")[0]
    for match in (
        lambda t: t.language.lower() == lang,
        lambda t: t.language.lower().replace("-", "_").split("_")[0] == base,
        lambda t: t.language.lower().startswith("en"),
    ):
        for t in rows:
            if match(t):
                return t
    return rows[0]
