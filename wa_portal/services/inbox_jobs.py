"""Background work the inbox starts: the patient's read receipt (never sent from a request)."""

from __future__ import annotations

import logging

from ..extensions import db
from ..models import Connection, Direction, Message
from ..providers.base import ProviderError
from . import connections

log = logging.getLogger(__name__)


def send_read_receipt(message_id: int) -> None:
    """Tell the provider the patient's message was read (best effort; a no-op where unsupported).

    Idempotent enough: a second receipt for the same message changes nothing at any provider.
    """
    msg = db.session.get(Message, message_id)
    if msg is None or msg.direction != Direction.IN or not msg.provider_message_id:
        return
    conn = db.session.get(Connection, msg.connection_id)
    if conn is None or not conn.active:
        return
    try:
        connections.adapter_for(conn).mark_read(msg.provider_message_id)
    except ProviderError as exc:
        # A lost blue tick is not worth a retry storm; the next opened message sends a new one.
        log.info("read receipt for message %s not sent: %s", msg.id, exc.kind)
