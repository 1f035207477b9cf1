"""Liveness and readiness (CONTRACT.md)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from ..extensions import db
from ..services.redis_conn import get_redis

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    parts: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        parts["database"] = "ok"
    except Exception as exc:
        db.session.rollback()
        parts["database"] = f"error: {type(exc).__name__}"
    try:
        get_redis().ping()
        parts["redis"] = "ok"
    except Exception as exc:
        parts["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in parts.values())
    return jsonify(status="ok" if ready else "unavailable", **parts), 200 if ready else 503
