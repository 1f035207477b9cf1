"""Thin RQ entry points: load ids, call one service."""

from __future__ import annotations

from ..services import connections, delivery, ingest, media, sandbox, sweeper


def ingest_event(event_id: int) -> None:
    ingest.process_event(event_id)


def ingest_events(event_ids: list[int]) -> None:
    """A chunk of stored events: one transaction with bulk lookups; one by one if that fails."""
    ingest.process_events(event_ids)


def deliver_message(message_id: int) -> None:
    delivery.deliver(message_id)


def deliver_messages(message_ids: list[int]) -> None:
    """A batch of deliveries in one job (bulk sends); each message keeps its own transaction."""
    delivery.deliver_batch(message_ids)


def check_critical(message_id: int) -> None:
    delivery.check_critical(message_id)


def download_media(message_id: int) -> None:
    media.download(message_id)


def sweep() -> str:
    return str(sweeper.sweep())


def send_reminder(reminder_id: int) -> bool:
    from ..services import reminders

    return reminders.send_reminder(reminder_id)


def sandbox_post(connection_id: int, body_json: str, base_url: str) -> int:
    return sandbox.post_webhook(connection_id, body_json, base_url)


def check_connection(connection_id: int) -> str:
    health = connections.check_health(connection_id)
    return health.status if health else "gone"
