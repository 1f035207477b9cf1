"""End-to-end through the running app: the CLI, the webhook routes, the real RQ worker, the inbox pages.

Each provider's test drives what a clinic and its provider would do, in order: the operator adds the
connection with ``flask wa add-connection``; the provider posts signed webhooks to the URL it printed;
the real worker ingests them and downloads media from the provider's emulator; a staff member reads the
conversation page and answers through the composer; the emulator receives the provider's own send
request; status webhooks move the ticks. The helpers here are the user's hands: the test client posts
what the inbox's forms post, and every check reads the page a person would read.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

PUBLIC_BASE_URL = "https://clinic.example.com"
SAMPLES = Path("/work/shared/provider-samples")
PAYLOADS = Path(__file__).resolve().parent.parent / "payloads"

# A real JPEG header and a real PDF header: the portal sniffs the bytes before it shows anything inline.
JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256)) + b"\xff\xd9"
)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

_MISSING = object()


def sample(provider: str, name: str) -> bytes:
    """A captured body, byte for byte: the shared samples first, then tests/payloads."""
    for root in (SAMPLES, PAYLOADS):
        path = root / provider / name
        if path.exists():
            return path.read_bytes()
    raise FileNotFoundError(f"{provider}/{name}")


def unescaped(page: str) -> str:
    return html.unescape(page)


@pytest.fixture
def e2e_app(app: Flask) -> Iterator[Flask]:
    """The app as deployed behind a public URL (webhook URLs, Twilio signatures and status callbacks).

    Send-rate buckets are off so two replies in one second need no scheduled retry; the webhook
    route cache is emptied because every test recreates connection id 1 with other secrets.
    """
    from wa_portal.services.webhooks import forget_routes

    keys = {"PUBLIC_BASE_URL": PUBLIC_BASE_URL, "DELIVERY_RATE_LIMITS": False}
    saved = {k: app.config.get(k, _MISSING) for k in keys}
    app.config.update(keys)
    forget_routes()
    yield app
    forget_routes()
    for k, v in saved.items():
        if v is _MISSING:
            app.config.pop(k, None)
        else:
            app.config[k] = v


@dataclass
class Portal:
    """The running portal as its users see it: operator CLI, provider webhooks, staff pages."""

    app: Flask
    db: Any
    clinic: Any
    staff: SignedIn  # a signed-in staff member of the clinic
    outsider: SignedIn  # a signed-in staff member of another clinic
    drain: Callable[..., int]

    # --- the operator ----------------------------------------------------------------------------

    def add_connection(self, provider: str, **settings: Any) -> tuple[Any, str]:
        """``flask wa add-connection`` as an operator types it; returns (connection, printed webhook URL)."""
        from wa_portal.models import Connection

        args = ["wa", "add-connection", "--clinic", self.clinic.slug, "--provider", provider]
        args += [f"{k}={v}" for k, v in settings.items()]
        result = self.app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 0, result.output
        created = re.search(rf"^connection (\d+) \({provider}\) created$", result.output, re.M)
        printed = re.search(r"^webhook URL: (.+)$", result.output, re.M)
        assert created and printed, result.output
        conn = self.db.session.get(Connection, int(created.group(1)))
        assert conn is not None and conn.clinic_id == self.clinic.id
        return conn, printed.group(1).strip()

    # --- the provider ----------------------------------------------------------------------------

    def webhook(self, url: str, body: bytes, headers: dict[str, str]) -> Any:
        """POST a webhook to the URL the CLI printed, as the provider would (no session, no CSRF)."""
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_BASE_URL, url
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        _read_afresh()
        return self.app.test_client().post(path, data=body, headers=headers)

    def stored(self) -> tuple[int, int]:
        """(raw webhook events, messages) in the database."""
        from wa_portal.models import Message, WebhookEvent

        self.db.session.expire_all()
        events = self.db.session.scalar(select(func.count()).select_from(WebhookEvent))
        messages = self.db.session.scalar(select(func.count()).select_from(Message))
        return int(events or 0), int(messages or 0)

    # --- the staff member ------------------------------------------------------------------------

    def conversation(self, conn: Any, phone: str) -> Any:
        """The conversation the worker opened for this patient on this connection."""
        from wa_portal.models import Contact, Conversation

        self.db.session.expire_all()
        conv = self.db.session.scalar(
            select(Conversation)
            .join(Contact, Contact.id == Conversation.contact_id)
            .where(Conversation.connection_id == conn.id, Contact.phone == phone)
        )
        assert conv is not None, f"no conversation for …{phone[-4:]} on connection {conn.id}"
        return conv

    def page(self, conv: Any, client: SignedIn | None = None) -> str:
        resp = (client or self.staff).get(f"/inbox/c/{conv.id}")
        assert resp.status_code == 200, resp.status_code
        return resp.get_data(as_text=True)

    def messages(self, conv: Any, direction: str) -> list[Any]:
        from wa_portal.models import Message

        self.db.session.expire_all()
        return list(
            self.db.session.scalars(
                select(Message)
                .where(Message.conversation_id == conv.id, Message.direction == direction)
                .order_by(Message.id)
            )
        )

    def reply(self, conv: Any, text: str) -> Any:
        """Type a reply in the composer and press Send (the htmx POST, with the form's CSRF token)."""
        page = self.page(conv)
        form = re.search(r'<form id="composer-form".*?</form>', page, re.S)
        assert form, "the composer is not offered (is the 24-hour window closed?)"
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.group(0))
        assert token
        action = re.search(r'hx-post="([^"]+)"', form.group(0))
        assert action
        resp = self.staff.post(
            action.group(1),
            data={"csrf_token": token.group(1), "mode": "reply", "body": text},
            headers={"HX-Request": "true", "HX-Target": "composer"},
        )
        assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
        [msg] = [m for m in self.messages(conv, "out") if m.body == text]
        return msg

    def assert_media(
        self, conv: Any, msg: Any, data: bytes, *, image: bool, filename: str | None = None
    ) -> None:
        """The file shows (inline image or download link), the media route serves its exact bytes to
        the clinic's staff, and another clinic's staff gets 404."""
        self.db.session.refresh(msg)
        assert msg.media_status == "stored", (msg.media_status, (msg.extra or {}).get("media_error"))
        page = self.page(conv)
        src = f"/media/{msg.id}"
        if image:
            assert re.search(rf'<img class="msg-image"[^>]* src="{src}"', page), "image not shown inline"
        else:
            link = re.search(rf'<a class="msg-file" href="{src}" download>(.*?)</a>', page, re.S)
            assert link, "document not offered as a download"
            if filename:
                assert filename in unescaped(link.group(1))
        got = self.staff.get(src)
        assert got.status_code == 200 and got.data == data
        assert got.mimetype == ("image/jpeg" if image else "application/pdf")
        assert self.outsider.get(src).status_code == 404

    def assert_tick(self, conv: Any, msg: Any, status: str) -> str:
        page = self.page(conv)
        assert re.search(rf'<li class="msg msg-out[^"]*" id="msg-{msg.id}" data-status="{status}">', page), (
            f"message {msg.id} does not show {status}"
        )
        return page


