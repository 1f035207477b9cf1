"""Provider emulators as pytest fixtures, shared by every test directory (see tests/conftest.py).

One server per test module, reset before and after every test: ``graph`` (Meta Graph), ``twilio``,
``waha``, ``chatwoot`` (each ``(emulator, base_url)`` but ``graph``), ``moto`` (its URL).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def _graph():
    from tests.emulators.meta_graph import running_meta_graph

    with running_meta_graph() as graph:
        yield graph


@pytest.fixture
def graph(_graph):
    _graph.reset()
    yield _graph
    _graph.wait_idle()
    _graph.reset()


@pytest.fixture(scope="module")
def _twilio():
    from tests.emulators.server import serve
    from tests.emulators.twilio_api import TwilioEmulator

    emu = TwilioEmulator()
    with serve(emu) as url:
        yield emu, url


@pytest.fixture
def twilio(_twilio):
    from tests.emulators.twilio_api import emulator_errors

    _twilio[0].reset()
    yield _twilio
    assert not emulator_errors(_twilio[0].log)
    _twilio[0].reset()


@pytest.fixture(scope="module")
def _waha():
    from tests.emulators.server import serve
    from tests.emulators.waha import WahaEmulator

    emu = WahaEmulator()
    with serve(emu) as url:
        yield emu, url


@pytest.fixture
def waha(_waha):
    _waha[0].reset()
    yield _waha
    _waha[0].reset()


@pytest.fixture(scope="module")
def _chatwoot():
    from tests.emulators.chatwoot_api import ChatwootEmulator
    from tests.emulators.server import serve

    emu = ChatwootEmulator()
    with serve(emu) as url:
        yield emu, url


@pytest.fixture
def chatwoot(_chatwoot):
    _chatwoot[0].reset()
    yield _chatwoot
    _chatwoot[0].reset()


@pytest.fixture(scope="module")
def _moto():
    from tests.emulators.moto import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def moto(_moto):
    from tests.emulators.moto import reset

    reset(_moto)
    return _moto
