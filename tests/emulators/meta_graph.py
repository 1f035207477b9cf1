"""Local stand-in for Meta's Graph API (WhatsApp Cloud API) that also speaks 360dialog's waba-v2 layout.

One app serves both layouts at once (wire formats per ../shared/PROVIDERS.md §1 and §5):

    Meta (Authorization: Bearer <token>)            360dialog (D360-API-KEY: <key>)
    POST   /v23.0/{pnid}/messages                    POST   /messages
    POST   /v23.0/{pnid}/media      (multipart)      POST   /media
    GET    /v23.0/{media_id}  → url on this server   GET    /{media_id}  → url on lookaside.fbsbx.com
    DELETE /v23.0/{media_id}                         DELETE /{media_id}
    GET    /v23.0/{pnid}?fields=…   (health)         GET    /health_status?fields=…
    GET    /v23.0/oauth/access_token (no auth)
    POST   /v23.0/{waba}/subscribed_apps
    POST   /v23.0/{pnid}/register | request_code | verify_code
    GET    /whatsapp_business/attachments/?mid=…&ext=…&hash=…   the download (Bearer or key); 360dialog
                                                                 clients ask this server for that path

Any ``v<N>[.<M>]`` version is accepted. A bad or missing Bearer gets 401 with Graph error 190/463; a bad
key gets 401 ``{"meta": {"httpCode": 401, "developerMessage": "Invalid api_key", "success": false}}``.

Start it::

    from tests.emulators.meta_graph import running_meta_graph

    with running_meta_graph() as graph:                        # a MetaGraphEmulator on a loopback port
        meta = MetaProvider(graph.meta_settings())             # base_url = graph.graph_url ("…/v23.0")
        d360 = Dialog360Provider(graph.dialog360_settings())   # base_url = graph.root_url
        ...
        graph.requests("messages")[-1]["json"]                 # the body the "provider" received

Or serve it yourself: ``emu = MetaGraphEmulator()``, ``with serve(make_meta_app(emu)) as url:``, then
``emu.root_url = url``. ``graph.reset()`` restores every default below and empties the log: call it
between tests that share one server.

State (plain attributes; change them between calls):
    tokens            valid Bearer tokens ({DEFAULT_TOKEN}); the OAuth exchange adds those it issues
    api_keys          360dialog key → phone number id ({DEFAULT_API_KEY: DEFAULT_PNID})
    numbers           pnid → Graph fields (display_phone_number, quality_rating, status, …); add_number()
    oauth_codes       signup code → the token oauth/access_token hands out once; add_oauth_code()
    app_id/app_secret what oauth/access_token checks; oauth_token_field "access_token" or "business_token"
    templates         {} accepts any template; else (name, language) → body parameter count, and a send
                      that does not match gets 132001 / 132000
    recipient_errors  recipient digits → Graph error code, or a dict of error fields with "code"
    media             media id → StoredMedia; add_media() seeds a file a patient "sent"
    sent              wamid → {"pnid", "to", "body"} of every accepted message

Faults (thread-safe; checked before auth, on every route unless ``route=`` names one):
    fail_next(n=1, status=500, code=None, body=None, route=None)   the next n matching calls fail
    fail_rate(rate, status=500, code=None, seed=None, route=None)   each call fails with probability rate
    delay(seconds)                                                  every call waits first (0: off)
    down() / up()                                                   every call answers 503 (Graph code 2)
    fail_recipient(number, code, **fields) → digits                 sends to number get that Graph error
    failing_recipient(code) → "+1999<code:06d>"                     a never-real number failing with code
    clear_faults()
A fault with ``code`` answers that Graph error (with its usual HTTP status unless ``status`` is given);
without one, a 5xx answers a transient Graph error (code 2) and a 4xx an "invalid parameter" (100).
``body`` (dict, str or bytes) replaces the body entirely, e.g. an HTML 502 from a proxy.

Request log: ``graph.log`` (tests.emulators.server.RequestLog), one entry per call, written before the
client gets its answer. Keys: route, method, path, query, headers (names lower-cased), json, form, files
({name: {filename, content_type, data}}), status, response (JSON or None). Routes: messages,
media_upload, media_get, media_delete, phone_number, node (unknown id), oauth, subscribed_apps, register,
request_code, verify_code, download, d360_messages, d360_media_upload, d360_media_get, d360_media_delete,
d360_health. ``graph.requests(route)`` filters the log; ``graph.wait_idle()`` waits for calls still
running (after a client timeout, say) so they cannot land in the next test's log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.routing import BaseConverter

from tests.emulators.server import RequestLog, serve

__all__ = [
    "API_VERSION",
    "DEFAULT_API_KEY",
    "DEFAULT_APP_ID",
    "DEFAULT_APP_SECRET",
    "DEFAULT_DISPLAY_PHONE",
    "DEFAULT_PNID",
    "DEFAULT_TOKEN",
    "DEFAULT_VERIFY_TOKEN",
    "DEFAULT_WABA",
    "DEFAULT_WEBHOOK_TOKEN",
    "ERRORS",
    "MetaGraphEmulator",
    "StoredMedia",
    "graph_error",
    "make_meta_app",
    "running_meta_graph",
    "signature_header",
]

API_VERSION = "v23.0"
DEFAULT_PNID = "106540352242922"  # the ids of ../shared/provider-samples/meta/*
DEFAULT_WABA = "102290129340398"
DEFAULT_DISPLAY_PHONE = "15550783881"
DEFAULT_TOKEN = "test_access_token"
DEFAULT_API_KEY = "test_d360_api_key"
DEFAULT_APP_ID = "test_app_id"
DEFAULT_APP_SECRET = "test_app_secret"  # signs the shared sample bodies (SIGNATURES.md)
DEFAULT_VERIFY_TOKEN = "test_verify_token"
DEFAULT_WEBHOOK_TOKEN = "0123456789abcdef0123456789abcdef"
LOOKASIDE_URL = "https://lookaside.fbsbx.com"
MEDIA_URL_TTL = 300  # Meta's download URLs live about 5 minutes

# code → (usual HTTP status, message, error_data.details, extra fields), after captured bodies and pywa.
ERRORS: dict[int, tuple[int, str, str | None, dict[str, Any]]] = {
    1: (400, "An unknown error occurred", None, {}),
    2: (
        503,
        "An unexpected error has occurred. Please retry your request later.",
        None,
        {"is_transient": True},
    ),
    4: (400, "(#4) Application request limit reached", None, {}),
    100: (400, "(#100) Invalid parameter", "Parameter value is not valid", {}),
    190: (401, "Error validating access token: Session has expired.", None, {"error_subcode": 463}),
    80007: (
        400,
        "(#80007) Rate limit issues",
        "The WhatsApp Business Account has reached its rate limit.",
        {},
    ),
    130429: (400, "(#130429) Rate limit hit", "Cloud API message throughput has been reached.", {}),
    131000: (500, "(#131000) Something went wrong", "Message failed to send due to an unknown error.", {}),
    131026: (
        400,
        "(#131026) Message Undeliverable",
        "Unable to deliver message: the recipient is not on WhatsApp or uses an old WhatsApp version.",
        {},
    ),
    131030: (
        400,
        "(#131030) Recipient phone number not in allowed list",
        "Add recipient phone number to recipient list and try again.",
        {},
    ),
    131047: (
        400,
        "(#131047) Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to "
        "this number.",
        {},
    ),
    131048: (
        400,
        "(#131048) Spam rate limit hit",
        "Too many previous messages were blocked or flagged as spam.",
        {},
    ),
    131050: (
        400,
        "(#131050) User stopped marketing messages",
        "The user chose to stop marketing messages.",
        {},
    ),
    131056: (
        400,
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "Too many messages were sent from this phone number to the same phone number in a short period.",
        {},
    ),
    132000: (
        400,
        "(#132000) Number of parameters does not match the expected number of params",
        "body: number of localizable_params does not match the expected number of params",
        {},
    ),
    132001: (
        404,
        "(#132001) Template name does not exist in the translation",
        "template name does not exist",
        {},
    ),
}

_MESSAGE_TYPES = frozenset(
    {
        "text",
        "image",
        "video",
        "audio",
        "sticker",
        "document",
        "template",
        "interactive",
        "location",
        "contacts",
    }
    | {"reaction"}
)
_MEDIA_TYPES = frozenset({"image", "video", "audio", "sticker", "document"})
_NO_AUTH = frozenset({"oauth", "download"})


def graph_error(code: int, *, status: int | None = None, **fields: Any) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of a Graph error; ``fields`` override message, details, error_subcode, …"""
    usual_status, message, details, extra = ERRORS.get(code, (400, f"(#{code}) Error {code}", None, {}))
    details = fields.pop("details", details)
    err: dict[str, Any] = {"message": fields.pop("message", message), "type": "OAuthException", "code": code}
    err.update(extra)
    err.update(fields)
    if details:
        err["error_data"] = {"messaging_product": "whatsapp", "details": details}
    err["fbtrace_id"] = secrets.token_urlsafe(12)
    return status or usual_status, {"error": err}


