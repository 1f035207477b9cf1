"""The shared inbox: conversation list, thread, composer, media."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from ..extensions import db
from ..models import Message, utcnow
from ..services import conversations, messaging
from ..services.messaging import ComposeError
from ..services.storage import get_storage
from .decorators import render_page_or_fragment
from .forms import ReplyForm

bp = Blueprint("inbox", __name__)


@bp.get("/")
@login_required
def home():
    return redirect(url_for("inbox.index"))


@bp.get("/inbox")
@login_required
def index():
    convs = conversations.list_recent(clinic_id=current_user.clinic_id)
    active = request.args.get("active", type=int)
    return render_page_or_fragment(
        "inbox/index.html", "inbox/_list.html", conversations=convs, active_id=active
    )


def _thread_ctx(conversation_id: int) -> dict:
    conv = conversations.get(clinic_id=current_user.clinic_id, conversation_id=conversation_id)
    msgs = conversations.messages(clinic_id=current_user.clinic_id, conversation_id=conv.id)
    return {"conv": conv, "messages": msgs, "now": utcnow()}


@bp.get("/inbox/c/<int:conversation_id>")
@login_required
def conversation(conversation_id: int):
    ctx = _thread_ctx(conversation_id)
    conversations.mark_read(ctx["conv"])
    if request.args.get("fragment") == "thread":
        resp = render_template("inbox/_thread.html", **ctx)
        return Response(resp, headers={"Vary": "HX-Request"})
    convs = conversations.list_recent(clinic_id=current_user.clinic_id)
    return render_page_or_fragment(
        "inbox/conversation.html",
        "inbox/_conversation.html",
        conversations=convs,
        active_id=conversation_id,
        form=ReplyForm(),
        **ctx,
    )


@bp.post("/inbox/c/<int:conversation_id>/messages")
@login_required
def reply(conversation_id: int):
    form = ReplyForm()
    error = None
    if form.validate_on_submit():
        try:
            messaging.queue_reply(
                clinic_id=current_user.clinic_id,
                conversation_id=conversation_id,
                body=form.body.data,
                author_id=current_user.id,
            )
            form = ReplyForm(formdata=None)
        except ComposeError as exc:
            error = str(exc)
    else:
        # A conversation of another clinic is a 404 even when the form is invalid.
        conversations.get(clinic_id=current_user.clinic_id, conversation_id=conversation_id)
        error = "; ".join(e for errs in form.errors.values() for e in errs)
    if not request.htmx:
        if error:
            flash(error, "error")
        return redirect(url_for("inbox.conversation", conversation_id=conversation_id))
    ctx = _thread_ctx(conversation_id)
    return render_template(
        "inbox/_composer_result.html", form=form, error=error, **ctx
    ), 422 if error else 200


@bp.get("/media/<int:message_id>")
@login_required
def media(message_id: int):
    msg = db.session.scalar(
        select(Message).where(Message.id == message_id, Message.clinic_id == current_user.clinic_id)
    )
    if msg is None or msg.media_status != "stored" or not msg.media_key:
        abort(404)
    data = get_storage().get(msg.media_key)
    inline = (msg.media_mime or "").startswith(("image/", "video/", "audio/"))
    resp = Response(data, mimetype=msg.media_mime or "application/octet-stream")
    disposition = "inline" if inline else "attachment"
    filename = (msg.media_filename or f"file-{msg.id}").replace('"', "")
    resp.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    resp.headers["Cache-Control"] = "private, max-age=300"
    return resp
