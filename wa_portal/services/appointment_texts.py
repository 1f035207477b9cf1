"""Appointment message texts in English, Spanish, Brazilian Portuguese and Hindi, with localized dates.

Pure domain logic: plain values in, plain values out (no Flask, no models).

Public API
----------
``render(kind: str, *, lang: str, ctx: AppointmentContext, buttons_supported: bool) -> RenderedText``
    The session-message text for ``kind``, the reply buttons to attach, and the body parameters of the
    WhatsApp utility template that carries the same content when the 24-hour window is closed.
``AppointmentContext(patient_first_name, clinic_name, therapist_name, starts_at, tz, locale, kind,
location=None, video_url=None, offered_slots=[])`` — ``starts_at`` and slots are aware datetimes,
``tz`` the clinic's IANA zone, ``locale`` the clinic's (``"es_ES"``, ``"pt_BR"``, ``"hi_IN"``,
``"en_GB"``), ``kind`` ``"in_person"`` or ``"video"``.
``RenderedText(text: str, buttons: list[tuple[str, str]], template_params: list[str])``
``TEMPLATE_BODIES: dict[tuple[str, str], str]`` — ``(purpose, lang)`` → utility template body with
``{{1}}`` patient first name, ``{{2}}`` therapist, ``{{3}}`` date and time, ``{{4}}`` place or link,
for purposes ``appointment_confirmation``, ``appointment_reminder``, ``appointment_cancellation``.
``template_purpose(kind: str) -> str | None`` — which template carries a kind (None: session only).
``ACTION_BUTTONS: dict[str, list[tuple[str, str]]]`` — per language, the confirm/cancel/reschedule
quick replies (also for the template's quick-reply buttons, so taps come back as the same payloads).
``TEMPLATE_LANGUAGE_CODES`` — our language → the code WhatsApp expects (``"pt"`` → ``"pt_BR"``).
``resolve_language(lang: str | None) -> str`` — ``"pt_BR"``/``"es-MX"``/``"en-GB"`` → base language;
anything unsupported → ``"en"``.
``KINDS`` — the kinds ``render`` accepts. Any ``reminder_<n><d|h|m>`` kind from
``reminder_plan`` is accepted too and uses the reminder text.

Kinds
-----
``confirmation`` (booked), ``reminder_*``, ``reschedule`` (the clinic moved it; states the new time),
``cancellation`` (the clinic cancelled it) are proactive and may need a template. The rest answer
the patient inside an open window and have no template (``template_params == []``):
``reschedule_offer`` (numbered ``ctx.offered_slots``; reply with a number, see
``keywords.classify(expecting_choice=True)``), ``confirmed_ack``, ``cancelled_ack``,
``rescheduled_ack`` (the move is done: states the new time), ``unknown_reply`` (a person will answer),
``opt_out_ack`` and ``opt_in_ack`` (each names the keyword that undoes it).

Rules the texts keep
--------------------
* No clinical detail: the context carries none, and texts say only "your appointment with
  <therapist>". Texts say the absolute date and time, never "tomorrow" or "in 2 hours", because
  quiet hours may move a reminder (see ``reminder_plan``).
* Dates and times are formatted by babel in the clinic's timezone. The babel locale is the
  clinic's when it speaks the message language, else the message language in the clinic's
  territory when CLDR has it (an English message from a Spanish clinic: ``en_ES``, 24-hour clock),
  else the language's default (``en_001``, ``es``, ``pt`` = Brazil, ``hi``). An unparsable clinic
  locale falls back the same way rather than failing a reminder job. Date and time are joined the
  way CLDR's "atTime" patterns do ("… at 10:00", "…, 10:00", "… às 10:00", "…, 10:00"); babel
  2.18 does not ship those patterns, so they live here.
* With ``buttons_supported`` the text carries no numeric instructions and the three buttons are
  returned (titles at most 20 characters, WhatsApp's limit); without, the text ends with
  "Reply 1 to confirm, 2 to cancel, 3 to reschedule." in the message language. Only the kinds that
  ask for an answer (confirmation, reminders, reschedule) get either.
* Template bodies close with "Reply to this message to …" rather than numbers, so they read right
  with or without quick-reply buttons; typed words and button payloads are both understood by
  ``keywords.classify``.
* ``template_params`` has exactly as many values as the kind's template has placeholders (the
  cancellation template has three: a link to a cancelled call only invites people to join it).
  Values never contain newlines or tabs and are never empty, which WhatsApp rejects; a blank first
  name becomes a neutral word ("there", "जी").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError, localedata
from babel.dates import format_date, format_time

__all__ = [
    "ACTION_BUTTONS",
    "KINDS",
    "SUPPORTED_LANGUAGES",
    "TEMPLATE_BODIES",
    "TEMPLATE_LANGUAGE_CODES",
    "AppointmentContext",
    "RenderedText",
    "format_when",
    "render",
    "resolve_language",
    "template_purpose",
]

SUPPORTED_LANGUAGES = ("en", "es", "pt", "hi")
KINDS = (
    "confirmation",
    "reminder_7d",
    "reminder_1d",
    "reminder_2h",
    "cancellation",
    "reschedule",
    "reschedule_offer",
    "confirmed_ack",
    "cancelled_ack",
    "rescheduled_ack",
    "unknown_reply",
    "opt_out_ack",
    "opt_in_ack",
)
# Meta's template language codes; our Portuguese is Brazilian. Docs:
# https://developers.facebook.com/docs/whatsapp/business-management-api/message-templates/supported-languages
TEMPLATE_LANGUAGE_CODES = {"en": "en", "es": "es", "pt": "pt_BR", "hi": "hi"}

_REMINDER_KIND = re.compile(r"reminder_\d+[dhm]")
_DEFAULT_LOCALE = {"en": "en_001", "es": "es", "pt": "pt", "hi": "hi"}
_BUTTON_PAYLOADS = ("appt:confirm", "appt:cancel", "appt:reschedule")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True, slots=True)
class AppointmentContext:
    """What a message may say about an appointment. Deliberately no field for clinical detail."""

    patient_first_name: str
    clinic_name: str
    therapist_name: str
    starts_at: datetime
    tz: str
    locale: str
    kind: Literal["in_person", "video"]
    location: str | None = None
    video_url: str | None = None
    offered_slots: list[datetime] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RenderedText:
    text: str
    buttons: list[tuple[str, str]]  # (payload id, title)
    template_params: list[str]


# One catalogue per language. Placeholders use the template syntax so the proactive heads double
# as template bodies: {{1}} name, {{2}} therapist, {{3}} date and time, {{4}} place or link;
# {{clinic}} and {{slots}} appear only in session texts.
_CATALOGUE: dict[str, dict[str, str]] = {
    "en": {
        "when": "{date} at {time}",
        "nameless": "there",
        "confirmation": "Hi {{1}}, your appointment with {{2}} is booked for {{3}}.",
        "reminder": "Hi {{1}}, this is a reminder of your appointment with {{2}} on {{3}}.",
        "reschedule": "Hi {{1}}, your appointment with {{2}} has been moved to {{3}}.",
        "cancellation": "Hi {{1}}, your appointment with {{2}} on {{3}} has been cancelled.",
        "where": "Where: {{4}}",
        "video": "video call, {url}",
        "video_pending": "video call, we will send you the link before the appointment",
        "reply_hint": "Reply to this message to confirm, cancel or reschedule.",
        "rebook_hint": "If you would like a new appointment, just reply to this message.",
        "actions": "Reply 1 to confirm, 2 to cancel, 3 to reschedule.",
        "reschedule_offer": (
            "Hi {{1}}, these times are available for your appointment with {{2}}:\n{{slots}}\n"
            "Reply with the number of the time that suits you."
        ),
        "confirmed_ack": "Thank you. Your appointment with {{2}} on {{3}} is confirmed.",
        "cancelled_ack": (
            "Thank you for letting us know. Your appointment with {{2}} on {{3}} has been cancelled."
        ),
        "rescheduled_ack": "Thank you. Your appointment with {{2}} is now on {{3}}.",
        "unknown_reply": (
            "Thank you for your message. A member of our team at {{clinic}} will get back to you soon."
        ),
        "opt_out_ack": (
            "You will no longer receive appointment messages from {{clinic}} on WhatsApp. "
            "Reply START if you want to receive them again."
        ),
        "opt_in_ack": (
            "You will receive appointment messages from {{clinic}} on WhatsApp again. "
            "Reply STOP at any time to stop them."
        ),
        "confirm": "Confirm",
        "cancel": "Cancel",
        "reschedule_button": "Reschedule",
    },
    "es": {
        "when": "{date}, {time}",
        "nameless": "paciente",
        "confirmation": "Hola, {{1}}. Su cita con {{2}} ha quedado reservada para el {{3}}.",
        "reminder": "Hola, {{1}}. Le recordamos su cita con {{2}} el {{3}}.",
        "reschedule": "Hola, {{1}}. Su cita con {{2}} se ha cambiado al {{3}}.",
        "cancellation": "Hola, {{1}}. Su cita con {{2}} del {{3}} ha sido cancelada.",
        "where": "Lugar: {{4}}",
        "video": "videollamada, {url}",
        "video_pending": "videollamada, le enviaremos el enlace antes de la cita",
        "reply_hint": "Responda a este mensaje para confirmar, cancelar o cambiar la cita.",
        "rebook_hint": "Si desea una nueva cita, responda a este mensaje.",
        "actions": "Responda 1 para confirmar, 2 para cancelar, 3 para cambiar la cita.",
        "reschedule_offer": (
            "Hola, {{1}}. Estos horarios están disponibles para su cita con {{2}}:\n{{slots}}\n"
            "Responda con el número del horario que prefiera."
        ),
        "confirmed_ack": "Gracias. Su cita con {{2}} del {{3}} queda confirmada.",
        "cancelled_ack": "Gracias por avisarnos. Su cita con {{2}} del {{3}} ha sido cancelada.",
        "rescheduled_ack": "Gracias. Su cita con {{2}} queda cambiada al {{3}}.",
        "unknown_reply": (
            "Gracias por su mensaje. Una persona del equipo de {{clinic}} le responderá en breve."
        ),
        "opt_out_ack": (
            "Ya no recibirá mensajes de citas de {{clinic}} por WhatsApp. "
            "Si quiere volver a recibirlos, responda ALTA."
        ),
        "opt_in_ack": (
            "Volverá a recibir mensajes de citas de {{clinic}} por WhatsApp. "
            "Puede responder BAJA en cualquier momento para dejar de recibirlos."
        ),
        "confirm": "Confirmar",
        "cancel": "Cancelar",
        "reschedule_button": "Cambiar cita",
    },
    "pt": {
        "when": "{date} às {time}",
        "nameless": "paciente",
        "confirmation": "Olá, {{1}}! Sua consulta com {{2}} está marcada para {{3}}.",
        "reminder": "Olá, {{1}}! Lembrete da sua consulta com {{2}}: {{3}}.",
        "reschedule": "Olá, {{1}}! Sua consulta com {{2}} foi remarcada para {{3}}.",
        "cancellation": "Olá, {{1}}! Sua consulta com {{2}} marcada para {{3}} foi cancelada.",
        "where": "Local: {{4}}",
        "video": "videochamada, {url}",
        "video_pending": "videochamada, enviaremos o link antes da consulta",
        "reply_hint": "Responda esta mensagem para confirmar, cancelar ou remarcar.",
        "rebook_hint": "Se quiser marcar um novo horário, é só responder esta mensagem.",
        "actions": "Responda 1 para confirmar, 2 para cancelar ou 3 para remarcar.",
        "reschedule_offer": (
            "Olá, {{1}}! Estes horários estão disponíveis para sua consulta com {{2}}:\n{{slots}}\n"
            "Responda com o número do horário que preferir."
        ),
        "confirmed_ack": "Obrigado! Sua consulta com {{2}} marcada para {{3}} está confirmada.",
        "cancelled_ack": "Obrigado por avisar. Sua consulta com {{2}} marcada para {{3}} foi cancelada.",
        "rescheduled_ack": "Obrigado! Sua consulta com {{2}} foi remarcada para {{3}}.",
        "unknown_reply": "Obrigado pela sua mensagem. Alguém da equipe de {{clinic}} vai responder em breve.",
        "opt_out_ack": (
            "Você não vai mais receber mensagens sobre consultas de {{clinic}} pelo WhatsApp. "
            "Para voltar a receber, responda VOLTAR."
        ),
        "opt_in_ack": (
            "Você voltará a receber mensagens sobre consultas de {{clinic}} pelo WhatsApp. "
            "Para parar, responda SAIR a qualquer momento."
        ),
        "confirm": "Confirmar",
        "cancel": "Cancelar",
        "reschedule_button": "Remarcar",
    },
    "hi": {
        "when": "{date}, {time}",
        "nameless": "जी",
        "confirmation": "नमस्ते {{1}}, {{3}} को {{2}} के साथ आपका अपॉइंटमेंट बुक हो गया है।",
        "reminder": "नमस्ते {{1}}, याद दिला दें कि {{3}} को {{2}} के साथ आपका अपॉइंटमेंट है।",
        "reschedule": "नमस्ते {{1}}, {{2}} के साथ आपका अपॉइंटमेंट अब {{3}} को है।",
        "cancellation": "नमस्ते {{1}}, {{3}} को {{2}} के साथ आपका अपॉइंटमेंट रद्द कर दिया गया है।",
        "where": "स्थान: {{4}}",
        "video": "वीडियो कॉल, {url}",
        "video_pending": "वीडियो कॉल, लिंक अपॉइंटमेंट से पहले भेजा जाएगा",
        "reply_hint": "पुष्टि करने, रद्द करने या समय बदलने के लिए इस संदेश का जवाब दें।",
        "rebook_hint": "नया समय चाहिए तो इस संदेश का जवाब दें।",
        "actions": "पुष्टि के लिए 1, रद्द करने के लिए 2, समय बदलने के लिए 3 लिखें।",
        "reschedule_offer": (
            "नमस्ते {{1}}, {{2}} के साथ आपके अपॉइंटमेंट के लिए ये समय उपलब्ध हैं:\n{{slots}}\n"
            "जो समय आपके लिए ठीक हो, उसका नंबर लिखकर भेजें।"
        ),
        "confirmed_ack": "धन्यवाद। {{3}} को {{2}} के साथ आपके अपॉइंटमेंट की पुष्टि हो गई है।",
        "cancelled_ack": "बताने के लिए धन्यवाद। {{3}} को {{2}} के साथ आपका अपॉइंटमेंट रद्द कर दिया गया है।",
        "rescheduled_ack": "धन्यवाद। {{2}} के साथ आपका अपॉइंटमेंट अब {{3}} को है।",
        "unknown_reply": "आपके संदेश के लिए धन्यवाद। {{clinic}} की टीम का कोई सदस्य जल्द ही आपसे संपर्क करेगा।",
        "opt_out_ack": (
            "अब आपको WhatsApp पर {{clinic}} से अपॉइंटमेंट संदेश नहीं मिलेंगे। फिर से पाने के लिए शुरू या START लिखें।"
        ),
        "opt_in_ack": (
            "अब आपको WhatsApp पर {{clinic}} से फिर से अपॉइंटमेंट संदेश मिलेंगे। "
            "इन्हें बंद करने के लिए कभी भी रोकें या STOP लिखें।"
        ),
        "confirm": "पुष्टि करें",
        "cancel": "रद्द करें",
        "reschedule_button": "समय बदलें",
    },
}

# (head, closing lines, gets the place line, asks for an answer, template purpose)
_Spec = tuple[str, tuple[str, ...], bool, bool, str | None]
_SPECS: dict[str, _Spec] = {
    "confirmation": ("confirmation", (), True, True, "appointment_confirmation"),
    "reminder": ("reminder", (), True, True, "appointment_reminder"),
    # A moved appointment is, for the patient, a booking at the new time: the confirmation template
    # ("… is booked for {{3}}") says exactly that, so no fourth template needs approval.
    "reschedule": ("reschedule", (), True, True, "appointment_confirmation"),
    "cancellation": ("cancellation", ("rebook_hint",), False, False, "appointment_cancellation"),
    "reschedule_offer": ("reschedule_offer", (), False, False, None),
    "confirmed_ack": ("confirmed_ack", (), False, False, None),
    "cancelled_ack": ("cancelled_ack", ("rebook_hint",), False, False, None),
    "rescheduled_ack": ("rescheduled_ack", (), True, False, None),
    "unknown_reply": ("unknown_reply", (), False, False, None),
    "opt_out_ack": ("opt_out_ack", (), False, False, None),
    "opt_in_ack": ("opt_in_ack", (), False, False, None),
}


def _template_body(lang: str, purpose: str) -> str:
    lines = _CATALOGUE[lang]
    if purpose == "appointment_cancellation":
        return f"{lines['cancellation']}\n{lines['rebook_hint']}"
    head = "confirmation" if purpose == "appointment_confirmation" else "reminder"
    return f"{lines[head]}\n{lines['where']}\n{lines['reply_hint']}"


_PURPOSES = ("appointment_confirmation", "appointment_reminder", "appointment_cancellation")
TEMPLATE_BODIES: dict[tuple[str, str], str] = {
    (purpose, lang): _template_body(lang, purpose) for purpose in _PURPOSES for lang in SUPPORTED_LANGUAGES
}
ACTION_BUTTONS: dict[str, list[tuple[str, str]]] = {
    lang: list(zip(_BUTTON_PAYLOADS, (c["confirm"], c["cancel"], c["reschedule_button"]), strict=True))
    for lang, c in _CATALOGUE.items()
}


def resolve_language(lang: str | None) -> str:
    """The supported base language for ``lang`` (``"pt_BR"`` → ``"pt"``); English when unsupported."""
    base = re.split(r"[-_]", (lang or "").strip().lower(), maxsplit=1)[0]
    return base if base in _CATALOGUE else "en"


def template_purpose(kind: str) -> str | None:
    """The utility template that can carry ``kind`` outside the 24-hour window, or None."""
    return _SPECS[_spec_key(kind)][4]


def _spec_key(kind: str) -> str:
    if _REMINDER_KIND.fullmatch(kind):
        return "reminder"
    if kind not in _SPECS:
        raise ValueError(f"unknown message kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


@lru_cache(maxsize=64)
def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {tz!r}: expected an IANA name such as 'Europe/Madrid'") from exc


@lru_cache(maxsize=64)
def _date_locale(lang: str, clinic_locale: str) -> Locale:
    try:
        clinic: Locale | None = Locale.parse(clinic_locale.strip().replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        clinic = None
    if clinic is not None:
        if clinic.language == lang:
            return clinic
        if clinic.territory and localedata.exists(f"{lang}_{clinic.territory}"):
            return Locale(lang, clinic.territory)
    return Locale.parse(_DEFAULT_LOCALE[lang])


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _param(value: str) -> str:
    # WhatsApp rejects template parameters with newlines, tabs or more than four consecutive spaces
    # (error 132018); session texts use the same cleaned values so both read the same. Docs:
    # https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
    return re.sub(r"[ \t\r\n\f\v]+", " ", value).strip()


def _fill(pattern: str, values: Mapping[str, str]) -> str:
    # One pass over the pattern, so a "{{3}}" inside a patient's or therapist's name stays literal.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], pattern)


def _when(moment: datetime, zone: ZoneInfo, locale: Locale, lang: str) -> str:
    local = moment.astimezone(zone)
    return _CATALOGUE[lang]["when"].format(
        date=format_date(local.date(), "full", locale=locale),
        time=format_time(local, "short", tzinfo=zone, locale=locale),
    )


def format_when(moment: datetime, *, tz: str, lang: str, clinic_locale: str) -> str:
    """A time as appointment messages write it, in the patient's language ("Monday, 7 December …")."""
    language = resolve_language(lang)
    return _when(moment, _zone(tz), _date_locale(language, clinic_locale), language)


