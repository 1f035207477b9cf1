"""Typing presence: "Rita is typing…" lives in Redis with a short TTL, announced over realtime."""

from __future__ import annotations

from .realtime import publish
from .redis_conn import REDIS_DOWN, get_redis

TYPING_TTL = 6  # seconds; app.js sends at most one ping every 3 s while someone types


def _key(clinic_id: int, conversation_id: int, user_id: int) -> str:
    return f"wa:typing:{clinic_id}:{conversation_id}:{user_id}"


def typing(*, clinic_id: int, conversation_id: int, user_id: int, name: str) -> None:
    """Record and announce that this user is typing in this conversation (best effort)."""
    try:
        get_redis().set(_key(clinic_id, conversation_id, user_id), name, ex=TYPING_TTL)
    except REDIS_DOWN:
        return
    publish(clinic_id, "typing", conversation_id=conversation_id, user_id=user_id, name=name, ttl=TYPING_TTL)


def typists(*, clinic_id: int, conversation_id: int, exclude_user_id: int | None = None) -> list[str]:
    """Names of the people typing in a conversation now (for a page rendered mid-burst)."""
    try:
        r = get_redis()
        names = []
        for key in r.scan_iter(match=f"wa:typing:{clinic_id}:{conversation_id}:*", count=100):
            uid = int(_text(key).rsplit(":", 1)[1])
            if uid != exclude_user_id and (name := r.get(key)):
                names.append(_text(name))
        return names
    except REDIS_DOWN:
        return []


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
