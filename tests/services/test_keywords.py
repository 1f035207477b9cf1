"""Reading patients' replies: what confirms, cancels or moves an appointment, and what a person must read."""

from __future__ import annotations

import pytest

from wa_portal.services.keywords import BUTTON_PAYLOADS, MAX_CHOICE, Intent, Reply, classify

CONFIRM, CANCEL, RESCHEDULE = Intent.CONFIRM, Intent.CANCEL, Intent.RESCHEDULE
STOP, START, CHOICE, NONE = Intent.STOP, Intent.START, Intent.CHOICE, Intent.NONE

# (reply as typed, intent) — answering a reminder, so not in slot-choice mode.
CASES: list[tuple[str | None, Intent]] = [
    # --- English
    ("yes", CONFIRM),
    ("Yes", CONFIRM),
    ("YES!", CONFIRM),
    ("y", CONFIRM),
    ("yes please", CONFIRM),
    ("Yes, I'll be there. Thanks!", CONFIRM),
    ("confirm", CONFIRM),
    ("Confirmed 👍", CONFIRM),
    ("ok", CONFIRM),
    ("Okay thanks", CONFIRM),
    ("👍", CONFIRM),
    ("👍🏽", CONFIRM),
    ("✅", CONFIRM),
    ("  yes\n", CONFIRM),
    ("1", CONFIRM),
    ("1.", CONFIRM),
    ("1️⃣", CONFIRM),
    ("cancel", CANCEL),
    ("Cancel please", CANCEL),
    ("please cancel my appointment", CANCEL),
    ("2", CANCEL),
    ("#2", CANCEL),
    ("reschedule", RESCHEDULE),
    ("Change the time please", RESCHEDULE),
    ("3", RESCHEDULE),
    ("3 please", RESCHEDULE),
    ("STOP", STOP),
    ("stop.", STOP),
    ("Stop?", STOP),  # an opt-out is honoured even as a question
    ("STOPALL", STOP),
    ("Unsubscribe", STOP),
    ("CANCEL ALL", STOP),  # exactly a stop phrase: STOP wins over cancel
    ("cancel all!", STOP),
    ("END", STOP),
    ("quit", STOP),
    ("OPTOUT", STOP),
    ("opt-out", STOP),
    ("START", START),
    ("unstop", START),
    ("subscribe", START),
    # tricky English negatives: a person reads these
    ("I can't cancel my plans so I'll be there", NONE),
    ("yes cancel", NONE),  # two intents
    ("No", NONE),
    ("no, cancel", NONE),
    ("yesterday", NONE),
    ("okay but can we make it later", NONE),
    ("cancel?", NONE),
    ("Can I cancel?", NONE),
    ("can I change the time", NONE),
    ("cancel all my appointments", NONE),  # not exactly the STOP phrase
    ("stop sending me these", NONE),
    ("start time?", NONE),
    ("yes yes yes yes yes yes yes", NONE),  # long free text, even if it looks like a yes
    ("10:00 works", NONE),
    ("1 2", NONE),
    ("0", NONE),
    ("2027", NONE),
    ("option", NONE),
    ("Thanks!", NONE),
    ("🙂", NONE),
    ("", NONE),
    ("   ", NONE),
    (None, NONE),
    # --- Spanish
    ("Sí", CONFIRM),
    ("si", CONFIRM),
    ("Sí, confirmo", CONFIRM),
    ("SI, GRACIAS", CONFIRM),
    ("confirmo la cita", CONFIRM),
    ("Confirmado, nos vemos", CONFIRM),
    ("vale", CONFIRM),
    ("cancelar", CANCEL),
    ("Cancela por favor", CANCEL),
    ("cancelo mi cita", CANCEL),
    ("reprogramar", RESCHEDULE),
    ("Cambiar cita", RESCHEDULE),
    ("cambiar la hora por favor", RESCHEDULE),
    ("BAJA", STOP),
    ("parar", STOP),
    ("ALTA", START),
    ("¿Puedo cancelar?", NONE),
    ("¿cancelar?", NONE),
    ("si no puedo ir te aviso", NONE),  # "si" here means "if"
    ("Sí, cancelo", NONE),  # yes + cancel: ambiguous, a person reads it
    ("no puedo ir", NONE),
    ("confirmo que no voy", NONE),
    # --- Portuguese (Brazil)
    ("sim", CONFIRM),
    ("Sim!", CONFIRM),
    ("Sim, obrigada", CONFIRM),
    ("Confirmo", CONFIRM),
    ("confirmar a consulta", CONFIRM),
    ("Cancelar", CANCEL),
    ("cancela por favor", CANCEL),
    ("remarcar", RESCHEDULE),
    ("Reagendar minha consulta", RESCHEDULE),
    ("SAIR", STOP),
    ("voltar", START),
    ("não posso ir", NONE),
    ("sim, mas posso chegar mais tarde?", NONE),
    ("quero cancelar", NONE),  # a verb of wanting first: a person confirms it
    # --- Hindi (Devanagari and Hinglish)
    ("हाँ", CONFIRM),
    ("हां", CONFIRM),
    ("हाँ जी", CONFIRM),
    ("haan", CONFIRM),
    ("Haan ji", CONFIRM),
    ("पुष्टि करें", CONFIRM),
    ("ठीक है", CONFIRM),
    ("१", CONFIRM),  # Devanagari digit one
    ("रद्द", CANCEL),
    ("रद्द करें", CANCEL),
    ("२", CANCEL),
    ("बदलें", RESCHEDULE),
    ("समय बदलें", RESCHEDULE),
    ("रोकें", STOP),
    ("शुरू", START),
    ("नहीं", NONE),
    ("मैं नहीं आ सकता", NONE),
    ("हाँ लेकिन मैं देर से आऊँगा", NONE),
    ("क्या मैं रद्द कर सकता हूँ?", NONE),
]


