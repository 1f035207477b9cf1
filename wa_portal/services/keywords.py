"""Classify a patient's message: confirm, cancel, reschedule, opt out/in, pick a slot, book, ask for a person.

Pure domain logic: plain values in, plain values out.

Public API
----------
``classify(text: str | None, *, button_payload: str | None = None, expecting_choice: bool = False) -> Reply``
``Reply(intent: Intent, choice: int | None = None)`` — ``choice`` is set only for ``Intent.CHOICE``.
``Intent`` (a ``StrEnum``): ``CONFIRM``, ``CANCEL``, ``RESCHEDULE``, ``STOP``, ``START``, ``CHOICE``,
``BOOK``, ``HUMAN``, ``NONE``.
``normalize(text: str) -> list[str]``: the words of a text as rule 2 folds them (the assistant's FAQ
matcher reads messages the same way).
``BUTTON_PAYLOADS``: ``{"appt:confirm": CONFIRM, "appt:cancel": CANCEL, "appt:reschedule": RESCHEDULE}``.
``MAX_CHOICE``: the highest slot number a reply may pick (20).

How a reply is read — conservatively, because a wrong CONFIRM or CANCEL changes an appointment
while ``NONE`` only means a person on the team reads the message:

1. A known ``button_payload`` wins over any text.
2. The text is normalised: Unicode NFKC, case-folded, accents dropped from Latin letters (``sí`` is
   ``si``, ``opção`` is ``opcao``; Devanagari vowel signs are kept), punctuation, symbols and emoji
   become spaces, except the 👍 and ✅ emoji, which are words of their own. Keycap digits (1️⃣) and
   Devanagari digits (२) count as numbers.
3. A message that is *exactly* an opt-out phrase is ``STOP`` (``STOP``, ``STOPALL``, ``UNSUBSCRIBE``,
   ``CANCEL ALL``, ``END``, ``QUIT``, ``OPTOUT``, ``PARAR``, ``BAJA``, ``SAIR``, ``रोकें`` …). This is
   checked first, so ``"CANCEL ALL"`` is ``STOP`` while ``"cancel"`` is ``CANCEL``. Exactly
   ``START``, ``UNSTOP``, ``SUBSCRIBE``, ``ALTA``, ``VOLTAR`` or ``शुरू`` is ``START``. ``YES`` is never
   ``START``: here it answers a reminder. Longer messages ("stop sending me these") go to a person.
4. A question (the text contains ``?`` or ``¿``) is ``NONE``: "cancel?" asks something; a person answers.
5. Otherwise the message must be short (at most 6 words) and made only of keywords of *one* intent
   plus polite filler ("please", "gracias", "obrigada", "जी", "my appointment", "I'll be there"):
   ``"Sí, confirmo"``, ``"yes please"``, ``"Cancel please"``, ``"please cancel my appointment"``,
   ``"रद्द करें"``. Any other word ("can't", "but", "no", "tomorrow") makes it ``NONE``, so
   ``"I can't cancel my plans so I'll be there"`` is read by a human, as is ``"yes cancel"``.
   We accept the keyword anywhere among filler words, not only first ("please cancel"): with no
   unknown word allowed that is as safe and catches more real replies.
6. Numbers: a bare ``1``/``2``/``3`` (with filler, ``"1."``, ``"#2"``, ``"3 please"``) answers the
   reminder's "Reply 1 to confirm, 2 to cancel, 3 to reschedule". With ``expecting_choice=True``
   (the last message offered numbered slots) any number ``n`` in ``1..MAX_CHOICE`` is
   ``CHOICE(n)``. ``"option 2"`` / ``"opción 2"`` / ``"opção 2"`` / ``"विकल्प 2"`` is ``CHOICE`` in either
   mode, and so is a bare number from 4 up; the caller decides whether a choice makes sense now.
   Several numbers (``"10:00"``, ``"1 2"``), 0 or a number above ``MAX_CHOICE`` are ``NONE``.
7. Requests, read only when rules 3-6 found nothing (``NONE``), in messages of at most 16 words,
   questions included ("Can I book?"):
   ``HUMAN`` — a word for talking (talk, speak, call, contact, hablar, llamar, falar, ligar, बात …)
   together with a word for a person (person, someone, human, agent, reception, team, persona,
   alguien, pessoa, alguém, atendente, इंसान …), or a message made only of filler and the words
   that ask for a person on their own ("Agent", "atendente", "a real person please"; not "thanks
   team", not "in person").
   ``BOOK`` — a booking verb (book, reservar, agendar, marcar, बुक) or a wish followed by an
   appointment word with at most one article between ("I need an appointment", "quiero una cita",
   "nova consulta", "अपॉइंटमेंट चाहिए"), and no negation (no, not, don't, não, नहीं …) nor any cancel
   or reschedule keyword ("cancel and book another" is for a person). ``HUMAN`` wins over ``BOOK``:
   "I want to speak to someone to book" asked for a person. "remarcar" and "reagendar" stay
   ``RESCHEDULE``; "book" inside a longer word (facebook, booked) is not the word "book".

Keyword lists (normalised as above):

* confirm: yes, y, yeah, yep, yup, confirm, confirmed, ok, okay, si/sí, confirmo, confirmar,
  confirmado/a, vale, sim, हाँ, हां, haan, haa, पुष्टि, ठीक, ओके, 1, 👍, ✅
* cancel: cancel, cancelar, cancela, cancelo, रद्द, कैंसिल, 2
* reschedule: reschedule, change, rebook, remarcar, reprogramar, reagendar, cambiar, बदलें, बदलो, 3
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BUTTON_PAYLOADS", "MAX_CHOICE", "Intent", "Reply", "classify", "normalize"]


class Intent(StrEnum):
    CONFIRM = "confirm"
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"
    STOP = "stop"
    START = "start"
    CHOICE = "choice"
    BOOK = "book"  # a new appointment, asked for in words
    HUMAN = "human"  # "talk to a person"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Reply:
    intent: Intent
    choice: int | None = None


BUTTON_PAYLOADS: dict[str, Intent] = {
    "appt:confirm": Intent.CONFIRM,
    "appt:cancel": Intent.CANCEL,
    "appt:reschedule": Intent.RESCHEDULE,
}

MAX_CHOICE = 20
# Beyond this many words a reply is a sentence with its own meaning; a person should read it.
MAX_WORDS = 6
# Requests (rule 7) may be longer ("Hi, good morning, I would like to book an appointment please"),
# but not a whole story: past this a person reads it, and the details in it.
MAX_REQUEST_WORDS = 16

# Emoji that are answers in their own right; every other symbol is noise around the words.
_EMOJI_WORDS = frozenset({"👍", "✅"})

_STOP_PHRASES = (
    "stop",
    "stopall",
    "stop all",
    "unsubscribe",
    "cancel all",
    "end",
    "quit",
    "optout",
    "opt out",
    "parar",
    "baja",
    "sair",
    "रोकें",
)
_START_PHRASES = ("start", "unstop", "subscribe", "alta", "voltar", "शुरू")

_KEYWORDS: dict[Intent, tuple[str, ...]] = {
    Intent.CONFIRM: (
        *("yes", "y", "yeah", "yep", "yup", "confirm", "confirmed", "ok", "okay"),
        *("sí", "confirmo", "confirmar", "confirmado", "confirmada", "vale", "sim"),
        *("हाँ", "हां", "haan", "haa", "पुष्टि", "ठीक", "ओके"),
        *_EMOJI_WORDS,
    ),
    Intent.CANCEL: ("cancel", "cancelar", "cancela", "cancelo", "रद्द", "कैंसिल"),
    Intent.RESCHEDULE: (
        *("reschedule", "change", "rebook", "remarcar", "reprogramar", "reagendar", "cambiar"),
        *("बदलें", "बदलो"),
    ),
}
_NUMBER_INTENTS = {1: Intent.CONFIRM, 2: Intent.CANCEL, 3: Intent.RESCHEDULE}
# "no" / "nº" are left out on purpose: "No, 2" answering a reminder means "no, cancel", not slot 2.
_CHOICE_MARKERS = ("option", "opción", "opção", "number", "número", "विकल्प")

# Words that carry no intent of their own. Only short, unambiguous courtesy and "the appointment"
# words: anything that could negate or qualify the answer (no, not, but, can't, later) stays out.
_FILLER = (
    # en
    *("please", "pls", "plz", "thanks", "thank", "you", "thx", "ty", "hi", "hello", "hey", "dear"),
    *("my", "the", "appointment", "appt", "it", "i", "ll", "will", "be", "there", "see", "then", "time"),
    # es
    *("por", "favor", "gracias", "muchas", "hola", "mi", "la", "cita", "consulta", "hora", "alli"),
    *("ahi", "estare", "nos", "vemos", "doctor", "doctora"),
    # pt-BR
    *("obrigado", "obrigada", "obg", "olá", "oi", "minha", "a", "o", "horário", "estarei", "lá", "até"),
    # hi (and Hinglish)
    *("जी", "ji", "कृपया", "धन्यवाद", "शुक्रिया", "नमस्ते", "namaste", "dhanyavad", "है", "hai"),
    *("करें", "करो", "कर", "दो", "दें", "दीजिए", "कीजिए", "मेरी", "मेरा", "अपॉइंटमेंट", "समय"),
)


# --- rule 7: requests -------------------------------------------------------------------------
_TALK_WORDS = (
    *("talk", "speak", "chat", "call", "contact"),
    *("hablar", "comunicarme", "llamar", "llamen", "contactar"),
    *("falar", "conversar", "ligar", "ligue", "liguem"),
    *("बात", "baat"),
)
# Words that ask for a person even alone ("Agent", "atendente", "a real person please").
_PERSON_ALONE_WORDS = (
    *("person", "human", "agent", "operator", "receptionist"),
    *("persona", "humano", "humana", "agente", "operador", "recepcionista"),
    *("pessoa", "atendente", "atendimento"),
    *("इंसान", "insaan"),
)
# ... and words that do only with a word for talking: "thanks team" is a sign-off, not a request.
_PERSON_WORDS = (
    *_PERSON_ALONE_WORDS,
    *("someone", "somebody", "reception", "staff", "team"),
    *("alguien", "recepción", "equipo"),
    *("alguém", "recepção", "equipe"),
    *("व्यक्ति", "किसी"),
)
# Allowed around person words alone: "a real person", "una persona de verdad", "atendimento humano".
_PERSON_FILLER = (
    "real",
    "actual",
    "live",
    "an",
    "un",
    "una",
    "um",
    "uma",
    "de",
    "verdad",
    "with",
    "con",
    "com",
)
_BOOK_VERBS = ("book", "reservar", "agendar", "marcar", "agendamento", "बुक")
_WISH_WORDS = (
    *("want", "need", "like", "get", "make", "schedule", "new", "another"),
    *("quiero", "quisiera", "necesito", "pedir", "solicitar", "sacar", "hacer", "programar", "nueva", "otra"),
    *("quero", "gostaria", "preciso", "nova", "outra"),
    *("चाहिए", "chahiye"),
)
_ARTICLES = ("a", "an", "one", "un", "una", "um", "uma")
_APPOINTMENT_WORDS = (
    *("appointment", "appt", "session", "cita", "turno", "sesión", "consulta", "sessão", "horário"),
    *("अपॉइंटमेंट",),
)
_NEGATIONS = (
    *("no", "not", "never", "don", "dont", "doesn", "didn", "won"),
    *("nunca", "ni", "não", "nem", "nao"),
    *("नहीं", "nahi", "mat"),
)


def normalize(text: str) -> list[str]:
    """The words of ``text`` folded like replies are (rule 2): case, accents, punctuation, emoji."""
    return _normalize(text)


def _normalize(text: str) -> list[str]:
    """Rule 2: the words of ``text`` after case, accent, punctuation and emoji folding."""
    chars: list[str] = []
    # Combining marks are dropped after Latin letters (accents) but kept after other scripts,
    # where they are part of the spelling: Devanagari vowel signs and the virama in रद्द.
    keep_marks = False
    for ch in unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold()):
        category = unicodedata.category(ch)
        if ch in _EMOJI_WORDS:
            chars.append(f" {ch} ")
            keep_marks = False
        elif category[0] == "M":
            if keep_marks and category != "Me":
                chars.append(ch)
        elif category[0] in "LN":
            chars.append(ch)
            keep_marks = category[0] == "L" and ord(ch) >= 0x0250
        elif category == "Cf":
            # Zero-width joiners sit inside Indic words and emoji sequences; removing them must not
            # split a word in two.
            continue
        else:
            chars.append(" ")
            keep_marks = False
    return unicodedata.normalize("NFC", "".join(chars)).split()


def _words(values: Iterable[str]) -> frozenset[str]:
    words: set[str] = set()
    for value in values:
        normalized = _normalize(value)
        if len(normalized) != 1:  # a typo in the lists above; fail at import, not on a patient's reply
            raise ValueError(f"keyword {value!r} must be a single word after normalization")
        words.add(normalized[0])
    return frozenset(words)


def _phrases(values: Iterable[str]) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(_normalize(value)) for value in values)


_STOP = _phrases(_STOP_PHRASES)
_START = _phrases(_START_PHRASES)
_KEYWORD_INTENT: dict[str, Intent] = {
    word: intent for intent, values in _KEYWORDS.items() for word in _words(values)
}
_CHOICE_WORDS = _words(_CHOICE_MARKERS)
_FILLER_WORDS = _words(_FILLER)
_TALK = _words(_TALK_WORDS)
_PERSON = _words(_PERSON_WORDS)
_PERSON_ALONE = _words(_PERSON_ALONE_WORDS)
_PERSON_EXTRA = _words(_PERSON_FILLER)
_BOOK = _words(_BOOK_VERBS)
_WISH = _words(_WISH_WORDS)
_ARTICLE = _words(_ARTICLES)
_APPOINTMENT = _words(_APPOINTMENT_WORDS)
_NEGATION = _words(_NEGATIONS)
_NOT_BOOKING = frozenset(
    word for word, intent in _KEYWORD_INTENT.items() if intent in (Intent.CANCEL, Intent.RESCHEDULE)
)
_NONE = Reply(Intent.NONE)


def classify(text: str | None, *, button_payload: str | None = None, expecting_choice: bool = False) -> Reply:
    """What a patient's message asks for (answer, opt-out, booking, a person); ``NONE``: a person reads it."""
    if button_payload is not None:
        intent = BUTTON_PAYLOADS.get(button_payload.strip())
        if intent is not None:
            return Reply(intent)
    if not text:
        return _NONE
    words = _normalize(text)
    if not words:
        return _NONE

    phrase = tuple(words)
    # Opt-out is honoured even when punctuated as a question: a missed STOP is worse than an extra one.
    if phrase in _STOP:
        return Reply(Intent.STOP)
    reply = _appointment_reply(text, words, expecting_choice=expecting_choice)
    return reply if reply.intent is not Intent.NONE else _request(words)


