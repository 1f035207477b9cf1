"""Conversations and contacts: find, list, and keep their counters honest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, false, func, literal_column, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, joinedload

from ..extensions import db
from ..models import (
    AuthorType,
    Clinic,
    Connection,
    Contact,
    Conversation,
    ConversationRead,
    ConversationStatus,
    Direction,
    Message,
    MessageStatus,
    User,
    utcnow,
)
from . import realtime
from .phones import InvalidPhone, normalize

PREVIEW_LEN = 120


def get(*, clinic_id: int, conversation_id: int) -> Conversation:
    """A conversation of this clinic, or 404 (never another clinic's)."""
    return db.first_or_404(
        select(Conversation)
        .options(joinedload(Conversation.contact), joinedload(Conversation.connection))
        .where(Conversation.id == conversation_id, Conversation.clinic_id == clinic_id)
    )


def list_recent(*, clinic_id: int, limit: int = 50) -> list[Conversation]:
    return list(
        db.session.scalars(
            select(Conversation)
            .options(joinedload(Conversation.contact), joinedload(Conversation.assignee))
            .where(Conversation.clinic_id == clinic_id)
            .order_by(Conversation.last_message_at.desc().nulls_last(), Conversation.id.desc())
            .limit(limit)
        )
    )


def messages(*, clinic_id: int, conversation_id: int, limit: int = 200) -> list[Message]:
    rows = db.session.scalars(
        select(Message)
        .options(joinedload(Message.author))
        .where(Message.clinic_id == clinic_id, Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))


def get_or_create_contact(*, clinic: Clinic, phone: str, name: str | None) -> Contact:
    try:
        e164 = normalize(phone, clinic.country if not phone.startswith("+") else None)
    except InvalidPhone:
        e164 = phone[:20]  # keep what the provider gave us rather than lose the message
    contact = db.session.scalar(select(Contact).where(Contact.clinic_id == clinic.id, Contact.phone == e164))
    if contact is None:
        contact = Contact(clinic_id=clinic.id, phone=e164, name=name or "")
        db.session.add(contact)
        db.session.flush()
    elif name and not contact.name:
        contact.name = name
    return contact


def get_or_create(
    *,
    connection: Connection,
    contact: Contact,
    initial_status: ConversationStatus = ConversationStatus.AWAITING_HUMAN,
) -> Conversation:
    conv = db.session.scalar(
        select(Conversation).where(
            Conversation.connection_id == connection.id, Conversation.contact_id == contact.id
        )
    )
    if conv is None:
        conv = Conversation(
            clinic_id=connection.clinic_id,
            connection_id=connection.id,
            contact_id=contact.id,
            status=initial_status,
        )
        db.session.add(conv)
        db.session.flush()
    return conv


def reply_channel(conv: Conversation) -> str:
    """The channel a staff reply goes out on: the one the patient last wrote on (WhatsApp or SMS)."""
    return conv.reply_channel or "whatsapp"


def touch(
    conv: Conversation, *, at: datetime, preview: str, inbound: bool, channel: str | None = None
) -> None:
    """Update the list-facing fields after a message (``channel``: what an inbound one came on)."""
    if conv.last_message_at is None or at >= conv.last_message_at:
        conv.last_message_at = at
        conv.last_message_preview = preview[:PREVIEW_LEN]
    if inbound:
        if conv.last_inbound_at is None or at >= conv.last_inbound_at:
            conv.reply_channel = channel or conv.reply_channel or "whatsapp"
        if conv.last_inbound_at is None or at > conv.last_inbound_at:
            conv.last_inbound_at = at
        conv.unread_count = (conv.unread_count or 0) + 1
        if conv.status in (ConversationStatus.CLOSED, ConversationStatus.BOT):
            conv.status = ConversationStatus.AWAITING_HUMAN
        if conv.status == ConversationStatus.AWAITING_HUMAN and conv.awaiting_since is None:
            conv.awaiting_since = at


def mark_read(conv: Conversation) -> None:
    if conv.unread_count:
        conv.unread_count = 0
        db.session.commit()


# --- the inbox (issue 5): views, filters, search, keyset pages, per-user unread -------------------

VIEWS: dict[str, str] = {
    "awaiting": "Awaiting human",
    "mine": "Mine",
    "unassigned": "Unassigned",
    "bot": "Assistant",
    "closed": "Closed",
    "all": "All",
}
PAGE_SIZE = 30


@dataclass(frozen=True)
class ListFilter:
    view: str = "awaiting"
    connection_id: int | None = None
    channel: str | None = None  # the connection's provider: sandbox, meta, twilio, waha, chatwoot …
    q: str = ""


@dataclass
class ListRow:
    conv: Conversation
    unread: int


@dataclass
class ListPage:
    rows: list[ListRow]
    next_cursor: str | None


def _sort_column(view: str) -> tuple[Any, bool]:
    """(column, descending): the awaiting view shows who has waited longest first."""
    if view == "awaiting":
        return Conversation.awaiting_since, False
    return Conversation.last_message_at, True


def _encode_cursor(value: datetime | None, conv_id: int) -> str:
    return f"{value.timestamp() if value else ''}_{conv_id}"


def _decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    try:
        ts, _, cid = cursor.partition("_")
        return datetime.fromtimestamp(float(ts), UTC), int(cid)
    except (ValueError, OverflowError):
        return None


SEARCH_SMALL = 1000  # up to this many matching conversations, the list is built from the matches
SEARCH_PROBE = 10_000  # matching messages collected at most (more: walk the list instead)


def search_condition(*, clinic_id: int, q: str, dialect: str) -> Any:  # a condition, or a Walk
    """Contact name or phone (substring), or message text (PostgreSQL full-text; LIKE elsewhere).

    PostgreSQL: a selective search (a surname, a rare word) collects the matching conversation ids
    first, bounded, and the page is sorted from those. A common one ("appointment", a frequent first
    name) walks the list in its order instead and checks each conversation until a page is full;
    collecting tens of thousands of matches first would cost more than the page needs.
    """
    q = q.strip()[:200]
    like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    digits = "".join(ch for ch in q if ch.isdigit())
    # lower(name) LIKE: what the trigram index ix_contact_name_trgm serves on PostgreSQL.
    contact_match = [func.lower(Contact.name).like(like.lower(), escape="\\")]
    if len(digits) >= 3:
        contact_match.append(Contact.phone.like(f"%{digits}%"))
    contact_ids = select(Contact.id).where(Contact.clinic_id == clinic_id, or_(*contact_match))
    if dialect != "postgresql":
        body_like = Message.body.ilike(like, escape="\\")
        conv_ids = select(Message.conversation_id).where(Message.clinic_id == clinic_id, body_like)
        return or_(Conversation.contact_id.in_(contact_ids), Conversation.id.in_(conv_ids))

    body_match = func.to_tsvector(literal_column("'simple'"), Message.body).op("@@")(
        func.websearch_to_tsquery(literal_column("'simple'"), q)
    )
    by_contact = set(
        db.session.scalars(
            select(Conversation.id)
            .where(Conversation.clinic_id == clinic_id, Conversation.contact_id.in_(contact_ids))
            .limit(SEARCH_SMALL + 1)
        )
    )
    by_body: set[int] | None = None
    if _estimated_body_hits(clinic_id, q) < SEARCH_PROBE:
        hits = db.session.scalars(
            select(Message.conversation_id)
            .where(Message.clinic_id == clinic_id, body_match)
            .limit(SEARCH_PROBE)
        ).all()
        if len(hits) < SEARCH_PROBE:
            by_body = set(hits)
    if by_body is not None and len(by_body | by_contact) <= SEARCH_SMALL:
        found = by_body | by_contact
        return Conversation.id.in_(sorted(found)) if found else false()
    # In the walk the few messages of each batch are checked directly: "body || ''" keeps the planner
    # from intersecting with the full-text index, whose posting lists are huge for a common word.
    recheck = func.to_tsvector(literal_column("'simple'"), Message.body.concat(literal_column("''"))).op(
        "@@"
    )(func.websearch_to_tsquery(literal_column("'simple'"), q))
    return Walk(contact_ids=contact_ids, body_match=recheck, body_ids=by_body)


@dataclass(frozen=True)
class Walk:
    """A common search term: list_page walks the list in batches and keeps the matching rows."""

    contact_ids: Any
    body_match: Any
    body_ids: set[int] | None = None  # the matching conversations, when the message side is small


WALK_BATCH = 300
WALK_MAX = 6000  # conversations looked at per page at most; "Show more" continues from there


def _estimated_body_hits(clinic_id: int, q: str) -> float:
    """The planner's estimate of matching messages (from the index statistics; no rows are read)."""
    plan = db.session.execute(
        text(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM message WHERE clinic_id = :clinic_id "
            "AND to_tsvector('simple', body) @@ websearch_to_tsquery('simple', :q)"
        ),
        {"clinic_id": clinic_id, "q": q},
    ).scalar()
    if isinstance(plan, str):
        plan = json.loads(plan)
    try:
        return float(plan[0]["Plan"]["Plan Rows"])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError):
        return float(SEARCH_PROBE)  # unknown: take the path that is safe for common words


