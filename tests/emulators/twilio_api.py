"""Twilio Messages API emulator, plus the fault controls every emulator in this package shares.

Start it (the real twilio SDK talks to it through ``base_url``)::

    emu = TwilioEmulator()                  # account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
    with serve(emu) as url:                 # tests.emulators.server.serve
        provider = TwilioProvider({"account_sid": emu.account_sid, "auth_token": emu.auth_token,
                                   "whatsapp_from": "+15550783881", "base_url": url})

Routes (HTTP Basic ``account_sid:auth_token`` on all but the media CDN, else 401 ``{"code": 20003}``):
- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` form ``To, From | MessagingServiceSid, Body, MediaUrl*,
  ContentSid, ContentVariables, StatusCallback`` → 201 Message JSON (``SM…``/``MM…``, status ``queued``,
  or ``accepted`` with a Messaging Service). Validates like Twilio: 21604 no To, 21603 no sender,
  21602 no content, 63007 WhatsApp To with a non-WhatsApp From, 21910 the reverse.
- ``GET /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json`` → the stored message or 404 ``{code: 20404}``.
- ``GET /2010-04-01/Accounts/{sid}.json`` → the account; ``emu.account_status`` ("active", "suspended" …).
- ``GET /2010-04-01/Accounts/{sid}/Messages/{MM}/Media/{ME}`` → 307 to ``http://localhost:{port}/media-cdn/{ME}``
  (another host name, no auth, like Twilio's storage redirect), or the bytes directly with ``redirect=False``.
  Add files with ``emu.add_media``.

Recipient-driven errors (``To`` with or without ``whatsapp:``): the ``*_TO`` constants below, or your own with
``emu.error_for_to["+1555…"] = 21211`` (any code in ``ERROR_RESPONSES``).

Faults (``emu.faults``, thread-safe, apply to every route; ``path`` narrows to paths containing it):
``fail_next(n=1, status=500, body=None, path=None)``, ``fail_rate(p, status=500)``, ``delay(seconds)``,
``down()`` / ``up()`` (the connection is dropped: clients see a ConnectionError), ``reset()`` (also releases
delayed requests and waits until they are logged). ``wsgi_app(faults, log, handle)`` gives any werkzeug
handler the same faults and logging; the WAHA and Chatwoot emulators use it.

``emu.reset()`` returns to a fresh state on the same port (share one served emulator per module).

Request log: ``emu.log`` (a ``RequestLog``); every entry has ``method, path, query, headers, body, form
(name → list of values), files, json, auth (user, password) | None, status, error``; ``error`` is set when
the emulator itself crashed and answered 500 (``emulator_errors(emu.log)`` lists them, for a teardown check).
``emu.sent`` lists created messages.

Signing inbound traffic: ``sign_form(url, params, auth_token) -> SignedForm`` (RequestValidator's own
compute_signature); ``inbound_form(...)`` builds an inbound WhatsApp/SMS form;
``emu.status_form(sid, status)`` signs a status callback for a created message's StatusCallback URL and
``emu.deliver_status(...)`` POSTs it. ``SignedForm.as_webhook_request()`` gives the adapter-level request.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import requests
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .server import RequestLog

ACCOUNT_SID = "AC1f2e3d4c5b6a79880a1b2c3d4e5f6a7b"
AUTH_TOKEN = "test_auth_token_0123456789abcdef"

# Twilio's own magic test numbers where one exists. Docs: https://www.twilio.com/docs/iam/test-credentials
INVALID_TO = "+15005550001"  # 21211
OPTED_OUT_TO = "+15005550004"  # 21610
NOT_MOBILE_TO = "+15005550009"  # 21614
UNVERIFIED_TO = "+15005550008"  # 21608
WINDOW_CLOSED_TO = "+15005563016"  # 63016
RATE_LIMITED_TO = "+15005520429"  # 20429 as HTTP 429

# code → (HTTP status, message) as Twilio words them.
ERROR_RESPONSES: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21608: (400, "The number is unverified. Trial accounts cannot send messages to unverified numbers."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21910: (400, "Invalid 'From' and 'To' pair. From and To should be of the same channel"),
    63007: (400, "Twilio could not find a Channel with the specified From address"),
    63016: (
        400,
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template.",
    ),
}

# A valid 1x1 PNG (the shared WAHA QR sample), handy as media content.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class Faults:
    """Thread-safe fault injection shared by the emulators (Twilio, WAHA, Chatwoot)."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._queue: list[tuple[int, Any, str | None]] = []
        self._rate = 0.0
        self._rate_status = 500
        self._delay = 0.0
        self._down = False
        self._rng = random.Random(seed)
        self._wake = threading.Event()
        self._inflight = 0
        self._idle = threading.Condition()

    def fail_next(self, n: int = 1, status: int = 500, body: Any = None, path: str | None = None) -> None:
        """The next ``n`` requests (to paths containing ``path``) answer ``status`` with ``body`` (JSON)."""
        with self._lock:
            self._queue.extend([(status, body, path)] * n)

    def fail_rate(self, p: float, status: int = 500) -> None:
        """Each request fails with probability ``p`` (seeded, so a run is repeatable)."""
        with self._lock:
            self._rate, self._rate_status = p, status

    def delay(self, seconds: float) -> None:
        """Hold every answer this long (``reset()`` releases waiting requests)."""
        with self._lock:
            self._delay = seconds
            self._wake.clear()

    def down(self) -> None:
        """Drop every connection without an answer, as a crashed or unreachable server would."""
        with self._lock:
            self._down = True

    def up(self) -> None:
        with self._lock:
            self._down = False

    def reset(self) -> None:
        """Clear every fault, release delayed requests and wait until they have been answered and logged."""
        with self._lock:
            self._queue.clear()
            self._rate, self._delay, self._down = 0.0, 0.0, False
            self._wake.set()
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0, timeout=5)

    def begin(self) -> None:
        """A request arrived (wsgi_app counts requests so reset() can wait for stragglers)."""
        with self._idle:
            self._inflight += 1

    def end(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def apply(self, request: Request) -> Response | None:
        """Run the configured faults for one request; a Response means 'answer this instead'."""
        with self._lock:
            delay, down = self._delay, self._down
            failure: tuple[int, Any] | None = None
            for i, (status, body, path) in enumerate(self._queue):
                if path is None or path in request.path:
                    failure = (status, body)
                    del self._queue[i]
                    break
            if failure is None and self._rate and self._rng.random() < self._rate:
                failure = (self._rate_status, None)
        if delay:
            self._wake.wait(delay)
        if down:
            return _DROP
        if failure is not None:
            status, body = failure
            payload = body if body is not None else {"message": "injected failure", "status": status}
            return Response(json.dumps(payload), status=status, mimetype="application/json")
        return None


class _Drop(Response):
    """Marker: close the client's connection instead of answering."""


_DROP = _Drop(status=200)


def wsgi_app(
    faults: Faults, log: RequestLog, handle: Callable[[Request], Response]
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """Wrap ``handle`` with faults and request logging (shared by the emulators)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        faults.begin()
        try:
            return _serve(environ, start_response)
        finally:
            faults.end()

    def _serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_data(cache=True)
        files: dict[str, list[tuple[str | None, str, bytes]]] = {}
        for name in request.files:
            for upload in request.files.getlist(name):
                files.setdefault(name, []).append((upload.filename, upload.mimetype, upload.read()))
                upload.stream.seek(0)  # the handler reads it again
        error: str | None = None
        try:
            response = faults.apply(request) or handle(request)
        except Exception as exc:  # an emulator bug: answer 500 and leave a trace in the log
            error = f"{type(exc).__name__}: {exc}"
            response = Response(
                json.dumps({"message": f"emulator error: {error}"}), 500, mimetype="application/json"
            )
        try:
            parsed_json = request.get_json(silent=True) if request.is_json else None
        except Exception:
            parsed_json = None
        auth = request.authorization
        log.add(
            method=request.method,
            path=request.path,
            query=request.args.to_dict(flat=True),
            headers=dict(request.headers.items()),
            body=body,
            form={k: request.form.getlist(k) for k in request.form},
            files=files,
            json=parsed_json,
            auth=(auth.username, auth.password) if auth and auth.type == "basic" else None,
            status=None if response is _DROP else response.status_code,
            error=error,
        )
        request.close()  # uploaded files live in temporary files
        if response is _DROP:
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            start_response("200 OK", [("Content-Length", "0")])
            return []
        return response(environ, start_response)

    return app


def emulator_errors(log: RequestLog) -> list[str]:
    """Crashes of the emulator itself (answered as 500), which would make a test pass for the wrong reason."""
    return [f"{e['method']} {e['path']}: {e['error']}" for e in log.find() if e.get("error")]


def _now() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def _error(code: int, status: int | None = None, message: str | None = None) -> Response:
    http_status, text = ERROR_RESPONSES.get(code, (400, "Error"))
    status = status or http_status
    payload = {
        "code": code,
        "message": message or text,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def _bare(address: str) -> str:
    return address.removeprefix("whatsapp:")


@dataclass(frozen=True)
class SignedForm:
    """A form POST as Twilio would send it to ``url``."""

    url: str
    body: bytes
    headers: dict[str, str]
    form: dict[str, list[str]] = field(default_factory=dict)

    def as_webhook_request(self) -> Any:
        """The adapter-level request (wa_portal.providers.base.WebhookRequest)."""
        from wa_portal.providers.base import WebhookRequest

        return WebhookRequest(
            method="POST", url=self.url, headers=self.headers, body=self.body, form=self.form
        )


def sign_form(url: str, params: Mapping[str, str | list[str]], auth_token: str = AUTH_TOKEN) -> SignedForm:
    """Encode ``params`` and sign them for ``url`` with the SDK's own RequestValidator."""
    pairs = [(k, v) for k, vals in params.items() for v in ([vals] if isinstance(vals, str) else vals)]
    signature = RequestValidator(auth_token).compute_signature(url, MultiDict(pairs))
    form: dict[str, list[str]] = {}
    for k, v in pairs:
        form.setdefault(k, []).append(v)
    return SignedForm(
        url=url,
        body=urlencode(pairs).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        form=form,
    )


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def inbound_form(
    *,
    from_phone: str = "+16505551234",
    to_phone: str = "+15550783881",
    body: str = "Olá",
    account_sid: str = ACCOUNT_SID,
    channel: str = "whatsapp",
    profile_name: str | None = "Maria Souza",
    media: Sequence[tuple[str, str]] = (),
    button: tuple[str, str] | None = None,
    location: tuple[str, str] | None = None,
    message_sid: str | None = None,
) -> dict[str, str]:
    """An inbound-message webhook form (fields per Twilio's incoming-message webhook)."""
    sid = message_sid or new_sid("MM" if media else "SM")
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    form = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "AccountSid": account_sid,
        "From": prefix + from_phone,
        "To": prefix + to_phone,
        "Body": body,
        "NumMedia": str(len(media)),
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    if channel == "whatsapp":
        form["WaId"] = from_phone.lstrip("+")
        if profile_name:
            form["ProfileName"] = profile_name
    for n, (url, content_type) in enumerate(media):
        form[f"MediaUrl{n}"] = url
        form[f"MediaContentType{n}"] = content_type
    if button:
        form["ButtonPayload"], form["ButtonText"] = button
    if location:
        form["Latitude"], form["Longitude"] = location
    return form


class TwilioEmulator:
    """A WSGI app speaking Twilio's Messages API; see the module docstring."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.log = RequestLog()
        self.faults = Faults()
        self._lock = threading.Lock()
        self.reset()
        base = "/2010-04-01/Accounts/<sid>"
        self._urls = Map(
            [
                Rule(f"{base}/Messages.json", methods=["POST"], endpoint="create"),
                Rule(f"{base}/Messages/<msid>.json", methods=["GET"], endpoint="fetch"),
                Rule(f"{base}.json", methods=["GET"], endpoint="account"),
                Rule(f"{base}/Messages/<msid>/Media/<media_sid>", methods=["GET"], endpoint="media"),
                Rule("/media-cdn/<media_sid>", methods=["GET"], endpoint="cdn"),
            ]
        )
        self._app = wsgi_app(self.faults, self.log, self._handle)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self._app(environ, start_response)

    def reset(self) -> None:
        """Back to a fresh emulator (log, faults, messages, files), keeping the served port."""
        self.faults.reset()  # first: it waits for delayed requests still being answered
        self.log.clear()
        with self._lock:
            self.account_status = "active"
            self.error_for_to: dict[str, int] = {
                INVALID_TO: 21211,
                OPTED_OUT_TO: 21610,
                NOT_MOBILE_TO: 21614,
                UNVERIFIED_TO: 21608,
                WINDOW_CLOSED_TO: 63016,
                RATE_LIMITED_TO: 20429,
            }
            self.messages: dict[str, dict[str, Any]] = {}
            self.sent: list[dict[str, Any]] = []
            self._files: dict[str, tuple[bytes, str, bool]] = {}

    @property
    def messages_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def add_media(
        self, data: bytes = PNG_1X1, content_type: str = "image/png", *, redirect: bool = True
    ) -> str:
        """Store a file; returns its media path (join it to the served URL)."""
        media_sid = new_sid("ME")
        with self._lock:
            self._files[media_sid] = (data, content_type, redirect)
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages/{new_sid('MM')}/Media/{media_sid}"

    # --- handlers --------------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        adapter = self._urls.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except Exception:
            return _error(20404)
        if endpoint == "cdn":
            return self._cdn(args["media_sid"])
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != (self.account_sid, self.auth_token):
            return _error(20003)
        if args.get("sid") != self.account_sid:
            return _error(20404)
        params = {k: v for k, v in args.items() if k != "sid"}
        handlers: dict[str, Callable[..., Response]] = {
            "create": self._create,
            "fetch": self._fetch,
            "account": self._account,
            "media": self._media,
        }
        return handlers[endpoint](request, **params)

    def _create(self, request: Request) -> Response:
        form = request.form
        to = form.get("To", "")
        sender = form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        media_urls = form.getlist("MediaUrl")
        if not to:
            return _error(21604)
        if not sender and not service:
            return _error(21603)
        if not (form.get("Body") or media_urls or form.get("ContentSid")):
            return _error(21602)
        if sender and to.startswith("whatsapp:") != sender.startswith("whatsapp:"):
            return _error(63007 if to.startswith("whatsapp:") else 21910)
        code = self.error_for_to.get(_bare(to))
        if code is not None:
            return _error(code)
        sid = new_sid("MM" if media_urls else "SM")
        now = _now()
        path = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        message = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": str(len(media_urls)),
            "num_segments": "1",
            "price": None,
            "price_unit": None,
            "sid": sid,
            "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {"media": f"{path}/Media.json"},
            "to": to,
            "uri": f"{path}.json",
        }
        record = {
            **message,
            "media_urls": media_urls,
            "content_sid": form.get("ContentSid"),
            "content_variables": form.get("ContentVariables"),
            "status_callback": form.get("StatusCallback"),
        }
        with self._lock:
            self.messages[sid] = record
            self.sent.append(record)
        return _json(message, 201)

    def _fetch(self, request: Request, msid: str) -> Response:
        with self._lock:
            record = self.messages.get(msid)
        if record is None:
            return _error(20404)
        extras = ("media_urls", "content_sid", "content_variables", "status_callback")
        return _json({k: v for k, v in record.items() if k not in extras})

    def _account(self, request: Request) -> Response:
        return _json(
            {
                "sid": self.account_sid,
                "friendly_name": "Clinic test account",
                "status": self.account_status,
                "type": "Full",
                "owner_account_sid": self.account_sid,
                "date_created": "Wed, 02 Jul 2025 12:00:00 +0000",
                "date_updated": "Wed, 02 Jul 2025 12:00:00 +0000",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}.json",
                "subresource_uris": {},
            }
        )

    def _file(self, media_sid: str) -> tuple[bytes, str, bool] | None:
        with self._lock:
            return self._files.get(media_sid)

    def _media(self, request: Request, msid: str, media_sid: str) -> Response:
        found = self._file(media_sid)
        if found is None:
            return _error(20404)
        data, content_type, redirect = found
        if not redirect:
            return Response(data, mimetype=content_type)
        # Twilio answers a media URL with a redirect to its storage on another host, which needs no
        # credentials; "localhost" is another host name for this same server.
        storage = f"http://localhost:{request.host.rpartition(':')[2]}"
        return Response(status=307, headers={"Location": f"{storage}/media-cdn/{media_sid}"})

    def _cdn(self, media_sid: str) -> Response:
        found = self._file(media_sid)
        if found is None:
            return Response("Not Found", status=404)
        return Response(found[0], mimetype=found[1])

    # --- status callbacks ------------------------------------------------------------------------

    def status_form(
        self, sid: str, status: str, *, error_code: int | None = None, url: str | None = None
    ) -> SignedForm:
        """A signed status callback for a message created here (to its StatusCallback unless ``url``)."""
        with self._lock:
            record = self.messages[sid]
        target = url or record.get("status_callback")
        if not target:
            raise ValueError(f"message {sid} has no StatusCallback")
        params = {
            "SmsSid": sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": record["to"],
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": record["from"] or "",
            "ApiVersion": "2010-04-01",
        }
        if record.get("messaging_service_sid"):
            params["MessagingServiceSid"] = record["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return sign_form(target, params, self.auth_token)

    def deliver_status(self, sid: str, status: str, *, error_code: int | None = None) -> requests.Response:
        """POST the signed status callback to the message's StatusCallback URL."""
        signed = self.status_form(sid, status, error_code=error_code)
        with requests.Session() as session:
            session.trust_env = False
            return session.post(signed.url, data=signed.body, headers=signed.headers, timeout=10)
