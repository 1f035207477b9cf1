"""Typed SQLAlchemy models, one module per aggregate."""

from .appointment import (  # appointments (issue 6)
    ACTIVE_STATUSES,
    ApiKey,
    Appointment,
    AppointmentMode,
    AppointmentStatus,
    AvailabilityKind,
    AvailabilitySlot,
    Patient,
    Reminder,
    ReminderState,
)
from .assistant import FaqEntry  # the assistant's FAQ answers
from .audit import AuditEvent  # audit trail
from .base import Base, utcnow, zone_or_utc
from .broadcast import Broadcast, BroadcastKind, BroadcastStatus  # broadcasts
from .clinic import Clinic, Role, User
from .connection import Connection, ConnectionRoute, ConnectionStatus
from .contact import Consent, Contact
from .conversation import (
    STATUS_RANK,
    AuthorType,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    MessageStatus,
)
from .delivery import AttemptOutcome, ConsentEvent, DeliveryAttempt  # issue 4: delivery
from .inbox import CannedReply, ConversationRead
from .template import MessageTemplate, TemplateCategory, TemplateStatus
from .webhook_event import WebhookEvent, WebhookState

__all__ = [  # noqa: RUF022
    # appointments (issue 6)
    "ACTIVE_STATUSES",
    "ApiKey",
    "Appointment",
    "AppointmentMode",
    "AppointmentStatus",
    "AvailabilityKind",
    "AvailabilitySlot",
    "Patient",
    "Reminder",
    "ReminderState",
    # core
    "STATUS_RANK",
    "AttemptOutcome",
    "AuditEvent",
    "AuthorType",
    "Base",
    "Broadcast",
    "BroadcastKind",
    "BroadcastStatus",
    "CannedReply",
    "Clinic",
    "Connection",
    "ConnectionRoute",
    "ConnectionStatus",
    "Consent",
    "ConsentEvent",
    "Contact",
    "Conversation",
    "ConversationRead",
    "ConversationStatus",
    "DeliveryAttempt",
    "Direction",
    "FaqEntry",
    "Message",
    "MessageStatus",
    "MessageTemplate",
    "Role",
    "TemplateCategory",
    "TemplateStatus",
    "User",
    "WebhookEvent",
    "WebhookState",
    "utcnow",
    "zone_or_utc",
]
