"""Adapting one message text to WhatsApp, SMS and e-mail."""

from __future__ import annotations

import re
import unicodedata

import pytest

from wa_portal.services.channel_text import (
    EmailParts,
    email_parts,
    fit_sms,
    sms_encoding,
    sms_segments,
    whatsapp_to_html,
    whatsapp_to_plain,
)

# --- whatsapp_to_plain -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("*Reminder*: see you _tomorrow_", "Reminder: see you tomorrow"),
        ("~10:00~ 11:00", "10:00 11:00"),
        ("Code: ```A1-B2```", "Code: A1-B2"),
        ("Use `inline` here", "Use inline here"),
        ("*_bold italic_* and _*italic bold*_", "bold italic and italic bold"),
        ("(*bracketed*)", "(bracketed)"),
        ("*¡Hola!*", "¡Hola!"),
        ("*x*", "x"),
        # Not formatting: leave the characters alone.
        ("2*3=6 and 2*3*4=24", "2*3=6 and 2*3*4=24"),
        ("5 * 3 * 2", "5 * 3 * 2"),
        ("snake_case_names and __init__ and _private", "snake_case_names and __init__ and _private"),
        ("write to ana_maria_lopez@clinic.example", "write to ana_maria_lopez@clinic.example"),
        ("https://example.com/a_b_/_c_/~d~/*e*", "https://example.com/a_b_/_c_/~d~/*e*"),
        ("~5 min to ~10 min", "~5 min to ~10 min"),
        ("* not bold *", "* not bold *"),
        ("**double**", "**double**"),
        ("*spans\ntwo lines*", "*spans\ntwo lines*"),
        ("`*not bold in code*`", "*not bold in code*"),
        ("```\n_keep_ this\n```", "\n_keep_ this\n"),
        ("*see https://x.example/a_b_c*", "see https://x.example/a_b_c"),
        ("", ""),
    ],
)
def test_whatsapp_to_plain(text: str, plain: str) -> None:
    assert whatsapp_to_plain(text) == plain


def test_plain_keeps_newlines_and_unicode() -> None:
    text = "*Cita confirmada* ✅\r\nडॉक्टर _शर्मा_ 😀"
    assert whatsapp_to_plain(text) == "Cita confirmada ✅\nडॉक्टर शर्मा 😀"


# --- whatsapp_to_html ------------------------------------------------------------------


def test_html_formats_like_whatsapp() -> None:
    assert whatsapp_to_html("*Bold* _it_ ~gone~ `x = 1`") == (
        "<p><strong>Bold</strong> <em>it</em> <s>gone</s> <code>x = 1</code></p>"
    )


def test_html_escapes_before_formatting() -> None:
    out = whatsapp_to_html('<script>alert("x")</script> *<b>hi</b>* & <img src=x onerror=alert(1)>')
    assert "<script" not in out and "<img" not in out and "<b>" not in out
    assert "&lt;script&gt;" in out
    assert "<strong>&lt;b&gt;hi&lt;/b&gt;</strong>" in out
    assert "&amp;" in out


def test_html_paragraphs_and_line_breaks() -> None:
    assert whatsapp_to_html("Hello Ana,\n\nLine one\nLine two\n\n\n") == (
        "<p>Hello Ana,</p><p>Line one<br>Line two</p>"
    )


def test_html_links_http_urls_only() -> None:
    out = whatsapp_to_html(
        "Confirm: https://clinic.example/c?a=1&b=_x_. Or javascript:alert(1) or ftp://x.example"
    )
    assert (
        '<a href="https://clinic.example/c?a=1&amp;b=_x_" rel="noopener">https://clinic.example/c?a=1&amp;b=_x_</a>.'
    ) in out
    assert out.count("<a ") == 1
    assert "<em>" not in out  # the underscores in the URL stayed literal


def test_html_url_in_parentheses_and_bold() -> None:
    assert whatsapp_to_html("(https://x.example/Foo_(bar)) *https://x.example*") == (
        '<p>(<a href="https://x.example/Foo_(bar)" rel="noopener">https://x.example/Foo_(bar)</a>) '
        '<strong><a href="https://x.example" rel="noopener">https://x.example</a></strong></p>'
    )


def test_html_code_block_keeps_markup_literal_and_escaped() -> None:
    out = whatsapp_to_html("```if a < b:\n    *ptr = 1```")
    assert out == "<p><code>if a &lt; b:<br>    *ptr = 1</code></p>"


def test_html_only_allowed_tags_survive() -> None:
    out = whatsapp_to_html("*a* _b_ ~c~ `d` https://e.example\n\nf\ng")
    assert set(re.findall(r"</?([a-z]+)", out)) <= {"p", "br", "strong", "em", "s", "code", "a"}
    assert re.findall(r"<a [^>]*>", out) == ['<a href="https://e.example" rel="noopener">']


