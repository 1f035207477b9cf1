"""Fixtures on the real stack: PostgreSQL, Redis, a real RQ worker, a live server for the browser.

app → db (fresh PostgreSQL database per session, migrated with Flask-Migrate, tables
truncated after each test) → redis (its own database number, flushed) → client → login.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

pytest_plugins = ["tests.emulators.fixtures"]  # graph, twilio, waha, chatwoot, moto

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
TEST_SECRET_KEY = "test-secret-key-" + "x" * 32
TEST_KEYS = "t1:" + base64.b64encode(b"k" * 32).decode()
PASSWORD = "correct horse battery"

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["WA_INSTANCE_DIR"] = str(ROOT / "instance" / "test")


def _pg_admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database per test session (parallel runs never collide), dropped afterwards."""
    admin = _pg_admin_url()
    name = f"wa_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is not reachable at {admin}: {exc}. Start it or set TEST_DATABASE_URL.", 2)
    url = _with_db(admin, name)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    try:
        redis_lib.Redis.from_url(url).ping()
    except redis_lib.ConnectionError as exc:
        pytest.exit(f"Redis is not reachable at {url}: {exc}. Start it or set TEST_REDIS_URL.", 2)
    return url


def app_config(database_url: str, redis_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url.replace("postgresql://", "postgresql+psycopg://"),
        "REDIS_URL": redis_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "ENCRYPTION_KEYS": TEST_KEYS,
        "MEDIA_ROOT": str(ROOT / "instance" / "test" / f"media-{os.getpid()}"),
        "SANDBOX_ENABLED": True,
        # Limits are on, in memory, high enough for a test suite signing in from one address;
        # tests that check a limit lower it for themselves.
        "RATELIMIT_STORAGE_URI": "memory://",
        "LOGIN_RATE_LIMIT": "10000 per minute",
        **extra,
    }


class FreshContextClient(FlaskClient):
    """Each request in an app context of its own, as in production: its own ``g`` and its own database
    session, whatever the test holds in its context. (The tests run inside one pushed app context, which
    Flask would otherwise reuse for every request: ``g`` and the session would carry over.)"""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def _migrated_app(database_url: str, redis_url: str) -> Iterator[Flask]:
    from flask_migrate import upgrade

    from wa_portal import create_app
    from wa_portal.extensions import db

    app = create_app(app_config(database_url, redis_url))
    app.test_client_class = FreshContextClient
    with app.app_context():
        # The schema comes from the migrations, as in production; tests/test_migrations.py
        # proves they match the models.
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def app(_migrated_app: Flask, redis_url: str) -> Iterator[Flask]:
    from wa_portal.services.assistant import forget_cached_entries

    redis_lib.Redis.from_url(redis_url).flushdb()
    forget_cached_entries()  # clinic and entry ids start again at 1 in every test
    with _migrated_app.app_context():
        yield _migrated_app
        _truncate(_migrated_app)
    redis_lib.Redis.from_url(redis_url).flushdb()


def _truncate(app: Flask) -> None:
    from wa_portal.extensions import db

    db.session.remove()
    tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def db(app: Flask):
    from wa_portal.extensions import db as _db

    return _db


@pytest.fixture
def redis(app: Flask, redis_url: str) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(redis_url)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- factories ---------------------------------------------------------------------------------


@pytest.fixture
def make_clinic(db):
    from wa_portal.models import Clinic

    def make(slug: str = "sunrise", **kw: Any) -> Clinic:
        clinic = Clinic(
            name=kw.pop("name", slug.title() + " Clinic"),
            slug=slug,
            timezone=kw.pop("timezone", "Europe/Madrid"),
            country=kw.pop("country", "ES"),
            **kw,
        )
        db.session.add(clinic)
        db.session.commit()
        return clinic

    return make


@pytest.fixture
def make_user(db):
    from wa_portal.models import Role, User

    def make(clinic, role: str = "staff", email: str | None = None, name: str = "") -> User:
        user = User(
            clinic_id=clinic.id,
            email=email or f"{role}-{secrets.token_hex(3)}@{clinic.slug}.test",
            role=Role(role),
            name=name or role.title(),
        )
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def clinic(make_clinic):
    return make_clinic()


@pytest.fixture
def staff(clinic, make_user):
    return make_user(clinic, "staff", email="rita@sunrise.test", name="Rita")


@pytest.fixture
def sandbox_conn(clinic, db):
    from wa_portal.services import connections

    return connections.create_connection(
        clinic=clinic, provider="sandbox", settings={"display_phone": "+34910000001"}, label="Sandbox"
    )


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|"X-CSRFToken": "([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    m = CSRF_RE.search(html)
    assert m, f"no CSRF token on {path}"
    return m.group(1) or m.group(2)


@pytest.fixture
def login(client: FlaskClient) -> Callable[..., FlaskClient]:
    def do(user, c: FlaskClient | None = None) -> FlaskClient:
        c = c or client
        token = csrf_token(c, "/login")
        resp = c.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
        assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
        return c

    return do


# --- worker ------------------------------------------------------------------------------------


@pytest.fixture
def run_worker(app: Flask) -> Callable[[], int]:
    """Drain every queue with a real RQ worker (non-forking, burst) in this process."""
    from rq.registry import ScheduledJobRegistry

    from wa_portal.jobs import QUEUES, get_queue, make_worker

    def run(include_scheduled: bool = True) -> int:
        """Run burst passes until no job is queued (or scheduled); returns how many jobs were run."""
        from wa_portal.services.webhook_store import committer

        committer(app).wait_idle()  # webhooks answered 200 have their ingest job enqueued
        done = 0
        for _ in range(20):
            pending = 0
            for name in QUEUES:
                q = get_queue(name)
                if include_scheduled:
                    reg = ScheduledJobRegistry(queue=q)
                    for job_id in reg.get_job_ids():
                        job = q.fetch_job(job_id)
                        reg.remove(job_id)
                        if job is not None:
                            q.enqueue_job(job)
                pending += q.count
            if not pending:
                break
            # rq 3 counts finished jobs in Redis, not on the worker object: count what was queued.
            make_worker(app).work(burst=True, logging_level="WARNING")
            done += pending
        return done

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_redis() -> Iterator[Callable[..., Any]]:
    """A redis-server of the test's own, which the test may stop and start (outage tests)."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        client = redis_lib.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis_lib.ConnectionError:
                time.sleep(0.02)
        return f"redis://127.0.0.1:{port}/0"

    def stop() -> None:
        for p in procs:
            p.terminate()
            p.wait(5)
        procs.clear()

    start.stop = stop  # type: ignore[attr-defined]
    start.url = f"redis://127.0.0.1:{port}/0"  # type: ignore[attr-defined]
    yield start
    stop()


def pytest_configure(config: pytest.Config) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
