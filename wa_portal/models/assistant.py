"""The assistant's answers: a clinic's frequently asked questions, with the words that trigger them."""

from __future__ import annotations

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, ClinicScoped, TimestampMixin


class FaqEntry(ClinicScoped, TimestampMixin, Base):
    """One question and its answer; ``keywords`` are the words and phrases a patient's message is
    matched on (as the admin wrote them; services/assistant_faq.py folds case and accents)."""

    __tablename__ = "faq_entry"
    __table_args__ = (Index("ix_faq_entry_clinic_position", "clinic_id", "position", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    question: Mapped[str] = mapped_column(String(200))
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    answer: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    position: Mapped[int] = mapped_column(default=0)  # the page's order; ties in matching go to the first
