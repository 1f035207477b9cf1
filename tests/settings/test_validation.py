"""Pure validation of the clinic and messaging settings (no database)."""

from __future__ import annotations

import pytest

from wa_portal.services import clinic_settings as svc

GOOD_MESSAGING = {
    "phi_policy": "block",
    "phi_terms": "  Sertralina \nsertralina\n\nBurnout programme  \n",
    "fallback_chain": ["sms", "", "email"],
    "critical_timeout_minutes": "45",
    "max_attempts": "3",
    "emergency_to_opted_out": False,
}


def test_messaging_values_are_cleaned():
    result = svc.validate_messaging(GOOD_MESSAGING)
    assert result.ok, result.errors
    assert result.values == {
        "phi_policy": "block",
        "phi_terms": ["Sertralina", "Burnout programme"],
        "fallback_chain": ["sms", "email"],
        "critical_timeout_minutes": 45,
        "max_attempts": 3,
        "emergency_to_opted_out": False,
    }


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"phi_policy": "maybe"}, "phi_policy", "allow, warn or block"),
        ({"phi_terms": "\n".join(f"term{i}" for i in range(201))}, "phi_terms", "At most 200 terms"),
        ({"phi_terms": "x" * 101}, "phi_terms", "at most 100 characters"),
        ({"fallback_chain": ["", "", ""]}, "fallback_chain", "at least one channel"),
        ({"fallback_chain": ["sms", "whatsapp", "sms"]}, "fallback_chain", "SMS is chosen twice"),
        ({"fallback_chain": ["fax"]}, "fallback_chain", "Unknown channel"),
        ({"critical_timeout_minutes": "0"}, "critical_timeout_minutes", "from 1 to 1440"),
        ({"critical_timeout_minutes": "1441"}, "critical_timeout_minutes", "from 1 to 1440"),
        ({"critical_timeout_minutes": "half an hour"}, "critical_timeout_minutes", "whole number"),
        ({"max_attempts": "21"}, "max_attempts", "from 1 to 20"),
        ({"max_attempts": ""}, "max_attempts", "from 1 to 20"),
    ],
)
def test_messaging_errors_in_words(change, field, words):
    result = svc.validate_messaging({**GOOD_MESSAGING, **change})
    assert not result.ok
    assert words in result.errors[field]
    assert set(result.errors) == {field}


def test_200_terms_are_allowed_and_duplicates_do_not_count():
    terms = "\n".join([f"term{i}" for i in range(200)] + ["TERM1", "term2 "])
    result = svc.validate_messaging({**GOOD_MESSAGING, "phi_terms": terms})
    assert result.ok
    assert len(result.values["phi_terms"]) == 200


GOOD_CLINIC = {
    "name": "  Sunrise   Therapy ",
    "timezone": "America/Sao_Paulo",
    "locale": "pt",
    "country": "br",
}


def test_clinic_values_are_cleaned():
    result = svc.validate_clinic(GOOD_CLINIC)
    assert result.ok, result.errors
    assert result.values == {
        "name": "Sunrise Therapy",
        "timezone": "America/Sao_Paulo",
        "locale": "pt",
        "country": "BR",
    }


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"name": "   "}, "name", "Enter the clinic's name"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "not a timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone", "not a timezone"),
        ({"timezone": ""}, "timezone", "Choose a timezone"),
        ({"locale": "fr"}, "locale", "Choose one of the languages"),
        ({"country": "XX"}, "country", "not a two-letter country code"),
        ({"country": "ESP"}, "country", "not a two-letter country code"),
    ],
)
def test_clinic_errors_in_words(change, field, words):
    result = svc.validate_clinic({**GOOD_CLINIC, **change})
    assert not result.ok
    assert words in result.errors[field]
