"""The conversation list: views, filters, search, unread per person, window indicator, keyset pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from flask import g
from sqlalchemy import event

from wa_portal.models import ConversationStatus, utcnow


def names(html: str) -> list[str]:
    return re.findall(r'<span class="conv-name">([^<]+)</span>', html)


def test_awaiting_view_shows_longest_waiting_first(client, login, staff, sandbox_conn, make_conv):
    make_conv(sandbox_conn, name="Newest", minutes_ago=1)
    make_conv(sandbox_conn, name="Oldest", minutes_ago=90)
    make_conv(sandbox_conn, name="Middle", minutes_ago=30)
    make_conv(sandbox_conn, name="Closed one", status=ConversationStatus.CLOSED, minutes_ago=200)
    login(staff)
    html = client.get("/inbox").get_data(as_text=True)
    assert names(html) == ["Oldest", "Middle", "Newest"]
    assert "<title>(3) Inbox" in html


def test_views_mine_unassigned_assistant_closed_all(client, login, staff, colleague, sandbox_conn, make_conv):
    make_conv(
        sandbox_conn, name="Mine", status=ConversationStatus.ASSIGNED, assignee_id=staff.id, minutes_ago=5
    )
    make_conv(
        sandbox_conn, name="Anas", status=ConversationStatus.ASSIGNED, assignee_id=colleague.id, minutes_ago=4
    )
    make_conv(sandbox_conn, name="Waiting", minutes_ago=3)
    make_conv(sandbox_conn, name="Bot talk", status=ConversationStatus.BOT, minutes_ago=2)
    make_conv(sandbox_conn, name="Done", status=ConversationStatus.CLOSED, minutes_ago=1)
    login(staff)

    def view(v: str) -> list[str]:
        return names(client.get(f"/inbox?view={v}").get_data(as_text=True))

    assert view("mine") == ["Mine"]
    assert view("unassigned") == ["Waiting"]
    assert view("bot") == ["Bot talk"]
    assert view("closed") == ["Done"]
    assert view("all") == ["Done", "Bot talk", "Waiting", "Anas", "Mine"]


def test_filter_by_connection_and_channel(client, login, staff, clinic, sandbox_conn, make_conv):
    from wa_portal.services import connections

    other = connections.create_connection(
        clinic=clinic, provider="sandbox", settings={"display_phone": "+34910000002"}, label="Second"
    )
    make_conv(sandbox_conn, name="On first")
    make_conv(other, name="On second")
    login(staff)
    assert names(client.get(f"/inbox?view=all&connection={other.id}").get_data(as_text=True)) == ["On second"]
    assert sorted(names(client.get("/inbox?view=all&channel=sandbox").get_data(as_text=True))) == [
        "On first",
        "On second",
    ]
    assert names(client.get("/inbox?view=all&channel=meta").get_data(as_text=True)) == []


def test_search_by_name_phone_and_message_text(client, login, staff, sandbox_conn, make_conv):
    make_conv(sandbox_conn, name="Maria Lopez", phone="+34612345678", body="Can I move my appointment?")
    make_conv(sandbox_conn, name="John Smith", phone="+34699887766", body="Thanks, see you Tuesday")
    login(staff)

    def search(q: str) -> list[str]:
        return names(client.get("/inbox", query_string={"view": "all", "q": q}).get_data(as_text=True))

    assert search("maria") == ["Maria Lopez"]
    assert search("99887") == ["John Smith"]
    assert search("appointment") == ["Maria Lopez"]  # full-text over message bodies
    assert search("tuesday thanks") == ["John Smith"]  # words in any order
    assert search("dentist") == []
    assert search("50% off_") == []  # LIKE wildcards are escaped


def test_keyset_pages_cover_everything_once_without_offset(client, login, staff, sandbox_conn, make_conv, db):
    for i in range(70):
        make_conv(sandbox_conn, name=f"P{i:02d}", minutes_ago=i // 3)  # ties on time: the id breaks them
    login(staff)
    statements: list[str] = []

    def capture(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        seen: list[str] = []
        url = "/inbox?view=all"
        html = client.get(url).get_data(as_text=True)
        seen += names(html)
        while True:
            m = re.search(r'hx-get="(/inbox\?[^"]*cursor=[^"]+)"', html)
            if not m:
                break
            html = client.get(m.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"}).get_data(
                as_text=True
            )
            assert "<nav" not in html  # just the rows and the next "show more"
            seen += names(html)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert len(seen) == 70
    assert len(set(seen)) == 70
    assert seen[0] == "P00" or seen[0].startswith("P0")
    assert not any("OFFSET" in s.upper() for s in statements)


def test_unread_is_per_person_and_opening_marks_read(client, app, login, staff, colleague, conv, inbound):
    inbound("Are you there?")
    login(staff)
    assert 'aria-label="2 unread"' in client.get("/inbox").get_data(as_text=True)
    client.get(f"/inbox/c/{conv.id}")
    assert 'aria-label="2 unread"' not in client.get("/inbox").get_data(as_text=True)
    # The tests hold one app context, where Flask-Login caches the user on g: forget it.
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    other = app.test_client()
    login(colleague, other)
    assert 'aria-label="2 unread"' in other.get("/inbox").get_data(as_text=True)


def test_window_indicator_in_the_list(client, login, staff, conv):
    login(staff)
    html = client.get("/inbox").get_data(as_text=True)
    assert re.search(r"window-open[^>]*>\s*2[34] h left", html)
    with time_machine.travel(utcnow() + timedelta(hours=25)):
        html = client.get("/inbox").get_data(as_text=True)
    assert "Template needed" in html


@pytest.mark.parametrize("probe", [0, 10_000], ids=["common-words", "rare-words-common-names"])
def test_common_search_terms_walk_the_list_in_batches(
    client, login, staff, sandbox_conn, make_conv, monkeypatch, probe
):
    from wa_portal.services import conversations

    # Pretend the terms are common, with tiny batches: the walking path must find the same rows.
    monkeypatch.setattr(conversations, "SEARCH_SMALL", 0)
    monkeypatch.setattr(conversations, "SEARCH_PROBE", probe)
    monkeypatch.setattr(conversations, "WALK_BATCH", 3)
    monkeypatch.setattr(conversations, "PAGE_SIZE", 2)
    for i in range(7):
        make_conv(sandbox_conn, name=f"Other {i}", body="nothing to see", minutes_ago=i)
    make_conv(sandbox_conn, name="Maria A", body="my appointment", minutes_ago=10)
    make_conv(sandbox_conn, name="John B", body="an appointment please", minutes_ago=11)
    make_conv(sandbox_conn, name="Lucia C", body="hello", minutes_ago=12)
    make_conv(sandbox_conn, name="Appointment Desk", body="hi", minutes_ago=13)
    login(staff)
    seen, url = [], "/inbox?view=all&q=appointment"
    while url:
        html = client.get(url, headers={"HX-Request": "true"} if "cursor" in url else {}).get_data(
            as_text=True
        )
        seen += names(html)
        m = re.search(r'hx-get="(/inbox\?[^"]*cursor=[^"]+)"', html)
        url = m.group(1).replace("&amp;", "&") if m else ""
    assert seen == ["Maria A", "John B", "Appointment Desk"]


def test_the_sandbox_hint_shows_only_before_the_first_patient(client, login, staff, sandbox_conn, make_conv):
    hint = "No patients yet?"
    login(staff)
    assert hint in client.get("/inbox").get_data(as_text=True)
    # Nothing awaits a person, but the clinic has patients: the empty list is not a first run.
    make_conv(sandbox_conn, name="Done", status=ConversationStatus.CLOSED, minutes_ago=5)
    html = client.get("/inbox").get_data(as_text=True)
    assert names(html) == [] and hint not in html
