"""Turn stored webhook events into contacts, conversations, messages and statuses.

Idempotent: a message already stored under its provider id is skipped, a status only
moves forward, and an event already processed is left alone, so the sweeper may
re-run any event safely.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import (
    STATUS_RANK,
    AuthorType,
    Clinic,
    Connection,
    ConnectionStatus,
    Contact,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    MessageStatus,
    MessageTemplate,
    TemplateStatus,
    WebhookEvent,
    WebhookState,
    utcnow,
)
from ..providers.base import (
    MEDIA_KINDS,
    ConnectionEvent,
    InboundMessage,
    ProviderError,
    ProviderEvent,
    StatusUpdate,
    WebhookError,
)
from . import audit, connections, conversations, delivery, realtime
from .phones import InvalidPhone, normalize
from .redis_conn import REDIS_DOWN, get_redis
from .webhooks import request_from_event

log = logging.getLogger(__name__)

STATUS_MAP = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "played": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}


def process_event(event_id: int) -> None:
    """Ingest one stored webhook event (safe to call twice)."""
    event = db.session.get(WebhookEvent, event_id)
    if event is None or event.state == WebhookState.PROCESSED:
        return
    conn = db.session.get(Connection, event.connection_id)
    if conn is None:
        return
    adapter = connections.adapter_for(conn)
    req = request_from_event(event)
    try:
        parsed = adapter.parse_webhook(req)
    except WebhookError as exc:
        event.state = WebhookState.FAILED
        event.error = f"unreadable: {exc}"[:500]
        db.session.commit()
        log.warning("webhook event %s could not be parsed", event_id)
        return
    event.attempts = (event.attempts or 0) + 1
    notices: list[tuple[int, str, dict[str, object]]] = []
    try:
        for item in parsed:
            target = _route(conn, item, req, cache={})
            if target is None:
                continue
            notices.extend(apply(target, item))
        event.state = WebhookState.PROCESSED
        event.processed_at = utcnow()
        db.session.commit()
    except IntegrityError:
        # Another worker stored the same message between our check and insert: nothing is lost;
        # the event is re-run from the start and skips what exists now.
        db.session.rollback()
        log.info("webhook event %s raced with another worker; re-running", event_id)
        process_event(event_id)
        return
    _publish(notices)
    _after_commit(notices)


Notice = tuple[int, str, dict[str, object]]


def process_events(event_ids: list[int]) -> None:
    """Ingest a chunk of stored events in one transaction, with bulk lookups (safe to call twice).

    Per event the one-by-one path costs ~16 SQL round trips and a commit; here a chunk of 50
    costs about ten statements and one commit. If anything goes wrong (another worker raced us
    on the same contact or message, or one event cannot be applied) the chunk is rolled back
    and re-run event by event, so one bad event still stops nothing else.
    """
    try:
        notices = _process_batch(event_ids)
    except Exception:
        db.session.rollback()
        log.info("ingest batch of %d event(s) re-run one by one", len(event_ids), exc_info=True)
    else:
        _publish(notices)
        _after_commit(notices)
        return
    failed: Exception | None = None
    for event_id in event_ids:
        try:
            process_event(event_id)
        except Exception as exc:  # keep going; the job still fails below so RQ records it
            db.session.rollback()
            log.exception("webhook event %s could not be ingested", event_id)
            failed = failed or exc
    if failed is not None:
        raise failed


def _process_batch(event_ids: list[int]) -> list[Notice]:
    events = [
        e
        for e in db.session.scalars(
            select(WebhookEvent).where(WebhookEvent.id.in_(event_ids)).order_by(WebhookEvent.id)
        )
        if e.state != WebhookState.PROCESSED
    ]
    if not events:
        return []
    conns = {
        c.id: c
        for c in db.session.scalars(
            select(Connection)
            .options(selectinload(Connection.routes))
            .where(Connection.id.in_({e.connection_id for e in events}))
        )
    }
    adapters = {cid: connections.adapter_for(c) for cid, c in conns.items()}
    inbound: list[tuple[Connection, InboundMessage]] = []
    statuses: list[tuple[Connection, StatusUpdate]] = []
    others: list[tuple[Connection, ProviderEvent]] = []
    now = utcnow()
    for event in events:
        conn = conns.get(event.connection_id)
        if conn is None:
            continue
        req = request_from_event(event)
        try:
            parsed = adapters[conn.id].parse_webhook(req)
        except WebhookError as exc:
            event.state = WebhookState.FAILED
            event.error = f"unreadable: {exc}"[:500]
            log.warning("webhook event %s could not be parsed", event.id)
            continue
        cache: dict[int, bool] = {}
        for item in parsed:
            target = _route(conn, item, req, cache=cache)
            if target is None:
                continue
            if isinstance(item, InboundMessage):
                inbound.append((target, item))
            elif isinstance(item, StatusUpdate):
                statuses.append((target, item))
            else:
                others.append((target, item))
        event.attempts = (event.attempts or 0) + 1
        event.state = WebhookState.PROCESSED
        event.processed_at = now
    notices = _record_inbound_many(inbound)
    notices += _apply_statuses(statuses)
    for target, item in others:
        notices.extend(apply(target, item))
    db.session.commit()
    return notices


def _record_inbound_many(items: list[tuple[Connection, InboundMessage]]) -> list[Notice]:
    """record_inbound for many messages: one query per kind of row instead of several per message."""
    if not items:
        return []
    keys = {(conn.id, item.provider_message_id) for conn, item in items}
    seen: set[tuple[int, str | None]] = {
        (row[0], row[1])
        for row in db.session.execute(
            select(Message.connection_id, Message.provider_message_id).where(
                tuple_(Message.connection_id, Message.provider_message_id).in_(keys)
            )
        )
    }
    fresh: list[tuple[Connection, InboundMessage]] = []
    for conn, item in items:
        key = (conn.id, item.provider_message_id)
        if key not in seen:  # stored before, or twice in this chunk (a redelivery with another body)
            seen.add(key)
            fresh.append((conn, item))
    if not fresh:
        return []
    clinics = {
        c.id: c
        for c in db.session.scalars(select(Clinic).where(Clinic.id.in_({c.clinic_id for c, _ in fresh})))
    }
    phones = [_contact_phone(clinics[conn.clinic_id], item.from_phone) for conn, item in fresh]
    contacts = {
        (c.clinic_id, c.phone): c
        for c in db.session.scalars(
            select(Contact).where(
                tuple_(Contact.clinic_id, Contact.phone).in_(
                    {(conn.clinic_id, p) for (conn, _), p in zip(fresh, phones, strict=True)}
                )
            )
        )
    }
    for (conn, item), phone in zip(fresh, phones, strict=True):
        contact = contacts.get((conn.clinic_id, phone))
        if contact is None:
            contact = contacts[(conn.clinic_id, phone)] = Contact(
                clinic_id=conn.clinic_id, phone=phone, name=item.contact_name or ""
            )
            db.session.add(contact)
        elif item.contact_name and not contact.name:
            contact.name = item.contact_name
    db.session.flush()  # new contacts get their ids in one multi-row INSERT … RETURNING
    pairs = {(conn.id, contacts[(conn.clinic_id, p)].id) for (conn, _), p in zip(fresh, phones, strict=True)}
    convs = {
        (c.connection_id, c.contact_id): c
        for c in db.session.scalars(
            select(Conversation).where(tuple_(Conversation.connection_id, Conversation.contact_id).in_(pairs))
        )
    }
    by_id = {conn.id: conn for conn, _ in fresh}
    for conn_id, contact_id in sorted(pairs):
        if (conn_id, contact_id) not in convs:
            conv = convs[(conn_id, contact_id)] = Conversation(
                clinic_id=by_id[conn_id].clinic_id,
                connection_id=conn_id,
                contact_id=contact_id,
                status=ConversationStatus.AWAITING_HUMAN,
            )
            db.session.add(conv)
    db.session.flush()
    made = [
        (conn, _new_inbound(conn, convs[(conn.id, contacts[(conn.clinic_id, p)].id)], item))
        for (conn, item), p in zip(fresh, phones, strict=True)
    ]
    db.session.flush()
    return [
        (
            conn.clinic_id,
            "message",
            {"conversation_id": msg.conversation_id, "message_id": msg.id, "inbound": True},
        )
        for conn, msg in made
    ]


def _contact_phone(clinic: Clinic, phone: str) -> str:
    # As conversations.get_or_create_contact: E.164, or what the provider gave rather than lose it.
    try:
        return normalize(phone, clinic.country if not phone.startswith("+") else None)
    except InvalidPhone:
        return phone[:20]


def _apply_statuses(items: list[tuple[Connection, StatusUpdate]]) -> list[Notice]:
    """apply_status for many updates: one query for all their messages, applied in arrival order."""
    wanted = [(conn, item, STATUS_MAP[item.status]) for conn, item in items if item.status in STATUS_MAP]
    if not wanted:
        return []
    msgs = {
        (m.connection_id, m.provider_message_id): m
        for m in db.session.scalars(
            select(Message).where(
                tuple_(Message.connection_id, Message.provider_message_id).in_(
                    {(conn.id, item.provider_message_id) for conn, item, _ in wanted}
                )
            )
        )
    }
    notices: list[Notice] = []
    for conn, item, new in wanted:
        msg = msgs.get((conn.id, item.provider_message_id))
        if msg is None:
            log.info("status for an unknown message on connection %s", conn.id)
            continue
        if advance_status(msg, new, at=item.timestamp, code=item.error_code, detail=item.error_title):
            notices.append(
                (conn.clinic_id, "status", {"conversation_id": msg.conversation_id, "message_id": msg.id})
            )
    return notices


def _publish(notices: list[Notice]) -> None:
    """realtime.publish for each notice, in one Redis round trip (best effort, as publish)."""
    if not notices:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for clinic_id, name, data in notices:
            pipe.publish(realtime.channel(clinic_id), json.dumps({"event": name, **data}))
        pipe.execute()
    except REDIS_DOWN:
        log.info("realtime publish skipped: redis unavailable")


def _route(conn: Connection, item: ProviderEvent, req, cache: dict[int, bool]) -> Connection | None:
    """The connection an event is for: one batched POST may carry several of our numbers.

    An event routed to a connection other than the one that verified the request is only
    accepted when that connection's own secret verifies the same request too.
    """
    key = getattr(item, "route_key", None)
    if not key or key in {r.route_key for r in conn.routes}:
        return conn
    for other in connections.candidates_for(conn.provider, [key]):
        ok = cache.get(other.id)
        if ok is None:
            ok = cache[other.id] = connections.adapter_for(other).verify_webhook(req)
        if ok:
            return other
    log.warning("event for an unverified route dropped (connection %s)", conn.id)
    return None


def apply(conn: Connection, item: ProviderEvent) -> list[tuple[int, str, dict[str, object]]]:
    if isinstance(item, InboundMessage):
        return record_inbound(conn, item)
    if isinstance(item, StatusUpdate):
        return apply_status(conn, item)
    if isinstance(item, ConnectionEvent):
        return apply_connection_event(conn, item)
    return []


def record_inbound(conn: Connection, item: InboundMessage) -> list[tuple[int, str, dict[str, object]]]:
    exists = db.session.scalar(
        select(Message.id).where(
            Message.connection_id == conn.id, Message.provider_message_id == item.provider_message_id
        )
    )
    if exists:
        return []
    clinic = db.session.get(Clinic, conn.clinic_id)
    assert clinic is not None
    contact = conversations.get_or_create_contact(
        clinic=clinic, phone=item.from_phone, name=item.contact_name
    )
    conv = conversations.get_or_create(connection=conn, contact=contact)
    msg = _new_inbound(conn, conv, item)
    db.session.flush()
    return [(conn.clinic_id, "message", {"conversation_id": conv.id, "message_id": msg.id, "inbound": True})]


def _new_inbound(conn: Connection, conv, item: InboundMessage) -> Message:
    """Add the message to the session and bump its conversation (no flush)."""
    if item.conversation_ref:
        conv.provider_thread_ref = item.conversation_ref
    msg = Message(
        clinic_id=conn.clinic_id,
        conversation_id=conv.id,
        connection_id=conn.id,
        direction=Direction.IN,
        kind=item.kind.value,
        body=item.text,
        author_type=AuthorType.PATIENT,
        status=MessageStatus.RECEIVED,
        provider_message_id=item.provider_message_id,
        channel=item.channel.value,
        created_at=item.timestamp,
        extra={
            k: v
            for k, v in {
                "button_payload": item.button_payload,
                "reply_to": item.reply_to_provider_id,
                **dict(item.extra),
            }.items()
            if v is not None
        },
    )
    if item.media is not None and item.kind in MEDIA_KINDS:
        msg.media_status = "pending"
        msg.media_mime = item.media.mime_type
        msg.media_filename = item.media.filename
        msg.extra = {
            **msg.extra,
            "media_ref": {"id": item.media.provider_media_id, "url": item.media.url},
        }
    db.session.add(msg)
    conversations.touch(conv, at=item.timestamp, preview=_preview(item), inbound=True, channel=msg.channel)
    return msg


def _preview(item: InboundMessage) -> str:
    if item.text:
        return item.text
    return {"image": "📷 Photo", "document": "📄 Document", "audio": "🎤 Audio", "video": "🎬 Video"}.get(
        item.kind.value, item.kind.value
    )


def apply_status(conn: Connection, item: StatusUpdate) -> list[tuple[int, str, dict[str, object]]]:
    new = STATUS_MAP.get(item.status)
    if new is None:
        return []
    msg = db.session.scalar(
        select(Message).where(
            Message.connection_id == conn.id, Message.provider_message_id == item.provider_message_id
        )
    )
    if msg is None:
        log.info("status for an unknown message on connection %s", conn.id)
        return []
    if not advance_status(msg, new, at=item.timestamp, code=item.error_code, detail=item.error_title):
        return []
    return [(conn.clinic_id, "status", {"conversation_id": msg.conversation_id, "message_id": msg.id})]


def advance_status(
    msg: Message, new: MessageStatus, *, at, code: str | None = None, detail: str | None = None
) -> bool:
    """Move a message's status forward only; returns whether anything changed."""
    current = MessageStatus(msg.status)
    if new == MessageStatus.FAILED:
        if current in (MessageStatus.READ, MessageStatus.FAILED):
            return False
        msg.status = MessageStatus.FAILED
        msg.failed_at = at
        msg.error_code = code
        msg.error_detail = (detail or "The provider reported the message as failed")[:500]
        return True
    if current == MessageStatus.FAILED or STATUS_RANK.get(new, -1) <= STATUS_RANK.get(current, -1):
        return False
    msg.status = new
    if new in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ) and msg.sent_at is None:
        msg.sent_at = at
    if new in (MessageStatus.DELIVERED, MessageStatus.READ) and msg.delivered_at is None:
        msg.delivered_at = at
    if new == MessageStatus.READ:
        msg.read_at = at
    return True


