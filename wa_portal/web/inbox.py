"""The shared inbox: conversation list, thread, composer, collaboration, sidebar, canned replies, media."""

from __future__ import annotations

import inspect
import re
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    url_for,
)
from flask_login import current_user, login_required
from htmx_flask import request
from markupsafe import Markup, escape
from sqlalchemy import select

from ..extensions import db
from ..models import Message, utcnow
from ..services import conversations, inbox_canned, inbox_media, inbox_presence, inbox_templates, messaging
from ..services.conversations import InboxError, ListFilter
from ..services.inbox_canned import CannedError
from ..services.messaging import ComposeError
from ..services.storage import get_storage
from .decorators import render_page_or_fragment, wants_fragment
from .forms import CannedReplyForm, ContactNotesForm, ReplyForm

bp = Blueprint("inbox", __name__)


@bp.get("/")
@login_required
def home():
    return redirect(url_for("inbox.index"))


# --- list ----------------------------------------------------------------------------------------


def _filters() -> ListFilter:
    args = request.args
    view = args.get("view", "awaiting")
    return ListFilter(
        view=view if view in conversations.VIEWS else "awaiting",
        connection_id=args.get("connection", type=int),
        channel=(args.get("channel") or None),
        q=(args.get("q") or "").strip()[:200],
    )


def _list_ctx(active_id: int | None = None) -> dict[str, Any]:
    clinic_id = current_user.clinic_id
    filters = _filters()
    page = conversations.list_page(
        clinic_id=clinic_id, user_id=current_user.id, filters=filters, cursor=request.args.get("cursor")
    )
    conns = conversations.connections_of(clinic_id=clinic_id)
    return {
        "listing": page,
        "filters": filters,
        "views": conversations.VIEWS,
        "connections": conns,
        "channels": sorted({c.provider for c in conns}),
        "active_id": active_id,
        "awaiting": conversations.awaiting_count(clinic_id=clinic_id),
        "now": utcnow(),
    }


def _list_args(filters: ListFilter, active_id: int | None = None, **extra: Any) -> dict[str, Any]:
    args = {
        "view": filters.view,
        "connection": filters.connection_id or None,
        "channel": filters.channel or None,
        "q": filters.q or None,
        "active": active_id,
        **extra,
    }
    return {k: v for k, v in args.items() if v is not None}


@bp.app_context_processor
def _inbox_helpers() -> dict[str, Any]:
    return {"inbox_list_args": _list_args}


_WA_FORMAT = [
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"<em>\1</em>"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"), r"<s>\1</s>"),
]


@bp.app_template_filter("wa_format")
def wa_format(text: str | None) -> Markup:
    """WhatsApp's *bold*, _italic_ and ~strike~ as HTML, on escaped text (nothing else gets through)."""
    html = str(escape(text or ""))
    for pattern, repl in _WA_FORMAT:
        html = pattern.sub(repl, html)
    return Markup(html)  # noqa: S704 - built from escaped text and our own tags only


@bp.get("/inbox")
@login_required
def index():
    ctx = _list_ctx(active_id=request.args.get("active", type=int))
    if request.args.get("cursor") and wants_fragment():
        resp = make_response(render_template("inbox/_rows.html", **ctx))
        resp.headers["Vary"] = "HX-Request"
        return resp
    if not wants_fragment():
        ctx["first_run"] = not ctx["listing"].rows and not conversations.any_for(
            clinic_id=current_user.clinic_id
        )
    return render_page_or_fragment("inbox/index.html", "inbox/_list.html", **ctx)


# --- thread --------------------------------------------------------------------------------------


def _thread_ctx(conversation_id: int) -> dict[str, Any]:
    clinic_id = current_user.clinic_id
    conv = conversations.get(clinic_id=clinic_id, conversation_id=conversation_id)
    msgs = conversations.messages(clinic_id=clinic_id, conversation_id=conv.id)
    return {
        "conv": conv,
        "messages": msgs,
        "now": utcnow(),
        "typists": inbox_presence.typists(
            clinic_id=clinic_id, conversation_id=conv.id, exclude_user_id=current_user.id
        ),
    }


def _composer_ctx(conv, **extra: Any) -> dict[str, Any]:
    clinic_id = current_user.clinic_id
    return {
        "canned": inbox_canned.list_for(clinic_id=clinic_id),
        "templates": inbox_templates.approved(clinic_id=clinic_id),
        "accept": inbox_media.ACCEPT,
        "max_image": inbox_media.MAX_IMAGE,
        "max_document": inbox_media.MAX_DOCUMENT,
        "form": extra.pop("form", None) or ReplyForm(formdata=None),
        **extra,
    }


def _fragment(template: str, **ctx: Any) -> Response:
    resp = make_response(render_template(template, **ctx))
    resp.headers["Vary"] = "HX-Request"
    return resp


