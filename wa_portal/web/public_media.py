"""``GET /media/out/<token>``: the file of one outbound attachment, for the provider to fetch.

No session: the signed, expiring token is the authorisation (see services/media_links.py).
Only files the clinic sent are served; inbound media stays behind login.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort
from sqlalchemy import select

from ..extensions import db
from ..models import Direction, Message
from ..services.media_links import read_token
from ..services.storage import get_storage

bp = Blueprint("public_media", __name__)
log = logging.getLogger(__name__)


@bp.get("/media/out/<token>")
def outbound_file(token: str) -> Response:
    ids = read_token(token)
    if ids is None:
        abort(404)
    clinic_id, message_id = ids
    msg = db.session.scalar(
        select(Message).where(
            Message.id == message_id,
            Message.clinic_id == clinic_id,
            Message.direction == Direction.OUT,
        )
    )
    if msg is None or not msg.media_key:
        abort(404)
    try:
        data = get_storage().get(msg.media_key)
    except Exception:  # a missing file in any backend (local OSError, S3 ClientError)
        log.warning("outbound file of message %s is missing from storage", msg.id)
        abort(404)
    resp = Response(data, mimetype=msg.media_mime or "application/octet-stream")
    filename = (msg.media_filename or f"file-{msg.id}").replace('"', "")
    resp.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    resp.headers["Cache-Control"] = "private, no-store"
    return resp
