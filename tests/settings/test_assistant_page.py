"""/settings/assistant as an admin uses it: the switches, FAQ answers (add, edit, turn off, delete),
the live preview; admins only, CSRF on every post, one clinic's answers invisible to another."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import csrf_token

PAGE = "/settings/assistant"
ENTRY = {
    "question": "What are your opening hours?",
    "keywords": "opening hours, open\nhorario, abren",
    "answer": "We are open Monday to Friday, 9:00 to 19:00.",
    "enabled": "y",
}


def _post(client, path, data, **kw):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, PAGE)}, **kw)


def _entries(db, clinic_id=None):
    from wa_portal.models import FaqEntry

    db.session.expire_all()
    query = select(FaqEntry).order_by(FaqEntry.id)
    if clinic_id is not None:
        query = query.where(FaqEntry.clinic_id == clinic_id)
    return list(db.session.scalars(query))


def _preview(client, text: str) -> str:
    resp = client.get(f"{PAGE}/preview", query_string={"text": text}, headers={"HX-Request": "true"})
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


@pytest.fixture
def entry(clinic):
    from wa_portal.services import assistant

    values = assistant.validate_entry(ENTRY).values
    return assistant.create_entry(clinic_id=clinic.id, user_id=None, values=values)


# --- who may open it ----------------------------------------------------------------------------


def test_logged_out_goes_to_login(client):
    resp = client.get(PAGE)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


@pytest.mark.parametrize("role", ["staff", "therapist"])
def test_staff_and_therapists_get_403(client, login, clinic, make_user, entry, db, role):
    login(make_user(clinic, role))
    for path in (PAGE, f"{PAGE}/faq/{entry.id}", f"{PAGE}/preview?text=hours"):
        assert client.get(path).status_code == 403, path
    token = csrf_token(client, "/inbox")
    for path in (
        f"{PAGE}/switches",
        f"{PAGE}/faq",
        f"{PAGE}/faq/{entry.id}",
        f"{PAGE}/faq/{entry.id}/enabled",
        f"{PAGE}/faq/{entry.id}/delete",
    ):
        assert client.post(path, data={**ENTRY, "csrf_token": token}).status_code == 403, path
    assert [e.question for e in _entries(db)] == [ENTRY["question"]]


def test_admin_opens_it_from_the_settings_nav(admin_client):
    html = admin_client.get("/settings/clinic").get_data(as_text=True)
    assert f'href="{PAGE}"' in html
    html = admin_client.get(PAGE).get_data(as_text=True)
    assert f'href="{PAGE}" aria-current="page">Assistant</a>' in html
    assert "No answers yet." in html


def test_posts_without_csrf_token_are_refused(admin_client, clinic, entry, db):
    assert admin_client.post(f"{PAGE}/faq", data=ENTRY).status_code == 400
    assert admin_client.post(f"{PAGE}/faq/{entry.id}/delete").status_code == 400
    resp = admin_client.post(f"{PAGE}/switches", data={})
    assert resp.status_code == 400
    assert len(_entries(db)) == 1
    db.session.refresh(clinic)
    assert clinic.setting("assistant_enabled") is None


# --- FAQ answers --------------------------------------------------------------------------------


def test_an_admin_adds_an_answer_and_the_trail_records_it(admin_client, clinic, db, admin):
    from wa_portal.models import AuditEvent

    resp = _post(admin_client, f"{PAGE}/faq", ENTRY, follow_redirects=True)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "Added “What are your opening hours?”." in html
    assert "opening hours, open, horario, abren" in html  # the list shows the triggers
    [row] = _entries(db, clinic.id)
    assert (row.question, row.keywords, row.answer, row.enabled) == (
        ENTRY["question"],
        ["opening hours", "open", "horario", "abren"],
        ENTRY["answer"],
        True,
    )
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "faq_entry")).all()
    assert [(e.action, e.user_id) for e in events] == [("create", admin.id)]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"question": ""}, "Enter the question"),
        ({"keywords": " , ;"}, "Give at least one word or phrase"),
        ({"answer": "   "}, "Write the answer the patient will get."),
        ({"answer": "x" * 1501}, "at most 1500 characters"),
    ],
)
def test_errors_are_shown_in_words_and_nothing_is_saved(admin_client, db, change, words):
    resp = _post(admin_client, f"{PAGE}/faq", {**ENTRY, **change})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert words in html and "Nothing was saved" in html
    assert _entries(db) == []


def test_an_admin_edits_turns_off_and_deletes_an_answer(admin_client, entry, db):
    html = admin_client.get(f"{PAGE}/faq/{entry.id}").get_data(as_text=True)
    assert "opening hours\nopen\nhorario\nabren" in html
    resp = _post(
        admin_client,
        f"{PAGE}/faq/{entry.id}",
        {**ENTRY, "answer": "Open 8:00 to 20:00.", "keywords": "hours"},
    )
    assert resp.status_code == 302
    [row] = _entries(db)
    assert (row.answer, row.keywords) == ("Open 8:00 to 20:00.", ["hours"])

    assert _post(admin_client, f"{PAGE}/faq/{entry.id}", {**ENTRY, "question": ""}).status_code == 422
    assert _entries(db)[0].question == ENTRY["question"]

    assert _post(admin_client, f"{PAGE}/faq/{entry.id}/enabled", {"enabled": "0"}).status_code == 302
    assert _entries(db)[0].enabled is False
    assert _post(admin_client, f"{PAGE}/faq/{entry.id}/enabled", {"enabled": "1"}).status_code == 302
    assert _entries(db)[0].enabled is True

    resp = _post(admin_client, f"{PAGE}/faq/{entry.id}/delete", {}, follow_redirects=True)
    assert "Deleted “What are your opening hours?”." in resp.get_data(as_text=True)
    assert _entries(db) == []


def test_another_clinics_answers_are_invisible_and_untouchable(admin_client, make_clinic, db):
    from wa_portal.services import assistant

    other = make_clinic("moonlight")
    theirs = assistant.create_entry(
        clinic_id=other.id,
        user_id=None,
        values=assistant.validate_entry({**ENTRY, "question": "Moonlight parking"}).values,
    )
    assert "Moonlight parking" not in admin_client.get(PAGE).get_data(as_text=True)
    assert admin_client.get(f"{PAGE}/faq/{theirs.id}").status_code == 404
    for path in (
        f"{PAGE}/faq/{theirs.id}",
        f"{PAGE}/faq/{theirs.id}/enabled",
        f"{PAGE}/faq/{theirs.id}/delete",
    ):
        assert _post(admin_client, path, {**ENTRY, "question": "Hijacked", "enabled": "0"}).status_code == 404
    [row] = _entries(db, other.id)
    assert (row.question, row.enabled) == ("Moonlight parking", True)
    # Nor does their answer show in this clinic's preview.
    assert "No answer" in _preview(admin_client, "opening hours")


# --- switches -----------------------------------------------------------------------------------


def test_the_switches_are_saved_on_the_clinic(admin_client, clinic, db):
    html = admin_client.get(PAGE).get_data(as_text=True)
    assert 'id="enabled" name="enabled" type="checkbox" value="y"' in html  # on by default
    assert 'checked id="enabled"' in html and 'checked id="booking"' not in html  # booking off
    resp = _post(admin_client, f"{PAGE}/switches", {"booking": "y"}, follow_redirects=True)
    assert "The assistant is off" in resp.get_data(as_text=True)
    db.session.refresh(clinic)
    assert (clinic.setting("assistant_enabled"), clinic.setting("assistant_booking")) == (False, True)
    _post(admin_client, f"{PAGE}/switches", {"enabled": "y"})
    db.session.refresh(clinic)
    assert (clinic.setting("assistant_enabled"), clinic.setting("assistant_booking")) == (True, False)


# --- preview ------------------------------------------------------------------------------------


def test_the_preview_says_what_a_patient_would_get(admin_client, entry, clinic, db):
    frag = admin_client.get(
        f"{PAGE}/preview", query_string={"text": "¿A qué hora ABREN?"}, headers={"HX-Request": "true"}
    )
    assert "HX-Request" in frag.headers["Vary"]
    html = frag.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="assistant-preview"')  # the fragment only
    assert ENTRY["answer"] in html
    assert "From “What are your opening hours?”: matched “abren”" in html

    page = admin_client.get(f"{PAGE}/preview", query_string={"text": "opening hours"}).get_data(as_text=True)
    assert "<h1>Assistant</h1>" in page and ENTRY["answer"] in page and 'value="opening hours"' in page

    html = _preview(admin_client, "my knee still hurts")
    assert "No answer" in html and ENTRY["answer"] not in html
    assert "A member of the team will answer you here soon." in _preview(admin_client, "hablar con alguien")

    _post(admin_client, f"{PAGE}/switches", {})
    html = _preview(admin_client, "opening hours")
    assert "The assistant is off" in html and ENTRY["answer"] not in html
