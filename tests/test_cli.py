"""The operator CLI of CONTRACT.md."""

from __future__ import annotations

import base64

from sqlalchemy import select

from wa_portal.models import Clinic, Connection, User


def run(app, *args):
    return app.test_cli_runner().invoke(args=["wa", *args])


def test_create_clinic_user_and_sandbox_connection(app, db):
    r = run(
        app,
        "create-clinic",
        "--name",
        "Lotus Therapy",
        "--slug",
        "lotus",
        "--timezone",
        "America/Sao_Paulo",
        "--locale",
        "pt",
        "--country",
        "br",
    )
    assert r.exit_code == 0, r.output
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == "lotus"))
    assert (clinic.timezone, clinic.country) == ("America/Sao_Paulo", "BR")
    r = run(
        app,
        "create-user",
        "--clinic",
        "lotus",
        "--email",
        "Ana@Lotus.test",
        "--password",
        "long enough",
        "--role",
        "therapist",
        "--name",
        "Ana",
    )
    assert r.exit_code == 0, r.output
    assert db.session.scalar(select(User)).email == "ana@lotus.test"
    r = run(
        app, "add-connection", "--clinic", "lotus", "--provider", "sandbox", "display_phone=+5511987654321"
    )
    assert r.exit_code == 0, r.output
    assert "webhook URL: " in r.output and r.output.strip().endswith("/webhooks/sandbox")
    conn = db.session.scalar(select(Connection))
    assert conn.display_phone == "+5511987654321"
    assert "app_secret" not in conn.config  # secrets only inside the encrypted envelope
    assert conn.credentials_encrypted.startswith("v1:")


def test_cli_errors_are_clear(app, db):
    assert (
        "unknown timezone"
        in run(app, "create-clinic", "--name", "X", "--slug", "x", "--timezone", "Mars/Olympus").output
    )
    assert (
        "no clinic"
        in run(
            app,
            "create-user",
            "--clinic",
            "nope",
            "--email",
            "a@b.c",
            "--password",
            "12345678",
            "--role",
            "staff",
        ).output
    )
    run(app, "create-clinic", "--name", "X", "--slug", "x")
    r = run(app, "add-connection", "--clinic", "x", "--provider", "sandbox", "colour=blue")
    assert r.exit_code != 0 and "unknown setting" in r.output
    r = run(app, "add-connection", "--clinic", "x", "--provider", "carrier-pigeon")
    assert r.exit_code != 0 and "unknown provider" in r.output


def test_seed_demo_is_idempotent(app, db):
    first = run(app, "seed-demo")
    assert first.exit_code == 0 and "demo login: reception@demo.clinic / demo-password" in first.output
    second = run(app, "seed-demo")
    assert second.exit_code == 0
    assert len(db.session.scalars(select(User)).all()) == 3
    assert len(db.session.scalars(select(Connection)).all()) == 1


def test_demo_opens_on_a_lived_in_inbox_and_calendar(app, db, run_worker):
    """A new user sees patients waiting, a failed reply to retry and this week's confirmations sent."""
    from wa_portal.models import Appointment, Conversation, Message

    assert "sample conversations and 3 appointments" in run(app, "seed-demo").output
    assert "sample conversations" not in run(app, "seed-demo").output  # once only
    statuses = sorted(c.status for c in db.session.scalars(select(Conversation)))
    assert statuses.count("awaiting_human") == 2 and "assigned" in statuses and "closed" in statuses
    assert db.session.query(Appointment).count() == 3
    run_worker()
    confirmations = db.session.scalars(select(Message).where(Message.purpose == "confirmation")).all()
    assert len(confirmations) == 3 and {m.status for m in confirmations} == {"sent"}
    failed = db.session.scalars(select(Message).where(Message.status == "failed")).all()
    assert len(failed) == 1 and "not on WhatsApp" in failed[0].error_detail


def test_sweep_command_reports(app, db):
    r = run(app, "sweep")
    assert r.exit_code == 0 and "re-enqueued 0 webhook event(s)" in r.output


def test_rotate_keys_reencrypts_under_the_first_key(app, db, sandbox_conn):
    from wa_portal.services import connections

    before = connections.get_secrets(sandbox_conn)
    new_ring = "n1:" + base64.b64encode(b"n" * 32).decode() + "," + app.config["ENCRYPTION_KEYS"]
    app.config["ENCRYPTION_KEYS"] = new_ring
    try:
        r = run(app, "rotate-keys")
        assert r.exit_code == 0 and "re-encrypted 1" in r.output
        db.session.refresh(sandbox_conn)
        assert sandbox_conn.credentials_encrypted.startswith("v1:n1:")
        assert connections.get_secrets(sandbox_conn) == before
    finally:
        app.config["ENCRYPTION_KEYS"] = new_ring.split(",", 1)[1]
