"""Re-enqueue work that Redis lost: stored webhook events and outbound messages stuck past a threshold.

This is what makes a Redis outage or a killed worker lose nothing: the database rows
are the truth, and this pass turns every unfinished row back into a job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, select

from ..extensions import db
from ..models import Message, MessageStatus, WebhookEvent, WebhookState, utcnow

log = logging.getLogger(__name__)

BATCH = 1000


@dataclass
class SweepResult:
    webhook_events: int = 0
    messages: int = 0
    media: int = 0
    reminders: int = 0
    enqueue_failed: bool = False

    def __str__(self) -> str:
        return (
            f"re-enqueued {self.webhook_events} webhook event(s), {self.messages} message(s), "
            f"{self.media} media download(s), sent {self.reminders} overdue reminder(s)"
            + (" — Redis unavailable, try again" if self.enqueue_failed else "")
        )


def sweep(*, older_than: timedelta | None = None) -> SweepResult:
    from ..jobs import DELIVERY, MEDIA, WEBHOOKS, enqueue, tasks

    age = (
        older_than
        if older_than is not None
        else timedelta(seconds=current_app.config["SWEEP_STUCK_AFTER_SECONDS"])
    )
    now = utcnow()
    cutoff = now - age
    result = SweepResult()

    event_ids = db.session.scalars(
        select(WebhookEvent.id)
        .where(WebhookEvent.state == WebhookState.RECEIVED, WebhookEvent.received_at <= cutoff)
        .order_by(WebhookEvent.id)
        .limit(BATCH)
    ).all()
    for eid in event_ids:
        if not enqueue(tasks.ingest_event, eid, queue=WEBHOOKS, job_id=f"ingest-{eid}"):
            result.enqueue_failed = True
            break
        result.webhook_events += 1

    msg_ids = db.session.scalars(
        select(Message.id)
        .where(
            Message.status.in_([MessageStatus.QUEUED, MessageStatus.SENDING]),
            Message.updated_at <= cutoff,
            or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
        )
        .order_by(Message.id)
        .limit(BATCH)
    ).all()
    for mid in msg_ids if not result.enqueue_failed else []:
        if not enqueue(tasks.deliver_message, mid, queue=DELIVERY, job_id=f"deliver-{mid}"):
            result.enqueue_failed = True
            break
        result.messages += 1

    media_ids = db.session.scalars(
        select(Message.id)
        .where(Message.media_status == "pending", Message.updated_at <= cutoff)
        .order_by(Message.id)
        .limit(BATCH)
    ).all()
    for mid in media_ids if not result.enqueue_failed else []:
        if not enqueue(tasks.download_media, mid, queue=MEDIA, job_id=f"media-{mid}"):
            result.enqueue_failed = True
            break
        result.media += 1

    # Appointment reminders whose scheduled job Redis lost: the row is the truth, so send it now
    # (send_reminder re-checks the row under a lock, so a job firing at the same time sends nothing).
    from . import reminders

    result.reminders = reminders.send_due(cutoff=cutoff, limit=BATCH)
    if result.webhook_events or result.messages or result.media or result.reminders:
        log.info("sweep: %s", result)
    return result
