"""Server-Sent Events: one stream per signed-in browser, fed by the clinic's Redis pub/sub channel.

No in-process state: any web worker can serve any browser, and events published by any worker
process reach every stream of that clinic (and never another clinic's). A stream ends after a
bounded time so a worker is never pinned forever; EventSource reconnects on its own and the
page refreshes what it may have missed when the stream opens again.

An open stream holds one of the web process's threads (gunicorn gthread). So that open tabs can
never take the threads webhooks and pages need, a process holds at most ``SSE_MAX_STREAMS``
streams (``WA_SSE_MAX_STREAMS``, default half of ``WEB_THREADS``); a tab over the limit gets 503
and polls every few seconds (app.js) until a stream is free again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from flask import Blueprint, Response, current_app
from flask_login import current_user, login_required

from ..services import realtime
from ..services.redis_conn import REDIS_DOWN, get_redis

bp = Blueprint("events", __name__)


class Slots:
    """At most ``limit`` open streams in this process; a slot is released exactly once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0

    def take(self, limit: int) -> Callable[[], None] | None:
        with self._lock:
            if self.open >= limit:
                return None
            self.open += 1
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                with self._lock:
                    self.open -= 1

        return release


SLOTS = Slots()


@bp.get("/events")
@login_required
def stream() -> Response:
    max_seconds = float(current_app.config.get("SSE_MAX_SECONDS", 55))
    heartbeat = float(current_app.config.get("SSE_HEARTBEAT_SECONDS", 5))  # also notices closed tabs
    release = SLOTS.take(int(current_app.config["SSE_MAX_STREAMS"]))
    if release is None:
        # The browser's EventSource gives up on a 503 and app.js falls back to polling.
        return Response(
            "Live updates are busy; this page refreshes every few seconds instead.",
            status=503,
            mimetype="text/plain",
            headers={"Retry-After": "30"},
        )
    try:
        pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(realtime.channel(current_user.clinic_id))
    except REDIS_DOWN:
        release()
        return Response("Live updates are unavailable right now.", status=503, mimetype="text/plain")

    def generate() -> Iterator[str]:
        start = last = time.monotonic()
        try:
            yield "retry: 2000\n: connected\n\n"
            while (now := time.monotonic()) - start < max_seconds:
                msg = pubsub.get_message(timeout=min(1.0, max(0.05, max_seconds - (now - start))))
                if msg is not None and msg.get("type") == "message":
                    data = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
                    yield f"data: {data}\n\n"
                    last = time.monotonic()
                elif time.monotonic() - last >= heartbeat:
                    yield ": ping\n\n"  # keeps proxies from closing an idle stream
                    last = time.monotonic()
        except REDIS_DOWN:
            return
        finally:
            pubsub.close()
            release()

    resp = Response(generate(), mimetype="text/event-stream")
    resp.call_on_close(release)  # also when the stream is closed before it started
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return resp
