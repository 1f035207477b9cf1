"""Inbound media: download right away (provider URLs expire) and keep it in our storage.

The declared content type is checked against the bytes (magic numbers) before anything is
served inline: a file that claims to be an image but is not is kept as a download only.
A file that fails to download leaves its message visible as "media unavailable", and a
person can retry it.
"""

from __future__ import annotations

import logging

from ..extensions import db
from ..models import Connection, Message
from ..providers.base import InboundMedia, ProviderError
from . import connections, realtime
from .storage import get_storage, media_key

log = logging.getLogger(__name__)

MAX_MEDIA_BYTES = 100 * 1024 * 1024  # WhatsApp's largest (documents); images are far smaller

# (prefix, offset, content type): enough to recognise what patients actually send.
MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"%PDF-", 0, "application/pdf"),
    (b"OggS", 0, "audio/ogg"),
    (b"ID3", 0, "audio/mpeg"),
    (b"ftyp", 4, "video/mp4"),
    (b"PK\x03\x04", 0, "application/zip"),  # docx, xlsx, odt …
)
SAFE_INLINE = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "audio/ogg", "audio/mpeg", "video/mp4"}
)


def sniff(data: bytes) -> str | None:
    for prefix, offset, mime in MAGIC:
        if data[offset : offset + len(prefix)] == prefix:
            return mime
    return None


def settle_type(declared: str | None, data: bytes) -> str:
    """The type we store and serve: the sniffed one for media we show inline, else the declared one.

    A declared image/audio/video whose bytes are not one becomes application/octet-stream,
    so it can only be downloaded, never rendered by the browser.
    """
    declared = (declared or "application/octet-stream").split(";")[0].strip().lower()
    sniffed = sniff(data)
    if declared.startswith(("image/", "audio/", "video/")):
        if sniffed in SAFE_INLINE and sniffed.split("/")[0] == declared.split("/")[0]:
            return sniffed if declared not in ("audio/mp4", "audio/aac", "audio/amr") else declared
        if declared in ("audio/aac", "audio/amr", "audio/mp4", "video/3gpp") and sniffed is None:
            return declared  # formats without a simple magic number, never rendered inline by us
        return "application/octet-stream"
    if declared == "application/pdf" and sniffed != "application/pdf":
        return "application/octet-stream"
    if declared in ("text/html", "application/xhtml+xml", "image/svg+xml", "text/javascript"):
        return "application/octet-stream"  # never let a patient's file run as a page of ours
    return declared


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
        if len(data) > MAX_MEDIA_BYTES:
            raise ProviderError(
                "permanent", "too_large", "The file is larger than the portal accepts (100 MB)."
            )
    except ProviderError as exc:
        msg.media_status = "failed"
        msg.extra = {**(msg.extra or {}), "media_error": exc.detail}
        db.session.commit()
        log.info("media for message %s unavailable: %s", msg.id, exc.kind.value)
        realtime.publish(msg.clinic_id, "status", conversation_id=msg.conversation_id, message_id=msg.id)
        return
    stored_type = settle_type(mime or msg.media_mime, data)
    key = media_key(msg.clinic_id, msg.id, msg.media_filename)
    get_storage().put(key, data, stored_type)
    msg.media_key = key
    msg.media_mime = stored_type
    msg.media_size = len(data)
    msg.media_status = "stored"
    db.session.commit()
    realtime.publish(msg.clinic_id, "status", conversation_id=msg.conversation_id, message_id=msg.id)


def retry(*, clinic_id: int, message_id: int) -> bool:
    """A person asked to fetch a failed file again; False when there is nothing to retry."""
    from ..jobs import MEDIA, enqueue, tasks

    msg = db.session.get(Message, message_id)
    if msg is None or msg.clinic_id != clinic_id or msg.media_status != "failed":
        return False
    msg.media_status = "pending"
    msg.extra = {k: v for k, v in (msg.extra or {}).items() if k != "media_error"}
    db.session.commit()
    enqueue(tasks.download_media, msg.id, queue=MEDIA, job_id=f"media-{msg.id}-retry")
    return True
