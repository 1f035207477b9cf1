"""Outbound intents: record a message as queued, then hand it to the delivery worker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..extensions import db
from ..models import (
    AuthorType,
    Connection,
    Contact,
    ConversationStatus,
    Direction,
    Message,
    MessageStatus,
    utcnow,
)
from ..providers.base import Button
from . import conversations, realtime

MAX_TEXT = 4096  # WhatsApp's limit for a text body


class ComposeError(ValueError):
    """The message cannot be sent as written; the text says why."""


class PhiWarning(ComposeError):
    """Clinic policy "warn": the text looks like it holds health data; re-send with confirm_phi=True.

    ``findings`` are ``services.phi.Finding`` objects; ``str(exc)`` is the sentence for the composer.
    """

    def __init__(self, message: str, findings: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.findings = list(findings)


class PhiBlocked(ComposeError):
    """Clinic policy "block": the text holds health data and may not leave by WhatsApp or SMS."""

    def __init__(self, message: str, findings: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.findings = list(findings)


def queue_reply(
    *,
    clinic_id: int,
    conversation_id: int,
    body: str,
    author_id: int,
    template: TemplateUse | None = None,
    confirm_phi: bool = False,
) -> Message:
    """Record a staff reply (free text or an approved template) as queued and enqueue its delivery.

    Free text is checked for health data first, by the clinic's ``phi_policy``: "warn" raises
    :class:`PhiWarning` until the author confirms (``confirm_phi=True``), "block" raises
    :class:`PhiBlocked`. A template is sent as approved (no PHI check: its text is fixed).
    """
    text = (body or "").strip()
    conv = conversations.get(clinic_id=clinic_id, conversation_id=conversation_id)
    extra: dict[str, Any] = {}
    if template is not None:
        from . import templates as tpl_service

        tpl = tpl_service.get_approved(clinic_id, template.name, template.language)
        if tpl is None:
            raise ComposeError("That template is not approved for this clinic.")
        params = [str(p) for p in template.params]
        if len(params) < tpl.variable_count or any(not p.strip() for p in params[: tpl.variable_count]):
            raise ComposeError("Fill in every field of the template.")
        text = text or tpl.render(params)
    else:
        if not text:
            raise ComposeError("Write a message first.")
        if len(text) > MAX_TEXT:
            raise ComposeError(f"Messages can be at most {MAX_TEXT} characters.")
        findings = check_phi(clinic_id=clinic_id, text=text, confirmed=confirm_phi)
        if findings:
            extra["phi_confirmed"] = [f.label for f in findings]
    now = utcnow()
    msg = Message(
        clinic_id=clinic_id,
        conversation_id=conv.id,
        connection_id=conv.connection_id,
        channel=conversations.reply_channel(conv),
        direction=Direction.OUT,
        kind="template" if template else "text",
        body=text,
        author_type=AuthorType.STAFF,
        author_id=author_id,
        status=MessageStatus.QUEUED,
        template_name=template.name if template else None,
        template_language=template.language if template else None,
        template_params=[str(p) for p in template.params] if template else None,
        extra=extra,
        created_at=now,
    )
    db.session.add(msg)
    conversations.touch(conv, at=now, preview=text, inbound=False)
    db.session.commit()
    enqueue_delivery(msg.id)
    realtime.publish(clinic_id, "message", conversation_id=conv.id, message_id=msg.id, inbound=False)
    return msg


def check_phi(*, clinic_id: int, text: str, confirmed: bool = False) -> list[Any]:
    """Apply the clinic's PHI policy to free text; returns the findings that were allowed through.

    Raises :class:`PhiBlocked` (policy "block") or :class:`PhiWarning` (policy "warn", not confirmed).
    """
    from ..models import Clinic
    from . import phi

    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        raise ComposeError("Unknown clinic.")
    policy = str(clinic.setting("phi_policy", "warn"))
    if policy not in ("allow", "warn", "block"):
        policy = "warn"
    findings = phi.detect(
        text,
        extra_terms=tuple(clinic.setting("phi_terms", []) or ()),
        allow_terms=(clinic.name,),
        country=clinic.country,
    )
    if not findings:
        return []
    decision = phi.policy_decision(findings, policy)  # type: ignore[arg-type]
    if not decision.allowed:
        raise PhiBlocked(decision.reason, findings)
    if decision.needs_confirmation and not confirmed:
        raise PhiWarning(decision.reason, findings)
    return findings


def enqueue_delivery(message_id: int) -> bool:
    from ..jobs import DELIVERY, enqueue, tasks

    return enqueue(tasks.deliver_message, message_id, queue=DELIVERY, job_id=f"deliver-{message_id}")


DELIVERY_BATCH_SIZE = 50  # default of the DELIVERY_BATCH_SIZE setting (app config or WA_DELIVERY_BATCH_SIZE)


def enqueue_deliveries(message_ids: Sequence[int], *, batch_size: int | None = None) -> bool:
    """Hand many committed, queued messages to the workers as batch jobs of ids (one Redis round trip).

    For bulk sends (a broadcast, a reminder run): ``queue_notification(..., enqueue=False)`` for each,
    then this. A batch job (``tasks.deliver_messages``) claims its messages in one statement and writes
    their attempt rows in one commit; each message still gets its own claim, attempt row and
    "sent" commit. False (logged) when Redis is down: the sweeper re-enqueues the rows.
    """
    from ..jobs import DELIVERY, enqueue_many, tasks
    from .delivery import _cfg

    ids = list(message_ids)
    if not ids:
        return True
    size = max(1, int(batch_size or _cfg("DELIVERY_BATCH_SIZE", DELIVERY_BATCH_SIZE)))
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    calls = [((chunk,), f"deliver-batch-{chunk[0]}-{chunk[-1]}-{len(chunk)}") for chunk in chunks]
    return enqueue_many(tasks.deliver_messages, calls, queue=DELIVERY)


@dataclass(frozen=True)
class TemplateUse:
    """An approved WhatsApp template and the values for its numbered variables."""

    name: str
    language: str
    params: Sequence[str] = ()


def default_connection(clinic_id: int) -> Connection | None:
    """The clinic's WhatsApp number used for messages the clinic starts (first active one)."""
    return db.session.scalar(
        select(Connection)
        .where(Connection.clinic_id == clinic_id, Connection.active.is_(True), Connection.provider != "ses")
        .order_by(Connection.id)
    )