def signature_header(body: bytes, app_secret: str = DEFAULT_APP_SECRET) -> dict[str, str]:
    """The header Meta signs a webhook POST with, for drivers posting bodies at our /webhooks/meta."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


@dataclass
class StoredMedia:
    data: bytes
    mime_type: str
    filename: str | None = None
    reported_size: int | None = None  # what GET /{id} claims as file_size (None: the real size)


@dataclass
class _Fault:
    status: int
    code: int | None
    body: Any
    route: str | None
    remaining: int


class _Version(BaseConverter):
    regex = r"v\d+(?:\.\d+)?"


class _Digits(BaseConverter):
    regex = r"\d+"


def _new_media_id() -> str:
    return str(10**15 + secrets.randbelow(9 * 10**15))


def _default_number(pnid: str, display_phone_number: str, **fields: Any) -> dict[str, Any]:
    number = {
        "id": pnid,
        "display_phone_number": display_phone_number,
        "verified_name": "Clinica Exemplo",
        "quality_rating": "GREEN",
        "code_verification_status": "VERIFIED",
        "status": "CONNECTED",
        "waba_id": DEFAULT_WABA,
        "can_send_message": "AVAILABLE",  # 360dialog /health_status
        "health_errors": [],
    }
    number.update(fields)
    return number


class MetaGraphEmulator:
    """State, fault plan and request log of one emulated Graph API; serve it with make_meta_app()."""

    def __init__(self, *, api_version: str = API_VERSION) -> None:
        self.api_version = api_version
        self.root_url = ""  # set by running_meta_graph() (or by you) once served
        self.log = RequestLog()
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._download_key = secrets.token_bytes(16)
        self._faults: list[_Fault] = []
        self._rate: tuple[float, _Fault] | None = None
        self.reset()

    # -- set-up -------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Defaults back, faults off, log and media emptied."""
        with self._lock:
            self.tokens: set[str] = {DEFAULT_TOKEN}
            self.api_keys: dict[str, str] = {DEFAULT_API_KEY: DEFAULT_PNID}
            self.numbers: dict[str, dict[str, Any]] = {}
            self.add_number(DEFAULT_PNID, DEFAULT_DISPLAY_PHONE)
            self.app_id, self.app_secret = DEFAULT_APP_ID, DEFAULT_APP_SECRET
            self.oauth_codes: dict[str, str] = {}
            self.oauth_token_field = "access_token"
            self.subscribed_wabas: dict[str, dict[str, Any]] = {}
            self.templates: dict[tuple[str, str], int] = {}
            self.verification_code = "123456"
            self.recipient_errors: dict[str, int | dict[str, Any]] = {}
            self.media: dict[str, StoredMedia] = {}
            self.sent: dict[str, dict[str, Any]] = {}
            self.clear_faults()
        self.log.clear()

    def add_number(self, pnid: str, display_phone_number: str, **fields: Any) -> dict[str, Any]:
        """Make a phone number id known (Graph fields: quality_rating, status, …)."""
        with self._lock:
            self.numbers[pnid] = _default_number(pnid, display_phone_number, **fields)
            return self.numbers[pnid]

    def add_media(
        self, data: bytes, mime_type: str, *, filename: str | None = None, reported_size: int | None = None
    ) -> str:
        """Store a file as if a patient had sent it; returns its media id."""
        media_id = _new_media_id()
        with self._lock:
            self.media[media_id] = StoredMedia(data, mime_type, filename, reported_size)
        return media_id

    def add_oauth_code(self, code: str, token: str | None = None) -> str:
        """Accept ``code`` once at oauth/access_token; returns the token it will hand out."""
        token = token or f"EAAG{secrets.token_hex(16)}"
        with self._lock:
            self.oauth_codes[code] = token
        return token

    # -- faults -------------------------------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        code: int | None = None,
        body: Any = None,
        route: str | None = None,
    ) -> None:
        with self._lock:
            self._faults.append(_Fault(status, code, body, route, n))

    def fail_rate(
        self,
        rate: float,
        *,
        status: int = 500,
        code: int | None = None,
        seed: int | None = None,
        route: str | None = None,
    ) -> None:
        with self._lock:
            self._rate = (rate, _Fault(status, code, None, route, 0))
            self._rng = random.Random(seed)

    def delay(self, seconds: float) -> None:
        with self._lock:
            self._delay = seconds

    def down(self) -> None:
        with self._lock:
            self._down = True

    def up(self) -> None:
        with self._lock:
            self._down = False

    def fail_recipient(self, number: str, code: int, **fields: Any) -> str:
        digits = re.sub(r"\D", "", number)
        with self._lock:
            self.recipient_errors[digits] = {"code": code, **fields} if fields else code
        return digits

    def failing_recipient(self, code: int, **fields: Any) -> str:
        """A number that is never real (+1 999 …) and always fails with Graph error ``code``."""
        number = f"+1999{code:06d}"
        self.fail_recipient(number, code, **fields)
        return number

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = []
            self._rate = None
            self._rng = random.Random()
            self._delay = 0.0
            self._down = False

    # -- reading what happened ----------------------------------------------------------------------------

    @property
    def graph_url(self) -> str:
        return f"{self.root_url}/{self.api_version}"

    def meta_settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings for MetaProvider aimed at this emulator."""
        return {
            "phone_number_id": DEFAULT_PNID,
            "waba_id": DEFAULT_WABA,
            "display_phone": f"+{DEFAULT_DISPLAY_PHONE}",
            "access_token": DEFAULT_TOKEN,
            "app_secret": DEFAULT_APP_SECRET,
            "verify_token": DEFAULT_VERIFY_TOKEN,
            "base_url": self.graph_url,
            **overrides,
        }

    def dialog360_settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings for Dialog360Provider aimed at this emulator."""
        return {
            "api_key": DEFAULT_API_KEY,
            "display_phone": f"+{DEFAULT_DISPLAY_PHONE}",
            "phone_number_id": DEFAULT_PNID,
            "base_url": self.root_url,
            "webhook_token": DEFAULT_WEBHOOK_TOKEN,
            **overrides,
        }

    def requests(self, route: str | None = None) -> list[dict[str, Any]]:
        return self.log.find(route=route) if route else self.log.find()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no call is being handled; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # -- used by the app ----------------------------------------------------------------------------------

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _leave(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _pick_fault(self, route: str) -> _Fault | None:
        """The fault this call gets, if any (consumes fail_next budget)."""
        with self._lock:
            if self._down:
                return _Fault(503, 2, None, None, 0)
            for fault in self._faults:
                if fault.remaining > 0 and fault.route in (None, route):
                    fault.remaining -= 1
                    return fault
            if self._rate is not None:
                rate, fault = self._rate
                if fault.route in (None, route) and self._rng.random() < rate:
                    return fault
            return None

    def _media_url(self, media_id: str, host: str) -> str:
        expires = int(time.time()) + MEDIA_URL_TTL
        signature = self._hash(media_id, expires)
        return f"{host}/whatsapp_business/attachments/?mid={media_id}&ext={expires}&hash={signature}"

    def _hash(self, media_id: str, expires: int | str) -> str:
        return hmac.new(self._download_key, f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:24]


# --- the WSGI app ----------------------------------------------------------------------------------------


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(code: int, *, status: int | None = None, **fields: Any) -> Response:
    return _json(*graph_error(code, status=status, **fields))


def _unknown_object(node: str) -> Response:
    message = (
        f"Unsupported request - method type: {request.method.lower()}. Object with ID '{node}' does not "
        "exist, cannot be loaded due to missing permissions, or does not support this operation."
    )
    return _error(100, message=message, details=None, error_subcode=33)


def _fault_response(fault: _Fault) -> Response:
    if fault.body is not None:
        if isinstance(fault.body, dict):
            return _json(fault.status, fault.body)
        return Response(fault.body, status=fault.status, mimetype="text/html")
    if fault.code is not None:
        return _error(fault.code, status=fault.status)
    return _error(2 if fault.status >= 500 else 100, status=fault.status)


def _route_name(state: MetaGraphEmulator) -> str:
    endpoint = request.endpoint or "unknown"
    node = (request.view_args or {}).get("node")
    if endpoint == "node":
        if request.method == "DELETE":
            return "media_delete"
        return "media_get" if node in state.media else "phone_number" if node in state.numbers else "node"
    if endpoint == "d360_node":
        return "d360_media_delete" if request.method == "DELETE" else "d360_media_get"
    return endpoint


def _body() -> dict[str, Any]:
    """JSON body, else form fields, else query args (pywa sends request_code's fields as query params)."""
    data = request.get_json(silent=True)
    if isinstance(data, dict):
        return data
    return {**request.args.to_dict(), **request.form.to_dict()}


def make_meta_app(state: MetaGraphEmulator) -> Flask:
    """The WSGI app serving ``state``; see the module docstring for routes."""
    app = Flask("meta_graph_emulator")
    app.url_map.converters["ver"] = _Version
    app.url_map.converters["digits"] = _Digits

    @app.before_request
    def _before() -> Response | None:
        state._enter()
        g.route = _route_name(state)
        with state._lock:
            pause = state._delay
        if pause:
            time.sleep(pause)
        fault = state._pick_fault(g.route)
        if fault is not None:
            return _fault_response(fault)
        if g.route in _NO_AUTH or g.route == "unknown":
            return None
        if g.route.startswith("d360_"):
            g.pnid = state.api_keys.get(request.headers.get("D360-API-KEY", ""))
            if g.pnid is None:
                body = {"meta": {"httpCode": 401, "developerMessage": "Invalid api_key", "success": False}}
                return _json(401, body)
            return None
        if _bearer() not in state.tokens:
            return _error(190, message="Invalid OAuth access token - Cannot parse access token")
        return None

    def _bearer() -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    @app.after_request
    def _record(resp: Response) -> Response:
        files = {}
        for name, file in request.files.items():
            file.stream.seek(0)
            files[name] = {
                "filename": file.filename,
                "content_type": file.mimetype,
                "data": file.stream.read(),
            }
        state.log.add(
            route=g.get("route", "unknown"),
            method=request.method,
            path=request.path,
            query=request.args.to_dict(),
            headers={k.lower(): v for k, v in request.headers.items()},
            json=request.get_json(silent=True),
            form=request.form.to_dict(),
            files=files,
            status=resp.status_code,
            response=resp.get_json(silent=True) if resp.is_json else None,
        )
        return resp

    @app.teardown_request
    def _done(_exc: BaseException | None) -> None:
        state._leave()

    # -- messages -------------------------------------------------------------------------------------

    def send_message(pnid: str, body: Any) -> Response:
        if pnid not in state.numbers:
            return _unknown_object(pnid)
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return _error(100, message="(#100) The parameter messaging_product is required.", details=None)
        if body.get("status") == "read":  # mark as read
            if not body.get("message_id"):
                return _error(100, message="(#100) The parameter message_id is required.", details=None)
            return _json(200, {"success": True})
        to = str(body.get("to") or "")
        digits = re.sub(r"\D", "", to)
        if not digits:
            return _error(100, message="(#100) The parameter to is required.", details=None)
        with state._lock:
            injected = state.recipient_errors.get(digits)
        if injected is not None:
            fields = dict(injected) if isinstance(injected, dict) else {"code": injected}
            return _error(fields.pop("code"), **fields)
        problem = _check_message(state, body)
        if problem is not None:
            return problem
        wamid = "wamid." + base64.b64encode(b"\x15\x02\x00\x11" + secrets.token_bytes(18)).decode()
        with state._lock:
            state.sent[wamid] = {"pnid": pnid, "to": digits, "body": body}
        message: dict[str, Any] = {"id": wamid}
        if body.get("type") == "template":
            message["message_status"] = "accepted"
        return _json(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": digits}],
                "messages": [message],
            },
        )

    @app.post("/<ver:version>/<pnid>/messages", endpoint="messages")
    def messages(version: str, pnid: str) -> Response:
        return send_message(pnid, request.get_json(silent=True))

    @app.post("/messages", endpoint="d360_messages")
    def d360_messages() -> Response:
        return send_message(g.pnid, request.get_json(silent=True))

    # -- media ----------------------------------------------------------------------------------------

    def upload() -> Response:
        if request.form.get("messaging_product") != "whatsapp":
            return _error(100, message="(#100) The parameter messaging_product is required.", details=None)
        file = request.files.get("file")
        if file is None:
            return _error(100, message="(#100) The parameter file is required.", details=None)
        mime_type = request.form.get("type")
        if not mime_type:
            return _error(100, message="(#100) The parameter type is required.", details=None)
        return _json(200, {"id": state.add_media(file.read(), mime_type, filename=file.filename)})

    def media_info(media_id: str, host: str) -> Response:
        with state._lock:
            stored = state.media.get(media_id)
        if stored is None:
            return _unknown_object(media_id)
        size = stored.reported_size if stored.reported_size is not None else len(stored.data)
        return _json(
            200,
            {
                "url": state._media_url(media_id, host),
                "mime_type": stored.mime_type,
                "sha256": base64.b64encode(hashlib.sha256(stored.data).digest()).decode(),
                "file_size": str(size),  # a string, as in captured payloads
                "id": media_id,
                "messaging_product": "whatsapp",
            },
        )

    def media_delete(media_id: str) -> Response:
        with state._lock:
            found = state.media.pop(media_id, None)
        return _json(200, {"success": True}) if found else _unknown_object(media_id)

    @app.post("/<ver:version>/<pnid>/media", endpoint="media_upload")
    def media_upload(version: str, pnid: str) -> Response:
        return upload() if pnid in state.numbers else _unknown_object(pnid)

    @app.post("/media", endpoint="d360_media_upload")
    def d360_media_upload() -> Response:
        return upload()

    @app.route("/<ver:version>/<node>", methods=["GET", "DELETE"], endpoint="node")
    def node(version: str, node: str) -> Response:
        if request.method == "DELETE":
            return media_delete(node)
        if node in state.media:
            return media_info(node, request.host_url.rstrip("/"))
        number = state.numbers.get(node)
        if number is None:
            return _unknown_object(node)
        fields = [f for f in request.args.get("fields", "").split(",") if f] or [
            "display_phone_number",
            "verified_name",
        ]
        return _json(200, {**{f: number[f] for f in fields if f in number}, "id": node})

    @app.route("/<digits:node>", methods=["GET", "DELETE"], endpoint="d360_node")
    def d360_node(node: str) -> Response:
        # 360dialog hands out Meta's own lookaside URL; its clients fetch that path from the 360dialog host.
        return media_delete(node) if request.method == "DELETE" else media_info(node, LOOKASIDE_URL)

    @app.get("/whatsapp_business/attachments/", endpoint="download")
    def download() -> Response:
        key_ok = request.headers.get("D360-API-KEY", "") in state.api_keys
        if _bearer() not in state.tokens and not key_ok:
            return _error(190, message="Invalid OAuth access token - Cannot parse access token")
        media_id, expires = request.args.get("mid", ""), request.args.get("ext", "")
        with state._lock:
            stored = state.media.get(media_id)
        valid = hmac.compare_digest(request.args.get("hash", ""), state._hash(media_id, expires))
        if stored is None or not valid or not expires.isdigit() or int(expires) < time.time():
            return Response("URL signature mismatch or expired", status=404, mimetype="text/plain")
        return Response(stored.data, mimetype=stored.mime_type)

    # -- health ---------------------------------------------------------------------------------------

    @app.get("/health_status", endpoint="d360_health")
    def d360_health() -> Response:
        number = state.numbers.get(g.pnid)
        if number is None:
            return _unknown_object(g.pnid)
        entities = [
            {
                "entity_type": "PHONE_NUMBER",
                "id": g.pnid,
                "can_send_message": number["can_send_message"],
                **({"errors": number["health_errors"]} if number["health_errors"] else {}),
            },
            {"entity_type": "WABA", "id": number["waba_id"], "can_send_message": "AVAILABLE"},
        ]
        body: dict[str, Any] = {
            "health_status": {"can_send_message": number["can_send_message"], "entities": entities}
        }
        body.update({f: number[f] for f in request.args.get("fields", "").split(",") if f in number})
        return _json(200, body)

    # -- embedded signup --------------------------------------------------------------------------------

    @app.get("/<ver:version>/oauth/access_token", endpoint="oauth")
    def oauth(version: str) -> Response:
        args = request.args
        if args.get("client_id") != state.app_id:
            return _error(101, message="Error validating application. Invalid application ID.")
        if args.get("client_secret") != state.app_secret:
            return _error(1, message="Error validating client secret.")
        with state._lock:
            token = state.oauth_codes.pop(args.get("code", ""), None)
            if token is not None:
                state.tokens.add(token)
        if token is None:
            return _error(100, message="Invalid verification code format.", details=None, error_subcode=36007)
        return _json(200, {state.oauth_token_field: token, "token_type": "bearer"})

    @app.post("/<ver:version>/<waba>/subscribed_apps", endpoint="subscribed_apps")
    def subscribed_apps(version: str, waba: str) -> Response:
        with state._lock:
            state.subscribed_wabas[waba] = _body()
        return _json(200, {"success": True})

    @app.post("/<ver:version>/<pnid>/register", endpoint="register")
    def register(version: str, pnid: str) -> Response:
        if pnid not in state.numbers:
            return _unknown_object(pnid)
        body = _body()
        if body.get("messaging_product") != "whatsapp":
            return _error(100, message="(#100) The parameter messaging_product is required.", details=None)
        if not re.fullmatch(r"\d{6}", str(body.get("pin", ""))):
            return _error(100, details="pin must be a 6-digit number")
        with state._lock:
            state.numbers[pnid]["status"] = "CONNECTED"
        return _json(200, {"success": True})

    @app.post("/<ver:version>/<pnid>/request_code", endpoint="request_code")
    def request_code(version: str, pnid: str) -> Response:
        if pnid not in state.numbers:
            return _unknown_object(pnid)
        if _body().get("code_method") not in ("SMS", "VOICE"):
            return _error(100, details="code_method must be SMS or VOICE")
        return _json(200, {"success": True})

    @app.post("/<ver:version>/<pnid>/verify_code", endpoint="verify_code")
    def verify_code(version: str, pnid: str) -> Response:
        if pnid not in state.numbers:
            return _unknown_object(pnid)
        if str(_body().get("code", "")) != state.verification_code:
            return _error(100, details="The verification code is incorrect")
        with state._lock:
            state.numbers[pnid]["code_verification_status"] = "VERIFIED"
        return _json(200, {"success": True})

    return app