def list_page(
    *, clinic_id: int, user_id: int, filters: ListFilter, cursor: str | None = None, limit: int = PAGE_SIZE
) -> ListPage:
    """One keyset page of the conversation list (no OFFSET: page 500 costs what page 1 costs)."""
    view = filters.view if filters.view in VIEWS else "awaiting"
    col, desc = _sort_column(view)
    stmt = (
        select(Conversation)
        .options(joinedload(Conversation.contact), joinedload(Conversation.assignee))
        .where(Conversation.clinic_id == clinic_id, col.is_not(None))
    )
    if view == "awaiting":
        stmt = stmt.where(Conversation.status == ConversationStatus.AWAITING_HUMAN)
    elif view == "mine":
        stmt = stmt.where(
            Conversation.assignee_id == user_id, Conversation.status != ConversationStatus.CLOSED
        )
    elif view == "unassigned":
        stmt = stmt.where(
            Conversation.assignee_id.is_(None),
            Conversation.status.in_([ConversationStatus.AWAITING_HUMAN, ConversationStatus.ASSIGNED]),
        )
    elif view == "bot":
        stmt = stmt.where(Conversation.status == ConversationStatus.BOT)
    elif view == "closed":
        stmt = stmt.where(Conversation.status == ConversationStatus.CLOSED)
    if filters.connection_id:
        stmt = stmt.where(Conversation.connection_id == filters.connection_id)
    if filters.channel:
        stmt = stmt.where(
            Conversation.connection_id.in_(
                select(Connection.id).where(
                    Connection.clinic_id == clinic_id, Connection.provider == filters.channel
                )
            )
        )
    walk: Walk | None = None
    if filters.q.strip():
        cond = search_condition(clinic_id=clinic_id, q=filters.q, dialect=db.session.get_bind().dialect.name)
        if isinstance(cond, Walk):
            walk = cond
        else:
            stmt = stmt.where(cond)
    order = (col.desc(), Conversation.id.desc()) if desc else (col.asc(), Conversation.id.asc())

    def after(stmt: Any, position: tuple[datetime, int] | None) -> Any:
        if position is None:
            return stmt
        value, last_id = position
        # The plain range (<=, >=) is what the index can use; the OR breaks ties on equal times.
        if desc:
            return stmt.where(col <= value, or_(col < value, and_(col == value, Conversation.id < last_id)))
        return stmt.where(col >= value, or_(col > value, and_(col == value, Conversation.id > last_id)))

    position = _decode_cursor(cursor)
    next_cursor = None
    if walk is None:
        convs = list(db.session.scalars(after(stmt, position).order_by(*order).limit(limit + 1)).unique())
        more = len(convs) > limit
        convs = convs[:limit]
        if more and convs:
            next_cursor = _encode_cursor(getattr(convs[-1], col.key), convs[-1].id)
    else:
        convs, next_cursor = _walk(stmt, walk, after, order, position, col, limit)
    unread = unread_counts(clinic_id=clinic_id, user_id=user_id, conversation_ids=[c.id for c in convs])
    rows = [ListRow(conv=c, unread=unread.get(c.id, 0)) for c in convs]
    return ListPage(rows=rows, next_cursor=next_cursor)


