"""services/audit: inside a use case the row shares its transaction; on its own it commits alone;
either way a failure is logged and never reaches the caller."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from tests.audit.conftest import post
from wa_portal.services import audit


def test_record_joins_the_callers_transaction(db, clinic, staff, events):
    from wa_portal.models import Contact

    db.session.add(Contact(clinic_id=clinic.id, phone="+34600000001", name="A"))
    event = audit.record("create", "contact", summary="from a test", user=staff)
    assert event is not None and events() == []  # not committed yet
    db.session.rollback()
    assert events() == []  # rolled back with the use case
    audit.record("update", "contact", "7", user=staff)
    db.session.commit()
    [row] = events()
    assert (row.action, row.object_id, row.clinic_id, row.user_id) == ("update", "7", clinic.id, staff.id)
    assert row.actor == "Rita (staff)" and row.ip is None  # no request: no address


def test_record_now_commits_alone_and_leaves_the_callers_session_alone(db, clinic, events):
    from wa_portal.models import Contact

    pending = Contact(clinic_id=clinic.id, phone="+34600000002", name="B")
    db.session.add(pending)
    assert audit.record_now("view", "contact", 1, clinic_id=clinic.id) is not None
    assert pending in db.session.new  # neither flushed nor committed by the audit write
    db.session.rollback()
    [row] = events()
    assert row.actor == "system" and row.user_id is None
    assert db.session.scalar(select(func.count(Contact.id))) == 0


def test_failures_are_logged_at_error_and_never_raised(db, clinic, caplog):
    caplog.set_level(logging.ERROR, logger="wa_portal.services.audit")
    assert audit.record_now("view", "contact", 1) is None  # no clinic to file it under
    assert audit.record_now("view", "contact", 1, clinic_id=999_999) is None  # foreign key fails
    assert audit.record("view", "contact", 1) is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3 and all("audit: could not record view contact 1" in r.message for r in errors)


def test_a_broken_hook_does_not_break_the_response(client, login, staff, conv, monkeypatch, caplog, events):
    from wa_portal.web import audit_hooks

    def boom(*a, **kw):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(audit_hooks.audit, "record_now", boom)
    caplog.set_level(logging.ERROR, logger="wa_portal.web.audit_hooks")
    login(staff)
    assert client.get(f"/inbox/c/{conv.id}").status_code == 200
    assert post(client, f"/inbox/c/{conv.id}/messages", {"body": "Still sent"}).status_code == 200
    assert "audit: hook failed for inbox.conversation" in caplog.text
    assert events() == []


def test_email_domain_keeps_only_the_domain():
    assert audit.email_domain(" Rita.Perez@Sunrise.TEST ") == "sunrise.test"
    assert audit.email_domain("no-at-sign") == ""