def _place(ctx: AppointmentContext, lines: Mapping[str, str]) -> str:
    if ctx.kind == "video":
        url = _param(ctx.video_url or "")
        return lines["video"].format(url=url) if url else lines["video_pending"]
    if ctx.kind == "in_person":
        # Without an address the clinic's name still tells the patient where to go.
        return _param(ctx.location or "") or _param(ctx.clinic_name)
    raise ValueError(f"unknown appointment kind {ctx.kind!r}; expected 'in_person' or 'video'")


def render(kind: str, *, lang: str, ctx: AppointmentContext, buttons_supported: bool) -> RenderedText:
    """The text, buttons and template parameters for one appointment message in the patient's language."""
    key = _spec_key(kind)
    head, closing, with_place, asks_answer, purpose = _SPECS[key]
    language = resolve_language(lang)
    lines = _CATALOGUE[language]
    _require_aware(ctx.starts_at, "starts_at")
    zone = _zone(ctx.tz)
    locale = _date_locale(language, ctx.locale)

    therapist, clinic = _param(ctx.therapist_name), _param(ctx.clinic_name)
    if not therapist or not clinic:
        raise ValueError("therapist_name and clinic_name must not be blank")
    values = {
        "1": _param(ctx.patient_first_name) or lines["nameless"],
        "2": therapist,
        "3": _when(ctx.starts_at, zone, locale, language),
        "4": _place(ctx, lines),
        "clinic": clinic,
        "slots": "",
    }
    if key == "reschedule_offer":
        if not ctx.offered_slots:
            raise ValueError("reschedule_offer needs at least one slot in ctx.offered_slots")
        for slot in ctx.offered_slots:
            _require_aware(slot, "offered_slots")
        values["slots"] = "\n".join(
            f"{n}. {_when(slot, zone, locale, language)}" for n, slot in enumerate(ctx.offered_slots, 1)
        )

    parts = [_fill(lines[head], values)]
    if with_place:
        parts.append(_fill(lines["where"], values))
    parts.extend(lines[name] for name in closing)
    buttons: list[tuple[str, str]] = []
    if asks_answer:
        if buttons_supported:
            buttons = list(ACTION_BUTTONS[language])
        else:
            parts.append(lines["actions"])

    params: list[str] = []
    if purpose is not None:
        count = len(set(_PLACEHOLDER.findall(TEMPLATE_BODIES[(purpose, language)])))
        params = [values[str(n)] for n in range(1, count + 1)]
    return RenderedText(text="\n".join(parts), buttons=buttons, template_params=params)
