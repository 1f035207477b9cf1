"""The approved templates the composer offers when the 24-hour window is closed."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import MessageTemplate, TemplateStatus
from . import templates


def approved(*, clinic_id: int) -> list[MessageTemplate]:
    return templates.list_approved(clinic_id)


def get_approved(*, clinic_id: int, template_id: int) -> MessageTemplate | None:
    """One approved template of this clinic by id (never another clinic's)."""
    return db.session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.id == template_id,
            MessageTemplate.clinic_id == clinic_id,
            MessageTemplate.status == TemplateStatus.APPROVED,
        )
    )