class SignedIn:
    """A browser session of one user (each request runs in an app context of its own: see
    tests.conftest.FreshContextClient)."""

    def __init__(self, client: FlaskClient, user: Any) -> None:
        self.client = client
        from tests.conftest import PASSWORD, csrf_token

        token = csrf_token(client, "/login")
        resp = self.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
        assert resp.status_code == 302, resp.get_data(as_text=True)[:300]

    def get(self, path: str | None, **kw: Any) -> Any:
        _read_afresh()
        return self.client.get(path, **kw) if path else None

    def post(self, path: str, **kw: Any) -> Any:
        _read_afresh()
        return self.client.post(path, **kw)


def _read_afresh() -> None:
    from wa_portal.extensions import db

    # What the request and the worker committed must be read afresh by the test's own session.
    db.session.expire_all()


@pytest.fixture
def portal(e2e_app, db, clinic, staff, make_clinic, make_user, run_worker) -> Portal:
    other = make_user(make_clinic("elsewhere"), "admin")
    return Portal(
        app=e2e_app,
        db=db,
        clinic=clinic,
        staff=SignedIn(e2e_app.test_client(), staff),
        outsider=SignedIn(e2e_app.test_client(), other),
        drain=run_worker,
    )


# --- Cloud API bodies (Meta and 360dialog send the same envelope) ------------------------------------


def meta_envelope(
    *,
    messages: list[dict] = (),
    statuses: list[dict] = (),
    pnid: str | None = None,
    waba: str | None = None,  # type: ignore[assignment]
) -> bytes:
    """A Cloud API webhook POST body (PROVIDERS.md §1), shaped like provider-samples/meta/*."""
    import json

    from tests.emulators.meta_graph import DEFAULT_DISPLAY_PHONE, DEFAULT_PNID, DEFAULT_WABA

    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DEFAULT_DISPLAY_PHONE, "phone_number_id": pnid or DEFAULT_PNID},
    }
    if messages:
        senders = {m["from"] for m in messages}
        value["contacts"] = [{"profile": {"name": "Maria Souza"}, "wa_id": s} for s in sorted(senders)]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    envelope = {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba or DEFAULT_WABA, "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(envelope, ensure_ascii=False).encode()


def meta_media_message(kind: str, media_id: str, mime: str, *, wa_id: str, at: int, **fields: Any) -> dict:
    import hashlib

    return {
        "from": wa_id,
        "id": "wamid." + hashlib.sha256(f"{media_id}{at}".encode()).hexdigest()[:40],
        "timestamp": str(at),  # a string, as Meta sends it
        "type": kind,
        kind: {"id": media_id, "mime_type": mime, "sha256": "ignored-by-the-portal", **fields},
    }


def meta_status(wamid: str, status: str, *, at: int, wa_id: str, errors: list[dict] | None = None) -> dict:
    st: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(at), "recipient_id": wa_id}
    if status != "failed":
        st["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if errors:
        st["errors"] = errors
    return st


UNDELIVERABLE = [
    {
        "code": 131026,
        "title": "Message undeliverable",
        "message": "Message undeliverable",
        "error_data": {"details": "Message Undeliverable."},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
]