def _walk(
    stmt: Any, walk: Walk, after: Any, order: Any, position: Any, col: Any, limit: int
) -> tuple[list[Conversation], str | None]:
    """Read the list in order, a batch at a time, keeping conversations that match the search.

    Each batch costs two small indexed queries (contacts among the batch; messages of the batch's
    conversations that match), so a page costs what it needs and never every match in the clinic.
    """
    found: list[Conversation] = []
    scanned = 0
    size = min(WALK_BATCH, 2 * limit)  # small first: common terms fill a page from the first rows
    while True:
        batch = list(db.session.scalars(after(stmt, position).order_by(*order).limit(size)).unique())
        if not batch:
            return found, None
        ids = [c.id for c in batch]
        by_contact = set(
            db.session.scalars(
                select(Contact.id).where(
                    Contact.id.in_([c.contact_id for c in batch]), Contact.id.in_(walk.contact_ids)
                )
            )
        )
        by_body = (
            walk.body_ids
            if walk.body_ids is not None
            else set(
                db.session.scalars(
                    select(Message.conversation_id)
                    .where(Message.conversation_id.in_(ids), walk.body_match)
                    .distinct()
                )
            )
        )
        for conv in batch:
            scanned += 1
            if conv.contact_id in by_contact or conv.id in by_body:
                found.append(conv)
                if len(found) > limit:
                    last = found[limit - 1]
                    return found[:limit], _encode_cursor(getattr(last, col.key), last.id)
            if scanned >= WALK_MAX:
                # Stop looking here; "Show more" carries on from this point of the list.
                return found, _encode_cursor(getattr(conv, col.key), conv.id)
        if len(batch) < size:
            return found, None
        position = (getattr(batch[-1], col.key), batch[-1].id)
        size = min(WALK_BATCH, size * 2)


