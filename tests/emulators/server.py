"""Run a WSGI app on a free loopback port in a thread: the home of every provider emulator."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import make_server


@contextmanager
def serve(app: Callable[..., Any]) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1:<free port>; yields the base URL, stops on exit."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@dataclass
class RequestLog:
    """What an emulator received, for assertions such as 'the provider got exactly one request'."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **entry: Any) -> None:
        with self.lock:
            self.entries.append(entry)

    def find(self, **match: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.entries if all(e.get(k) == v for k, v in match.items())]

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
