"""Appointment messages as patients read them: language, local date and time, place, buttons, templates."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest

from wa_portal.services.appointment_texts import (
    ACTION_BUTTONS,
    KINDS,
    SUPPORTED_LANGUAGES,
    TEMPLATE_BODIES,
    TEMPLATE_LANGUAGE_CODES,
    AppointmentContext,
    render,
    resolve_language,
    template_purpose,
)
from wa_portal.services.keywords import BUTTON_PAYLOADS, Intent, classify

THERAPIST = "Marta Ruiz"

# One clinic per language, each with an appointment whose local date or time differs from UTC.
CLINICS: dict[str, dict[str, object]] = {
    "en": {"tz": "Europe/London", "locale": "en_GB", "starts_at": datetime(2027, 3, 2, 10, 0, tzinfo=UTC)},
    "es": {"tz": "Europe/Madrid", "locale": "es_ES", "starts_at": datetime(2027, 3, 2, 9, 0, tzinfo=UTC)},
    # 01:30 UTC on the 3rd is still the evening of the 2nd in São Paulo.
    "pt": {
        "tz": "America/Sao_Paulo",
        "locale": "pt_BR",
        "starts_at": datetime(2027, 3, 3, 1, 30, tzinfo=UTC),
    },
    "hi": {"tz": "Asia/Kolkata", "locale": "hi_IN", "starts_at": datetime(2027, 3, 2, 4, 30, tzinfo=UTC)},
}
WHEN = {
    "en": "Tuesday, 2 March 2027 at 10:00",
    "es": "martes, 2 de marzo de 2027, 10:00",
    "pt": "terça-feira, 2 de março de 2027 às 22:30",
    "hi": "मंगलवार, 2 मार्च 2027, 10:00 am",
}
# What the same instant would read as if someone forgot the timezone.
UTC_READING = {"en": "10:00", "es": "9:00", "pt": "3 de março", "hi": "4:30"}
ACTIONS = {
    "en": "Reply 1 to confirm, 2 to cancel, 3 to reschedule.",
    "es": "Responda 1 para confirmar, 2 para cancelar, 3 para cambiar la cita.",
    "pt": "Responda 1 para confirmar, 2 para cancelar ou 3 para remarcar.",
    "hi": "पुष्टि के लिए 1, रद्द करने के लिए 2, समय बदलने के लिए 3 लिखें।",
}
ASKS_FOR_ANSWER = {"confirmation", "reminder_7d", "reminder_1d", "reminder_2h", "reschedule"}
NO_DATE = {"unknown_reply", "opt_out_ack", "opt_in_ack", "reschedule_offer"}
WITH_PLACE = {"confirmation", "reminder_7d", "reminder_1d", "reminder_2h", "reschedule", "rescheduled_ack"}
DEVANAGARI = re.compile(r"[\u0900-\u097F]")


def context(lang: str, **changes: object) -> AppointmentContext:
    clinic = CLINICS[lang]
    ctx = AppointmentContext(
        patient_first_name="Ana",
        clinic_name="Clínica Sol",
        therapist_name=THERAPIST,
        starts_at=clinic["starts_at"],  # type: ignore[arg-type]
        tz=clinic["tz"],  # type: ignore[arg-type]
        locale=clinic["locale"],  # type: ignore[arg-type]
        kind="in_person",
        location="Calle Mayor 1, 28013 Madrid",
        offered_slots=[datetime(2027, 3, 4, 12, 0, tzinfo=UTC), datetime(2027, 3, 5, 15, 30, tzinfo=UTC)],
    )
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_in_every_language(kind: str, lang: str) -> None:
    rendered = render(kind, lang=lang, ctx=context(lang), buttons_supported=False)
    text = rendered.text
    if kind in {"unknown_reply", "opt_out_ack", "opt_in_ack"}:
        assert "Clínica Sol" in text
    else:
        assert THERAPIST in text
    if kind not in NO_DATE:
        assert WHEN[lang] in text
    if kind in WITH_PLACE:
        assert "Calle Mayor 1, 28013 Madrid" in text
    else:
        assert "Calle Mayor" not in text
    if lang == "hi":
        letters = [c for c in text if c.isalpha()]
        in_devanagari = [c for c in letters if DEVANAGARI.match(c)]
        # Names, the clinic and "WhatsApp"/"STOP" stay Latin; the message itself is Hindi.
        assert len(in_devanagari) > len(letters) / 2
    assert "{" not in text
    assert "}" not in text


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_date_and_time_are_in_the_clinic_timezone_not_utc(lang: str) -> None:
    text = render("reminder_1d", lang=lang, ctx=context(lang), buttons_supported=True).text
    assert WHEN[lang] in text
    if lang != "en":  # London is on UTC in March; the other three are not
        assert UTC_READING[lang] not in text


def test_summer_time_is_applied() -> None:
    ctx = context("es", starts_at=datetime(2027, 7, 6, 8, 0, tzinfo=UTC))
    assert (
        "martes, 6 de julio de 2027, 10:00"
        in render("reminder_2h", lang="es", ctx=ctx, buttons_supported=True).text
    )


@pytest.mark.parametrize(
    ("lang", "clinic_locale", "expected"),
    [
        ("en", "en_US", "Tuesday, March 2, 2027 at 10:00\u202fAM"),
        # An English message from a Spanish clinic: English words, the clinic's 24-hour clock.
        ("en", "es_ES", "Tuesday, 2 March 2027 at 10:00"),
        ("es", "es-MX", "martes, 2 de marzo de 2027, 10:00\u202fa.m."),
        ("pt", "pt_BR", "terça-feira, 2 de março de 2027 às 10:00"),
        ("hi", "en_IN", "मंगलवार, 2 मार्च 2027, 10:00 am"),
        ("en", "not a locale!", "Tuesday, 2 March 2027 at 10:00\u202fam"),
    ],
)
def test_date_format_follows_language_and_clinic_locale(lang: str, clinic_locale: str, expected: str) -> None:
    ctx = context("en", locale=clinic_locale)  # 10:00 in London
    assert expected in render("confirmation", lang=lang, ctx=ctx, buttons_supported=True).text


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
@pytest.mark.parametrize("kind", sorted(ASKS_FOR_ANSWER))
def test_buttons_replace_numeric_instructions(kind: str, lang: str) -> None:
    with_buttons = render(kind, lang=lang, ctx=context(lang), buttons_supported=True)
    assert [payload for payload, _ in with_buttons.buttons] == [
        "appt:confirm",
        "appt:cancel",
        "appt:reschedule",
    ]
    assert not any(instructions in with_buttons.text for instructions in ACTIONS.values())
    assert with_buttons.text.endswith("Calle Mayor 1, 28013 Madrid")  # the place line is last

    without = render(kind, lang=lang, ctx=context(lang), buttons_supported=False)
    assert without.buttons == []
    assert without.text.endswith(ACTIONS[lang])


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
@pytest.mark.parametrize("kind", sorted(set(KINDS) - ASKS_FOR_ANSWER))
def test_messages_that_ask_nothing_have_no_buttons_or_instructions(kind: str, lang: str) -> None:
    for buttons_supported in (True, False):
        rendered = render(kind, lang=lang, ctx=context(lang), buttons_supported=buttons_supported)
        assert rendered.buttons == []
        assert ACTIONS[lang] not in rendered.text


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_button_titles_fit_whatsapp_and_read_back_as_their_intent(lang: str) -> None:
    for payload, title in ACTION_BUTTONS[lang]:
        assert 0 < len(title) <= 20
        # Some channels send the tapped title as plain text; it must mean the same as the payload.
        assert classify(title).intent is BUTTON_PAYLOADS[payload]
        assert classify(title, button_payload=payload).intent is BUTTON_PAYLOADS[payload]


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_numeric_instructions_match_the_keyword_reader(lang: str) -> None:
    assert [classify(n).intent for n in ("1", "2", "3")] == [Intent.CONFIRM, Intent.CANCEL, Intent.RESCHEDULE]
    assert all(n in ACTIONS[lang] for n in ("1", "2", "3"))


@pytest.mark.parametrize(
    ("lang", "start_word", "stop_word"),
    [("en", "START", "STOP"), ("es", "ALTA", "BAJA"), ("pt", "VOLTAR", "SAIR"), ("hi", "शुरू", "रोकें")],
)
def test_opt_out_and_opt_in_acks_name_a_keyword_that_works(
    lang: str, start_word: str, stop_word: str
) -> None:
    opt_out = render("opt_out_ack", lang=lang, ctx=context(lang), buttons_supported=True).text
    opt_in = render("opt_in_ack", lang=lang, ctx=context(lang), buttons_supported=True).text
    assert start_word in opt_out
    assert classify(start_word).intent is Intent.START
    assert stop_word in opt_in
    assert classify(stop_word).intent is Intent.STOP


@pytest.mark.parametrize(
    ("lang", "video_words"),
    [("en", "video call"), ("es", "videollamada"), ("pt", "videochamada"), ("hi", "वीडियो कॉल")],
)
def test_video_appointment_gives_the_link_instead_of_an_address(lang: str, video_words: str) -> None:
    ctx = context(lang, kind="video", location=None, video_url="https://meet.example.org/r/abc123")
    rendered = render("reminder_1d", lang=lang, ctx=ctx, buttons_supported=True)
    assert "https://meet.example.org/r/abc123" in rendered.text
    assert video_words in rendered.text
    assert "Calle Mayor" not in rendered.text
    assert rendered.template_params[3] == f"{video_words}, https://meet.example.org/r/abc123"


def test_video_without_a_link_yet_says_it_will_follow() -> None:
    ctx = context("en", kind="video", location=None, video_url=None)
    rendered = render("confirmation", lang="en", ctx=ctx, buttons_supported=True)
    assert "Where: video call, we will send you the link before the appointment" in rendered.text
    assert rendered.template_params[3]


def test_in_person_without_address_names_the_clinic() -> None:
    rendered = render("reminder_7d", lang="en", ctx=context("en", location=None), buttons_supported=True)
    assert "Where: Clínica Sol" in rendered.text
    assert rendered.template_params[3] == "Clínica Sol"


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_reschedule_offer_lists_numbered_slots_in_clinic_time(lang: str) -> None:
    text = render("reschedule_offer", lang=lang, ctx=context(lang), buttons_supported=True).text
    numbered = [line for line in text.splitlines() if re.match(r"\d+\. ", line)]
    assert len(numbered) == 2
    assert numbered[0].startswith("1. ")
    assert numbered[1].startswith("2. ")
    assert classify("2", expecting_choice=True).choice == 2


def test_reschedule_offer_slot_times_are_local() -> None:
    text = render("reschedule_offer", lang="pt", ctx=context("pt"), buttons_supported=False).text
    assert "1. quinta-feira, 4 de março de 2027 às 09:00" in text
    assert "2. sexta-feira, 5 de março de 2027 às 12:30" in text


def test_reschedule_offer_without_slots_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        render("reschedule_offer", lang="en", ctx=context("en", offered_slots=[]), buttons_supported=False)


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("fr", "en"),
        ("", "en"),
        ("pt_BR", "pt"),
        ("pt-br", "pt"),
        ("es-MX", "es"),
        ("en-GB", "en"),
        ("HI", "hi"),
        ("hi_IN", "hi"),
        ("zh_Hant_TW", "en"),
    ],
)
def test_resolve_language(lang: str, expected: str) -> None:
    assert resolve_language(lang) == expected


def test_unknown_language_falls_back_to_english() -> None:
    french = render("reminder_1d", lang="fr", ctx=context("en"), buttons_supported=False)
    english = render("reminder_1d", lang="en", ctx=context("en"), buttons_supported=False)
    assert french == english
    assert french.text.startswith("Hi Ana, this is a reminder")


def test_regional_language_codes_use_the_base_language() -> None:
    assert render("confirmation", lang="pt_BR", ctx=context("pt"), buttons_supported=True).text.startswith(
        "Olá, Ana!"
    )
    assert render("confirmation", lang="es-MX", ctx=context("es"), buttons_supported=True).text.startswith(
        "Hola, Ana."
    )


def test_any_planned_reminder_kind_renders_as_a_reminder() -> None:
    rendered = render("reminder_90m", lang="en", ctx=context("en"), buttons_supported=True)
    assert rendered == render("reminder_2h", lang="en", ctx=context("en"), buttons_supported=True)
    assert template_purpose("reminder_90m") == "appointment_reminder"


@pytest.mark.parametrize(
    ("kind", "purpose"),
    [
        ("confirmation", "appointment_confirmation"),
        ("reschedule", "appointment_confirmation"),
        ("reminder_7d", "appointment_reminder"),
        ("reminder_1d", "appointment_reminder"),
        ("reminder_2h", "appointment_reminder"),
        ("cancellation", "appointment_cancellation"),
        ("confirmed_ack", None),
        ("reschedule_offer", None),
        ("unknown_reply", None),
    ],
)
def test_template_purpose(kind: str, purpose: str | None) -> None:
    assert template_purpose(kind) == purpose


def test_template_bodies_cover_every_purpose_and_language() -> None:
    purposes = {"appointment_confirmation", "appointment_reminder", "appointment_cancellation"}
    assert set(TEMPLATE_BODIES) == {(p, lang) for p in purposes for lang in SUPPORTED_LANGUAGES}
    assert set(TEMPLATE_LANGUAGE_CODES) == set(SUPPORTED_LANGUAGES)
    assert TEMPLATE_LANGUAGE_CODES["pt"] == "pt_BR"


@pytest.mark.parametrize(("purpose", "lang"), sorted(TEMPLATE_BODIES))
def test_template_bodies_follow_whatsapp_rules(purpose: str, lang: str) -> None:
    body = TEMPLATE_BODIES[(purpose, lang)]
    placeholders = re.findall(r"\{\{(\w+)\}\}", body)
    expected = ["1", "2", "3"] if purpose == "appointment_cancellation" else ["1", "2", "3", "4"]
    assert sorted(set(placeholders), key=int) == expected
    # Meta rejects bodies that start or end with a variable, or put two variables side by side.
    assert not body.startswith("{{")
    assert not body.rstrip().endswith("}}")
    assert not re.search(r"\}\}\s*\{\{", body)
    assert "{{clinic}}" not in body
    assert "{{slots}}" not in body
    assert len(body) <= 1024
    if lang == "hi":
        assert DEVANAGARI.search(body)


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
@pytest.mark.parametrize("kind", ["confirmation", "reminder_1d", "cancellation", "reschedule"])
def test_template_params_carry_the_same_content_as_the_text(kind: str, lang: str) -> None:
    rendered = render(kind, lang=lang, ctx=context(lang), buttons_supported=True)
    purpose = template_purpose(kind)
    assert purpose is not None
    body = TEMPLATE_BODIES[(purpose, lang)]
    assert len(rendered.template_params) == len(set(re.findall(r"\{\{(\d+)\}\}", body)))
    assert rendered.template_params[:3] == ["Ana", THERAPIST, WHEN[lang]]
    if len(rendered.template_params) == 4:
        assert rendered.template_params[3] == "Calle Mayor 1, 28013 Madrid"
    filled = re.sub(r"\{\{(\d+)\}\}", lambda m: rendered.template_params[int(m.group(1)) - 1], body)
    if kind != "reschedule":  # a reschedule goes out on the confirmation template when the window is closed
        assert filled.splitlines()[0] == rendered.text.splitlines()[0]


@pytest.mark.parametrize(
    "kind", ["reschedule_offer", "confirmed_ack", "cancelled_ack", "unknown_reply", "opt_out_ack"]
)
def test_in_window_replies_have_no_template_params(kind: str) -> None:
    assert render(kind, lang="en", ctx=context("en"), buttons_supported=True).template_params == []


def test_template_params_are_never_empty_and_never_multiline() -> None:
    ctx = context("en", patient_first_name="  ", location="Calle Mayor 1\n2º izquierda\t  Madrid")
    rendered = render("reminder_1d", lang="en", ctx=ctx, buttons_supported=True)
    assert rendered.template_params == ["there", THERAPIST, WHEN["en"], "Calle Mayor 1 2º izquierda Madrid"]
    assert rendered.text.startswith("Hi there, this is a reminder")


def test_blank_first_name_in_hindi_reads_naturally() -> None:
    rendered = render(
        "confirmation", lang="hi", ctx=context("hi", patient_first_name=""), buttons_supported=True
    )
    assert rendered.text.startswith("नमस्ते जी,")


def test_names_cannot_inject_placeholders() -> None:
    ctx = context("en", therapist_name="Dr {{3}} {{clinic}}")
    rendered = render("confirmation", lang="en", ctx=ctx, buttons_supported=True)
    assert "with Dr {{3}} {{clinic}} is booked" in rendered.text


def test_context_has_no_place_for_clinical_detail() -> None:
    # Messages go through third parties and sit on lock screens: adding a field here (reason,
    # diagnosis, service type) must be a deliberate decision that updates this test.
    assert [f.name for f in dataclasses.fields(AppointmentContext)] == [
        "patient_first_name",
        "clinic_name",
        "therapist_name",
        "starts_at",
        "tz",
        "locale",
        "kind",
        "location",
        "video_url",
        "offered_slots",
    ]


@pytest.mark.parametrize(
    ("kind", "changes", "message"),
    [
        ("appointment_booked", {}, "unknown message kind 'appointment_booked'"),
        ("reminder_2x", {}, "unknown message kind"),
        ("confirmation", {"starts_at": datetime(2027, 3, 2, 10, 0)}, "starts_at must be a timezone-aware"),
        ("confirmation", {"tz": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ("confirmation", {"kind": "phone"}, "unknown appointment kind 'phone'"),
        ("confirmation", {"therapist_name": " "}, "therapist_name and clinic_name must not be blank"),
        ("reschedule_offer", {"offered_slots": [datetime(2027, 3, 4, 12, 0)]}, "offered_slots must be"),
    ],
)
def test_render_rejects_bad_input(kind: str, changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render(kind, lang="en", ctx=context("en", **changes), buttons_supported=True)
