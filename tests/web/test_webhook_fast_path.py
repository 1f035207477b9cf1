"""Webhook POSTs are answered in front of Flask (web/webhooks.FastPath): same answers, less work.

Each case runs twice, once through the fast path and once through the Flask views it stands in
front of, and must give the provider the same status and body and store the same rows.
"""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, select

from tests.helpers import patient_message, post_signed, sandbox_ids
from wa_portal.models import WebhookEvent
from wa_portal.web import webhooks as webhook_views


def stored(db) -> int:
    db.session.rollback()  # see what the request's own session committed
    return db.session.scalar(select(func.count()).select_from(WebhookEvent))


@pytest.fixture(params=["fast path", "flask views"])
def path(request, app, monkeypatch) -> str:
    assert isinstance(app.wsgi_app, webhook_views.FastPath)  # installed by create_app
    if request.param == "flask views":
        monkeypatch.setattr(app, "wsgi_app", app.wsgi_app.wsgi_app)
    return request.param


def _send(client, conn, case: str):
    body, _ = patient_message(conn, "Can I move my appointment?")
    secret = sandbox_ids(conn)[2]
    if case == "valid":
        return post_signed(client, body, secret)
    if case == "redelivered":
        post_signed(client, body, secret)
        return post_signed(client, body, secret)
    if case == "bad signature":
        return post_signed(client, body, "not-the-secret")
    if case == "unknown connection":
        other = body.replace(sandbox_ids(conn)[0].encode(), b"999999999")
        return post_signed(client, other, secret)
    if case == "unreadable body":
        return post_signed(client, b"{not json", secret)
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "status", "answer", "rows"),
    [
        ("valid", 200, {"status": "ok"}, 1),
        ("redelivered", 200, {"status": "duplicate"}, 1),
        ("bad signature", 401, {"status": "invalid signature"}, 0),
        ("unknown connection", 404, {"status": "unknown connection"}, 0),
        ("unreadable body", 400, {"status": "unreadable body"}, 0),
    ],
)
def test_both_paths_answer_the_provider_alike(path, client, db, sandbox_conn, case, status, answer, rows):
    resp = _send(client, sandbox_conn, case)
    assert resp.status_code == status
    assert resp.get_json() == answer
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"
    assert stored(db) == rows


def test_refusals_are_still_counted_per_caller(path, app, client, db, sandbox_conn):
    from wa_portal.extensions import limiter

    app.config["WEBHOOK_REFUSAL_LIMIT"] = "2 per minute"
    limiter.reset()
    try:
        codes = [_send(client, sandbox_conn, "bad signature").status_code for _ in range(4)]
    finally:
        app.config["WEBHOOK_REFUSAL_LIMIT"] = "120 per minute"
        limiter.reset()
    assert codes == [401, 401, 429, 429]
    assert stored(db) == 0


def test_a_webhook_answer_sets_no_session_cookie(client, sandbox_conn):
    resp = _send(client, sandbox_conn, "valid")
    assert resp.status_code == 200
    assert "Set-Cookie" not in resp.headers
    assert "Vary" not in resp.headers  # no session was looked at


def test_a_body_over_the_size_limit_is_refused_and_nothing_stored(app, client, db, sandbox_conn, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 64)
    resp = _send(client, sandbox_conn, "valid")
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "413"
    assert stored(db) == 0


def test_an_unexpected_failure_answers_500_and_is_logged_without_the_body(
    client, db, sandbox_conn, monkeypatch, caplog
):
    def broken(provider, req):
        raise RuntimeError("something we did not expect")

    monkeypatch.setattr(webhook_views.webhooks, "receive", broken)
    with caplog.at_level(logging.ERROR, logger="wa_portal.web.webhooks"):
        resp = _send(client, sandbox_conn, "valid")
    assert resp.status_code == 500
    assert resp.get_json() == {"error": {"code": "500", "message": "Internal error"}}
    assert "webhook sandbox failed" in caplog.text
    assert "Can I move my appointment" not in caplog.text
    assert stored(db) == 0


def test_other_requests_still_go_through_flask(client):
    # the Meta handshake is a GET, unknown webhook URLs get Flask's JSON 404, pages are untouched
    assert (
        client.get("/webhooks/meta?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x").status_code == 403
    )
    missing = client.post("/webhooks/nope", data=b"{}")
    assert missing.status_code == 404
    assert json.loads(missing.data)["error"]["code"] == "404"
    login_page = client.get("/login")
    assert login_page.status_code == 200
    assert "Content-Security-Policy" in login_page.headers
