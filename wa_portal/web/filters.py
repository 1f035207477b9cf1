"""Jinja filters: times in the clinic's timezone, phone formats."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from ..models import utcnow, zone_or_utc
from ..services.phones import display, mask


def localtime(dt: datetime | None, tz: str | None = None, fmt: str = "%d %b %Y %H:%M") -> str:
    return dt.astimezone(zone_or_utc(tz)).strftime(fmt) if dt else ""


def shorttime(dt: datetime | None, tz: str | None = None) -> str:
    """'14:05' today, 'Tue 14:05' this week, '3 Mar' before that."""
    if not dt:
        return ""
    zone = zone_or_utc(tz)
    local, now = dt.astimezone(zone), utcnow().astimezone(zone)
    if local.date() == now.date():
        return local.strftime("%H:%M")
    if (now.date() - local.date()).days < 7:
        return local.strftime("%a %H:%M")
    return local.strftime("%-d %b")


def until(dt: datetime | None, now: datetime | None = None) -> str:
    if not dt:
        return ""
    seconds = int((dt - (now or utcnow())).total_seconds())
    if seconds <= 0:
        return "now"
    hours, rem = divmod(seconds, 3600)
    if hours:
        return f"in {hours} h {rem // 60} min" if hours < 3 else f"in {hours} h"
    return f"in {max(rem // 60, 1)} min"


def register(app: Flask) -> None:
    app.add_template_filter(localtime, "localtime")
    app.add_template_filter(shorttime, "shorttime")
    app.add_template_filter(until, "until")
    app.add_template_filter(display, "phone")
    app.add_template_filter(mask, "masked")
