"""What a patient's file is stored and served as: the bytes decide, not the claimed type."""

from __future__ import annotations

import pytest

from wa_portal.services.media import settle_type, sniff

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 20
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
PDF = b"%PDF-1.7\n" + b"x" * 20
HTML = b"<html><script>alert(1)</script></html>"


@pytest.mark.parametrize(
    ("declared", "data", "expected"),
    [
        ("image/jpeg", JPEG, "image/jpeg"),
        ("image/png", PNG, "image/png"),
        ("image/jpeg", PNG, "image/png"),  # mislabelled but really an image: shown as what it is
        ("image/jpeg", HTML, "application/octet-stream"),  # a page pretending to be a photo
        ("text/html", HTML, "application/octet-stream"),
        ("image/svg+xml", b"<svg onload=alert(1)>", "application/octet-stream"),
        ("application/pdf", PDF, "application/pdf"),
        ("application/pdf", HTML, "application/octet-stream"),
        ("audio/ogg; codecs=opus", b"OggS" + b"\x00" * 20, "audio/ogg"),
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            b"PK\x03\x04xx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (None, b"whatever", "application/octet-stream"),
    ],
)
def test_settle_type(declared, data, expected):
    assert settle_type(declared, data) == expected


def test_sniff_knows_common_types():
    assert sniff(JPEG) == "image/jpeg"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"plain text") is None
