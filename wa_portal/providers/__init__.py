"""Provider adapters, registered by name. An adapter whose SDK is missing is skipped."""

from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger(__name__)

ADAPTER_MODULES = ("sandbox", "meta", "dialog360", "twilio", "waha", "chatwoot", "ses")
_loaded = False
_load_lock = threading.RLock()


def load_all() -> None:
    global _loaded
    if _loaded:
        return
    # Threads of a fresh gunicorn worker call this at once: none may see a half-filled registry
    # (it answered Meta's first webhooks 404 "unknown provider").
    with _load_lock:
        if not _loaded:
            _load_modules()
            _loaded = True


def _load_modules() -> None:
    for mod in ADAPTER_MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:  # the adapter or its SDK is not installed
            if exc.name and (exc.name.endswith(mod) or not exc.name.startswith("wa_portal")):
                log.warning("provider %s unavailable: %s", mod, exc)
            else:
                raise
