"""Approved WhatsApp message templates: what may be sent when the 24-hour window is closed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, ClinicScoped, TimestampMixin

VARIABLE = re.compile(r"\{\{(\d+)\}\}")


class TemplateCategory(StrEnum):
    UTILITY = "UTILITY"
    MARKETING = "MARKETING"
    AUTHENTICATION = "AUTHENTICATION"


class TemplateStatus(StrEnum):
    APPROVED = "approved"
    PENDING = "pending"
    REJECTED = "rejected"
    PAUSED = "paused"
    DISABLED = "disabled"


class MessageTemplate(ClinicScoped, TimestampMixin, Base):
    __tablename__ = "message_template"
    __table_args__ = (UniqueConstraint("clinic_id", "name", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))  # the name registered at Meta, e.g. appointment_reminder
    language: Mapped[str] = mapped_column(String(16))  # Meta's code: en, es, pt_BR, hi
    category: Mapped[TemplateCategory] = mapped_column(String(16), default=TemplateCategory.UTILITY)
    # confirmation | reminder | cancellation | reschedule | generic | broadcast …: what the delivery
    # layer resends a message as when the window turns out to be closed.
    purpose: Mapped[str] = mapped_column(String(32), default="generic", index=True)
    body: Mapped[str] = mapped_column(Text)  # with numbered variables {{1}}, {{2}} …
    # Provider-side ids where the provider needs one (Twilio ContentSid "HX…", Meta template id).
    provider_ids: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    buttons: Mapped[list[str] | None] = mapped_column(JSON)  # quick-reply button titles
    status: Mapped[TemplateStatus] = mapped_column(String(16), default=TemplateStatus.APPROVED)
    status_reason: Mapped[str | None] = mapped_column(String(500))

    @property
    def variable_count(self) -> int:
        return max((int(n) for n in VARIABLE.findall(self.body)), default=0)

    def render(self, params: Sequence[str]) -> str:
        """The text the patient sees, with the variables filled in."""
        return VARIABLE.sub(
            lambda m: params[int(m.group(1)) - 1] if int(m.group(1)) <= len(params) else m.group(0), self.body
        )
