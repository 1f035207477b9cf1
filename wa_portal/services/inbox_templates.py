"""Approved templates for the composer's picker when the 24-hour window is closed."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import MessageTemplate, TemplateStatus


def approved(*, clinic_id: int) -> list[MessageTemplate]:
    """The delivery module's list when it is installed; the approved rows otherwise."""
    try:
        from . import templates
    except ImportError:
        templates = None
    if templates is not None and hasattr(templates, "list_approved"):
        return list(templates.list_approved(clinic_id=clinic_id))
    return list(
        db.session.scalars(
            select(MessageTemplate)
            .where(MessageTemplate.clinic_id == clinic_id, MessageTemplate.status == TemplateStatus.APPROVED)
            .order_by(MessageTemplate.name, MessageTemplate.language)
        )
    )


def get_approved(*, clinic_id: int, template_id: int) -> MessageTemplate | None:
    return next((t for t in approved(clinic_id=clinic_id) if t.id == template_id), None)