@pytest.mark.parametrize(("text", "intent"), CASES, ids=[f"{i:03d}-{c[0]!r}" for i, c in enumerate(CASES)])
def test_classify_reply_to_a_reminder(text: str | None, intent: Intent) -> None:
    reply = classify(text)
    assert reply.intent is intent
    assert reply.choice is None


def test_table_covers_enough_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", Reply(CHOICE, 1)),
        ("2", Reply(CHOICE, 2)),
        ("3.", Reply(CHOICE, 3)),
        ("4", Reply(CHOICE, 4)),
        ("2 please", Reply(CHOICE, 2)),
        ("option 2", Reply(CHOICE, 2)),
        ("Opción 3", Reply(CHOICE, 3)),
        ("opção 1", Reply(CHOICE, 1)),
        ("विकल्प २", Reply(CHOICE, 2)),
        (str(MAX_CHOICE), Reply(CHOICE, MAX_CHOICE)),
        (str(MAX_CHOICE + 1), Reply(NONE)),
        ("0", Reply(NONE)),
        ("1 or 2", Reply(NONE)),
        ("2, yes", Reply(NONE)),  # a choice and a yes: a person checks
        ("option", Reply(NONE)),
        ("2?", Reply(NONE)),
        # keywords keep working while choosing
        ("cancel", Reply(CANCEL)),
        ("STOP", Reply(STOP)),
        ("none of those work for me", Reply(NONE)),
    ],
)
def test_slot_choice_mode(text: str, expected: Reply) -> None:
    assert classify(text, expecting_choice=True) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", Reply(CHOICE, 4)),  # not a reminder answer: let the caller decide
        ("option 2", Reply(CHOICE, 2)),  # an explicit "option" is a choice in any mode
        ("2", Reply(CANCEL)),
    ],
)
def test_numbers_outside_choice_mode(text: str, expected: Reply) -> None:
    assert classify(text) == expected


@pytest.mark.parametrize(("payload", "intent"), sorted(BUTTON_PAYLOADS.items()))
def test_button_payload_wins_over_text(payload: str, intent: Intent) -> None:
    assert classify("STOP", button_payload=payload) == Reply(intent)
    assert classify(None, button_payload=payload) == Reply(intent)


def test_unknown_button_payload_falls_back_to_the_text() -> None:
    assert classify("yes", button_payload="marketing:promo") == Reply(CONFIRM)
    assert classify(None, button_payload="marketing:promo") == Reply(NONE)


def test_button_payloads_are_the_three_appointment_actions() -> None:
    assert BUTTON_PAYLOADS == {"appt:confirm": CONFIRM, "appt:cancel": CANCEL, "appt:reschedule": RESCHEDULE}
