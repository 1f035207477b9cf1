"""WAHA (WhatsApp HTTP API) emulator: sessions with a QR login, sends, files, and signed webhook bodies.

Start it::

    emu = WahaEmulator()                            # api_key=API_KEY; no sessions yet
    emu.add_session("clinic_42")                    # a linked, WORKING session (or start one over the API)
    with serve(emu) as url:                         # tests.emulators.server.serve
        provider = WahaProvider({"base_url": url, "api_key": emu.api_key, "session": "clinic_42"})

Routes (``X-Api-Key`` header or ``?x-api-key=`` on every route, else 401 ``{"message":"Unauthorized",
"statusCode":401}``; ``WahaEmulator(api_key=None)`` disables the check):
- ``POST /api/sessions {name?, start?, config?}`` → 201 (``STARTING``, or ``STOPPED`` with ``start: false``),
  422 if it exists; ``GET /api/sessions``; ``GET|PUT|DELETE /api/sessions/{s}``; ``GET /api/sessions/{s}/me``;
  ``POST /api/sessions/{s}/start|stop|restart|logout`` (start/stop idempotent; logout forgets ``me`` and
  restarts). Unknown session → 404.
- ``GET /api/{s}/auth/qr``: PNG; ``Accept: application/json`` → ``{mimetype, data}``; ``?format=raw`` →
  ``{value}``; ``emu.qr_always_png = True`` ignores Accept. 422 unless the session is ``SCAN_QR_CODE``.
- ``POST /api/sendText {session, chatId, text, reply_to?}``, ``/api/sendImage`` and ``/api/sendFile``
  ``{session, chatId, file: {mimetype, url | data, filename?}, caption?}`` → ``{"id": "true_<chatId>_<HEX>"}``
  (``emu.id_style = "object"`` answers WEBJS's ``{"id": {..., "_serialized"}}``). 404 unknown session,
  422 ``{status, expected: ["WORKING"]}`` when not WORKING, 400 bad chatId/body, 422 "not registered on
  WhatsApp" for numbers in ``emu.unregistered`` (default ``NOT_ON_WHATSAPP``).
- ``POST /api/sendSeen``; ``GET /api/files/{path}`` serves ``emu.add_file(...)`` files.

Session stepping (on demand, thread-safe): ``emu.step(s)`` STARTING → SCAN_QR_CODE (straight to WORKING when
the session is still linked), ``emu.scan(s, phone)`` → WORKING with ``me``, ``emu.fail(s)`` → FAILED,
``emu.set_status(s, status)``. ``emu.sessions[s]`` holds ``{name, status, config, me, engine, statuses}``.

``emu.reset()`` returns to a fresh state on the same port.
Faults: ``emu.faults`` — ``fail_next(n, status=500, body=None, path=None)``, ``fail_rate(p)``, ``delay(s)``,
``down()``/``up()``, ``reset()`` (see tests.emulators.twilio_api.Faults). Request log: ``emu.log``
(``method, path, query, headers, body, json, …, status``); ``emu.sent`` lists accepted sends.

Webhooks: ``signed_webhook(event, payload, session=…, hmac_key=…) -> SignedWebhook(body, headers)`` with
``X-Webhook-Hmac`` (hex HMAC-SHA512 of the body); ``message_payload(...)`` and ``ack_payload(...)`` build
payloads; ``emu.session_status_webhook(s)`` signs a ``session.status`` event for a session's current state;
``emu.deliver(s, event, payload)`` POSTs it to the session's ``config.webhooks`` URLs, signed with each one's
``hmac.key`` (what the portal configured), and returns the HTTP statuses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .server import RequestLog
from .twilio_api import PNG_1X1, Faults, wsgi_app

API_KEY = "test_waha_api_key"
HMAC_KEY = "test_waha_hmac_key"
NOT_ON_WHATSAPP = "+15005550001"
ME_PHONE = "+15550783881"
QR_RAW = "2@emulated-qr-value,base64key==,base64secret==,1"


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def _fail(http_status: int, message: Any, **extra: Any) -> Response:
    error = {400: "Bad Request", 404: "Not Found", 422: "Unprocessable Entity"}.get(http_status, "Error")
    return _json({"statusCode": http_status, "message": message, "error": error, **extra}, http_status)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class SignedWebhook:
    """A webhook POST as WAHA sends it."""

    body: bytes
    headers: dict[str, str]

    def as_webhook_request(self, url: str = "https://clinic.example.com/webhooks/waha") -> Any:
        """The adapter-level request (wa_portal.providers.base.WebhookRequest)."""
        from wa_portal.providers.base import WebhookRequest

        return WebhookRequest(method="POST", url=url, headers=self.headers, body=self.body)


def signed_webhook(
    event: str,
    payload: Mapping[str, Any],
    *,
    session: str = "default",
    hmac_key: str | None = HMAC_KEY,
    event_id: str | None = None,
    timestamp_ms: int | None = None,
    me_phone: str = ME_PHONE,
) -> SignedWebhook:
    """The envelope WAHA posts, with its headers; signed when ``hmac_key`` is given."""
    envelope = {
        "id": event_id or "evt_" + secrets.token_hex(13),
        "timestamp": timestamp_ms or _now_ms(),
        "event": event,
        "session": session,
        "metadata": {},
        "me": {"id": f"{me_phone.lstrip('+')}@c.us", "pushName": "Clínica Exemplo"},
        "payload": dict(payload),
        "engine": "WEBJS",
        "environment": {"version": "2025.7.1", "engine": "WEBJS", "tier": "CORE"},
    }
    body = json.dumps(envelope, ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Request-Id": secrets.token_hex(8),
        "X-Webhook-Timestamp": str(envelope["timestamp"]),
    }
    if hmac_key:
        headers["X-Webhook-Hmac"] = hmac.new(hmac_key.encode(), body, hashlib.sha512).hexdigest()
        headers["X-Webhook-Hmac-Algorithm"] = "sha512"
    return SignedWebhook(body=body, headers=headers)


def message_payload(
    *,
    from_phone: str = "+16505551234",
    body: str = "Olá",
    me_phone: str = ME_PHONE,
    message_id: str | None = None,
    from_me: bool = False,
    source: str = "app",
    media: Mapping[str, Any] | None = None,
    has_media: bool | None = None,
    push_name: str | None = "Maria Souza",
    timestamp: int | None = None,
) -> dict[str, Any]:
    """A ``message`` / ``message.any`` payload as WEBJS sends it."""
    chat = f"{from_phone.lstrip('+')}@c.us"
    me = f"{me_phone.lstrip('+')}@c.us"
    msg_id = message_id or f"{'true' if from_me else 'false'}_{chat}_{secrets.token_hex(10).upper()}"
    return {
        "id": msg_id,
        "timestamp": timestamp or int(time.time()),
        "from": me if from_me else chat,
        "fromMe": from_me,
        "source": source,
        "to": chat if from_me else me,
        "body": body,
        "hasMedia": bool(media) if has_media is None else has_media,
        "media": dict(media) if media else None,
        "ack": 1,
        "ackName": "SERVER",
        "vCards": [],
        "_data": {"notifyName": push_name} if push_name else {},
    }


def ack_payload(
    message_id: str, ack: int, *, to_phone: str = "+16505551234", me_phone: str = ME_PHONE
) -> dict:
    names = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
    return {
        "id": message_id,
        "from": f"{to_phone.lstrip('+')}@c.us",
        "to": f"{me_phone.lstrip('+')}@c.us",
        "participant": None,
        "fromMe": True,
        "ack": ack,
        "ackName": names[ack],
    }


class WahaEmulator:
    """A WSGI app speaking WAHA's HTTP API; see the module docstring."""

    def __init__(self, api_key: str | None = API_KEY, *, hmac_key: str | None = HMAC_KEY) -> None:
        self.api_key = api_key
        self.hmac_key = hmac_key
        self.log = RequestLog()
        self.faults = Faults()
        self._lock = threading.RLock()
        self.reset()
        self._urls = Map(
            [
                Rule("/api/sessions", methods=["GET"], endpoint="list_sessions"),
                Rule("/api/sessions", methods=["POST"], endpoint="create_session"),
                Rule("/api/sessions/<name>", methods=["GET"], endpoint="get_session"),
                Rule("/api/sessions/<name>", methods=["PUT"], endpoint="update_session"),
                Rule("/api/sessions/<name>", methods=["DELETE"], endpoint="delete_session"),
                Rule("/api/sessions/<name>/me", methods=["GET"], endpoint="me"),
                Rule("/api/sessions/<name>/<action>", methods=["POST"], endpoint="session_action"),
                Rule("/api/<name>/auth/qr", methods=["GET"], endpoint="qr"),
                Rule("/api/sendText", methods=["POST"], endpoint="send_text"),
                Rule("/api/sendImage", methods=["POST"], endpoint="send_image"),
                Rule("/api/sendFile", methods=["POST"], endpoint="send_file"),
                Rule("/api/sendSeen", methods=["POST"], endpoint="send_seen"),
                Rule("/api/files/<path:file_path>", methods=["GET"], endpoint="file"),
            ]
        )
        self._app = wsgi_app(self.faults, self.log, self._handle)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self._app(environ, start_response)

    def reset(self) -> None:
        """Back to a fresh emulator (no sessions, files, sends; no faults), keeping the served port."""
        self.faults.reset()  # first: it waits for delayed requests still being answered
        self.log.clear()
        with self._lock:
            self.sessions: dict[str, dict[str, Any]] = {}
            self.sent: list[dict[str, Any]] = []
            self.seen: list[dict[str, Any]] = []
            self.unregistered: set[str] = {NOT_ON_WHATSAPP.lstrip("+")}
            self.id_style = "string"
            self.qr_always_png = False  # answer the QR as PNG even when JSON is asked for (older WAHA)
            self._files: dict[str, tuple[bytes, str]] = {}

    # --- control ---------------------------------------------------------------------------------

    def add_session(
        self, name: str = "default", *, status: str = "WORKING", me_phone: str | None = ME_PHONE
    ) -> dict[str, Any]:
        """Create a session directly in a given state (WORKING and linked by default)."""
        with self._lock:
            session = self._new_session(name, {})
            self.sessions[name] = session
            if status == "WORKING" and me_phone:
                session["me"] = {"id": f"{me_phone.lstrip('+')}@c.us", "pushName": "Clínica Exemplo"}
            self._set(session, status)
            return session

    def set_status(self, name: str, status: str) -> None:
        with self._lock:
            self._set(self.sessions[name], status)

    def step(self, name: str = "default") -> str:
        """STARTING → SCAN_QR_CODE, or → WORKING when the session is still linked."""
        with self._lock:
            session = self.sessions[name]
            if session["status"] == "STARTING":
                self._set(session, "WORKING" if session["me"] else "SCAN_QR_CODE")
            return str(session["status"])

    def scan(self, name: str = "default", phone: str = ME_PHONE) -> None:
        """The clinic scanned the QR code with ``phone``."""
        with self._lock:
            session = self.sessions[name]
            if session["status"] != "SCAN_QR_CODE":
                raise RuntimeError(f"session {name} is {session['status']}, not SCAN_QR_CODE")
            session["me"] = {"id": f"{phone.lstrip('+')}@c.us", "pushName": "Clínica Exemplo"}
            self._set(session, "WORKING")

    def fail(self, name: str = "default") -> None:
        self.set_status(name, "FAILED")

    def add_file(
        self, data: bytes = PNG_1X1, mimetype: str = "image/png", *, session: str = "default"
    ) -> str:
        """Store a downloadable file; returns its path (``/api/files/{session}/{id}.{ext}``)."""
        ext = mimetype.rsplit("/", 1)[-1].split(";")[0]
        path = f"/api/files/{session}/{secrets.token_hex(10).upper()}.{ext}"
        with self._lock:
            self._files[path] = (data, mimetype)
        return path

    def session_status_webhook(self, name: str = "default") -> SignedWebhook:
        with self._lock:
            session = self.sessions[name]
            payload = {"status": session["status"], "statuses": list(session["statuses"]), "data": None}
        return signed_webhook("session.status", payload, session=name, hmac_key=self.hmac_key)

    def deliver(self, name: str, event: str, payload: Mapping[str, Any], *, timeout: float = 10) -> list[int]:
        """POST ``event`` to every webhook in the session's ``config.webhooks`` that subscribes to it
        (its ``events``, or ``*``), as WAHA does: signed with that webhook's own ``hmac.key`` (unsigned
        without one), plus its ``customHeaders``. One attempt each (``retries`` are not emulated);
        returns the HTTP statuses in config order."""
        import requests  # only the tests that deliver need it

        with self._lock:
            session = self.sessions[name]
            hooks = [
                dict(h) for h in (session["config"] or {}).get("webhooks") or [] if isinstance(h, Mapping)
            ]
            me = session["me"]
        me_phone = str(me["id"]).split("@", 1)[0] if me else ME_PHONE
        statuses = []
        for hook in hooks:
            events = hook.get("events") or ["message"]
            if event not in events and "*" not in events:
                continue
            key = (hook.get("hmac") or {}).get("key") or None
            signed = signed_webhook(event, payload, session=name, hmac_key=key, me_phone=me_phone)
            headers = dict(signed.headers)
            for extra in hook.get("customHeaders") or []:
                headers[str(extra["name"])] = str(extra["value"])
            resp = requests.post(str(hook["url"]), data=signed.body, headers=headers, timeout=timeout)
            statuses.append(resp.status_code)
        return statuses

    def _new_session(self, name: str, config: Any) -> dict[str, Any]:
        return {
            "name": name,
            "status": "STOPPED",
            "config": config or {},
            "me": None,
            "engine": {"engine": "WEBJS"},
            "statuses": [],
        }

    def _set(self, session: dict[str, Any], status: str) -> None:
        session["status"] = status
        session["statuses"] = [*session["statuses"], {"status": status, "timestamp": _now_ms()}][-3:]

    @staticmethod
    def _public(session: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in session.items() if k != "statuses"}

    # --- handlers --------------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        if self.api_key is not None:
            given = request.headers.get("X-Api-Key") or request.args.get("x-api-key")
            if not given or not hmac.compare_digest(given, self.api_key):
                return _json({"message": "Unauthorized", "statusCode": 401}, 401)
        try:
            endpoint, args = self._urls.bind_to_environ(request.environ).match()
        except Exception:
            return _fail(404, f"Cannot {request.method} {request.path}")
        handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
        with self._lock:
            return handler(request, **args)

    def _session_or_404(self, name: str) -> dict[str, Any] | Response:
        session = self.sessions.get(name)
        if session is None:
            return _fail(
                404,
                f"We didn't find a session with name '{name}'. "
                f"Please start it first by using POST /api/sessions/{name}/start request",
            )
        return session

    def _list_sessions(self, request: Request) -> Response:
        return _json([self._public(s) for s in self.sessions.values()])

    def _create_session(self, request: Request) -> Response:
        data = request.get_json(silent=True) or {}
        name = data.get("name") or "default"
        if name in self.sessions:
            return _fail(422, f"Session '{name}' already exists")
        session = self._new_session(name, data.get("config"))
        self.sessions[name] = session
        self._set(session, "STARTING" if data.get("start", True) else "STOPPED")
        return _json(self._public(session), 201)

    def _get_session(self, request: Request, name: str) -> Response:
        found = self._session_or_404(name)
        return found if isinstance(found, Response) else _json(self._public(found))

    def _update_session(self, request: Request, name: str) -> Response:
        found = self._session_or_404(name)
        if isinstance(found, Response):
            return found
        found["config"] = (request.get_json(silent=True) or {}).get("config") or {}
        self._set(found, "STARTING")
        return _json(self._public(found))

    def _delete_session(self, request: Request, name: str) -> Response:
        found = self._session_or_404(name)
        if isinstance(found, Response):
            return found
        del self.sessions[name]
        return _json({})

    def _me(self, request: Request, name: str) -> Response:
        found = self._session_or_404(name)
        return found if isinstance(found, Response) else _json(found["me"])

    def _session_action(self, request: Request, name: str, action: str) -> Response:
        found = self._session_or_404(name)
        if isinstance(found, Response):
            return found
        if action == "start":
            if found["status"] in ("STOPPED", "FAILED"):
                self._set(found, "STARTING")
        elif action == "stop":
            self._set(found, "STOPPED")
        elif action == "restart":
            self._set(found, "STARTING")
        elif action == "logout":
            found["me"] = None
            self._set(found, "STARTING")
        else:
            return _fail(404, f"Cannot POST {request.path}")
        return _json(self._public(found), 201)

    def _qr(self, request: Request, name: str) -> Response:
        found = self._session_or_404(name)
        if isinstance(found, Response):
            return found
        if found["status"] != "SCAN_QR_CODE":
            return _fail(
                422,
                "Session status is not as expected. Try again later or restart the session",
                session=name,
                status=found["status"],
                expected=["SCAN_QR_CODE"],
            )
        if request.args.get("format") == "raw":
            return _json({"value": QR_RAW})
        if "application/json" in request.headers.get("Accept", "") and not self.qr_always_png:
            return _json({"mimetype": "image/png", "data": base64.b64encode(PNG_1X1).decode()})
        return Response(PNG_1X1, mimetype="image/png")

    def _send(self, request: Request, kind: str) -> Response:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return _fail(400, ["body must be a JSON object"])
        found = self._session_or_404(str(data.get("session") or "default"))
        if isinstance(found, Response):
            return found
        if found["status"] != "WORKING":
            return _fail(
                422,
                "Session status is not as expected. Try again later or restart the session",
                session=found["name"],
                status=found["status"],
                expected=["WORKING"],
            )
        chat_id = data.get("chatId")
        if not isinstance(chat_id, str) or not chat_id.endswith(("@c.us", "@g.us", "@lid")):
            return _fail(400, ["chatId must be like 16505551234@c.us"])
        if kind == "text" and not data.get("text"):
            return _fail(400, ["text should not be empty"])
        if kind != "text":
            file = data.get("file")
            if (
                not isinstance(file, dict)
                or not (file.get("url") or file.get("data"))
                or not file.get("mimetype")
            ):
                return _fail(400, ["file must have mimetype and url or data"])
        if chat_id.partition("@")[0] in self.unregistered:
            return _fail(422, f"The number {chat_id} is not registered on WhatsApp")
        hex_id = secrets.token_hex(10).upper()
        serialized = f"true_{chat_id}_{hex_id}"
        self.sent.append({"kind": kind, "id": serialized, **data})
        if self.id_style == "object":
            message_id: Any = {"fromMe": True, "remote": chat_id, "id": hex_id, "_serialized": serialized}
        else:
            message_id = serialized
        me = found["me"]["id"] if found["me"] else None
        return _json(
            {
                "id": message_id,
                "timestamp": int(time.time()),
                "from": me,
                "fromMe": True,
                "to": chat_id,
                "body": data.get("text") or data.get("caption") or "",
                "hasMedia": kind != "text",
                "ack": 0,
            },
            201,
        )

    def _send_text(self, request: Request) -> Response:
        return self._send(request, "text")

    def _send_image(self, request: Request) -> Response:
        return self._send(request, "image")

    def _send_file(self, request: Request) -> Response:
        return self._send(request, "file")

    def _send_seen(self, request: Request) -> Response:
        self.seen.append(request.get_json(silent=True) or {})
        return _json({}, 201)

    def _file(self, request: Request, file_path: str) -> Response:
        found = self._files.get(f"/api/files/{file_path}")
        if found is None:
            return _fail(404, "File not found")
        return Response(found[0], mimetype=found[1])