def queue_notification(
    *,
    clinic_id: int,
    contact_id: int,
    purpose: str,
    body: str,
    template: TemplateUse | None = None,
    buttons: Sequence[Button] = (),
    critical: bool = False,
    connection_id: int | None = None,
    author_type: AuthorType = AuthorType.SYSTEM,
    author_id: int | None = None,
    extra: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> Message:
    """Record a message the clinic starts (confirmation, reminder, broadcast …) as queued; enqueue it.

    ``body`` is the full text (what free text or SMS/email fallbacks carry); ``template`` is
    what WhatsApp gets when the 24-hour window is closed. The intent is committed first.
    ``enqueue=False`` leaves the enqueue to the caller, who queues many and hands them over with
    :func:`enqueue_deliveries` (batch jobs).
    """
    contact = db.session.scalar(
        select(Contact).where(Contact.id == contact_id, Contact.clinic_id == clinic_id)
    )
    if contact is None:
        raise ComposeError("Unknown contact.")
    conn = (
        db.session.scalar(
            select(Connection).where(Connection.id == connection_id, Connection.clinic_id == clinic_id)
        )
        if connection_id
        else default_connection(clinic_id)
    )
    if conn is None:
        raise ComposeError("The clinic has no WhatsApp connection yet.")
    conv = conversations.get_or_create(
        connection=conn, contact=contact, initial_status=ConversationStatus.BOT
    )
    now = utcnow()
    msg = Message(
        clinic_id=clinic_id,
        conversation_id=conv.id,
        connection_id=conn.id,
        # A patient who writes by SMS gets the clinic's answers, confirmations and reminders by SMS too.
        channel=conversations.reply_channel(conv),
        direction=Direction.OUT,
        kind="template" if template else ("buttons" if buttons else "text"),
        body=body,
        author_type=author_type,
        author_id=author_id,
        status=MessageStatus.QUEUED,
        purpose=purpose,
        critical=critical,
        template_name=template.name if template else None,
        template_language=template.language if template else None,
        template_params=list(template.params) if template else None,
        extra={
            **(extra or {}),
            **({"buttons": [{"id": b.id, "title": b.title} for b in buttons]} if buttons else {}),
        },
        created_at=now,
    )
    db.session.add(msg)
    conversations.touch(conv, at=now, preview=body, inbound=False)
    db.session.commit()
    if enqueue:
        enqueue_delivery(msg.id)
    realtime.publish(clinic_id, "message", conversation_id=conv.id, message_id=msg.id, inbound=False)
    return msg
