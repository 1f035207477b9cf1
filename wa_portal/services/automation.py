"""What happens after a patient's message is stored: consent keywords, appointment replies, the
assistant (FAQ answers, booking by message, hand-off), then people.

Runs after the ingest transaction committed, once per new inbound message, each handler in
its own transaction. A handler returns True when it fully answered the message; the first
one that does ends the chain. Anything nobody answers waits for a person in the inbox.
"""

from __future__ import annotations

import logging

from ..extensions import db
from ..models import Message

log = logging.getLogger(__name__)


def handle_inbound(message_id: int) -> None:
    msg = db.session.get(Message, message_id)
    if msg is None or msg.direction != "in":
        return
    from . import appointment_replies, assistant, consent

    for handler in (consent.handle_inbound, appointment_replies.handle_inbound, assistant.handle_inbound):
        if handler(msg):
            return
