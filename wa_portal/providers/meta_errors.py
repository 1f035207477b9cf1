"""Cloud API error codes: what the delivery layer does next, and what the receptionist reads.

Meta answers most errors with HTTP 400 whatever the cause, so we branch on ``error.code``; the HTTP
status only decides when the body carries no Graph error (a proxy's 502, 360dialog's own envelope).
Docs: https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes ("…/" in comments
stands for https://developers.facebook.com/docs/whatsapp).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ErrorKind, ProviderError

__all__ = ["AUTH_REASON", "CODES", "ErrorInfo", "classify", "describe", "error_from_response"]

AUTH_REASON = "The WhatsApp access token has expired or is invalid. Reconnect the number in Settings."
_RETRY = " The message will be retried shortly."


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    kind: ErrorKind
    reason: str  # one sentence for a receptionist; no codes, no jargon


K = ErrorKind
CODES: dict[int, ErrorInfo] = {
    # Throttling: the same message goes through after a pause.
    4: ErrorInfo(K.RATE_LIMITED, "WhatsApp is limiting how often this app may call it." + _RETRY),
    80007: ErrorInfo(K.RATE_LIMITED, "This WhatsApp Business account reached its rate limit." + _RETRY),
    130429: ErrorInfo(
        K.RATE_LIMITED, "Messages are going out faster than WhatsApp allows for this number." + _RETRY
    ),
    131056: ErrorInfo(
        K.RATE_LIMITED, "Too many messages were sent to this patient in a short time." + _RETRY
    ),
    131048: ErrorInfo(
        K.RATE_LIMITED,
        "WhatsApp is slowing this number down because recent messages were blocked or reported as spam.",
    ),
    # Transient on Meta's side. Code 1 ("unknown") is deliberately absent: Graph also uses it for a wrong
    # client secret, so it is retried only when it comes as a 5xx or with is_transient.
    2: ErrorInfo(K.RETRYABLE, "WhatsApp is temporarily unavailable." + _RETRY),
    131000: ErrorInfo(
        K.RETRYABLE, "WhatsApp could not send the message because of a problem on its side." + _RETRY
    ),
    131016: ErrorInfo(K.RETRYABLE, "A WhatsApp service is temporarily unavailable." + _RETRY),
    133004: ErrorInfo(K.RETRYABLE, "The WhatsApp server is temporarily unavailable." + _RETRY),
    # Credentials: every later message on this connection fails the same way.
    190: ErrorInfo(K.AUTH, AUTH_REASON),
    10: ErrorInfo(
        K.AUTH, "The WhatsApp access token may not use this number. Reconnect the number in Settings."
    ),
    # The 24-hour customer-service window. Docs: …/cloud-api/guides/send-messages#customer-service-windows
    131047: ErrorInfo(
        K.WINDOW_CLOSED,
        "More than 24 hours have passed since the patient last wrote. Send an approved template instead.",
    ),
    # The recipient.
    131026: ErrorInfo(
        K.RECIPIENT_INVALID,
        "This number cannot receive WhatsApp messages (not on WhatsApp or an outdated app).",
    ),
    131030: ErrorInfo(
        K.RECIPIENT_INVALID,
        "This number is not on the test number's list of allowed recipients. Add it in Meta's App Dashboard.",
    ),
    131021: ErrorInfo(K.RECIPIENT_INVALID, "A message cannot be sent to the clinic's own WhatsApp number."),
    131050: ErrorInfo(
        K.OPTED_OUT, "The patient chose to stop receiving marketing messages from this business on WhatsApp."
    ),
    # Templates.
    132000: ErrorInfo(
        K.PERMANENT,
        "The template needs a different number of values than were filled in. Check its variables.",
    ),
    132001: ErrorInfo(K.PERMANENT, "This template does not exist in this language or is not approved yet."),
    132005: ErrorInfo(K.PERMANENT, "The template text is too long once its values are filled in."),
    132007: ErrorInfo(K.PERMANENT, "The template's content breaks a WhatsApp policy."),
    132012: ErrorInfo(
        K.PERMANENT, "A template value has the wrong format (for example text where an image belongs)."
    ),
    132015: ErrorInfo(
        K.PERMANENT, "WhatsApp paused this template because of low quality. Use another template."
    ),
    132016: ErrorInfo(K.PERMANENT, "WhatsApp disabled this template. Use another template."),
    # Account and content problems nobody at the front desk can retry away.
    131008: ErrorInfo(K.PERMANENT, "The message is missing a required part."),
    131009: ErrorInfo(K.PERMANENT, "WhatsApp did not accept a value in the message."),
    131031: ErrorInfo(
        K.PERMANENT, "The WhatsApp Business account is locked. Check it in Meta Business Manager."
    ),
    131042: ErrorInfo(
        K.PERMANENT,
        "There is a payment problem on the WhatsApp Business account. Check it in Meta Business Manager.",
    ),
    131049: ErrorInfo(
        K.PERMANENT,
        "WhatsApp held back this marketing message so the patient does not get too many. Try another day.",
    ),
    131051: ErrorInfo(K.PERMANENT, "WhatsApp does not support this kind of message."),
    131052: ErrorInfo(K.PERMANENT, "WhatsApp could not download the patient's file."),
    131053: ErrorInfo(K.PERMANENT, "WhatsApp could not use the attached file (wrong type or too large)."),
    133010: ErrorInfo(
        K.PERMANENT, "This number is not registered with the WhatsApp Cloud API. Finish its setup."
    ),
    368: ErrorInfo(K.PERMANENT, "WhatsApp temporarily blocked this number for policy violations."),
}

# Code 100 ("invalid parameter") is about the recipient when the text names `to` or the recipient; subcode 33
# means the object (usually our phone_number_id) does not exist or the token may not see it.
_RECIPIENT_HINT = re.compile(
    r"recipient|[\"'`]to[\"'`]|\b(?:param(?:eter)?|field)\s+to\b|\bto\s+(?:param(?:eter)?|field|number)\b",
    re.I,
)
_INVALID_RECIPIENT = "WhatsApp did not accept the patient's phone number. Check it has the country code."
_INVALID_PARAMETER = "WhatsApp did not accept a value in the message."
_UNKNOWN_OBJECT = "The WhatsApp number ID in Settings was not found, or the access token may not use it."
_CODE_PREFIX = re.compile(r"^\(#\d+\)\s*")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def classify(code: int | None, *, subcode: int | None = None, text: str = "") -> ErrorInfo | None:
    """The table entry for a Graph error code; ``text`` (message + details) decides code 100."""
    if code == 100:
        if subcode == 33:
            return ErrorInfo(K.PERMANENT, _UNKNOWN_OBJECT)
        if _RECIPIENT_HINT.search(text):
            return ErrorInfo(K.RECIPIENT_INVALID, _INVALID_RECIPIENT)
        return ErrorInfo(K.PERMANENT, _INVALID_PARAMETER)
    return CODES.get(code) if code is not None else None


def describe(code: int | str | None, title: str | None = None) -> str:
    """A receptionist-readable sentence for a code seen in a failed-status webhook (title in parentheses)."""
    info = classify(_int(code), text=title or "")
    base = info.reason if info else "WhatsApp could not deliver the message."
    return f"{base} ({title})" if title else base


def _provider_note(err: Mapping[str, Any], known: bool) -> str:
    """The provider's own words: a short title for codes we explain, the details where we cannot."""
    data = err.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    title = err.get("error_user_title") or _CODE_PREFIX.sub("", str(err.get("message") or ""))
    note = title if known else (details or err.get("error_user_msg") or title)
    return str(note or "").strip()[:200]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "•••")
    return text


