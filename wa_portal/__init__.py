"""wa_portal: a self-hostable WhatsApp portal for clinics and therapy practices."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, render_template, request

from .config import Config


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False)
    app.config.from_mapping(Config(config).as_dict())
    _configure_logging(app)
    register_extensions(app)
    register_blueprints(app)
    _register_audit(app)
    register_errorhandlers(app)
    register_cli(app)
    register_security_headers(app)
    return app


def _register_audit(app: Flask) -> None:
    """The audit of every read and change of patient data (web/audit_hooks.py), for every blueprint."""
    from .web import audit_hooks

    audit_hooks.register(app)


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def register_extensions(app: Flask) -> None:
    from . import models
    from .extensions import csrf, db, htmx, limiter, login_manager, migrate

    db.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        _sqlite_pragmas(app, db)
    migrate.init_app(
        app, db, directory=str(app.root_path + "/../migrations"), compare_type=True, render_as_batch=True
    )
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> models.User | None:
        user = db.session.get(models.User, int(user_id))
        return user if user and user.active else None


def _sqlite_pragmas(app: Flask, db: Any) -> None:
    """The embedded default: WAL and a busy timeout so web and worker can share one SQLite file."""
    from sqlalchemy import event

    with app.app_context():

        @event.listens_for(db.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=15000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()


def register_blueprints(app: Flask) -> None:
    from .web import analytics as analytics  # analytics page (aggregates only)
    from .web import api as api  # appointments JSON API (issue 6)
    from .web import appointments as appointments  # appointments pages (issue 6)
    from .web import assistant as assistant  # the assistant's settings page (admins)
    from .web import audit as audit  # audit trail page (admins)
    from .web import (
        auth,
        deliveries,  # delivery log, failed deliveries, health (issue 4)
        filters,
        health,
        inbox,
        public_media,
        sandbox,
        webhooks,
    )
    from .web import broadcasts as broadcasts  # broadcasts and emergency alerts
    from .web import connect as connect  # connecting a number in the browser (admins)
    from .web import events as events
    from .web import settings as settings  # clinic settings pages (admins)
    from .web import waha_pairing as waha_pairing  # linking a WAHA session by QR code (admins)

    filters.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(inbox.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(appointments.bp)
    app.register_blueprint(api.bp)  # CSRF-exempt, Bearer API keys
    app.register_blueprint(deliveries.bp)
    app.register_blueprint(public_media.bp)
    app.register_blueprint(settings.bp)
    app.register_blueprint(connect.bp)
    app.register_blueprint(waha_pairing.bp)
    app.register_blueprint(broadcasts.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(analytics.bp)
    app.register_blueprint(assistant.bp)
    if app.config["SANDBOX_ENABLED"]:
        app.register_blueprint(sandbox.bp)
    webhooks.install_fast_path(app)  # after every blueprint: it matches against the whole URL map

    @app.context_processor
    def inject_globals() -> dict[str, Any]:
        return {"sandbox_enabled": app.config["SANDBOX_ENABLED"]}


def register_errorhandlers(app: Flask) -> None:
    def render(code: int, title: str, text: str) -> tuple[str, int]:
        if request.path.startswith(("/webhooks/", "/api/")):
            return {"error": {"code": str(code), "message": title}}, code  # type: ignore[return-value]
        return render_template("error.html", code=code, title=title, text=text), code

    app.register_error_handler(403, lambda e: render(403, "Not allowed", "Your role cannot open this page."))
    app.register_error_handler(
        404, lambda e: render(404, "Not found", "This page does not exist, or not for you.")
    )
    app.register_error_handler(
        429, lambda e: render(429, "Too many attempts", "Please wait a minute before trying again.")
    )
    app.register_error_handler(400, lambda e: render(400, "Bad request", getattr(e, "description", "")))


def register_cli(app: Flask) -> None:
    from .cli import wa

    app.cli.add_command(wa)


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def headers(resp):  # type: ignore[no-untyped-def]
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        resp.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if app.config.get("ENV_PRODUCTION"):
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.endpoint and not request.path.startswith("/static/"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp
