"""One message text, adapted for each channel: WhatsApp markup to plain text, HTML, SMS segments, email.

API
---
``whatsapp_to_plain(text) -> str``
    Drops WhatsApp's markers — *bold*, _italic_, ~strike~, triple-backtick monospace and
    single-backtick inline code — where WhatsApp would format, and only there: 2*3=6,
    snake_case_names, e-mail addresses and URLs come through untouched.

``whatsapp_to_html(text) -> str``
    The same markup as ``<strong>``, ``<em>``, ``<s>``, ``<code>``; http(s) URLs as links
    with ``rel="noopener"``; blank lines as paragraphs, single newlines as ``<br>``.
    Everything else is escaped, and the result is sanitized by nh3 down to exactly
    those tags, so it is safe to embed.

``sms_encoding(text) -> "GSM-7" | "UCS-2"``
    GSM-7 when every character is in the GSM 03.38 basic set or its extension table.

``sms_segments(text) -> list[str]``
    The parts a long SMS is sent in: one part of up to 160 septets (GSM-7) or 70 UTF-16
    units (UCS-2), else parts of 153 / 67 (the rest carries the concatenation header).
    Extension characters (``€ [ ] { } ~ ^ | \\``) cost two septets and an emoji two units;
    neither is ever split. Parts end after whitespace where possible.
    ``"".join(sms_segments(t)) == t``; an empty text has no segments.

``fit_sms(text, max_segments=3) -> str``
    Plain text for SMS: markup dropped, whitespace normalized, typographic quotes and
    dashes replaced by their GSM-7 look-alikes (one curly apostrophe would otherwise halve
    the room per segment). If it still needs more than ``max_segments`` it is cut at a word
    and ends in an ellipsis, keeping a trailing URL. The ellipsis is "…" in UCS-2 texts
    and "..." in GSM-7 ones, because "…" is not in GSM-7 and would switch the whole
    message to UCS-2.

``email_parts(text, *, subject, clinic_name) -> EmailParts(subject, text, html)``
    A one-line subject (no CR/LF can reach the header), a plain-text part, and a small
    inline-styled HTML email with the clinic's name as its header.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import nh3

__all__ = [
    "EmailParts",
    "SmsEncoding",
    "email_parts",
    "fit_sms",
    "sms_encoding",
    "sms_segments",
    "whatsapp_to_html",
    "whatsapp_to_plain",
]

SmsEncoding = Literal["GSM-7", "UCS-2"]

# --- WhatsApp markup -------------------------------------------------------------------

# Protected spans (code, URLs, e-mail addresses) are swapped for one private-use character
# each while the markup regexes run, so "https://x.org/_a_/" or "john_doe@x.org" can never
# look like italics. Style markers get private-use characters too; none of them is a word
# character, so they behave like punctuation next to the markup regexes.
_SLOT_BASE = 0xF0000  # Supplementary Private Use Area-A: never in real messages
_SLOT_RE = re.compile("[\U000f0000-\U000fffff]")
_STYLE_OPEN = {"strong": "\U00100000", "em": "\U00100001", "s": "\U00100002"}
_STYLE_CLOSE = {"strong": "\U00100010", "em": "\U00100011", "s": "\U00100012"}
_RESERVED_RE = re.compile("[\U000f0000-\U000fffff\U00100000-\U0010ffff]")

_CODE_BLOCK_RE = re.compile(r"```(?=[^`])(.+?)```", re.DOTALL)
_INLINE_CODE_RE = re.compile(r"`([^`\n]+)`")
_URL_RE = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL_TRAILING = ".,;:!?'\""


def _markup_re(marker: str) -> re.Pattern[str]:
    m = re.escape(marker)
    # WhatsApp formats only when the markers hug the text ("* a *" is not bold) and sit at
    # a word's edge ("2*3*4" and "snake_case_name" are left alone). One line at most.
    return re.compile(rf"(?<![\w{m}]){m}(?![\s{m}])([^\n]+?)(?<![\s{m}]){m}(?![\w{m}])")


_MARKUP = (("strong", _markup_re("*")), ("em", _markup_re("_")), ("s", _markup_re("~")))
# Where a marker could open a formatted span (used to tell "…/page_*" from "*…/page*").
_OPENERS = {m: re.compile(rf"(?<![\w{re.escape(m)}]){re.escape(m)}(?![\s{re.escape(m)}])") for m in "*_~"}


@dataclass(slots=True)
class _Marked:
    """Text with protected spans swapped out and style markers in place."""

    text: str
    slots: list[tuple[Literal["code", "url", "email"], str]]


def _trim_url(url: str, wrapper: str) -> str:
    # "see https://x.org/a." — the full stop ends the sentence, not the URL; a closing
    # bracket belongs to the URL only if it opened one ("…/Foo_(bar)"); a trailing * _ ~
    # is markup only when that marker opened earlier on the line ("*see https://x.org*").
    trailing = _URL_TRAILING + wrapper
    while url and (url[-1] in trailing or (url[-1] == ")" and url.count(")") > url.count("("))):
        url = url[:-1]
    return url


def _mark(text: str) -> _Marked:
    text = _RESERVED_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    slots: list[tuple[Literal["code", "url", "email"], str]] = []

    def slot(kind: Literal["code", "url", "email"], raw: str) -> str:
        slots.append((kind, raw))
        return chr(_SLOT_BASE + len(slots) - 1)

    # Nothing is formatted inside monospace, so code goes first.
    text = _CODE_BLOCK_RE.sub(lambda m: slot("code", m.group(1)), text)
    text = _INLINE_CODE_RE.sub(lambda m: slot("code", m.group(1)), text)

    def url(m: re.Match[str]) -> str:
        line = m.string[m.string.rfind("\n", 0, m.start()) + 1 : m.start()]
        wrapper = "".join(marker for marker, opener in _OPENERS.items() if opener.search(line))
        raw = _trim_url(m.group(0), wrapper)
        return slot("url", raw) + m.group(0)[len(raw) :] if "://" in raw else m.group(0)

    text = _URL_RE.sub(url, text)
    text = _EMAIL_RE.sub(lambda m: slot("email", m.group(0)), text)

    # A few passes so nesting in either order works: "*_both_*" and "_*both*_".
    for _ in range(3):
        before = text
        for style, pattern in _MARKUP:
            text = pattern.sub(rf"{_STYLE_OPEN[style]}\1{_STYLE_CLOSE[style]}", text)
        if text == before:
            break
    return _Marked(text, slots)


_Slots = list[tuple[Literal["code", "url", "email"], str]]


def _unslot(text: str, slots: _Slots, render: Callable[..., str]) -> str:
    return _SLOT_RE.sub(lambda m: render(*slots[ord(m.group(0)) - _SLOT_BASE]), text)


def whatsapp_to_plain(text: str) -> str:
    """The text without WhatsApp's formatting markers (only where WhatsApp would format)."""
    marked = _mark(text)
    plain = marked.text
    for style in _STYLE_OPEN:
        plain = plain.replace(_STYLE_OPEN[style], "").replace(_STYLE_CLOSE[style], "")
    return _unslot(plain, marked.slots, lambda _kind, raw: raw)


_HTML_TAGS = {"p", "br", "strong", "em", "s", "code", "a"}


def whatsapp_to_html(text: str) -> str:
    """WhatsApp-formatted text as a safe HTML fragment (p, br, strong, em, s, code, a only)."""
    marked = _mark(text)
    body = html.escape(marked.text, quote=True)
    for style in _STYLE_OPEN:
        body = body.replace(_STYLE_OPEN[style], f"<{style}>").replace(_STYLE_CLOSE[style], f"</{style}>")
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", body)]
    body = "".join(f"<p>{p.replace(chr(10), '<br>')}</p>" for p in paragraphs if p.strip())

    def render(kind: str, raw: str) -> str:
        if kind == "code":
            return "<code>" + html.escape(raw, quote=True).replace("\n", "<br>") + "</code>"
        if kind == "url":
            escaped = html.escape(raw, quote=True)
            return f'<a href="{escaped}">{escaped}</a>'
        return html.escape(raw, quote=True)

    body = _unslot(body, marked.slots, render)
    # Belt and braces: whatever the code above got wrong, only these tags survive.
    return nh3.clean(
        body,
        tags=_HTML_TAGS,
        attributes={"a": {"href"}},
        link_rel="noopener",
        url_schemes={"http", "https"},
    )


# --- SMS -------------------------------------------------------------------------------

# GSM 03.38 default alphabet (3GPP TS 23.038 §6.2.1), in code order 0x00-0x7F. 0x1B is
# the escape to the extension table, not a character. Note what is *not* here: á í ó ú
# (Spanish acute vowels other than é), ã õ ê ç (Portuguese), any Devanagari. The national
# language shift tables that add them need a UDH most gateways do not send.
# Docs: https://www.3gpp.org/ftp/Specs/archive/23_series/23.038/
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
) - {"\x1b"}
# Extension table: sent as ESC + code, so each costs two septets.
_GSM_EXTENDED = frozenset("\f^{}\\[~]|€")

_LIMITS: dict[SmsEncoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def sms_encoding(text: str) -> SmsEncoding:
    """GSM-7 if every character is in the GSM 03.38 basic or extension table, else UCS-2."""
    return "GSM-7" if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text) else "UCS-2"


def _cost_fn(encoding: SmsEncoding) -> Callable[[str], int]:
    if encoding == "GSM-7":
        return lambda ch: 2 if ch in _GSM_EXTENDED else 1
    # UCS-2 on the wire is really UTF-16: a character outside the BMP is a surrogate pair.
    return lambda ch: 2 if ord(ch) > 0xFFFF else 1


def _glued(text: str, i: int) -> bool:
    """Would a break before text[i] split a visible character (a mark, ZWJ sequence, skin tone)?"""
    ch, prev = text[i], text[i - 1]
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or ch in "\u200d\ufe0f"
        or prev == "\u200d"
        or 0x1F3FB <= ord(ch) <= 0x1F3FF
    )


def sms_segments(text: str) -> list[str]:
    """The parts this text is sent in as SMS (see the module docstring for the limits)."""
    if not text:
        return []
    encoding = sms_encoding(text)
    cost = _cost_fn(encoding)
    single, multi = _LIMITS[encoding]
    if sum(map(cost, text)) <= single:
        return [text]
    segments: list[str] = []
    start = 0
    while start < len(text):
        used = 0
        end = start
        last_space = None
        while end < len(text) and used + cost(text[end]) <= multi:
            used += cost(text[end])
            end += 1
            if text[end - 1].isspace():
                last_space = end
        if end < len(text):
            if last_space is not None and last_space > start:
                end = last_space
            else:
                # One word longer than a part: cut it, but not through a visible character.
                while end - 1 > start and _glued(text, end):
                    end -= 1
        segments.append(text[start:end])
        start = end
    return segments


# Typographic characters people paste from word processors, with GSM-7 look-alikes.
_GSM_LOOKALIKES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u00ab": '"',
        "\u00bb": '"',
    }
)
_HSPACE_RE = re.compile(r"[^\S\n]+")  # any whitespace but newline (incl. NBSP, thin space)
_TRAILING_URL_RE = re.compile(r"(?:^|\s)(https?://\S+)$", re.IGNORECASE)


def _normalize_for_sms(text: str) -> str:
    plain = whatsapp_to_plain(text)
    if sms_encoding(plain.translate(_GSM_LOOKALIKES)) == "GSM-7":
        # Only swap them when that makes the text GSM-7: in an emoji message they cost nothing.
        plain = plain.translate(_GSM_LOOKALIKES)
    plain = _HSPACE_RE.sub(" ", plain)
    plain = re.sub(r" ?\n ?", "\n", plain)
    plain = re.sub(r"\n{3,}", "\n\n", plain)
    return plain.strip()


def _ellipsized(head: str, url: str | None) -> str:
    tail = f" {url}" if url else ""
    ellipsis = "…" if sms_encoding(head + tail) == "UCS-2" else "..."
    return head + ellipsis + tail


def fit_sms(text: str, max_segments: int = 3) -> str:
    """Plain SMS text in at most ``max_segments`` parts, cut at a word with an ellipsis if needed."""
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    plain = _normalize_for_sms(text)

    def fits(candidate: str) -> bool:
        return len(sms_segments(candidate)) <= max_segments

    if fits(plain):
        return plain
    match = _TRAILING_URL_RE.search(plain)
    url = match.group(1) if match else None
    body = plain[: match.start(1)].rstrip() if match else plain
    # No prefix longer than this many characters can fit, whatever the encoding.
    longest = max_segments * _LIMITS["GSM-7"][0]
    attempts = [(body, url), (body, None)] if url else [(body, None)]
    for source, keep_url in attempts:
        cuts = [m.start() for m in re.finditer(r"\s", source) if m.start() <= longest]
        for cut in reversed(cuts):
            head = source[:cut].rstrip(" ,;:-\n")
            if head and fits(candidate := _ellipsized(head, keep_url)):
                return candidate
    # No word boundary works (one enormous word, or a text that is only a long URL):
    # cut at a character, though never inside a visible one.
    for cut in range(min(len(plain), longest), 0, -1):
        if _glued(plain, cut):
            continue
        if fits(candidate := _ellipsized(plain[:cut], None)):
            return candidate
    raise AssertionError("unreachable: a one-character prefix plus an ellipsis always fits")


# --- e-mail ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailParts:
    subject: str
    text: str
    html: str


_FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_INLINE_STYLES = {
    "<p>": '<p style="margin:0 0 16px 0;">',
    "<a ": '<a style="color:#0b6bcb;text-decoration:underline;" ',
    "<code>": (
        '<code style="font-family:Menlo,Consolas,monospace;font-size:14px;'
        'background-color:#f1f3f5;padding:1px 4px;border-radius:4px;">'
    ),
}

_EMAIL_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{subject}</title>
</head>
<body style="margin:0;padding:0;background-color:#f4f5f7;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" \
style="background-color:#f4f5f7;">
<tr><td align="center" style="padding:24px 12px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" \
style="max-width:600px;background-color:#ffffff;border:1px solid #e3e6ea;border-radius:8px;">
<tr><td style="padding:20px 28px;border-bottom:1px solid #e3e6ea;font-family:{font};\
font-size:18px;font-weight:600;color:#1f2933;">{clinic}</td></tr>
<tr><td style="padding:24px 28px 8px 28px;font-family:{font};font-size:16px;line-height:1.5;\
color:#1f2933;">{body}</td></tr>
</table>
<p style="margin:16px 0 0 0;font-family:{font};font-size:12px;color:#6b7280;">Sent by {clinic}</p>
</td></tr>
</table>
</body>
</html>
"""


def email_parts(text: str, *, subject: str, clinic_name: str) -> EmailParts:
    """The message as an e-mail: one-line subject, plain-text part, and an inline-styled HTML part."""
    clinic = " ".join(clinic_name.split())
    # Collapsing all whitespace also removes CR/LF, so nothing can inject a header.
    one_line_subject = " ".join(subject.split()) or clinic
    plain_body = whatsapp_to_plain(text).strip()
    plain = f"{plain_body}\n\n-- \n{clinic}\n" if clinic else f"{plain_body}\n"
    body = whatsapp_to_html(text)
    # Safe to add after sanitizing: these are our own attributes on tags nh3 let through.
    for tag, styled in _INLINE_STYLES.items():
        body = body.replace(tag, styled)
    document = _EMAIL_TEMPLATE.format(
        subject=html.escape(one_line_subject),
        clinic=html.escape(clinic),
        body=body,
        font=_FONT,
    )
    return EmailParts(subject=one_line_subject, text=plain, html=document)
