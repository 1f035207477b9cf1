"""/settings/audit as an admin uses it: who may open it, tenant isolation, keyset pages, filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

ROW = re.compile(r'id="audit-(\d+)"')


def _ids(resp) -> list[int]:
    return [int(i) for i in ROW.findall(resp.get_data(as_text=True))]


@pytest.fixture
def add_events(db):
    """Insert audit rows directly (the page reads; how rows are written is tested elsewhere)."""
    from wa_portal.models import AuditEvent

    def add(clinic, n: int = 1, *, at: datetime | None = None, **kw) -> list[int]:
        rows = [
            AuditEvent(
                clinic_id=clinic.id,
                actor=kw.get("actor", "system"),
                user_id=kw.get("user_id"),
                action=kw.get("action", "view"),
                object_type=kw.get("object_type", "conversation"),
                object_id=kw.get("object_id", str(i + 1)),
                summary=kw.get("summary", ""),
                created_at=at or datetime.now(UTC),
            )
            for i in range(n)
        ]
        db.session.add_all(rows)
        db.session.commit()
        return [r.id for r in rows]

    return add


@pytest.mark.parametrize("role", ["staff", "therapist"])
def test_only_admins_may_open_it(client, login, clinic, make_user, role):
    assert "/login" in client.get("/settings/audit").headers["Location"]
    login(make_user(clinic, role))
    assert client.get("/settings/audit").status_code == 403


def test_admin_sees_the_trail_newest_first_from_the_settings_nav(client, login, admin, add_events, events):
    login(admin)
    [signed_in] = events(action="login")
    ids = add_events(admin.clinic, 3)
    resp = client.get("/settings/audit")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert 'href="/settings/audit" aria-current="page"' in html  # the settings sub-navigation
    assert _ids(resp) == [*sorted(ids, reverse=True), signed_in.id]
    assert "Ada (admin)" in html and ">login<" in html
    assert 'href="/settings/audit?object_type=conversation&amp;object_id=1"' in html  # history link


def test_another_clinic_never_sees_these_rows(
    client, login, clinic, admin, make_clinic, make_user, add_events
):
    mine = add_events(clinic, 2, object_id="42")
    other = make_clinic("moonlight")
    theirs = add_events(other, 2, object_id="42")
    login(make_user(other, "admin"))
    assert sorted(_ids(client.get("/settings/audit?object_type=conversation"))) == sorted(theirs)
    assert not set(mine) & set(_ids(client.get("/settings/audit")))
    history = client.get("/settings/audit?object_type=conversation&object_id=42")
    assert sorted(_ids(history)) == sorted(theirs)
    assert not set(mine) & set(_ids(client.get(f"/settings/audit?before={max(mine) + 1}")))


def test_keyset_pages_walk_back_without_gaps_or_repeats(client, login, admin, add_events):
    ids = add_events(admin.clinic, 120)
    login(admin)
    seen: list[int] = []
    url = "/settings/audit?action=view"
    for _ in range(5):
        resp = client.get(url, headers={"HX-Request": "true"} if seen else {})
        page = _ids(resp)
        seen += page
        html = resp.get_data(as_text=True)
        if seen != page:
            assert "<html" not in html  # "Older events" brings rows, not a page
        m = re.search(r'href="(/settings/audit\?before=\d+[^"]*)"', html)
        if not m:
            break
        url = m.group(1).replace("&amp;", "&")
        assert "action=view" in url  # the filter travels with the page
    assert len(_ids(client.get("/settings/audit"))) == 50
    assert seen == sorted(ids, reverse=True)


def test_filters_by_user_action_object_and_days(client, login, clinic, admin, staff, add_events, events):
    madrid_day = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    by_rita = add_events(clinic, 2, user_id=staff.id, actor="Rita (staff)", at=madrid_day)
    sent = add_events(clinic, 1, action="send", object_id="7", at=madrid_day + timedelta(days=1))
    appt = add_events(clinic, 1, action="update", object_type="appointment", object_id="7")
    late = add_events(clinic, 1, at=datetime(2026, 3, 4, 23, 30, tzinfo=UTC))  # 5 March in Madrid
    login(admin)
    signed_in = [e.id for e in events(action="login")]

    def ids(query: str) -> list[int]:
        return sorted(_ids(client.get("/settings/audit?" + query)))

    assert ids(f"user={staff.id}") == by_rita
    assert ids("action=send") == sent
    assert ids("object_type=appointment&object_id=7") == appt
    assert ids("object_type=conversation&object_id=7") == sent
    assert ids("from=2026-03-02&to=2026-03-03") == by_rita + sent
    assert ids("from=2026-03-04&to=2026-03-04") == []  # 23:30 UTC is already 5 March in Madrid
    assert ids("from=2026-03-05&to=2026-03-05") == late
    assert ids("from=nonsense&user=x") == sorted(by_rita + sent + appt + late + signed_in)  # no filter
