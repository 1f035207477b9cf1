"""Inbound media: download right away (provider URLs expire) and keep it in our storage."""

from __future__ import annotations

import logging

from ..extensions import db
from ..models import Connection, Message
from ..providers.base import InboundMedia, ProviderError
from . import connections, realtime
from .storage import get_storage, media_key

log = logging.getLogger(__name__)


def download(message_id: int) -> None:
    msg = db.session.get(Message, message_id)
    if msg is None or msg.media_status != "pending":
        return
    conn = db.session.get(Connection, msg.connection_id)
    assert conn is not None
    ref = (msg.extra or {}).get("media_ref") or {}
    media = InboundMedia(provider_media_id=ref.get("id"), url=ref.get("url"), mime_type=msg.media_mime)
    try:
        data, mime = connections.adapter_for(conn).fetch_media(media)
    except ProviderError as exc:
        msg.media_status = "failed"
        msg.extra = {**(msg.extra or {}), "media_error": exc.detail}
        db.session.commit()
        log.info("media for message %s unavailable: %s", msg.id, exc.kind.value)
        realtime.publish(msg.clinic_id, "status", conversation_id=msg.conversation_id, message_id=msg.id)
        return
    key = media_key(msg.clinic_id, msg.id, msg.media_filename)
    get_storage().put(key, data, mime or msg.media_mime or "application/octet-stream")
    msg.media_key = key
    msg.media_mime = mime or msg.media_mime
    msg.media_size = len(data)
    msg.media_status = "stored"
    db.session.commit()
    realtime.publish(msg.clinic_id, "status", conversation_id=msg.conversation_id, message_id=msg.id)
