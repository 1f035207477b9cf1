"""`flask --app wsgi wa …`: operator commands (CONTRACT.md)."""

from __future__ import annotations

import logging
import threading
import time

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from .extensions import db
from .models import Clinic, Role, User

log = logging.getLogger(__name__)


@click.group()
def wa() -> None:
    """wa_portal operator commands."""


def _clinic(slug: str) -> Clinic:
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == slug))
    if clinic is None:
        raise click.ClickException(f"no clinic with slug {slug!r}")
    return clinic


@wa.command("create-clinic")
@click.option("--name", required=True)
@click.option("--slug", required=True)
@click.option("--timezone", "tz", default="UTC", show_default=True)
@click.option("--locale", default="en", show_default=True)
@click.option("--country", default="US", show_default=True, help="Default region for national phone numbers")
@with_appcontext
def create_clinic(name: str, slug: str, tz: str, locale: str, country: str) -> None:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(tz)
    except (KeyError, ValueError):
        raise click.ClickException(f"unknown timezone {tz!r} (use an IANA name like Europe/Madrid)") from None
    if db.session.scalar(select(Clinic).where(Clinic.slug == slug)):
        raise click.ClickException(f"a clinic with slug {slug!r} exists")
    clinic = Clinic(name=name, slug=slug, timezone=tz, locale=locale, country=country.upper())
    db.session.add(clinic)
    db.session.commit()
    click.echo(f"clinic {clinic.id} {slug} created")


@wa.command("create-user")
@click.option("--clinic", "slug", required=True)
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", default="")
@with_appcontext
def create_user(slug: str, email: str, password: str, role: str, name: str) -> None:
    clinic = _clinic(slug)
    if len(password) < 8:
        raise click.ClickException("passwords need at least 8 characters")
    if db.session.scalar(select(User).where(User.email == email.lower())):
        raise click.ClickException(f"a user with email {email} exists")
    user = User(clinic_id=clinic.id, email=email.lower(), role=Role(role), name=name)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    click.echo(f"user {user.id} {user.email} ({role}) created in {slug}")


@wa.command("add-connection", context_settings={"ignore_unknown_options": False})
@click.option("--clinic", "slug", required=True)
@click.option("--provider", required=True)
@click.option("--label", default="")
@click.argument("settings", nargs=-1)
@with_appcontext
def add_connection(slug: str, provider: str, label: str, settings: tuple[str, ...]) -> None:
    """Add a provider connection: KEY=VALUE settings; prints its id and webhook URL."""
    from .providers.base import provider_names
    from .services import connections

    if provider not in provider_names():
        raise click.ClickException(
            f"unknown provider {provider!r}; choose from {', '.join(provider_names())}"
        )
    values: dict[str, str] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.ClickException(f"settings are KEY=VALUE, got {item!r}")
        values[key.strip()] = value
    try:
        conn = connections.create_connection(
            clinic=_clinic(slug), provider=provider, settings=values, label=label
        )
    except connections.ConnectionSettingsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"connection {conn.id} ({provider}) created")
    click.echo(f"webhook URL: {connections.webhook_url(conn)}")


@wa.command("seed-demo")
@with_appcontext
def seed_demo() -> None:
    """Create the demo clinic, its users and a sandbox connection (idempotent)."""
    from .services.demo import seed

    for line in seed():
        click.echo(line)


@wa.command("sweep")
@click.option(
    "--older-than", type=int, default=None, help="Seconds a row must be stuck (default from config)"
)
@with_appcontext
def sweep_cmd(older_than: int | None) -> None:
    """Re-enqueue webhook events and messages that Redis lost."""
    from datetime import timedelta

    from .services.sweeper import sweep

    result = sweep(older_than=timedelta(seconds=older_than) if older_than is not None else None)
    click.echo(str(result))