@bp.get("/inbox/c/<int:conversation_id>")
@login_required
def conversation(conversation_id: int):
    ctx = _thread_ctx(conversation_id)
    part = request.args.get("fragment")
    if part == "thread":
        return _fragment("inbox/_thread.html", **ctx)
    if part == "header":
        return _fragment("inbox/_conv_header.html", colleagues=_colleagues(), **ctx)
    if part == "composer":
        return _fragment("inbox/_composer.html", **ctx, **_composer_ctx(ctx["conv"]))
    conversations.mark_read_by(
        clinic_id=current_user.clinic_id, conversation_id=conversation_id, user_id=current_user.id
    )
    side = conversations.sidebar(clinic_id=current_user.clinic_id, conversation=ctx["conv"])
    return render_page_or_fragment(
        "inbox/conversation.html",
        "inbox/_conversation.html",
        **_list_ctx(active_id=conversation_id),
        **{k: v for k, v in ctx.items() if k != "now"},
        **_composer_ctx(ctx["conv"]),
        side=side,
        patient_link_url=_patient_link_url(side),
        colleagues=_colleagues(),
        notes_form=ContactNotesForm(formdata=None, notes=side.contact.notes),
    )


def _patient_link_url(side) -> str | None:
    """Where to link a lead to a patient record, when the patients module offers such a page."""
    if side.patient is not None:
        return None
    for endpoint in ("patients.link", "patients.new"):
        if endpoint in current_app.view_functions:
            return url_for(endpoint, contact_id=side.contact.id)
    return None


def _colleagues():
    return conversations.colleagues(clinic_id=current_user.clinic_id)


# --- composer ------------------------------------------------------------------------------------


def _queue_reply(conversation_id: int, body: str, template: Any, confirm_phi: bool) -> None:
    """Call messaging.queue_reply with the keywords it takes (template / PHI arrive with delivery)."""
    kwargs: dict[str, Any] = {
        "clinic_id": current_user.clinic_id,
        "conversation_id": conversation_id,
        "body": body,
        "author_id": current_user.id,
    }
    params = inspect.signature(messaging.queue_reply).parameters
    if template is not None:
        if "template" not in params:
            raise ComposeError("Sending templates from the inbox is not available yet.")
        kwargs["template"] = template
    if confirm_phi and "confirm_phi" in params:
        kwargs["confirm_phi"] = True
    messaging.queue_reply(**kwargs)


def _composer_response(conversation_id: int, *, error: str | None, phi: Any = None, form=None, status=200):
    ctx = _thread_ctx(conversation_id)
    if not request.htmx:
        if error:
            flash(error, "error")
        return redirect(url_for("inbox.conversation", conversation_id=conversation_id))
    html = render_template(
        "inbox/_composer_result.html",
        error=error,
        phi=phi,
        **ctx,
        **_composer_ctx(ctx["conv"], form=form),
    )
    return html, status


@bp.post("/inbox/c/<int:conversation_id>/messages")
@login_required
def reply(conversation_id: int):
    form = ReplyForm()
    mode = request.form.get("mode", "reply")
    error: str | None = None
    phi = None
    try:
        if mode == "note":
            conversations.add_note(
                clinic_id=current_user.clinic_id,
                conversation_id=conversation_id,
                author_id=current_user.id,
                body=request.form.get("body", ""),
            )
        elif mode == "template":
            tpl = inbox_templates.get_approved(
                clinic_id=current_user.clinic_id, template_id=request.form.get("template_id", type=int) or 0
            )
            if tpl is None:
                raise ComposeError("Choose a template first.")
            values = [
                request.form.get(f"t{tpl.id}_var{i}", "").strip() for i in range(1, tpl.variable_count + 1)
            ]
            if any(not v for v in values):
                raise ComposeError("Fill in every field of the template.")
            _queue_reply(
                conversation_id,
                tpl.render(values),
                messaging.TemplateUse(name=tpl.name, language=tpl.language, params=values),
                confirm_phi=bool(request.form.get("confirm_phi")),
            )
        else:
            if not form.validate_on_submit():
                conversations.get(clinic_id=current_user.clinic_id, conversation_id=conversation_id)
                raise ComposeError("; ".join(e for errs in form.errors.values() for e in errs))
            _queue_reply(
                conversation_id, form.body.data, None, confirm_phi=bool(request.form.get("confirm_phi"))
            )
        form = ReplyForm(formdata=None)
    except messaging.PhiWarning as exc:
        error, phi = str(exc), exc
    except (ComposeError, InboxError) as exc:
        error = str(exc)
    return _composer_response(conversation_id, error=error, phi=phi, form=form, status=422 if error else 200)


