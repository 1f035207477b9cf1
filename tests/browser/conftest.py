"""A live server (real HTTP, threaded) and a real worker process for Playwright in Debian's Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from werkzeug.serving import make_server

from tests.conftest import ROOT, TEST_KEYS, TEST_SECRET_KEY

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        "args": CHROMIUM_ARGS,
    }


@dataclass
class LiveServer:
    url: str


def _start_worker(app, log) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": app.config["REDIS_URL"],
        "SECRET_KEY": TEST_SECRET_KEY,
        "ENCRYPTION_KEYS": TEST_KEYS,
        "MEDIA_ROOT": app.config["MEDIA_ROOT"],
        "SANDBOX_ENABLED": "1",
        "WA_SWEEP_INTERVAL_SECONDS": "5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "wa", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    log = open(ROOT / "test-artifacts" / "worker.log", "ab")  # noqa: SIM115 - closed below
    worker = _start_worker(app, log)
    time.sleep(0.3)
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}")
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        log.close()
        server.shutdown()
        thread.join(5)
