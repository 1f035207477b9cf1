"""Outbound attachments from the composer: checked, stored, then queued like any reply."""

from __future__ import annotations

from ..extensions import db
from ..models import AuthorType, Direction, Message, MessageStatus, utcnow
from . import conversations, realtime
from .messaging import ComposeError, enqueue_delivery
from .storage import get_storage, media_key

MB = 1024 * 1024
# WhatsApp's own limits: images 5 MB, documents 100 MB (we keep documents to 16 MB).
IMAGE_TYPES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}
DOCUMENT_TYPES = {
    "application/pdf": b"%PDF-",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": b"PK\x03\x04",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": b"PK\x03\x04",
    "text/plain": b"",
}
MAX_IMAGE = 5 * MB
MAX_DOCUMENT = 16 * MB
ACCEPT = ",".join([*IMAGE_TYPES, *DOCUMENT_TYPES])


def check(*, data: bytes, mime: str, filename: str) -> str:
    """The message kind ("image" or "document") for an acceptable file; ComposeError otherwise."""
    mime = (mime or "").split(";")[0].strip().lower()
    if mime in IMAGE_TYPES:
        kind, limit, magic = "image", MAX_IMAGE, IMAGE_TYPES[mime]
    elif mime in DOCUMENT_TYPES:
        kind, limit, magic = "document", MAX_DOCUMENT, DOCUMENT_TYPES[mime]
    else:
        raise ComposeError(
            "This kind of file cannot be sent. Send a JPEG or PNG image, a PDF, Word or Excel file."
        )
    if not data:
        raise ComposeError("The file is empty.")
    if len(data) > limit:
        raise ComposeError(f"The file is too large: {kind}s can be at most {limit // MB} MB.")
    if magic and not data.startswith(magic):
        # The browser's claim is not proof: the bytes must match the type we tell the provider.
        raise ComposeError("The file does not match its type. Save it again and retry.")
    if not filename.strip():
        raise ComposeError("The file has no name.")
    return kind


def queue_attachment(
    *,
    clinic_id: int,
    conversation_id: int,
    author_id: int,
    data: bytes,
    mime: str,
    filename: str,
    caption: str = "",
) -> Message:
    """Store the file under the clinic's prefix and queue an image/document message for delivery."""
    kind = check(data=data, mime=mime, filename=filename)
    conv = conversations.get(clinic_id=clinic_id, conversation_id=conversation_id)
    now = utcnow()
    if not conv.free_text_open(now):
        raise ComposeError(
            "The 24-hour window is closed: files can only be sent after the patient writes again."
        )
    safe_name = filename.replace("/", "_").replace("\\", "_")[:200]
    msg = Message(
        clinic_id=clinic_id,
        conversation_id=conv.id,
        connection_id=conv.connection_id,
        channel=conversations.reply_channel(conv),
        direction=Direction.OUT,
        kind=kind,
        body=(caption or "").strip()[:1024],
        author_type=AuthorType.STAFF,
        author_id=author_id,
        status=MessageStatus.QUEUED,
        media_mime=mime.split(";")[0].strip().lower(),
        media_filename=safe_name,
        media_size=len(data),
        media_status="stored",
        created_at=now,
    )
    db.session.add(msg)
    db.session.flush()  # the id names the stored file
    msg.media_key = media_key(clinic_id, msg.id, safe_name)
    get_storage().put(msg.media_key, data, msg.media_mime or "application/octet-stream")
    conversations.touch(
        conv,
        at=now,
        preview=msg.body or ("📷 Photo" if kind == "image" else f"📄 {safe_name}"),
        inbound=False,
    )
    db.session.commit()
    enqueue_delivery(msg.id)
    realtime.publish(clinic_id, "message", conversation_id=conv.id, message_id=msg.id, inbound=False)
    return msg
