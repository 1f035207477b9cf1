"""Which FAQ entry answers a patient's message: whole words and phrases, one simple score.

Pure domain logic: plain values in, plain values out (no Flask, no models).

How a message is matched
------------------------
1. The message and every trigger keyword are read like ``keywords.normalize`` reads replies: case,
   accents and punctuation folded ("¿Dónde están?" is ``donde estan``). A word ending in "s" with
   more than three letters also matches without it, so "hours" matches "hour" and "precios"
   matches "precio".
2. A trigger matches where its words appear in the message in order and next to each other:
   "opening hours" matches "what are your opening hours" but not "hours of opening", and "park"
   never matches inside "parking" (whole words only).
3. The *meaningful* words of the message are all its words except small function words (the, is,
   de, que, o, uma, क्या …: ``STOP_WORDS``); words a trigger matched always count as meaningful.
4. An entry's score is the share of the meaningful words its triggers matched. "Do you have
   parking?" → *parking* is the one meaningful word, a trigger matched it: 100 %. "I got a parking
   ticket outside your clinic and want a refund" → 1 of 6: 17 %, which is a story for a person, not
   a question for the FAQ.
5. The entry with the highest score answers when it reaches ``MIN_SCORE`` (25 %); ties go to the
   entry that matched more words, then to the one listed first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .keywords import normalize

__all__ = ["MIN_SCORE", "STOP_WORDS", "Candidate", "Match", "best_match", "split_keywords"]

MIN_SCORE = 0.25

_STOP = (
    # en
    *("a", "an", "the", "i", "im", "m", "s", "t", "d", "ll", "re", "ve", "me", "my", "we", "our", "us"),
    *("you", "your", "is", "are", "am", "be", "was", "do", "does", "did", "can", "could", "would"),
    *("will", "should", "may", "what", "whats", "when", "where", "which", "who", "how", "there"),
    *("here", "this", "that", "it", "its", "of", "to", "in", "on", "at", "for", "from", "with", "and"),
    *("or", "but", "about", "any", "some", "have", "has", "please", "pls", "hi", "hello", "hey"),
    *("thanks", "thank", "tell", "know", "want", "like", "need", "get", "just", "so", "if", "ok"),
    *("clinic", "doctor", "good", "morning", "afternoon", "evening"),
    # es
    *("el", "la", "los", "las", "un", "una", "unos", "unas", "de", "del", "al", "en", "y", "o", "que"),
    *("cual", "cuales", "como", "cuando", "donde", "quien", "es", "son", "esta", "estan", "hay"),
    *("tiene", "tienen", "tengo", "puedo", "puede", "pueden", "se", "mi", "mis", "su", "sus", "tu"),
    *("te", "lo", "le", "por", "para", "con", "sin", "hola", "buenas", "buenos", "dias", "tardes"),
    *("noches", "gracias", "favor", "quiero", "quisiera", "saber", "necesito", "algo", "clinica"),
    *("ustedes", "usted"),
    # pt
    *("os", "as", "um", "uns", "umas", "do", "da", "dos", "das", "no", "na", "nos", "nas", "em", "e"),
    *("ou", "qual", "quais", "quando", "onde", "quem", "estao", "tem", "ter", "tenho", "posso"),
    *("pode", "podem", "meu", "minha", "seu", "sua", "voce", "voces", "pra", "com", "sem", "ola"),
    *("oi", "bom", "boa", "dia", "tarde", "noite", "obrigado", "obrigada", "quero", "gostaria"),
    *("preciso",),
    # hi
    *("क्या", "है", "हैं", "का", "की", "के", "में", "आप", "मैं", "मेरा", "मेरी", "कब", "कहाँ", "कैसे"),
    *("को", "से", "और", "या", "जी"),
)
STOP_WORDS: frozenset[str] = frozenset(w for word in _STOP for w in normalize(word))

# How an admin separates triggers in the form: commas, semicolons or new lines.
_SEPARATORS = re.compile(r"[,;\n\r]+")
MAX_KEYWORDS = 40
MAX_KEYWORD_LENGTH = 80


@dataclass(frozen=True, slots=True)
class Candidate:
    """An entry as the matcher sees it: its id and its trigger keywords (as the admin wrote them)."""

    id: int
    keywords: Sequence[str]


@dataclass(frozen=True, slots=True)
class Match:
    entry_id: int
    score: float  # matched meaningful words / meaningful words, 0..1
    matched: tuple[str, ...]  # the triggers found, as the admin wrote them
    matched_words: int
    meaningful_words: int

    @property
    def percent(self) -> int:
        return round(self.score * 100)


def _fold(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def split_keywords(raw: str | Iterable[str]) -> list[str]:
    """Triggers from the form's text (comma, semicolon or line separated); blanks and repeats dropped."""
    parts = (
        _SEPARATORS.split(raw)
        if isinstance(raw, str)
        else [p for item in raw for p in _SEPARATORS.split(item)]
    )
    seen: set[tuple[str, ...]] = set()
    out: list[str] = []
    for part in parts:
        text = " ".join(part.split())
        key = tuple(_fold(w) for w in normalize(text))
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(text)
    return out


def _occurrences(words: Sequence[str], phrase: Sequence[str]) -> list[int]:
    n = len(phrase)
    return [i for i in range(len(words) - n + 1) if tuple(words[i : i + n]) == tuple(phrase)]


def score(text: str, candidate: Candidate) -> Match | None:
    """How well one entry's triggers cover the message (rules 1-4); None when none of them appears."""
    raw = normalize(text or "")
    if not raw:
        return None
    words = [_fold(w) for w in raw]
    covered: set[int] = set()
    found: list[str] = []
    for keyword in candidate.keywords:
        phrase = [_fold(w) for w in normalize(keyword)]
        if not phrase:
            continue
        hits = _occurrences(words, phrase)
        if hits:
            found.append(keyword)
            for start in hits:
                covered.update(range(start, start + len(phrase)))
    if not covered:
        return None
    meaningful = {i for i, w in enumerate(raw) if w not in STOP_WORDS} | covered
    return Match(
        entry_id=candidate.id,
        score=len(covered) / len(meaningful),
        matched=tuple(found),
        matched_words=len(covered),
        meaningful_words=len(meaningful),
    )


def best_match(text: str, candidates: Sequence[Candidate], *, min_score: float = MIN_SCORE) -> Match | None:
    """The entry that answers ``text`` (rule 5), or None when no entry reaches ``min_score``."""
    best: tuple[tuple[float, int, int], Match] | None = None
    for order, candidate in enumerate(candidates):
        found = score(text, candidate)
        if found is None or found.score < min_score:
            continue
        rank = (found.score, found.matched_words, -order)
        if best is None or rank > best[0]:
            best = (rank, found)
    return best[1] if best else None
