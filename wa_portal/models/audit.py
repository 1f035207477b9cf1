"""The audit trail: who read or changed which patient record, when and from where.

Rows name objects by type and id and say what happened in a few words; they never hold message
bodies, phone numbers, health data or secrets (services/audit.py scrubs the summary as a second
line of defence). Rows are only ever inserted: nothing in the app updates or deletes them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, ClinicScoped, utcnow


class AuditEvent(ClinicScoped, Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        # The admin page: newest first per clinic, keyset on id (a B-tree scans backwards as well).
        Index("ix_audit_event_clinic_recent", "clinic_id", "id"),
        # "History of this object".
        Index("ix_audit_event_object", "clinic_id", "object_type", "object_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Both indexes above lead with clinic_id, so the mixin's own single-column index would only
    # cost writes on the busiest insert-only table: the column is declared here without it.
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(200))  # "Rita (staff)", "api key 'booking-system'", "system"
    action: Mapped[str] = mapped_column(String(32))  # view, create, update, delete, send, export, login…
    object_type: Mapped[str] = mapped_column(String(32))  # conversation, appointment, settings…
    object_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(300), default="")  # ids and field names only
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
