"""Phone numbers: E.164 normalization with phonenumbers, masking for logs and pages."""

from __future__ import annotations

import phonenumbers


class InvalidPhone(ValueError):
    pass


def normalize(raw: str, country: str | None = None) -> str:
    """Return the E.164 form of ``raw`` (``country`` is the default region for national numbers)."""
    text = (raw or "").strip()
    for prefix in ("whatsapp:", "tel:", "sms:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    if text and text[0].isdigit() and not country:
        text = "+" + text  # wa_id style: digits with the country code, no plus
    try:
        num = phonenumbers.parse(text, (country or "").upper() or None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(num):
        raise InvalidPhone("not a possible phone number")
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def mask(phone: str | None) -> str:
    """Show only the country code and the last four digits: ``+34 ••••• 5678``."""
    if not phone:
        return "—"
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) <= 4:
        return "•" * len(digits)
    try:
        cc = str(phonenumbers.parse("+" + digits).country_code)
    except phonenumbers.NumberParseException:
        cc = ""
    hidden = "•" * max(len(digits) - len(cc) - 4, 1)
    return f"+{cc} {hidden} {digits[-4:]}" if cc else f"{hidden}{digits[-4:]}"


def display(phone: str | None) -> str:
    """International format for people who may see the full number (staff of the clinic)."""
    if not phone:
        return ""
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        return phone
