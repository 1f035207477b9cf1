"""PHI detection for free text about to leave through WhatsApp or SMS, and the clinic's policy on it.

API
---
``detect(text, *, extra_terms=(), allow_terms=(), country=None) -> list[Finding]``
    Findings in text order. Kinds:

    - ``national_id``: US SSN, Spanish DNI/NIE, Brazilian CPF, Indian Aadhaar, UK NHS
      number — always checksum-validated where the scheme has one (``subtype`` says which).
      Forms that look like other numbers (a bare 9/11/12-digit run, the NHS "943 476 5919"
      grouping, which is also a US phone number) count only next to a keyword ("SSN",
      "NHS", "CPF", "Aadhaar", …) or when ``country`` (ISO 3166 alpha-2, the clinic's
      country) is the id's own.
    - ``date_of_birth``: a date right after "DOB", "date of birth", "born", "fecha de
      nacimiento", "nacido/a", "data de nascimento", "nascido/a", "जन्म तिथि", … (or right
      before "(DOB)"). A date on its own — an appointment — is not a finding.
    - ``medical_record_number``: an id of 3+ digits after "MRN", "medical record",
      "record no.", "patient ID", "historia clínica", "NHC", "prontuário", …
    - ``diagnosis`` / ``medication``: a built-in English/Spanish/Portuguese/Hindi list.
    - ``custom_term``: the clinic's ``extra_terms``.

    Words match whole (so "anxiously" is not "anxiety" and "archive" is not "HIV"),
    ignoring case and accents ("DEPRESION" is "depresión"); a few acronyms that are also
    ordinary words match only in capitals ("AIDS", not "hearing aids"). Numbers labelled
    as a phone, booking reference or order are left alone. ``allow_terms`` are phrases
    never to flag — the clinic's own name or address ("Centro de Ansiedad Madrid").

``Finding(kind, label, excerpt, start, end, subtype=None)``
    ``label`` is a sentence for staff ("Looks like a US Social Security number");
    ``excerpt`` is the matched text, with ids and dates mostly masked ("•••-••-••10") so
    it can be shown and logged; ``text[start:end]`` is the match.

``policy_decision(findings, policy) -> Decision(allowed, needs_confirmation, reason)``
    ``policy`` is the clinic's setting: "allow" (send, note it), "warn" (send after the
    author confirms) or "block". ``reason`` names what was found, e.g. "Blocked: the
    message contains a medication name (sertraline)".

Pure and deterministic: no I/O, no clock.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Decision", "Finding", "FindingKind", "Policy", "detect", "policy_decision"]

FindingKind = Literal[
    "national_id", "date_of_birth", "medical_record_number", "diagnosis", "medication", "custom_term"
]
Policy = Literal["allow", "warn", "block"]


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    label: str
    excerpt: str
    start: int
    end: int
    subtype: str | None = None  # national ids: us_ssn, es_dni, es_nie, br_cpf, in_aadhaar, uk_nhs


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    needs_confirmation: bool
    reason: str


# --- normalization ---------------------------------------------------------------------

# Dropped when folding: Latin diacritics (so "depresión" ~ "depresion"), the Devanagari
# nukta (so "ज़" ~ "ज", both spellings are common) and zero-width joiners. Devanagari
# vowel signs and viramas stay: they change the word.
_DROPPED = re.compile("[\u0300-\u036f\u093c\u200c\u200d]")


def _fold(text: str) -> tuple[str, list[int]]:
    """Case- and accent-folded text with ASCII digits, plus each folded char's index in ``text``."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch.isdecimal() and not ch.isascii():
            rep = str(unicodedata.decimal(ch))  # "१२/०३/१९८०" is a date too
        else:
            rep = _DROPPED.sub("", unicodedata.normalize("NFD", ch.casefold()))
        out.append(rep)
        index.extend([i] * len(rep))
    index.append(len(text))
    return "".join(out), index


# Word characters for boundaries: \w misses Devanagari vowel signs and viramas (they are
# marks), which would let "मधुमेह" match inside a longer word. Danda and digits are excluded.
_W = r"\w\u0900-\u0963\u0971-\u097f"
_WORD_START = rf"(?<![{_W}])"
_WORD_END = rf"(?![{_W}])"


def _term_pattern(term: str, *, plural: bool) -> str | None:
    folded = _fold(term.strip())[0]
    if not folded:
        return None
    parts = [re.escape(w) for w in re.split(r"[\s\-]+", folded) if w]
    pattern = r"[\s\-]+".join(parts)
    if plural and folded[-1].isascii() and folded[-1].isalpha():
        pattern += "(?:e?s)?"  # anxiety/anxieties is beyond this; cancers, ansiedades, tumores are not
    return pattern


def _terms_regex(terms: Iterable[str], *, plural: bool) -> re.Pattern[str] | None:
    patterns = {p for t in terms if (p := _term_pattern(t, plural=plural))}
    if not patterns:
        return None
    # Longest first, so "bipolar disorder" wins over "bipolar".
    alternation = "|".join(sorted(patterns, key=len, reverse=True))
    return re.compile(f"{_WORD_START}(?:{alternation}){_WORD_END}")


# --- built-in vocabularies -------------------------------------------------------------
# Nouns for conditions, not moods: "anxious", "depressed", "worried" (Hindi "चिंता" alone
# is "worry": "चिंता न करें" = "don't worry") are everyday words in appointment chat.

_DIAGNOSES = (
    # English
    "depression", "major depressive disorder", "anxiety disorder", "anxiety", "panic disorder",
    "bipolar", "bipolar disorder", "schizophrenia", "schizoaffective", "psychosis", "HIV",
    "AIDS", "diabetes", "cancer", "tumor", "tumour", "leukemia", "leukaemia", "chemotherapy",
    "ADHD", "PTSD", "OCD", "obsessive compulsive disorder", "autism", "autistic", "eating disorder",
    "anorexia", "bulimia", "dementia", "alzheimer", "epilepsy", "hepatitis",
    "tuberculosis", "multiple sclerosis", "parkinson", "borderline personality disorder",
    "personality disorder", "substance use disorder", "alcoholism", "addiction", "self-harm",
    "suicidal", "suicide attempt", "miscarriage", "abortion", "HPV", "syphilis", "chlamydia",
    "gonorrhea", "herpes", "STI", "STD",
    # Spanish
    "depresión", "ansiedad", "trastorno de ansiedad", "trastorno bipolar", "esquizofrenia",
    "psicosis", "VIH", "sida", "cáncer", "leucemia", "quimioterapia", "TDAH", "TEPT", "TOC",
    "trastorno obsesivo compulsivo", "autismo", "trastorno del espectro autista",
    "trastorno alimentario", "trastorno de la conducta alimentaria", "demencia", "alzhéimer",
    "epilepsia", "esclerosis múltiple", "párkinson", "adicción", "alcoholismo", "autolesión",
    "autolesiones", "suicidio", "intento de suicidio", "ideación suicida", "aborto", "sífilis",
    "trastorno límite de la personalidad",
    # Portuguese
    "depressão", "ansiedade", "transtorno de ansiedade", "transtorno bipolar", "psicose", "câncer",
    "cancro", "transtorno obsessivo-compulsivo", "transtorno do espectro autista",
    "transtorno alimentar", "demência", "epilepsia", "hepatite", "tuberculose",
    "esclerose múltipla", "dependência química", "alcoolismo", "automutilação", "suicídio",
    "tentativa de suicídio", "sífilis", "transtorno de personalidade borderline",
    # Hindi
    "अवसाद", "डिप्रेशन", "चिंता विकार", "एंग्जायटी", "द्विध्रुवी विकार", "बाइपोलर", "सिज़ोफ्रेनिया",
    "एचआईवी", "एड्स", "मधुमेह", "डायबिटीज़", "शुगर की बीमारी", "कैंसर", "कर्क रोग", "ऑटिज़्म",
    "मिर्गी", "तपेदिक", "टीबी", "मनोभ्रंश", "आत्महत्या", "नशे की लत",
)  # fmt: skip

_MEDICATIONS = (
    # International non-proprietary names (English) and common brands
    "sertraline", "fluoxetine", "paroxetine", "citalopram", "escitalopram", "venlafaxine",
    "duloxetine", "bupropion", "mirtazapine", "trazodone", "amitriptyline", "lithium",
    "quetiapine", "olanzapine", "risperidone", "aripiprazole", "clozapine", "haloperidol",
    "lamotrigine", "valproate", "valproic acid", "carbamazepine", "methylphenidate",
    "lisdexamfetamine", "atomoxetine", "diazepam", "lorazepam", "alprazolam", "clonazepam",
    "zolpidem", "insulin", "metformin", "levothyroxine", "methadone", "buprenorphine",
    "naltrexone", "antiretroviral", "antidepressant", "antipsychotic", "benzodiazepine",
    "Prozac", "Zoloft", "Lexapro", "Xanax", "Valium", "Ritalin", "Adderall",
    "Seroquel", "Abilify", "Truvada", "Ozempic", "semaglutide",
    # Not "Concerta": in Spanish and Portuguese it is "arrange"/"fix" ("concerta tu cita").
    # Spanish / Portuguese spellings (accents fold away: "bupropión" ~ "bupropion")
    "sertralina", "fluoxetina", "paroxetina", "venlafaxina", "duloxetina", "mirtazapina",
    "trazodona", "amitriptilina", "litio", "carbonato de litio", "quetiapina", "olanzapina",
    "risperidona", "aripiprazol", "clozapina", "lamotrigina", "ácido valproico",
    "valproato", "carbamazepina", "metilfenidato", "lisdexanfetamina", "atomoxetina",
    "insulina", "metformina", "levotiroxina", "metadona", "buprenorfina", "naltrexona",
    "antirretroviral", "antidepresivo", "antidepressivo", "antipsicótico", "benzodiazepina",
    # Hindi (transliterated names are what patients write)
    "इंसुलिन", "लिथियम", "मेटफॉर्मिन", "सर्ट्रालाइन", "फ्लूऑक्सेटीन", "अवसादरोधी",
)  # fmt: skip

# Acronyms that are also ordinary words ("hearing aids", "toc toc", "std::string"):
# matched only when written in capitals.
_CAPITALS_ONLY = frozenset({"aids", "toc", "std", "sti"})


def _capitals_only(folded_match: str) -> bool:
    return any(folded_match.removesuffix(suffix) in _CAPITALS_ONLY for suffix in ("", "s", "es"))


_DIAGNOSIS_RE = _terms_regex(_DIAGNOSES, plural=True)
_MEDICATION_RE = _terms_regex(_MEDICATIONS, plural=True)

# --- national ids ----------------------------------------------------------------------

# A number that is not the tail of a longer one, a "+34 …" phone, a path or a decimal …
_NUM_START = r"(?<![\w+\-/.])(?<!\d[ .\-])(?<!\+\d )(?<!\+\d\d )(?<!\+\d\d\d )"
# … and not the head of one either (card numbers, phone numbers with more groups).
_NUM_END = r"(?![\w\-/]|[.,]\d|[ \-]\d)"

_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _ssn_ok(digits: str) -> bool:
    # Never issued: area 000, 666, 900-999; group 00; serial 0000.
    # Docs: https://www.ssa.gov/employer/randomization.html
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _dni_ok(digits: str, letter: str) -> bool:
    return _DNI_LETTERS[int(digits) % 23] == letter.upper()


def _cpf_ok(digits: str) -> bool:
    if len(set(digits)) == 1:  # 111.111.111-11 passes the arithmetic but is not issued
        return False
    nums = [int(d) for d in digits]
    for n in (9, 10):
        check = sum(nums[i] * (n + 1 - i) for i in range(n)) * 10 % 11 % 10
        if check != nums[n]:
            return False
    return True


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def _aadhaar_ok(digits: str) -> bool:
    # 12 digits, never starting with 0 or 1, the last a Verhoeff check digit.
    # Docs: https://uidai.gov.in/en/283-faqs/aadhaar-online-services/e-aadhaar.html
    if digits[0] in "01":
        return False
    c = 0
    for i, d in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][int(d)]]
    return c == 0


def _nhs_ok(digits: str) -> bool:
    # Modulus 11 with weights 10..2; a remainder giving 10 means the number is invalid.
    # Docs: https://www.datadictionary.nhs.uk/attributes/nhs_number.html
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


@dataclass(frozen=True, slots=True)
class _IdRule:
    subtype: str
    label: str
    noun: str
    pattern: re.Pattern[str]
    valid: Callable[[str, re.Match[str]], bool]
    strong: bool  # distinctive enough to flag without a keyword
    country: str
    keywords: str
    # Without a keyword, a number of this shape is more likely a phone number.
    phone_shape: re.Pattern[str] | None = None


def _digits(m: re.Match[str]) -> str:
    return re.sub(r"\D", "", m.group(0))


_ID_KEYWORDS = {
    "us_ssn": r"\bssn\b|social\s+security|soc\.?\s*sec\b",
    "es_dni": r"\bd\.?n\.?i\b|\bnie\b|\bnif\b|documento\s+nacional",
    "br_cpf": r"\bcpf\b",
    "in_aadhaar": r"\baadhaa?r\b|आधार|\buidai\b|\buid\b",
    "uk_nhs": r"\bnhs\b|\bchi\s+(?:number|no)|health\s+and\s+care\s+number",
}
_GENERIC_ID_KEYWORDS = (
    r"\bid\s+(?:number|no\b)|national\s+id|identity\s+(?:card|number)|numero\s+de\s+identificacion"
    r"|documento\s+de\s+identidad|numero\s+de\s+documento|identidade"
)
# Labels that say a number is something else: the nearest label before it wins.
_NOT_AN_ID = (
    r"\bref\b|\brefs?\.|reference|referencia|booking|reservation|\breserva|\border\b|pedido|invoice|factura"
    r"|fatura|receipt|recibo|localizador|confirmation|tracking|\btel\b|\btelf?\.|phone|mobile|\bcell\b"
    r"|\bcall\b|whatsapp|\bmovil\b|telefono|celular|telefone|\bfone\b|\bfax\b|फोन|मोबाइल"
)

_ID_RULES: tuple[_IdRule, ...] = (
    _IdRule(
        "us_ssn",
        "Looks like a US Social Security number",
        "a US Social Security number",
        re.compile(_NUM_START + r"\d{3}-\d{2}-\d{4}" + _NUM_END),
        lambda d, m: _ssn_ok(d),
        strong=True,
        country="US",
        keywords=_ID_KEYWORDS["us_ssn"],
    ),
    _IdRule(
        "us_ssn",
        "Looks like a US Social Security number",
        "a US Social Security number",
        re.compile(_NUM_START + r"\d{3}( ?)\d{2}\1\d{4}" + _NUM_END),
        lambda d, m: _ssn_ok(d),
        strong=False,
        country="US",
        keywords=_ID_KEYWORDS["us_ssn"],
    ),
    _IdRule(
        "es_dni",
        "Looks like a Spanish DNI number",
        "a Spanish DNI number",
        re.compile(r"(?<![\w\-/.])(?:\d{8}|\d{2}\.\d{3}\.\d{3})-?[a-z](?!\w)"),
        lambda d, m: _dni_ok(d, m.group(0)[-1]),
        strong=True,
        country="ES",
        keywords=_ID_KEYWORDS["es_dni"],
    ),
    _IdRule(
        "es_nie",
        "Looks like a Spanish NIE number",
        "a Spanish NIE number",
        re.compile(r"(?<![\w\-/.])[xyz]-?\d{7}-?[a-z](?!\w)"),
        lambda d, m: _dni_ok(str("xyz".index(m.group(0)[0])) + d, m.group(0)[-1]),
        strong=True,
        country="ES",
        keywords=_ID_KEYWORDS["es_dni"],
    ),
    _IdRule(
        "br_cpf",
        "Looks like a Brazilian CPF number",
        "a Brazilian CPF number",
        re.compile(_NUM_START + r"\d{3}\.\d{3}\.\d{3}-\d{2}" + _NUM_END),
        lambda d, m: _cpf_ok(d),
        strong=True,
        country="BR",
        keywords=_ID_KEYWORDS["br_cpf"],
    ),
    _IdRule(
        "br_cpf",
        "Looks like a Brazilian CPF number",
        "a Brazilian CPF number",
        re.compile(_NUM_START + r"\d{11}" + _NUM_END),
        lambda d, m: _cpf_ok(d),
        strong=False,
        country="BR",
        keywords=_ID_KEYWORDS["br_cpf"],
        phone_shape=re.compile(r"[1-9][1-9]9\d{8}"),  # a mobile: area code, then 9
    ),
    _IdRule(
        "in_aadhaar",
        "Looks like an Indian Aadhaar number",
        "an Indian Aadhaar number",
        re.compile(_NUM_START + r"[2-9]\d{3} \d{4} \d{4}" + _NUM_END),
        lambda d, m: _aadhaar_ok(d),
        strong=True,
        country="IN",
        keywords=_ID_KEYWORDS["in_aadhaar"],
    ),
    _IdRule(
        "in_aadhaar",
        "Looks like an Indian Aadhaar number",
        "an Indian Aadhaar number",
        re.compile(_NUM_START + r"[2-9]\d{3}(-?)\d{4}\1\d{4}" + _NUM_END),
        lambda d, m: _aadhaar_ok(d),
        strong=False,
        country="IN",
        keywords=_ID_KEYWORDS["in_aadhaar"],
        phone_shape=re.compile(r"91[6-9]\d{9}"),  # "91" + a mobile, written without the "+"
    ),
    _IdRule(
        "uk_nhs",
        "Looks like a UK NHS number",
        "a UK NHS number",
        re.compile(_NUM_START + r"\d{3}([ \-]?)\d{3}\1\d{4}" + _NUM_END),
        lambda d, m: _nhs_ok(d),
        strong=False,  # "943 476 5919" is also how a US phone number is written
        country="GB",
        keywords=_ID_KEYWORDS["uk_nhs"],
    ),
)

_ID_NOUNS = {rule.subtype: rule.noun for rule in _ID_RULES}
_NOT_AN_ID_RE = re.compile(_NOT_AN_ID)
_KEYWORD_WINDOW = 40  # characters before a number that may label it


def _id_context(folded: str, start: int, keywords: str) -> Literal["own", "other", "none"]:
    """What labels the number at ``start``: its own keyword, a not-an-id label, or nothing."""
    window = folded[max(0, start - _KEYWORD_WINDOW) : start]
    own = [m.end() for m in re.finditer(f"{keywords}|{_GENERIC_ID_KEYWORDS}", window)]
    other = [m.end() for m in _NOT_AN_ID_RE.finditer(window)]
    if not own and not other:
        return "none"
    return "own" if max(own, default=-1) > max(other, default=-1) else "other"


# --- dates of birth --------------------------------------------------------------------

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec"
    "|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre"
    "|ene|abr|ago|dic"
    "|janeiro|fevereiro|marco|maio|junho|julho|setembro|outubro|novembro|dezembro|fev|mai|set|out|dez"
    "|जनवरी|फरवरी|मार्च|अप्रैल|मई|जून|जुलाई|अगस्त|सितंबर|सितम्बर|अक्टूबर|अक्तूबर|नवंबर|नवम्बर|दिसंबर|दिसम्बर"
)
_DAY = r"(?:3[01]|[12]\d|0?[1-9])"
_DATE_RES = (
    # 12/03/1980, 12-03-80, 12.03.1980 (day and month in either order)
    re.compile(r"(?<![\d/.\-])(\d{1,2})([./\-])(\d{1,2})\2(\d{4}|\d{2})(?![\d/\-]|\.\d)"),
    # 1980-03-12
    re.compile(r"(?<![\d/.\-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d/\-]|\.\d)"),
    # 12 March 1980, 12th of March, 1980, 3 de mayo de 1985, 12 de março de 1980, 12 मार्च 1980
    re.compile(
        rf"(?<!\d){_DAY}(?:st|nd|rd|th|º|°)?\s+(?:of\s+|de\s+)?(?:{_MONTHS})\.?,?\s+(?:de\s+|del\s+)?\d{{4}}(?!\d)"
    ),
    # March 12, 1980
    re.compile(rf"(?<![a-z])(?:{_MONTHS})\.?\s+{_DAY}(?:st|nd|rd|th)?,?\s+\d{{4}}(?!\d)"),
)
_DOB_KEYWORDS = (
    r"date\s+of\s+birth|birth\s*date|\bd\.?o\.?b\b\.?|\bborn\b"
    r"|fecha\s+de\s+nacimiento|\bf\.\s*nac\b\.?|\bnacid[oa]s?\b|\bnacimiento\b"
    r"|data\s+de\s+nascimento|\bnascid[oa]s?\b|\bnascimento\b"
    r"|जन्म\s*तिथि|जन्मतिथि|जन्म\s*दिनांक|जन्म\s*की\s*तारीख|जन्म"
)
# Between the keyword and the date only punctuation and little words may stand:
# "DOB: 12/03/1980", "born on 3 March 1980", "nacida el 3 de mayo de 1985", "nascido em …".
# The runs are possessive (++) so a long run of spaces cannot be split up in every
# possible way when the match fails.
_DOB_CONNECTOR = (
    r"(?:[\s:,.=()\-\u2013]++|\b(?:is|was|on|the|of|el|la|es|fue|em|e|foi|no|na|dia|de|del|da|do)\b"
    r"|है|का|की|को)"
)
_DOB_BEFORE_RE = re.compile(rf"(?:{_DOB_KEYWORDS}){_DOB_CONNECTOR}{{0,8}}$")
_DOB_AFTER_RE = re.compile(r"\s*[(\[,\-\u2013]?\s*(?:d\.?o\.?b\b|date\s+of\s+birth|born\b|को\s+जन्म|को\s+पैदा)")


def _plausible_numeric_date(m: re.Match[str]) -> bool:
    if m.re is _DATE_RES[0]:
        a, b = int(m.group(1)), int(m.group(3))
        return (1 <= a <= 31 and 1 <= b <= 12) or (1 <= a <= 12 and 1 <= b <= 31)
    if m.re is _DATE_RES[1]:
        return 1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(3)) <= 31
    return True


# --- medical record numbers ------------------------------------------------------------

_MRN_KEYWORDS = (
    r"\bmrn\b|medical\s+records?(?:\s+(?:number|no\b\.?|#))?|\brecord\s+(?:no\b\.?|number|#)"
    r"|patient\s+(?:id|number|no\b\.?)|hospital\s+(?:number|no\b\.?)|chart\s+(?:number|no\b\.?|#)"
    r"|historia\s+clinica|historial\s+clinico|\bn\.?h\.?c\b\.?|expediente(?:\s+(?:medico|clinico))?"
    r"|numero\s+de\s+paciente|prontuario|registro\s+(?:medico|clinico|do\s+paciente)"
    r"|मेडिकल\s+रिकॉर्ड|चिकित्सा\s+रिकॉर्ड|मरीज\s+आईडी|रोगी\s+आईडी"
)
_MRN_CONNECTOR = (
    r"(?:[\s:#.=\-\u2013]++|\bn[o°º](?!\w)\.?|\bnumber\b|\bnumero\b|\bnum\b\.?|\bis\b|\bes\b|\be\b|\bdo\b"
    r"|\bdel\b|\bde\b|\bda\b|नंबर|संख्या)"
)
_MRN_ID = r"(?P<id>(?:[a-z]{1,4}[\-/]?)?\d{3,}(?:[\-/ ]\d+)*)(?![\w\-/])"  # 3+ digits, maybe a prefix
_MRN_RE = re.compile(rf"(?:{_MRN_KEYWORDS}){_MRN_CONNECTOR}{{0,6}}{_MRN_ID}")

# --- detection -------------------------------------------------------------------------

_TERM_LABELS = {
    "diagnosis": "Mentions a diagnosis or health condition",
    "medication": "Mentions a medication",
    "custom_term": "Contains a term your clinic marked as sensitive",
}
_DOB_LABEL = "Looks like a date of birth"
_MRN_LABEL = "Looks like a medical record number"
_COUNTRY_ALIASES = {"UK": "GB"}


def _mask(text: str, keep: int = 2) -> str:
    """Every letter and digit as "•" except the last ``keep``; separators stay for shape."""
    positions = [i for i, ch in enumerate(text) if ch.isalnum()]
    hidden = set(positions[: max(len(positions) - keep, 0)])
    return "".join("•" if i in hidden else ch for i, ch in enumerate(text))


def detect(
    text: str,
    *,
    extra_terms: Iterable[str] = (),
    allow_terms: Iterable[str] = (),
    country: str | None = None,
) -> list[Finding]:
    """Findings of likely PHI in ``text``, in order (see the module docstring)."""
    if not text or not text.strip():
        return []
    folded, index = _fold(text)
    home = _COUNTRY_ALIASES.get((country or "").upper(), (country or "").upper())
    findings: list[Finding] = []

    def add(
        kind: FindingKind, label: str, fstart: int, fend: int, *, masked: bool, subtype: str | None = None
    ) -> None:
        start, end = index[fstart], index[fend]
        excerpt = text[start:end]
        findings.append(Finding(kind, label, _mask(excerpt) if masked else excerpt, start, end, subtype))

    for rule in _ID_RULES:
        for m in rule.pattern.finditer(folded):
            digits = _digits(m)
            if not rule.valid(digits, m):
                continue
            context = _id_context(folded, m.start(), rule.keywords)
            if context == "other":
                continue
            # Weak shapes need a keyword, or the clinic's own country and no phone look.
            if (
                context == "none"
                and not rule.strong
                and (home != rule.country or (rule.phone_shape and rule.phone_shape.fullmatch(digits)))
            ):
                continue
            add("national_id", rule.label, m.start(), m.end(), masked=True, subtype=rule.subtype)

    for date_re in _DATE_RES:
        for m in date_re.finditer(folded):
            if not _plausible_numeric_date(m):
                continue
            before = folded[max(0, m.start() - 60) : m.start()]
            if _DOB_BEFORE_RE.search(before) or _DOB_AFTER_RE.match(folded, m.end()):
                add("date_of_birth", _DOB_LABEL, m.start(), m.end(), masked=True)

    for m in _MRN_RE.finditer(folded):
        add("medical_record_number", _MRN_LABEL, m.start("id"), m.end("id"), masked=True)

    term_sources: list[tuple[FindingKind, re.Pattern[str] | None]] = [
        ("medication", _MEDICATION_RE),
        ("diagnosis", _DIAGNOSIS_RE),
        ("custom_term", _terms_regex(extra_terms, plural=False)),
    ]
    for kind, regex in term_sources:
        if regex is None:
            continue
        for m in regex.finditer(folded):
            original = text[index[m.start()] : index[m.end()]]
            if kind != "custom_term" and _capitals_only(m.group(0)) and not original.isupper():
                continue
            add(kind, _TERM_LABELS[kind], m.start(), m.end(), masked=False)

    return _tidy(findings, text, allow_terms)


def _tidy(findings: list[Finding], text: str, allow_terms: Iterable[str]) -> list[Finding]:
    allowed_re = _terms_regex(allow_terms, plural=False)
    allowed: list[tuple[int, int]] = []
    if allowed_re is not None:
        folded, index = _fold(text)
        allowed = [(index[m.start()], index[m.end()]) for m in allowed_re.finditer(folded)]
    seen: set[tuple[int, int]] = set()
    kept: list[Finding] = []
    # Findings were added ids → dates → MRNs → medications → diagnoses → custom terms, so a
    # span found twice keeps its most specific kind.
    for f in findings:
        if (f.start, f.end) in seen or any(a < f.end and f.start < b for a, b in allowed):
            continue
        seen.add((f.start, f.end))
        kept.append(f)
    return sorted(kept, key=lambda f: (f.start, f.end))


# --- policy ----------------------------------------------------------------------------

_NOUNS: dict[str, tuple[str, str]] = {
    "date_of_birth": ("a date of birth", "dates of birth"),
    "medical_record_number": ("a medical record number", "medical record numbers"),
    "diagnosis": ("a diagnosis", "diagnoses"),
    "medication": ("a medication name", "medication names"),
    "custom_term": ("a term your clinic marked as sensitive", "terms your clinic marked as sensitive"),
}
_MAX_EXAMPLES = 3


def _describe(findings: Sequence[Finding]) -> str:
    groups: dict[str, list[str]] = {}
    for f in findings:
        key = f.subtype if f.kind == "national_id" and f.subtype else f.kind
        examples = groups.setdefault(key, [])
        if f.excerpt.casefold() not in (e.casefold() for e in examples):
            examples.append(f.excerpt)
    phrases = []
    for key, examples in groups.items():
        if key in _NOUNS:
            singular, plural = _NOUNS[key]
        else:
            singular = _ID_NOUNS.get(key, "an identity number")
            plural = singular.split(" ", 1)[1] + "s"
        noun = singular if len(examples) == 1 else plural
        shown = ", ".join(examples[:_MAX_EXAMPLES]) + (", …" if len(examples) > _MAX_EXAMPLES else "")
        phrases.append(f"{noun} ({shown})")
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def policy_decision(findings: Sequence[Finding], policy: Policy) -> Decision:
    """Apply the clinic's PHI policy to the findings of one message."""
    if policy not in ("allow", "warn", "block"):
        raise ValueError(f"unknown PHI policy {policy!r}: use 'allow', 'warn' or 'block'")
    if not findings:
        return Decision(allowed=True, needs_confirmation=False, reason="No sensitive information found.")
    what = _describe(findings)
    if policy == "block":
        return Decision(
            allowed=False, needs_confirmation=False, reason=f"Blocked: the message contains {what}."
        )
    if policy == "warn":
        return Decision(
            allowed=True,
            needs_confirmation=True,
            reason=f"Please confirm: the message contains {what}.",
        )
    return Decision(allowed=True, needs_confirmation=False, reason=f"Allowed: the message contains {what}.")
