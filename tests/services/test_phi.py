"""PHI detection in English, Spanish, Portuguese and Hindi, and the clinic policy applied to it.

The ids below are checksum-valid published examples (the SSA's, the NHS's, Spain's
12345678Z / X1234567L, Brazil's 529.982.247-25) or were computed for these tests.
"""

from __future__ import annotations

import dataclasses
import unicodedata

import pytest

from wa_portal.services.phi import Decision, Finding, detect, policy_decision

# (text, kind, subtype, the text the finding covers)
TRUE_POSITIVES = [
    # --- English
    ("SSN 536-22-8410 on file", "national_id", "us_ssn", "536-22-8410"),
    ("Your social security number 536 22 8410 was received", "national_id", "us_ssn", "536 22 8410"),
    # Dashed, the SSN shape is distinctive enough without a keyword.
    ("Your employer asked for 536-22-8410", "national_id", "us_ssn", "536-22-8410"),
    ("NHS number: 943 476 5919", "national_id", "uk_nhs", "943 476 5919"),
    ("DOB: 03/12/1980", "date_of_birth", None, "03/12/1980"),
    ("Ana was born on March 3, 1980 in Leeds", "date_of_birth", None, "March 3, 1980"),
    ("Date of birth 1980-03-12", "date_of_birth", None, "1980-03-12"),
    ("Patient: Ana Ruiz, 12 March 1980 (DOB)", "date_of_birth", None, "12 March 1980"),
    ("MRN: 00123456", "medical_record_number", None, "00123456"),
    ("Medical record no. A-204518", "medical_record_number", None, "A-204518"),
    ("Keep taking sertraline 50 mg", "medication", None, "sertraline"),
    ("Lithium levels are due", "medication", None, "Lithium"),
    ("Refill for your METHYLPHENIDATE", "medication", None, "METHYLPHENIDATE"),
    ("Session notes: bipolar disorder, stable", "diagnosis", None, "bipolar disorder"),
    ("Your HIV test result is ready", "diagnosis", None, "HIV"),
    ("PTSD support group on Monday", "diagnosis", None, "PTSD"),
    ("Living with anxiety is hard", "diagnosis", None, "anxiety"),
    ("Leaflet: living with AIDS", "diagnosis", None, "AIDS"),
    # --- Spanish
    ("DNI 12345678Z", "national_id", "es_dni", "12345678Z"),
    ("Su NIE es X-1234567-L", "national_id", "es_nie", "X-1234567-L"),
    ("Envíe su documento 12.345.678-z", "national_id", "es_dni", "12.345.678-z"),
    ("Fecha de nacimiento: 12/03/1980", "date_of_birth", None, "12/03/1980"),
    ("Nacida el 3 de mayo de 1985", "date_of_birth", None, "3 de mayo de 1985"),
    ("Historia clínica nº 123456", "medical_record_number", None, "123456"),
    ("NHC: 2023/0457", "medical_record_number", None, "2023/0457"),
    ("Diagnóstico: depresión", "diagnosis", None, "depresión"),
    ("DEPRESION leve", "diagnosis", None, "DEPRESION"),  # no accent, capitals
    ("Tome sertralina por la mañana", "medication", None, "sertralina"),
    ("Evaluación de TDAH", "diagnosis", None, "TDAH"),
    ("Control de VIH", "diagnosis", None, "VIH"),
    ("Trastornos de ansiedades múltiples", "diagnosis", None, "ansiedades"),
    # --- Portuguese
    ("CPF 529.982.247-25", "national_id", "br_cpf", "529.982.247-25"),
    ("Meu CPF é 52998224725", "national_id", "br_cpf", "52998224725"),
    ("Data de nascimento: 12/03/1980", "date_of_birth", None, "12/03/1980"),
    ("Nascido em 12 de março de 1980", "date_of_birth", None, "12 de março de 1980"),
    ("Prontuário 2023-000123", "medical_record_number", None, "2023-000123"),
    ("Tratamento para depressão", "diagnosis", None, "depressão"),
    ("Crises de ansiedade", "diagnosis", None, "ansiedade"),
    ("Continue com fluoxetina", "medication", None, "fluoxetina"),
    ("Consulta sobre transtorno obsessivo compulsivo", "diagnosis", None, "transtorno obsessivo compulsivo"),
    # --- Hindi
    ("जन्म तिथि: 12/03/1980", "date_of_birth", None, "12/03/1980"),
    ("जन्म तिथि १२/०३/१९८०", "date_of_birth", None, "१२/०३/१९८०"),  # Devanagari digits
    ("मरीज़ को अवसाद है", "diagnosis", None, "अवसाद"),
    ("आपको मधुमेह है", "diagnosis", None, "मधुमेह"),
    ("डायबिटीज की जांच", "diagnosis", None, "डायबिटीज"),  # written without the nukta
    ("इंसुलिन समय पर लें", "medication", None, "इंसुलिन"),
    ("आधार 2345 6789 0124", "national_id", "in_aadhaar", "2345 6789 0124"),
    ("Aadhaar: 234567890124", "national_id", "in_aadhaar", "234567890124"),
]


@pytest.mark.parametrize(("text", "kind", "subtype", "covered"), TRUE_POSITIVES)
def test_true_positives(text: str, kind: str, subtype: str | None, covered: str) -> None:
    findings = detect(text)
    assert [(f.kind, f.subtype, text[f.start : f.end]) for f in findings] == [(kind, subtype, covered)]


TRUE_NEGATIVES = [
    # --- English
    "Your appointment is on 12/03/2027 at 10:00",
    "Call us on +1 555 123 4567 or +44 20 7946 0958",
    "Our number is 943 476 5919",  # NHS-valid digits, but written like a US phone and unlabelled
    "The session costs $120.00 (or €95,50)",
    "Booking reference: 536-22-8410",  # SSN-shaped, but labelled as something else
    "We anxiously await your reply",  # adjectives and adverbs are not diagnoses
    "Sorry you felt anxious and depressed about the wait",
    "Cancellation policy: 24 hours notice",
    "Please archive this message",  # contains "hiv"
    "Hearing aids and visual aids are available",  # "aids" in lower case
    "Our clinic: 1 Main St, Suite 400, Springfield, IL 62704",
    "Bring your date of birth certificate. Appointment: 12/03/2027",
    "Please record your symptoms: 3 times a day",
    "Card ending 4242 4242 4242 4242",
    # --- Spanish
    "Su cita es el 12/03/2027 a las 10:00",
    "Llámenos al +34 600 111 222",
    "Código de reserva: ABX-12345",
    "Calle Mayor 12, 28013 Madrid",
    "Precio: 45,00 €. Concerta tu cita en línea",
    "Estamos ansiosos por verte",
    "Toc, toc: ¿hay alguien?",
    # --- Portuguese
    "Sua consulta é dia 12/03/2027 às 10h",
    "Valor: R$ 150,00",
    "Ligue (11) 98765-4321",
    "Pedido 529.982.247-25",  # CPF-shaped order number
    "Estamos ansiosos para vê-lo",
    # --- Hindi
    "आपकी अपॉइंटमेंट 12/03/2027 को सुबह 10:00 बजे है",
    "चिंता न करें, हम आपकी मदद करेंगे",  # "don't worry"
    "कृपया +91 98765 43210 पर कॉल करें",
]


@pytest.mark.parametrize("text", TRUE_NEGATIVES)
def test_true_negatives(text: str) -> None:
    assert detect(text) == []


def test_tables_are_big_enough() -> None:
    assert len(TRUE_POSITIVES) >= 25
    assert len(TRUE_NEGATIVES) >= 15


def test_anxiously_is_not_anxiety_but_anxiety_is() -> None:
    """Decision: only condition nouns are listed; "anxious(ly)" and "depressed" are everyday words."""
    assert detect("We anxiously await") == []
    assert [f.excerpt for f in detect("Anxiety and anxieties")] == ["Anxiety"]


def test_several_findings_in_order_with_offsets() -> None:
    text = "Ana (DOB 12/03/1980, MRN 00123456) takes sertraline for depresión."
    findings = detect(text)
    assert [f.kind for f in findings] == ["date_of_birth", "medical_record_number", "medication", "diagnosis"]
    assert [text[f.start : f.end] for f in findings] == ["12/03/1980", "00123456", "sertraline", "depresión"]


def test_offsets_survive_decomposed_accents_and_case_folding() -> None:
    text = unicodedata.normalize("NFD", "Paciente con DEPRESIÓN y ß ansiedad")
    findings = detect(text)
    assert [text[f.start : f.end] for f in findings] == [
        unicodedata.normalize("NFD", "DEPRESIÓN"),
        "ansiedad",
    ]


@pytest.mark.parametrize(
    ("text", "excerpt"),
    [
        ("SSN 536-22-8410", "•••-••-••10"),
        ("DNI 12345678Z", "•••••••8Z"),
        ("CPF 529.982.247-25", "•••.•••.•••-25"),
        ("DOB 12/03/1980", "••/••/••80"),
        ("MRN 00123456", "••••••56"),
        ("nacida el 3 de mayo de 1985", "• •• •••• •• ••85"),
        ("takes Sertraline", "Sertraline"),  # vocabulary words are not secret
    ],
)
def test_excerpts_mask_ids_and_dates(text: str, excerpt: str) -> None:
    (finding,) = detect(text)
    assert finding.excerpt == excerpt


@pytest.mark.parametrize(
    ("text", "subtype"),
    [
        ("943 476 5919", "uk_nhs"),
        ("9434765919", "uk_nhs"),
        ("536228410", "us_ssn"),
        ("234567890124", "in_aadhaar"),
        ("11144477735", "br_cpf"),
    ],
)
def test_ambiguous_number_shapes_count_only_in_their_own_country(text: str, subtype: str) -> None:
    home = {"uk_nhs": "GB", "us_ssn": "US", "in_aadhaar": "IN", "br_cpf": "BR"}[subtype]
    assert [f.subtype for f in detect(f"Number {text}", country=home)] == [subtype]
    assert [f.subtype for f in detect(f"Number {text}", country=home.lower())] == [subtype]
    assert detect(f"Number {text}") == []
    assert detect(f"Number {text}", country="ES") == []


def test_uk_is_an_alias_for_gb() -> None:
    assert [f.subtype for f in detect("Ref 943 476 5919 ok", country="UK")] == []  # labelled a reference
    assert [f.subtype for f in detect("943 476 5919", country="UK")] == ["uk_nhs"]


def test_phone_shaped_numbers_stay_phones_even_at_home() -> None:
    # Both pass their checksum, but are shaped like a Brazilian mobile / "91" + Indian mobile.
    assert detect("Ligue 52998224725", country="BR") == []
    assert detect("Number 919876543200", country="IN") == []
    # A keyword still wins.
    assert [f.subtype for f in detect("Aadhaar 919876543200")] == ["in_aadhaar"]


def test_checksums_reject_near_misses() -> None:
    assert detect("DNI 12345678A") == []
    assert detect("NIE X1234567A") == []
    assert detect("CPF 529.982.247-26") == []
    assert detect("CPF 111.111.111-11") == []  # passes the arithmetic, never issued
    assert detect("NHS number 943 476 5918") == []
    assert detect("Aadhaar 2345 6789 0125") == []
    assert detect("Aadhaar 1234 5678 9012") == []  # never starts with 0 or 1
    assert detect("SSN 666-22-8410") == []
    assert detect("SSN 912-22-8410") == []
    assert detect("SSN 536-00-8410") == []


def test_keyword_nearer_than_a_phone_label_wins() -> None:
    text = "Phone: +44 7700 900123. NHS 943 476 5919"
    assert [text[f.start : f.end] for f in detect(text)] == ["943 476 5919"]


def test_custom_terms_match_whole_words_ignoring_case_and_accents() -> None:
    findings = detect(
        "Sesión de TERAPIA DE PAREJA con la Dra. Núñez",
        extra_terms=["terapia de pareja", "Dra. Nuñez", "  ", "pare"],
    )
    assert [(f.kind, f.excerpt) for f in findings] == [
        ("custom_term", "TERAPIA DE PAREJA"),
        ("custom_term", "Dra. Núñez"),
    ]
    assert findings[0].label == "Contains a term your clinic marked as sensitive"


def test_custom_term_that_is_also_built_in_is_reported_once() -> None:
    findings = detect("sertraline", extra_terms=["Sertraline"])
    assert [f.kind for f in findings] == ["medication"]


def test_allow_terms_silence_the_clinics_own_name_and_address() -> None:
    text = "Centro de Ansiedad Madrid: su cita es mañana. Motivo: ansiedad."
    findings = detect(text, allow_terms=["Centro de Ansiedad Madrid"])
    assert [(f.excerpt, f.start) for f in findings] == [("ansiedad", text.rindex("ansiedad"))]


def test_labels_are_sentences() -> None:
    labels = {f.kind: f.label for f in detect("SSN 536-22-8410, DOB 12/03/1980, MRN 00123, lithium, HIV")}
    assert labels == {
        "national_id": "Looks like a US Social Security number",
        "date_of_birth": "Looks like a date of birth",
        "medical_record_number": "Looks like a medical record number",
        "medication": "Mentions a medication",
        "diagnosis": "Mentions a diagnosis or health condition",
    }


def test_empty_text() -> None:
    assert detect("") == []
    assert detect("   \n") == []


def test_finding_is_frozen() -> None:
    (finding,) = detect("lithium")
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.kind = "diagnosis"  # type: ignore[misc]


# --- policy ----------------------------------------------------------------------------


def test_no_findings_is_allowed_under_every_policy() -> None:
    for policy in ("allow", "warn", "block"):
        decision = policy_decision([], policy)  # type: ignore[arg-type]
        assert decision.allowed and not decision.needs_confirmation


def test_block_names_the_finding() -> None:
    decision = policy_decision(detect("Keep taking sertraline"), "block")
    assert decision == Decision(
        allowed=False,
        needs_confirmation=False,
        reason="Blocked: the message contains a medication name (sertraline).",
    )


def test_warn_asks_for_confirmation() -> None:
    decision = policy_decision(detect("DNI 12345678Z"), "warn")
    assert decision.allowed and decision.needs_confirmation
    assert decision.reason == "Please confirm: the message contains a Spanish DNI number (•••••••8Z)."


def test_allow_sends_but_still_says_why() -> None:
    decision = policy_decision(detect("HIV"), "allow")
    assert decision.allowed and not decision.needs_confirmation
    assert decision.reason == "Allowed: the message contains a diagnosis (HIV)."


def test_reason_groups_kinds_and_never_shows_an_id_in_clear() -> None:
    text = "SSN 536-22-8410. Takes lithium and sertraline and Lithium. Depression, anxiety."
    decision = policy_decision(detect(text), "block")
    assert decision.reason == (
        "Blocked: the message contains a US Social Security number (•••-••-••10), "
        "medication names (lithium, sertraline) and diagnoses (Depression, anxiety)."
    )
    assert "536-22" not in decision.reason


def test_reason_shortens_long_lists() -> None:
    findings = detect("lithium, sertraline, insulin, metformin, quetiapine")
    assert policy_decision(findings, "block").reason == (
        "Blocked: the message contains medication names (lithium, sertraline, insulin, …)."
    )


def test_unknown_policy_is_an_error() -> None:
    finding = Finding("medication", "Mentions a medication", "lithium", 0, 7)
    with pytest.raises(ValueError, match="unknown PHI policy"):
        policy_decision([finding], "maybe")  # type: ignore[arg-type]
