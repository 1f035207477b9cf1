"""Patients answering confirmations and reminders: confirm, cancel, reschedule."""

from __future__ import annotations

from ..models import Message


def handle_inbound(msg: Message) -> bool:
    """Apply a reply to the patient's pending appointment; True when it was handled."""
    return False