TEMPLATE_EVENTS = {
    "APPROVED": "approved",
    "REJECTED": "rejected",
    "PAUSED": "paused",
    "DISABLED": "disabled",
    "PENDING": "pending",
    "IN_APPEAL": "pending",
    "PENDING_DELETION": "disabled",
    "DELETED": "disabled",
    "FLAGGED": "paused",
    "REINSTATED": "approved",
}


def apply_connection_event(
    conn: Connection, item: ConnectionEvent
) -> list[tuple[int, str, dict[str, object]]]:
    data = dict(item.data)
    if item.kind == "quality_update":
        limit = data.get("current_limit") or data.get("max_daily_conversations")
        if limit:
            conn.messaging_limit = str(limit)[:32]
        event = str(data.get("event") or "").upper()
        if event in ("FLAGGED", "DOWNGRADE"):
            conn.quality_rating = "YELLOW" if event == "FLAGGED" else "RED"
        elif event in ("UNFLAGGED", "UPGRADE"):
            conn.quality_rating = "GREEN"
        conn.status_detail = f"Quality update from WhatsApp: {event.lower() or 'unknown'}"[:500]
    elif item.kind == "session_status":
        status = str(data.get("status") or "")
        conn.status_detail = f"WhatsApp session: {status}"
        conn.status = ConnectionStatus.CONNECTED if status == "WORKING" else ConnectionStatus.DEGRADED
    elif item.kind == "template_status":
        _apply_template_status(conn, data)
    elif item.kind == "sns_subscription":
        _confirm_sns_subscription(conn, data)
    elif item.kind == "email_complaint":
        return _apply_email_complaint(conn, data)
    return [(conn.clinic_id, "connection", {"connection_id": conn.id})]


