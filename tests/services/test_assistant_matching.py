"""What the assistant reads in a message: FAQ matches (en/es/pt, accents, whole words, the threshold)
and the booking / talk-to-a-person requests."""

from __future__ import annotations

import pytest

from wa_portal.services.assistant_faq import MIN_SCORE, Candidate, best_match, score, split_keywords
from wa_portal.services.keywords import Intent, classify

HOURS, ADDRESS, PARKING, PRICES, BRING = 1, 2, 3, 4, 5
FAQ = [
    Candidate(
        HOURS, split_keywords("opening hours, open, hours, horario, abren, abierto, funcionamento, aberto")
    ),
    Candidate(ADDRESS, split_keywords("address, where are you, dirección, donde están, endereço, onde fica")),
    Candidate(PARKING, split_keywords("parking, car park, car, aparcar, aparcamiento, estacionamento")),
    Candidate(PRICES, split_keywords("price, cost, how much, precio, cuánto cuesta, preço, quanto custa")),
    Candidate(BRING, split_keywords("what to bring, bring, traer, llevar, levar, trazer")),
]


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        # en
        ("What are your opening hours?", HOURS),
        ("OPENING HOURS", HOURS),
        ("Do you have parking?", PARKING),
        ("Hi! Do you have parking near the clinic? I'm coming by car", PARKING),
        ("Where are you?", ADDRESS),
        ("How much does a first session cost?", PRICES),
        ("What should I bring?", BRING),
        ("prices", PRICES),  # a plural matches its singular
        # es, with and without accents
        ("¿A qué hora abren?", HOURS),
        ("¿Cuál es el horario?", HOURS),
        ("¿Dónde están?", ADDRESS),
        ("donde estan", ADDRESS),
        ("¿Cuánto cuesta la consulta?", PRICES),
        ("cuanto cuesta", PRICES),
        ("¿Se puede aparcar cerca?", PARKING),
        ("¿Qué tengo que llevar?", BRING),
        # pt
        ("Qual o horário de funcionamento?", HOURS),
        ("Onde fica a clínica?", ADDRESS),
        ("Qual o endereco?", ADDRESS),  # typed without the cedilla
        ("Quanto custa a consulta?", PRICES),
        ("Tem estacionamento?", PARKING),
        ("O que devo levar?", BRING),
    ],
)
def test_a_question_gets_the_matching_answer(text: str, entry: int) -> None:
    found = best_match(text, FAQ)
    assert found is not None, text
    assert found.entry_id == entry
    assert found.score >= MIN_SCORE


@pytest.mark.parametrize(
    "text",
    [
        "Hello",
        "Thanks!",
        "I feel much worse since yesterday",
        # A keyword inside a story is not a question for the FAQ: a person reads it.
        "I got a parking ticket outside your clinic yesterday and I want a refund",
        "openly",  # whole words only: "open" is not in "openly"
        "bringing my son",  # nor "bring" in "bringing"
        "cara",  # nor "car" in "cara"
        "",
    ],
)
def test_no_answer_below_the_threshold_or_without_a_whole_word(text: str) -> None:
    assert best_match(text, FAQ) is None


def test_a_phrase_matches_its_words_in_order_only() -> None:
    entry = Candidate(9, ["opening hours"])
    assert score("what are your opening hours", entry) is not None
    assert score("hours of opening", entry) is None


def test_the_best_score_wins_and_ties_go_to_the_first_entry() -> None:
    entries = [Candidate(1, ["appointment"]), Candidate(2, ["appointment", "cancel policy"])]
    assert best_match("appointment cancel policy", entries).entry_id == 2  # covers more words
    twins = [Candidate(7, ["parking"]), Candidate(8, ["parking"])]
    assert best_match("parking?", twins).entry_id == 7


def test_the_score_is_the_share_of_meaningful_words_matched() -> None:
    found = score("Is there parking near the clinic?", Candidate(3, ["parking"]))
    assert found is not None
    # "is", "there", "the", "clinic" are function words: parking and near are what was asked.
    assert (found.matched_words, found.meaningful_words, found.percent) == (1, 2, 50)
    assert found.matched == ("parking",)


def test_keywords_from_the_form_are_split_trimmed_and_deduplicated() -> None:
    raw = "opening hours, Opening  Hours\nhorario;  ,HORÁRIO, ¿abren?"
    assert split_keywords(raw) == ["opening hours", "horario", "¿abren?"]
    assert split_keywords(" , ;\n") == []


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        # booking a new appointment
        ("I'd like to book", Intent.BOOK),
        ("Can I book an appointment?", Intent.BOOK),
        ("I need an appointment please", Intent.BOOK),
        ("quiero una cita", Intent.BOOK),
        ("Quisiera pedir cita", Intent.BOOK),
        ("¿Puedo reservar?", Intent.BOOK),
        ("marcar consulta", Intent.BOOK),
        ("Gostaria de marcar um horário", Intent.BOOK),
        ("Quero agendar uma consulta", Intent.BOOK),
        ("अपॉइंटमेंट चाहिए", Intent.BOOK),
        # a person
        ("talk to a person", Intent.HUMAN),
        ("Can I speak to someone?", Intent.HUMAN),
        ("hablar con alguien", Intent.HUMAN),
        ("¿Puedo hablar con una persona?", Intent.HUMAN),
        ("atendente", Intent.HUMAN),
        ("Quero falar com um atendente", Intent.HUMAN),
        ("Agent", Intent.HUMAN),
        ("किसी से बात करनी है", Intent.HUMAN),
        ("I want to speak to someone to book", Intent.HUMAN),  # a person was asked for
        # not requests
        ("no quiero una cita", Intent.NONE),
        ("I don't need an appointment", Intent.NONE),
        ("cancel and book another one", Intent.NONE),
        ("I need to know the time of my appointment", Intent.NONE),
        ("Is it in person?", Intent.NONE),
        ("Thanks team!", Intent.NONE),
        ("I booked on facebook", Intent.NONE),
        ("What are your opening hours?", Intent.NONE),
        # appointment answers keep their meaning
        ("remarcar", Intent.RESCHEDULE),
        ("reagendar", Intent.RESCHEDULE),
        ("yes", Intent.CONFIRM),
    ],
)
def test_booking_and_person_requests(text: str, intent: Intent) -> None:
    assert classify(text).intent is intent