def error_from_response(
    status_code: int,
    body: Any,
    *,
    service: str = "WhatsApp",
    auth_reason: str = AUTH_REASON,
    retry_after: float | None = None,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """Turn a failed HTTP answer (status + parsed JSON body, or None) into a classified ProviderError."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(err, Mapping) and _int(err.get("code")) is not None:
        code = _int(err.get("code"))
        data = err.get("error_data")
        details = data.get("details") if isinstance(data, Mapping) else ""
        info = classify(code, subcode=_int(err.get("error_subcode")), text=f"{err.get('message')} {details}")
        known = info is not None and code != 100
        if info is None or info.kind is K.PERMANENT:
            # Meta flags some failures as transient; a 5xx is never the message's fault.
            if err.get("is_transient") is True or status_code >= 500:
                info = ErrorInfo(K.RETRYABLE, f"{service} had a temporary problem." + _RETRY)
            elif info is None:
                info = ErrorInfo(K.AUTH, auth_reason) if status_code == 401 else None
        if info is None:
            info = ErrorInfo(K.PERMANENT, f"{service} refused the message.")
        note = _provider_note(err, known)
        detail = f"{info.reason} ({note})" if note else info.reason
        return ProviderError(
            info.kind,
            code,
            _scrub(detail, secrets),
            status_code=status_code,
            retry_after=retry_after,
        )
    return _plain_error(status_code, service=service, auth_reason=auth_reason, retry_after=retry_after)


def _plain_error(
    status_code: int, *, service: str, auth_reason: str, retry_after: float | None
) -> ProviderError:
    """No Graph error object: decide by HTTP status (a proxy page, an empty body, a BSP's own envelope)."""
    if status_code == 401:
        kind, reason = K.AUTH, auth_reason
    elif status_code == 429:
        kind, reason = K.RATE_LIMITED, f"{service} is receiving too many requests." + _RETRY
    elif status_code >= 500:
        kind, reason = K.RETRYABLE, f"{service} is temporarily unavailable (HTTP {status_code})." + _RETRY
    else:
        kind, reason = K.PERMANENT, f"{service} refused the request (HTTP {status_code})."
    return ProviderError(
        kind, f"http_{status_code}", reason, status_code=status_code, retry_after=retry_after
    )