def _check_message(state: MetaGraphEmulator, body: dict[str, Any]) -> Response | None:
    """The few checks that make the emulator refuse bodies Meta refuses."""
    mtype = body.get("type", "text")
    if mtype not in _MESSAGE_TYPES:
        return _error(100, details=f"Invalid message type {mtype!r}")
    obj = body.get(mtype)
    if not isinstance(obj, dict):
        return _error(100, message=f"(#100) The parameter {mtype} is required.", details=None)
    if mtype == "text" and not str(obj.get("body") or "").strip():
        return _error(100, message="(#100) The parameter text['body'] is required.", details=None)
    if mtype in _MEDIA_TYPES:
        if ("id" in obj) == ("link" in obj):
            return _error(100, details="Please provide exactly one of id or link")
        if "id" in obj and obj["id"] not in state.media:
            return _error(100, details="Invalid media id")
    if mtype == "template":
        name, language = obj.get("name"), (obj.get("language") or {}).get("code")
        if not name or not language:
            return _error(100, details="template name and language.code are required")
        if state.templates:
            expected = state.templates.get((name, language))
            if expected is None:
                return _error(132001, details=f"template name ({name}) does not exist in {language}")
            given = sum(
                len(c.get("parameters", [])) for c in obj.get("components", []) if c.get("type") == "body"
            )
            if given != expected:
                return _error(132000)
    if mtype == "interactive" and obj.get("type") == "button":
        buttons = (obj.get("action") or {}).get("buttons") or []
        if not 1 <= len(buttons) <= 3 or any(len(b.get("reply", {}).get("title", "")) > 20 for b in buttons):
            return _error(131009, message="(#131009) Parameter value is not valid", details="Invalid buttons")
    return None


@contextmanager
def running_meta_graph(**kwargs: Any) -> Iterator[MetaGraphEmulator]:
    """A fresh emulator served on a free loopback port for the duration of the block."""
    emulator = MetaGraphEmulator(**kwargs)
    with serve(make_meta_app(emulator)) as url:
        emulator.root_url = url
        yield emulator
