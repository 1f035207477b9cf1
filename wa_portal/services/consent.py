"""Consent and opt-out: STOP / START keywords and the rules for who may be messaged."""

from __future__ import annotations

from ..models import Message


def handle_inbound(msg: Message) -> bool:
    """Opt a contact out (or back in) on STOP / START words; True when the message was one."""
    return False
