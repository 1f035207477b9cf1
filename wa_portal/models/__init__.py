"""Typed SQLAlchemy models, one module per aggregate."""

from .base import Base, utcnow
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
from .template import MessageTemplate, TemplateCategory, TemplateStatus
from .webhook_event import WebhookEvent, WebhookState

__all__ = [
    "STATUS_RANK",
    "AuthorType",
    "Base",
    "Clinic",
    "Connection",
    "ConnectionRoute",
    "ConnectionStatus",
    "Consent",
    "Contact",
    "Conversation",
    "ConversationStatus",
    "Direction",
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
]