def test_html_ignores_reserved_placeholder_characters_in_input() -> None:
    # The converter uses private-use characters internally; input that contains them
    # must not be able to pull in someone else's slot.
    assert whatsapp_to_html("a\U000f0000b https://x.example") == (
        '<p>ab <a href="https://x.example" rel="noopener">https://x.example</a></p>'
    )


# --- sms_encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Your appointment is at 10:00. Reply YES to confirm.", "GSM-7"),
        ("José, mañana, pingüino, ¿vienes? ¡Sí! Ñandú", "UCS-2"),  # í and ú are not GSM-7
        ("José, mañana, pingüino, ¿vienes? ¡Si!", "GSM-7"),  # é ñ ü ¿ ¡ are
        ("Está", "UCS-2"),  # á
        ("Miércoles", "GSM-7"),
        ("Dirección", "UCS-2"),  # ó
        ("São Paulo", "UCS-2"),  # ã
        ("você", "UCS-2"),  # ê
        ("ação", "UCS-2"),  # ç (only capital Ç is in the table)
        ("Ça va", "GSM-7"),
        ("àèìòù ÄÖÜ äöü ÆæØøÅå ß É £¥§¤ ΔΦΓΛΩΠΨΣΘΞ @$_", "GSM-7"),
        ("Price: 20€ [card] {x} ~ ^ | \\", "GSM-7"),  # extension table
        ("Thanks 😀", "UCS-2"),
        ("नमस्ते", "UCS-2"),
        ("It\u2019s ready", "UCS-2"),  # a curly apostrophe
        ("`backtick`", "UCS-2"),  # not in GSM 03.38 at all
        ("", "GSM-7"),
    ],
)
def test_sms_encoding(text: str, encoding: str) -> None:
    assert sms_encoding(text) == encoding


# --- sms_segments ----------------------------------------------------------------------


def septets(text: str) -> int:
    return sum(2 if ch in "\f^{}\\[~]|€" else 1 for ch in text)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_exactly_160_gsm_characters_is_one_segment() -> None:
    assert sms_segments("a" * 160) == ["a" * 160]


def test_161_gsm_characters_is_two_segments_of_153_and_8() -> None:
    assert [len(s) for s in sms_segments("a" * 161)] == [153, 8]


def test_extension_characters_count_twice() -> None:
    assert len(sms_segments("€" * 80)) == 1
    assert len(sms_segments("a" * 159 + "€")) == 2  # 161 septets
    segments = sms_segments("€" * 100)  # 200 septets: 76 + 24 euros (never half an escape pair)
    assert [len(s) for s in segments] == [76, 24]


def test_ucs2_limits_70_and_67() -> None:
    assert sms_segments("á" * 70) == ["á" * 70]
    assert [len(s) for s in sms_segments("á" * 71)] == [67, 4]


def test_emoji_are_two_units_and_never_split() -> None:
    assert len(sms_segments("😀" * 35)) == 1  # 70 units
    segments = sms_segments("😀" * 36)
    assert [len(s) for s in segments] == [33, 3]  # 66 units: a 34th would need 68
    assert all(utf16_units(s) <= 67 for s in segments)


def test_segments_break_at_word_boundaries_and_rejoin_exactly() -> None:
    text = " ".join(["recordatorio"] * 40)
    segments = sms_segments(text)
    assert "".join(segments) == text
    assert all(septets(s) <= 153 for s in segments)
    assert all(s.endswith(" ") for s in segments[:-1])  # no word cut in half


def test_devanagari_segments_at_words_and_within_limits() -> None:
    text = "आपकी अपॉइंटमेंट कल सुबह दस बजे है। कृपया समय पर पहुँचें। " * 4
    segments = sms_segments(text)
    assert sms_encoding(text) == "UCS-2"
    assert "".join(segments) == text
    assert all(utf16_units(s) <= 67 for s in segments)
    assert all(s[-1].isspace() for s in segments[:-1])


def test_a_word_longer_than_a_segment_is_cut_but_not_inside_a_character() -> None:
    word = "क्षत्रिय" * 20  # conjuncts with viramas and vowel signs, no spaces
    segments = sms_segments(word)
    assert "".join(segments) == word
    assert len(segments) > 1
    for seg in segments[1:]:
        # Never starts with a virama or a vowel sign torn from its consonant.
        assert unicodedata.category(seg[0]) not in ("Mn", "Mc")


def test_zwj_emoji_sequences_stay_whole() -> None:
    family = "👨\u200d👩\u200d👧"
    text = "a" * 60 + family * 3
    for seg in sms_segments(text):
        assert not seg.startswith("\u200d") and not seg.endswith("\u200d")