def _appointment_reply(text: str, words: list[str], *, expecting_choice: bool) -> Reply:
    """Rules 4-6: an answer to an appointment message, or ``NONE``."""
    phrase = tuple(words)
    if "?" in text or "¿" in text:
        return _NONE
    if phrase in _START:
        return Reply(Intent.START)
    if len(words) > MAX_WORDS:
        return _NONE

    intents: set[Intent] = set()
    numbers: list[int] = []
    choice_marker = False
    for word in words:
        if word.isdecimal():
            numbers.append(int(word))  # int() reads Devanagari digits too
        elif word in _CHOICE_WORDS:
            choice_marker = True
        elif (intent := _KEYWORD_INTENT.get(word)) is not None:
            intents.add(intent)
        elif word not in _FILLER_WORDS:
            return _NONE  # an unknown word: free text with a meaning of its own

    if len(numbers) > 1:
        return _NONE
    if numbers:
        number = numbers[0]
        if not (expecting_choice or choice_marker) and number in _NUMBER_INTENTS:
            intents.add(_NUMBER_INTENTS[number])
        elif intents or not 1 <= number <= MAX_CHOICE:
            return _NONE
        else:
            return Reply(Intent.CHOICE, number)
    elif choice_marker:
        return _NONE  # "option" with no number

    if len(intents) == 1:
        return Reply(intents.pop())
    return _NONE


def _request(words: list[str]) -> Reply:
    """Rule 7: a request for a person or for a new appointment, or ``NONE``."""
    if len(words) > MAX_REQUEST_WORDS:
        return _NONE
    vocabulary = set(words)
    if (vocabulary & _PERSON and vocabulary & _TALK) or (
        vocabulary & _PERSON_ALONE and vocabulary <= _PERSON_ALONE | _PERSON_EXTRA | _FILLER_WORDS
    ):
        return Reply(Intent.HUMAN)
    if vocabulary & (_NEGATION | _NOT_BOOKING):
        return _NONE
    if vocabulary & _BOOK:
        return Reply(Intent.BOOK)
    for i, word in enumerate(words):
        if word in _WISH:
            after = words[i + 1 : i + 3]
            if after[:1] and after[0] in _APPOINTMENT:
                return Reply(Intent.BOOK)
            if len(after) == 2 and after[0] in _ARTICLE and after[1] in _APPOINTMENT:
                return Reply(Intent.BOOK)
        elif word in _APPOINTMENT and i + 1 < len(words) and words[i + 1] in _WISH:
            return Reply(Intent.BOOK)  # Hindi puts the wish after the noun: "अपॉइंटमेंट चाहिए"
    return _NONE