def unread_counts(*, clinic_id: int, user_id: int, conversation_ids: list[int]) -> dict[int, int]:
    """Inbound messages this user has not seen yet, per conversation (one grouped query)."""
    if not conversation_ids:
        return {}
    read = aliased(ConversationRead)
    stmt = (
        select(Message.conversation_id, func.count(Message.id))
        .outerjoin(read, and_(read.conversation_id == Message.conversation_id, read.user_id == user_id))
        .where(
            Message.clinic_id == clinic_id,
            Message.conversation_id.in_(conversation_ids),
            Message.direction == Direction.IN,
            Message.id > func.coalesce(read.last_read_message_id, 0),
        )
        .group_by(Message.conversation_id)
    )
    return {cid: int(n) for cid, n in db.session.execute(stmt)}


AWAITING_CAP = 100  # shown as "99+" beyond this: counting 10,000 rows on every page view is waste


def any_for(*, clinic_id: int) -> bool:
    """Has this clinic ever had a conversation? (the inbox's first-run hint)"""
    return bool(
        db.session.scalar(select(Conversation.id).where(Conversation.clinic_id == clinic_id).limit(1))
    )


def awaiting_count(*, clinic_id: int) -> int:
    """Conversations awaiting a person, counted up to AWAITING_CAP."""
    capped = (
        select(Conversation.id)
        .where(Conversation.clinic_id == clinic_id, Conversation.status == ConversationStatus.AWAITING_HUMAN)
        .limit(AWAITING_CAP)
        .subquery()
    )
    return db.session.scalar(select(func.count()).select_from(capped)) or 0


