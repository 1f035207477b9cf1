"""Chatwoot Application API emulator (agent replies, inbox, attachment downloads) and webhook signing.

Start it::

    emu = ChatwootEmulator()                        # api_token=API_TOKEN, account 3, inbox 7, conversation 88
    with serve(emu) as url:                         # tests.emulators.server.serve
        provider = ChatwootProvider({"base_url": url, "api_token": emu.api_token,
                                     "account_id": emu.account_id, "inbox_id": emu.inbox_id})

Routes (``api-access-token`` header on the /api routes, else 401 ``{"errors": ["You need to sign in or sign
up before continuing."]}`` when missing, ``{"error": "Invalid Access Token"}`` when wrong; werkzeug drops the
underscore spelling ``api_access_token`` before the app sees it, as nginx does by default):
- ``POST /api/v1/accounts/{a}/conversations/{c}/messages``: JSON ``{content, message_type, private,
  content_attributes?}`` or multipart (``content`` … plus ``attachments[]`` files) → 200 message JSON
  (``id``, ``message_type: 1``, ``status: "sent"``, ``attachments``). 404 for an unknown account or
  conversation (``emu.conversations``, add with ``emu.add_conversation(id)``), 422 for an empty message.
- ``GET /api/v1/accounts/{a}/inboxes/{i}`` → the inbox (``Channel::Whatsapp``), 404 otherwise.
- ``GET /rails/active_storage/blobs/redirect/{key}/{filename}`` → 302 to ``http://localhost:{port}/storage/{key}``
  (another host name; no token needed: ActiveStorage URLs are signed), which serves the bytes.
  ``emu.add_file(...)`` returns such a data_url path.

``emu.reset()`` returns to a fresh state on the same port.
Faults: ``emu.faults`` — ``fail_next(n, status=500, body=None, path=None)``, ``fail_rate(p)``, ``delay(s)``,
``down()``/``up()``, ``reset()`` (see tests.emulators.twilio_api.Faults). Request log: ``emu.log``
(``method, path, headers, body, json, form, files, status``); ``emu.sent`` lists created messages.

Webhooks: ``sign_webhook(body, secret=SECRET, timestamp=None, delivery=None) -> dict`` returns the
``X-Chatwoot-Signature`` / ``-Timestamp`` / ``-Delivery`` headers; ``incoming_message(...)`` builds a
``message_created`` body like Chatwoot's ``Message#webhook_data``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .server import RequestLog
from .twilio_api import PNG_1X1, Faults, wsgi_app

API_TOKEN = "test_chatwoot_api_token"
SECRET = "test_chatwoot_webhook_secret"
ACCOUNT_ID = 3
INBOX_ID = 7
CONVERSATION_ID = 88


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def sign_webhook(
    body: bytes, secret: str = SECRET, *, timestamp: int | None = None, delivery: str | None = None
) -> dict[str, str]:
    """The headers Chatwoot sends with a signed webhook: HMAC-SHA256 over f"{timestamp}." + body."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Chatwoot-Signature": f"sha256={digest}",
        "X-Chatwoot-Timestamp": ts,
        "X-Chatwoot-Delivery": delivery or str(uuid.uuid4()),
    }