def _confirm_sns_subscription(conn: Connection, data: dict[str, object]) -> None:
    """Amazon SNS asks us to confirm the topic subscription (SES feedback): follow its link once."""
    topic = str(data.get("topic_arn") or "")
    try:
        connections.adapter_for(conn).confirm_subscription(str(data.get("subscribe_url") or ""))  # type: ignore[attr-defined]
    except ProviderError as exc:
        conn.status_detail = f"Email feedback: the SNS subscription could not be confirmed. {exc.detail}"[
            :500
        ]
        log.warning("sns subscription for connection %s not confirmed: %s", conn.id, exc.kind.value)
        return
    conn.status_detail = f"Email feedback: bounces and complaints arrive from {topic.rsplit(':', 1)[-1]}."[
        :500
    ]
    log.info("sns subscription for connection %s confirmed", conn.id)


def _apply_email_complaint(conn: Connection, data: dict[str, object]) -> list[Notice]:
    """A patient marked one of our emails as spam: no more email to them, and the trail says why."""
    msg = db.session.scalar(
        select(Message).where(
            Message.connection_id == conn.id, Message.provider_message_id == str(data.get("message_id") or "")
        )
    )
    if msg is None:
        log.info("email complaint for an unknown message on connection %s", conn.id)
        return []
    conv = db.session.get(Conversation, msg.conversation_id)
    contact = db.session.get(Contact, conv.contact_id) if conv else None
    if contact is None:
        return []
    clinic = db.session.get(Clinic, conn.clinic_id)
    chain = [c for c in delivery.channel_chain(clinic, contact) if c != "email"] if clinic else []
    contact.preferred_channels = chain or ["whatsapp"]
    feedback = str(data.get("feedback_type") or "").strip()
    audit.record(
        "update",
        "contact",
        contact.id,
        f"Marked message {msg.id} as spam in their mailbox"
        + (f" ({feedback})" if feedback else "")
        + "; email is no longer used for this contact",
        clinic_id=conn.clinic_id,
        user=audit.ANONYMOUS,
        actor="Amazon SES",
    )
    return [(conn.clinic_id, "conversation", {"conversation_id": msg.conversation_id})]