def connections_of(*, clinic_id: int) -> list[Connection]:
    return list(
        db.session.scalars(
            select(Connection).where(Connection.clinic_id == clinic_id).order_by(Connection.id)
        )
    )


def mark_read_by(*, clinic_id: int, conversation_id: int, user_id: int) -> bool:
    """Record that this user has read up to the newest message; True when something new was read.

    The patient's read receipt goes out through a job (never from the request), once per
    newest inbound message, and only where the provider supports it.
    """
    conv = get(clinic_id=clinic_id, conversation_id=conversation_id)
    newest = db.session.scalar(
        select(func.max(Message.id)).where(Message.clinic_id == clinic_id, Message.conversation_id == conv.id)
    )
    if newest is None:
        return False
    state = db.session.scalar(
        select(ConversationRead).where(
            ConversationRead.user_id == user_id, ConversationRead.conversation_id == conv.id
        )
    )
    if state is not None and state.last_read_message_id >= newest:
        return False
    if state is None:
        state = ConversationRead(clinic_id=clinic_id, user_id=user_id, conversation_id=conv.id)
        db.session.add(state)
    state.last_read_message_id = newest
    state.read_at = utcnow()
    conv.unread_count = 0  # the team-wide counter: someone has looked at it
    newest_in = db.session.scalar(
        select(func.max(Message.id)).where(
            Message.conversation_id == conv.id,
            Message.direction == Direction.IN,
            Message.provider_message_id.is_not(None),
        )
    )
    try:
        db.session.commit()
    except IntegrityError:  # two tabs of the same person at once: the other one recorded it
        db.session.rollback()
        return False
    if newest_in is not None:
        from ..jobs import DEFAULT, enqueue
        from . import inbox_jobs

        enqueue(inbox_jobs.send_read_receipt, newest_in, queue=DEFAULT, job_id=f"read-receipt-{newest_in}")
    return True


# --- collaboration: assignment and status, each recorded in the thread as a system line ----------


class InboxError(ValueError):
    """An inbox action that cannot be done as asked; the text says why."""


def _system_line(conv: Conversation, text: str, *, actor_id: int | None, now: datetime) -> Message:
    msg = Message(
        clinic_id=conv.clinic_id,
        conversation_id=conv.id,
        connection_id=conv.connection_id,
        direction=Direction.OUT,
        kind="system",
        body=text,
        author_type=AuthorType.SYSTEM,
        author_id=actor_id,
        status=MessageStatus.RECEIVED,  # never "queued": delivery and the sweeper never see it
        purpose="system",
        created_at=now,
    )
    db.session.add(msg)
    return msg


def _user(clinic_id: int, user_id: int) -> User:
    user = db.session.scalar(
        select(User).where(User.id == user_id, User.clinic_id == clinic_id, User.active.is_(True))
    )
    if user is None:
        raise InboxError("That colleague is not part of this clinic.")
    return user


def colleagues(*, clinic_id: int) -> list[User]:
    return list(
        db.session.scalars(
            select(User)
            .where(User.clinic_id == clinic_id, User.active.is_(True))
            .order_by(User.name, User.id)
        )
    )