def incoming_message(
    *,
    message_id: int = 5501,
    content: str | None = "Olá",
    phone: str | None = "+16505551234",
    name: str = "Maria Souza",
    account_id: int = ACCOUNT_ID,
    inbox_id: int = INBOX_ID,
    conversation_id: int = CONVERSATION_ID,
    message_type: str = "incoming",
    private: bool = False,
    attachments: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A ``message_created`` webhook body (fields per Message#webhook_data)."""
    sender = {
        "id": 1201,
        "name": name,
        "phone_number": phone,
        "email": None,
        "identifier": None,
        "thumbnail": "",
        "additional_attributes": {},
        "custom_attributes": {},
        "type": "contact",
    }
    if message_type != "incoming":
        sender = {"id": 1, "name": "Recepção", "email": "recepcao@clinic.example", "type": "user"}
    body: dict[str, Any] = {
        "event": "message_created",
        "id": message_id,
        "content": content,
        "content_type": "text",
        "content_attributes": {},
        "additional_attributes": {},
        "message_type": message_type,
        "private": private,
        "source_id": None,
        "created_at": "2025-07-02T12:00:00.000Z",
        "sender": sender,
        "inbox": {"id": inbox_id, "name": "WhatsApp Recepção"},
        "account": {"id": account_id, "name": "Clínica Exemplo"},
        "conversation": {
            "id": conversation_id,
            "inbox_id": inbox_id,
            "channel": "Channel::Whatsapp",
            "status": "open",
            "can_reply": True,
            "contact_inbox": {"source_id": (phone or "").lstrip("+"), "inbox_id": inbox_id},
            "meta": {"sender": sender, "assignee": None},
        },
    }
    if attachments:
        body["attachments"] = [dict(a) for a in attachments]
    return body


class ChatwootEmulator:
    """A WSGI app speaking the part of Chatwoot's Application API the adapter uses."""

    def __init__(
        self,
        api_token: str = API_TOKEN,
        *,
        account_id: int = ACCOUNT_ID,
        inbox_id: int = INBOX_ID,
        conversations: Iterable[int] = (CONVERSATION_ID,),
    ) -> None:
        self.api_token = api_token
        self.account_id = account_id
        self.inbox_id = inbox_id
        self._initial_conversations = frozenset(conversations)
        self.log = RequestLog()
        self.faults = Faults()
        self._ids = itertools.count(9001)
        self._lock = threading.Lock()
        self.reset()
        account = "/api/v1/accounts/<int:account>"
        self._urls = Map(
            [
                Rule(
                    f"{account}/conversations/<int:conversation>/messages",
                    methods=["POST"],
                    endpoint="message",
                ),
                Rule(f"{account}/inboxes/<int:inbox>", methods=["GET"], endpoint="inbox"),
                Rule(
                    "/rails/active_storage/blobs/redirect/<key>/<filename>", methods=["GET"], endpoint="blob"
                ),
                Rule("/storage/<key>", methods=["GET"], endpoint="storage"),
            ]
        )
        self._app = wsgi_app(self.faults, self.log, self._handle)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self._app(environ, start_response)

    def reset(self) -> None:
        """Back to a fresh emulator (conversations, files, sends; no faults), keeping the served port."""
        self.faults.reset()  # first: it waits for delayed requests still being answered
        self.log.clear()
        with self._lock:
            self.conversations: set[int] = set(self._initial_conversations)
            self.sent: list[dict[str, Any]] = []
            self._files: dict[str, tuple[bytes, str]] = {}

    def add_conversation(self, conversation_id: int) -> None:
        with self._lock:
            self.conversations.add(conversation_id)

    def add_file(
        self, data: bytes = PNG_1X1, content_type: str = "image/png", filename: str = "photo.png"
    ) -> str:
        """Store an attachment; returns its data_url path (join it to the served URL)."""
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._files[key] = (data, content_type)
        return f"/rails/active_storage/blobs/redirect/{key}/{filename}"

    def _handle(self, request: Request) -> Response:
        try:
            endpoint, args = self._urls.bind_to_environ(request.environ).match()
        except Exception:
            return _json({"error": "Resource could not be found"}, 404)
        if endpoint in ("blob", "storage"):
            return self._blob(request, **args) if endpoint == "blob" else self._storage(**args)
        # Werkzeug's server drops header names with underscores (as nginx does by default), so only the
        # dashed spelling of `api_access_token` reaches the app; Rails reads both as HTTP_API_ACCESS_TOKEN.
        token = request.headers.get("api-access-token", "")
        if not token:
            return _json({"errors": ["You need to sign in or sign up before continuing."]}, 401)
        if not hmac.compare_digest(token, self.api_token):
            return _json({"error": "Invalid Access Token"}, 401)
        if args["account"] != self.account_id:
            return _json({"error": "Resource could not be found"}, 404)
        if endpoint == "inbox":
            return self._inbox(args["inbox"])
        return self._message(request, args["conversation"])

    def _inbox(self, inbox: int) -> Response:
        if inbox != self.inbox_id:
            return _json({"error": "Resource could not be found"}, 404)
        return _json(
            {
                "id": inbox,
                "name": "WhatsApp Recepção",
                "channel_type": "Channel::Whatsapp",
                "phone_number": "+15550783881",
                "provider": "whatsapp_cloud",
            }
        )

    def _message(self, request: Request, conversation: int) -> Response:
        with self._lock:
            known = conversation in self.conversations
        if not known:
            return _json({"error": "Resource could not be found"}, 404)
        if request.is_json:
            data = request.get_json(silent=True) or {}
            files: list[tuple[str | None, str | None, bytes]] = []
        else:
            data = request.form.to_dict()
            files = [(f.filename, f.mimetype, f.read()) for f in request.files.getlist("attachments[]")]
        if not data.get("content") and not files:
            return _json({"message": "Content can't be blank"}, 422)
        message_id = next(self._ids)
        attachments = [
            {
                "id": message_id * 10 + n,
                "message_id": message_id,
                "file_type": (mime or "").split("/")[0]
                if (mime or "").startswith(("image", "audio", "video"))
                else "file",
                "account_id": self.account_id,
                "data_url": f"/rails/active_storage/blobs/redirect/k{message_id}{n}/{name}",
                "file_size": len(content),
            }
            for n, (name, mime, content) in enumerate(files)
        ]
        message = {
            "id": message_id,
            "content": data.get("content"),
            "inbox_id": self.inbox_id,
            "conversation_id": conversation,
            "message_type": 1,  # the API answers with the enum's integer: 1 = outgoing
            "content_type": "text",
            "status": "sent",
            "content_attributes": data.get("content_attributes") or {},
            "created_at": int(time.time()),
            "private": data.get("private") in (True, "true"),
            "source_id": None,
            "sender": {"id": 1, "name": "API", "type": "user"},
            "attachments": attachments,
        }
        with self._lock:
            self.sent.append({**message, "request": data, "files": files})
        return _json(message)

    def _blob(self, request: Request, key: str, filename: str) -> Response:
        # With S3-like storage ActiveStorage redirects to another host; "localhost" is another host
        # name for this same server, so a client carrying the API token along would show in the log.
        storage = f"http://localhost:{request.host.rpartition(':')[2]}"
        return Response(status=302, headers={"Location": f"{storage}/storage/{key}"})

    def _storage(self, key: str) -> Response:
        with self._lock:
            found = self._files.get(key)
        if found is None:
            return Response("Not Found", status=404)
        return Response(found[0], mimetype=found[1])
