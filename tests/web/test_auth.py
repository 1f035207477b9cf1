"""Sign-in, pages behind login, CSRF and security headers."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, csrf_token


@pytest.mark.parametrize("path", ["/", "/inbox", "/inbox/c/1", "/sandbox/phone", "/media/1"])
def test_every_page_needs_login(client, path):
    resp = client.get(path)
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]


def test_login_and_logout(client, staff):
    token = csrf_token(client)
    resp = client.post(
        "/login", data={"email": "RITA@sunrise.test", "password": PASSWORD, "csrf_token": token}
    )
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/inbox")
    assert client.get("/inbox").status_code == 200
    token = csrf_token(client, "/inbox")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/inbox").status_code == 302


def test_wrong_password_shows_a_clear_error(client, staff):
    token = csrf_token(client)
    resp = client.post("/login", data={"email": staff.email, "password": "nope", "csrf_token": token})
    assert resp.status_code == 200
    assert "do not match an account" in resp.get_data(as_text=True)
    assert client.get("/inbox").status_code == 302


def test_inactive_user_cannot_sign_in(client, staff, db):
    staff.active = False
    db.session.commit()
    token = csrf_token(client)
    resp = client.post("/login", data={"email": staff.email, "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 200
    assert client.get("/inbox").status_code == 302


def test_login_without_csrf_token_is_refused(client, staff):
    resp = client.post("/login", data={"email": staff.email, "password": PASSWORD})
    assert resp.status_code == 400
    assert client.get("/inbox").status_code == 302


def test_open_redirect_is_not_followed(client, staff):
    token = csrf_token(client)
    resp = client.post(
        "/login?next=https://evil.example/x",
        data={"email": staff.email, "password": PASSWORD, "csrf_token": token},
    )
    assert resp.headers["Location"].endswith("/inbox")


def test_security_headers_and_csp_without_inline_script(client):
    resp = client.get("/login")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    html = resp.get_data(as_text=True)
    assert "<script>" not in html and " onclick=" not in html


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_down(_migrated_app, database_url):
    from tests.conftest import app_config, free_port
    from wa_portal import create_app
    from wa_portal.extensions import db

    app = create_app(app_config(database_url, f"redis://127.0.0.1:{free_port()}/0"))
    with app.app_context():
        resp = app.test_client().get("/readyz")
        db.session.remove()
        db.engine.dispose()
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["database"] == "ok" and body["redis"].startswith("error")


def test_two_people_signed_in_at_once_each_stay_themselves(app, login, staff, make_user, clinic):
    """Two browsers, alternating requests: each page is rendered for its own user (per-request state)."""
    colleague = make_user(clinic, "staff", email="ana@sunrise.test", name="Ana Colleague")
    rita, ana = login(staff, app.test_client()), login(colleague, app.test_client())
    for _ in range(2):
        assert staff.display_name in rita.get("/inbox").get_data(as_text=True)
        page = ana.get("/inbox").get_data(as_text=True)
        assert "Ana Colleague" in page and staff.display_name not in page
