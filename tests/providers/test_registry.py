"""The provider registry under concurrent first use (a fresh gunicorn worker's threads)."""

from __future__ import annotations

import threading
import types

from wa_portal.providers import ADAPTER_MODULES


def test_a_thread_never_sees_a_half_loaded_registry(monkeypatch):
    """The first webhooks after a worker boot arrive on several threads at once: a second caller
    must wait for every adapter to be registered, not answer 404 "unknown provider"."""
    import wa_portal.providers as providers

    entered, gate = threading.Event(), threading.Event()
    imported: list[str] = []

    def slow_import(name: str) -> None:
        entered.set()
        gate.wait(timeout=10)
        imported.append(name.rsplit(".", 1)[-1])

    monkeypatch.setattr(providers, "_loaded", False)
    monkeypatch.setattr(providers, "importlib", types.SimpleNamespace(import_module=slow_import))
    first = threading.Thread(target=providers.load_all)
    first.start()
    assert entered.wait(timeout=10)
    seen: list[str] = []
    second = threading.Thread(target=lambda: (providers.load_all(), seen.extend(imported)))
    second.start()
    second.join(timeout=0.3)  # a second caller that returns now saw an empty registry
    gate.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert seen == list(ADAPTER_MODULES)
    assert imported == list(ADAPTER_MODULES)  # loaded once, not once per thread