@wa.command("check-connections")
@click.option("--clinic", "slug", default=None, help="Only this clinic's connections")
@with_appcontext
def check_connections(slug: str | None) -> None:
    """Run every connection's health check now (token valid, number registered, WAHA session)."""
    from .models import Connection
    from .services import connections

    q = select(Connection).where(Connection.active.is_(True)).order_by(Connection.id)
    if slug:
        q = q.where(Connection.clinic_id == _clinic(slug).id)
    for conn_id in list(db.session.scalars(q.with_only_columns(Connection.id))):
        health = connections.check_health(conn_id)
        conn = db.session.get(Connection, conn_id)
        if health and conn:
            mark = "ok " if health.ok else "BAD"
            click.echo(f"{mark} connection {conn.id} {conn.provider:<10} {health.status}: {health.detail}")


@wa.command("rotate-keys")
@with_appcontext
def rotate_keys() -> None:
    """Re-encrypt every stored secret under the first key of ENCRYPTION_KEYS."""
    from .models import Connection
    from .services import connections
    from .services.crypto import key_ring

    ring = key_ring()
    count = 0
    for conn in db.session.scalars(select(Connection)):
        if conn.credentials_encrypted and ring.needs_rotation(conn.credentials_encrypted):
            connections.set_secrets(conn, connections.get_secrets(conn))
            count += 1
    db.session.commit()
    click.echo(f"re-encrypted {count} connection secret(s) under key {ring.primary_kid}")


@wa.command("create-api-key")
@click.option("--clinic", "slug", required=True)
@click.option("--name", default="", help="What the key is for, e.g. the booking system's name")
@with_appcontext
def create_api_key(slug: str, name: str) -> None:
    """Create a /api/v1 key for a clinic and print it once (only its hash is stored)."""
    from .services import api_keys

    key, token = api_keys.create(clinic_id=_clinic(slug).id, name=name)
    click.echo(f"api key {key.id} ({key.name}) created for {slug}; store it now, it is not shown again:")
    click.echo(token)


@wa.command("worker")
@click.option("--queues", default="", help="Comma list (default: all queues)")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty")
@click.option("--no-sweeper", is_flag=True, help="Do not run the periodic sweeper in this process")
@with_appcontext
def worker(queues: str, burst: bool, no_sweeper: bool) -> None:
    """RQ worker with scheduler, all queues, an app context per job, and the minute sweeper."""
    from .jobs import QUEUES, make_worker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    names = tuple(q.strip() for q in queues.split(",") if q.strip()) or QUEUES
    w = make_worker(app, names)
    if not no_sweeper and not burst:
        threading.Thread(target=_sweep_loop, args=(app,), daemon=True, name="sweeper").start()
    w.work(burst=burst, with_scheduler=True, logging_level="INFO")


def _enqueue_health_checks() -> None:
    from .jobs import DEFAULT, enqueue, tasks
    from .services import connections

    for conn_id in connections.all_active_ids():
        enqueue(tasks.check_connection, conn_id, queue=DEFAULT, job_id=f"health-{conn_id}")


def _sweep_loop(app) -> None:  # type: ignore[no-untyped-def]
    """Every SWEEP_INTERVAL_SECONDS one process (a Redis lock) sweeps; Redis down → the next tick."""
    from .services.redis_conn import REDIS_DOWN, get_redis
    from .services.sweeper import sweep

    interval = app.config["SWEEP_INTERVAL_SECONDS"]
    health_every = app.config.get("HEALTH_CHECK_INTERVAL_SECONDS", 300)
    while True:
        time.sleep(interval)
        try:
            with app.app_context():
                r = get_redis()
                if r.set("wa:sweeper:lock", "1", nx=True, ex=max(interval - 5, 5)):
                    sweep()
                if r.set("wa:health:lock", "1", nx=True, ex=health_every):
                    _enqueue_health_checks()
        except REDIS_DOWN:
            log.info("sweeper: redis unavailable, will try again")
        except Exception:
            log.exception("sweeper pass failed")