def _apply_template_status(conn: Connection, data: dict[str, object]) -> None:
    """Meta approved, rejected or paused one of the clinic's templates: keep our copy in step."""
    name, language = str(data.get("name") or ""), str(data.get("language") or "")
    status = TEMPLATE_EVENTS.get(str(data.get("event") or "").upper())
    if not name or status is None:
        return
    tpl = db.session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.clinic_id == conn.clinic_id,
            MessageTemplate.name == name,
            MessageTemplate.language == language,
        )
    )
    if tpl is None:
        return  # a template this clinic never registered with us
    tpl.status = TemplateStatus(status)
    tpl.status_reason = str(data.get("reason")) if data.get("reason") not in (None, "NONE") else None
    if data.get("template_id"):
        tpl.provider_ids = {**(tpl.provider_ids or {}), conn.provider: str(data["template_id"])}


def _after_commit(notices: list[tuple[int, str, dict[str, object]]]) -> None:
    """Start the follow-up work of new inbound messages: media download, then automation."""
    from ..jobs import MEDIA, enqueue, tasks
    from . import automation

    # The commit expired everything: load the new messages and their conversations in one query
    # each, so the per-message session.get calls below (and in the automation) need no SQL.
    # (``loaded`` holds them: the session keeps only weak references to unchanged objects.)
    ids = [data["message_id"] for _, name, data in notices if name == "message" and data.get("inbound")]
    loaded: list[object] = []
    if len(ids) > 1:
        loaded += db.session.scalars(select(Message).where(Message.id.in_(ids)))
        conv_ids = {data["conversation_id"] for _, name, data in notices if name == "message"}
        loaded += db.session.scalars(select(Conversation).where(Conversation.id.in_(conv_ids)))
    for _clinic_id, name, data in notices:
        if name == "message" and data.get("inbound"):
            msg = db.session.get(Message, data["message_id"])
            if msg is not None and msg.media_status == "pending":
                enqueue(tasks.download_media, msg.id, queue=MEDIA, job_id=f"media-{msg.id}")
            automation.handle_inbound(int(str(data["message_id"])))
