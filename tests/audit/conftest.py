"""Audit fixtures: the inbox and appointment fixtures, an admin, and a reader of the trail."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from tests.appointments.conftest import api_key, therapist  # noqa: F401 - fixtures used here
from tests.conftest import csrf_token
from tests.inbox.conftest import conv, inbound  # noqa: F401 - fixtures used here


@pytest.fixture
def admin(clinic, make_user):
    return make_user(clinic, "admin", email="ada@sunrise.test", name="Ada")


@pytest.fixture
def events(db) -> Callable[..., list]:
    """The committed audit rows, oldest first (optionally filtered), read in a session of their own."""
    from sqlalchemy.orm import Session

    from wa_portal.models import AuditEvent

    def read(**where) -> list[AuditEvent]:
        with Session(db.engine, expire_on_commit=False) as session:
            stmt = select(AuditEvent).filter_by(**where).order_by(AuditEvent.id)
            rows = list(session.scalars(stmt))
            session.expunge_all()
            return rows

    return read


def post(client, url: str, data: dict, htmx: bool = True, page: str = "/inbox", **kw):
    token = csrf_token(client, page)
    return client.post(
        url, data={"csrf_token": token, **data}, headers={"HX-Request": "true"} if htmx else {}, **kw
    )