@bp.post("/inbox/c/<int:conversation_id>/attachments")
@login_required
def attach(conversation_id: int):
    upload = request.files.get("file")
    error = None
    try:
        if upload is None or not upload.filename:
            raise ComposeError("Choose a file first.")
        try:
            data = upload.read(inbox_media.MAX_DOCUMENT + 1)
        finally:
            upload.close()
        inbox_media.queue_attachment(
            clinic_id=current_user.clinic_id,
            conversation_id=conversation_id,
            author_id=current_user.id,
            data=data,
            mime=upload.mimetype or "",
            filename=upload.filename,
            caption=request.form.get("caption", ""),
        )
    except ComposeError as exc:
        conversations.get(clinic_id=current_user.clinic_id, conversation_id=conversation_id)
        error = str(exc)
    return _composer_response(conversation_id, error=error, status=422 if error else 200)


@bp.post("/inbox/c/<int:conversation_id>/typing")
@login_required
def typing(conversation_id: int):
    conversations.get(clinic_id=current_user.clinic_id, conversation_id=conversation_id)
    inbox_presence.typing(
        clinic_id=current_user.clinic_id,
        conversation_id=conversation_id,
        user_id=current_user.id,
        name=current_user.display_name,
    )
    return "", 204


# --- collaboration -------------------------------------------------------------------------------


@bp.post("/inbox/c/<int:conversation_id>/actions")
@login_required
def act(conversation_id: int):
    error = None
    try:
        conversations.change(
            clinic_id=current_user.clinic_id,
            conversation_id=conversation_id,
            actor_id=current_user.id,
            action=request.form.get("action", ""),
            assignee_id=request.form.get("assignee_id", type=int),
        )
    except InboxError as exc:
        error = str(exc)
    if not request.htmx:
        if error:
            flash(error, "error")
        return redirect(url_for("inbox.conversation", conversation_id=conversation_id))
    ctx = _thread_ctx(conversation_id)
    return render_template(
        "inbox/_conv_header.html", colleagues=_colleagues(), error=error, oob_thread=True, **ctx
    ), 422 if error else 200


@bp.post("/inbox/contacts/<int:contact_id>/notes")
@login_required
def contact_notes(contact_id: int):
    form = ContactNotesForm()
    if not form.validate_on_submit():
        abort(400, "; ".join(e for errs in form.errors.values() for e in errs))
    contact = conversations.update_contact_notes(
        clinic_id=current_user.clinic_id, contact_id=contact_id, notes=form.notes.data or ""
    )
    if not request.htmx:
        flash("Notes saved.", "info")
        return redirect(request.referrer or url_for("inbox.index"))
    return render_template("inbox/_contact_notes.html", contact=contact, notes_form=form, saved=True)


# --- canned replies ------------------------------------------------------------------------------


@bp.get("/inbox/canned")
@login_required
def canned():
    return render_page_or_fragment(
        "inbox/canned.html",
        "inbox/_canned_list.html",
        canned=inbox_canned.list_for(clinic_id=current_user.clinic_id),
        form=CannedReplyForm(formdata=None),
    )


@bp.post("/inbox/canned")
@login_required
def canned_add():
    form = CannedReplyForm()
    error = None
    if form.validate_on_submit():
        try:
            inbox_canned.add(
                clinic_id=current_user.clinic_id,
                title=form.title.data,
                body=form.body.data,
                author_id=current_user.id,
            )
            form = CannedReplyForm(formdata=None)
        except CannedError as exc:
            error = str(exc)
    else:
        error = "Give the canned reply a title and a text."
    if not request.htmx:
        flash(error or "Canned reply saved.", "error" if error else "info")
        return redirect(url_for("inbox.canned"))
    return render_template(
        "inbox/_canned_list.html",
        canned=inbox_canned.list_for(clinic_id=current_user.clinic_id),
        form=form,
        error=error,
    ), 422 if error else 200


@bp.post("/inbox/canned/<int:canned_id>/delete")
@login_required
def canned_delete(canned_id: int):
    inbox_canned.delete(clinic_id=current_user.clinic_id, canned_id=canned_id)
    if not request.htmx:
        flash("Canned reply deleted.", "info")
        return redirect(url_for("inbox.canned"))
    return render_template(
        "inbox/_canned_list.html",
        canned=inbox_canned.list_for(clinic_id=current_user.clinic_id),
        form=CannedReplyForm(formdata=None),
    )


# --- media ---------------------------------------------------------------------------------------


@bp.post("/inbox/c/<int:conversation_id>/media/<int:message_id>/retry")
@login_required
def retry_media(conversation_id: int, message_id: int):
    """A person asks to fetch a patient's file again after its download failed."""
    from ..services import media as media_service

    found = db.session.scalar(
        select(Message.id).where(
            Message.id == message_id,
            Message.conversation_id == conversation_id,
            Message.clinic_id == current_user.clinic_id,
        )
    )
    if found is None:
        abort(404)
    if not media_service.retry(clinic_id=current_user.clinic_id, message_id=message_id):
        flash("That file is not waiting for a retry.", "error")
    if not request.htmx:
        return redirect(url_for("inbox.conversation", conversation_id=conversation_id))
    return _fragment("inbox/_thread.html", **_thread_ctx(conversation_id))


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