def change(
    *, clinic_id: int, conversation_id: int, actor_id: int, action: str, assignee_id: int | None = None
) -> Conversation:
    """Assign, unassign, close, reopen or hand back to the assistant; recorded in the thread."""
    conv = get(clinic_id=clinic_id, conversation_id=conversation_id)
    actor = _user(clinic_id, actor_id)
    now = utcnow()
    if action == "assign":
        target = _user(clinic_id, assignee_id or actor_id)
        if conv.assignee_id == target.id and conv.status == ConversationStatus.ASSIGNED:
            return conv
        conv.assignee_id = target.id
        conv.status = ConversationStatus.ASSIGNED
        conv.awaiting_since = None
        text = (
            f"{actor.display_name} took this conversation."
            if target.id == actor.id
            else f"{actor.display_name} assigned this conversation to {target.display_name}."
        )
    elif action == "unassign":
        conv.assignee_id = None
        conv.status = ConversationStatus.AWAITING_HUMAN
        conv.awaiting_since = now
        text = f"{actor.display_name} unassigned this conversation."
    elif action == "close":
        if conv.status == ConversationStatus.CLOSED:
            return conv
        conv.status = ConversationStatus.CLOSED
        conv.awaiting_since = None
        text = f"{actor.display_name} closed this conversation."
    elif action == "reopen":
        if conv.status != ConversationStatus.CLOSED:
            return conv
        conv.status = ConversationStatus.ASSIGNED if conv.assignee_id else ConversationStatus.AWAITING_HUMAN
        conv.awaiting_since = None if conv.assignee_id else now
        text = f"{actor.display_name} reopened this conversation."
    elif action == "bot":
        conv.status = ConversationStatus.BOT
        conv.assignee_id = None
        conv.awaiting_since = None
        text = f"{actor.display_name} handed this conversation back to the assistant."
    else:
        raise InboxError("Unknown action.")
    _system_line(conv, text, actor_id=actor.id, now=now)
    db.session.commit()
    realtime.publish(
        clinic_id,
        "conversation",
        conversation_id=conv.id,
        status=str(conv.status),
        assignee=conv.assignee.display_name if conv.assignee else None,
    )
    return conv


def add_note(*, clinic_id: int, conversation_id: int, author_id: int, body: str) -> Message:
    """An internal note: shown to the team in the thread, never sent to the patient."""
    text = (body or "").strip()
    if not text:
        raise InboxError("Write the note first.")
    if len(text) > 4000:
        raise InboxError("Notes can be at most 4000 characters.")
    conv = get(clinic_id=clinic_id, conversation_id=conversation_id)
    msg = Message(
        clinic_id=clinic_id,
        conversation_id=conv.id,
        connection_id=conv.connection_id,
        direction=Direction.OUT,
        kind="note",
        body=text,
        author_type=AuthorType.STAFF,
        author_id=author_id,
        status=MessageStatus.RECEIVED,  # never "queued": delivery and the sweeper never see it
        purpose="note",
        created_at=utcnow(),
    )
    db.session.add(msg)
    db.session.commit()
    realtime.publish(clinic_id, "message", conversation_id=conv.id, message_id=msg.id, inbound=False)
    return msg


# --- the patient sidebar -------------------------------------------------------------------------


@dataclass
class Sidebar:
    contact: Contact
    patient: Any | None  # the contact's models.Patient record, None for a lead
    notifications: list[Message]


def sidebar(*, clinic_id: int, conversation: Conversation) -> Sidebar:
    contact = conversation.contact
    from ..models.appointment import Patient

    patient = db.session.scalar(
        select(Patient).where(Patient.clinic_id == clinic_id, Patient.contact_id == contact.id)
    )
    # The contact's few conversations first: each is then read backwards on (conversation_id, id).
    conv_ids = db.session.scalars(
        select(Conversation.id).where(
            Conversation.clinic_id == clinic_id, Conversation.contact_id == contact.id
        )
    ).all()
    notifications: list[Message] = []
    for conv_id in conv_ids:
        notifications += db.session.scalars(
            select(Message)
            .where(
                Message.clinic_id == clinic_id,
                Message.conversation_id == conv_id,
                Message.direction == Direction.OUT,
                Message.purpose.not_in(["reply", "note", "system"]),
            )
            .order_by(Message.id.desc())
            .limit(5)
        ).all()
    notifications = sorted(notifications, key=lambda m: m.id, reverse=True)[:5]
    return Sidebar(contact=contact, patient=patient, notifications=notifications)


def update_contact_notes(*, clinic_id: int, contact_id: int, notes: str) -> Contact:
    contact = db.first_or_404(select(Contact).where(Contact.id == contact_id, Contact.clinic_id == clinic_id))
    contact.notes = (notes or "").strip()[:5000]
    db.session.commit()
    return contact
