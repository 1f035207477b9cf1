"""Canned replies: short texts a clinic's team reuses in the composer."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import CannedReply


class CannedError(ValueError):
    """The canned reply cannot be saved as written; the text says why."""


def list_for(*, clinic_id: int) -> list[CannedReply]:
    return list(
        db.session.scalars(
            select(CannedReply).where(CannedReply.clinic_id == clinic_id).order_by(CannedReply.title)
        )
    )


def add(*, clinic_id: int, title: str, body: str, author_id: int) -> CannedReply:
    title, body = (title or "").strip(), (body or "").strip()
    if not title or not body:
        raise CannedError("Give the canned reply a title and a text.")
    if len(title) > 80:
        raise CannedError("Titles can be at most 80 characters.")
    if len(body) > 4096:
        raise CannedError("Canned replies can be at most 4096 characters.")
    reply = CannedReply(clinic_id=clinic_id, title=title, body=body, created_by_id=author_id)
    db.session.add(reply)
    db.session.commit()
    return reply


def delete(*, clinic_id: int, canned_id: int) -> None:
    reply = db.first_or_404(
        select(CannedReply).where(CannedReply.id == canned_id, CannedReply.clinic_id == clinic_id)
    )
    db.session.delete(reply)
    db.session.commit()