def test_empty_text_has_no_segments() -> None:
    assert sms_segments("") == []


# --- fit_sms ---------------------------------------------------------------------------


def test_fit_sms_keeps_short_text_and_strips_markup() -> None:
    assert fit_sms("*Hola*   Ana,\n\n\n\n  tu cita es _mañana_.  ") == "Hola Ana,\n\ntu cita es mañana."


def test_fit_sms_replaces_typographic_characters_to_stay_gsm7() -> None:
    out = fit_sms("It\u2019s \u201cready\u201d \u2013 see you\u2026")
    assert out == 'It\'s "ready" - see you...'
    assert sms_encoding(out) == "GSM-7"


def test_fit_sms_leaves_typography_alone_when_the_text_is_ucs2_anyway() -> None:
    assert fit_sms("It\u2019s ready 😀") == "It\u2019s ready 😀"


def test_fit_sms_shortens_at_a_word_and_keeps_the_trailing_url() -> None:
    url = "https://clinic.example/c/AB12CD"
    text = "Recordatorio: " + "su cita con la doctora es mañana por la mañana " * 20 + url
    out = fit_sms(text, max_segments=2)
    assert len(sms_segments(out)) <= 2
    assert out.endswith("... " + url)  # GSM-7 text: three dots, not "…"
    head = out.removesuffix("... " + url)
    assert text.startswith(head)
    assert text[len(head)] == " "  # cut at a word boundary
    assert sms_encoding(out) == "GSM-7"


def test_fit_sms_uses_the_ellipsis_character_in_ucs2_text() -> None:
    text = "नमस्ते! आपकी अपॉइंटमेंट कल है। " * 12 + "https://x.example/c"
    out = fit_sms(text)
    assert len(sms_segments(out)) <= 3
    assert out.endswith("… https://x.example/c")


def test_fit_sms_uses_most_of_the_room() -> None:
    out = fit_sms("word " * 200, max_segments=3)
    assert len(sms_segments(out)) == 3
    assert len(out) > 3 * 153 - 10


def test_fit_sms_one_segment_exactly_160() -> None:
    assert fit_sms("a" * 160, max_segments=1) == "a" * 160
    out = fit_sms("a " * 100, max_segments=1)
    assert len(out) <= 160 and out.endswith("...")


def test_fit_sms_cuts_a_huge_word() -> None:
    out = fit_sms("x" * 2000, max_segments=2)
    assert len(sms_segments(out)) <= 2
    assert out.endswith("...")


def test_fit_sms_drops_the_url_when_it_cannot_fit() -> None:
    url = "https://x.example/" + "a" * 300
    out = fit_sms("Hello there " * 5 + url, max_segments=1)
    assert len(sms_segments(out)) == 1
    assert out.startswith("Hello there")


def test_fit_sms_validates_max_segments() -> None:
    with pytest.raises(ValueError, match="max_segments"):
        fit_sms("hi", max_segments=0)


# --- email_parts -----------------------------------------------------------------------


def test_email_parts() -> None:
    parts = email_parts(
        "Hola *Ana*,\n\nTu cita es el _martes_. Confirma: https://clinic.example/c/1",
        subject="Tu cita",
        clinic_name="Clínica Sol",
    )
    assert isinstance(parts, EmailParts)
    assert parts.subject == "Tu cita"
    assert parts.text == (
        "Hola Ana,\n\nTu cita es el martes. Confirma: https://clinic.example/c/1\n\n-- \nClínica Sol\n"
    )
    assert parts.html.startswith("<!DOCTYPE html>")
    assert "<title>Tu cita</title>" in parts.html
    assert ">Clínica Sol</td>" in parts.html  # the header
    assert "<strong>Ana</strong>" in parts.html
    assert "<em>martes</em>" in parts.html
    assert 'href="https://clinic.example/c/1"' in parts.html
    assert "<style" not in parts.html and "<script" not in parts.html  # inline styles only
    assert 'style="margin:0 0 16px 0;"' in parts.html


def test_email_subject_cannot_inject_headers_and_names_are_escaped() -> None:
    parts = email_parts(
        "<b>hi</b>", subject="Hi\r\nBcc: victim@x.example", clinic_name='Sol & "Luna" <Clinic>'
    )
    assert parts.subject == "Hi Bcc: victim@x.example"
    assert "\n" not in parts.subject and "\r" not in parts.subject
    assert "Sol &amp; &quot;Luna&quot; &lt;Clinic&gt;" in parts.html
    assert "<b>" not in parts.html
    assert parts.text.endswith('-- \nSol & "Luna" <Clinic>\n')


def test_email_subject_falls_back_to_the_clinic_name() -> None:
    assert email_parts("hi", subject="  ", clinic_name="Clínica Sol").subject == "Clínica Sol"
