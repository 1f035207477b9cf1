"""One error type for every provider failure, classified by what the delivery layer should do next."""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    RETRYABLE = "retryable"  # 5xx, timeouts, connection errors: try the same channel again later
    RATE_LIMITED = "rate_limited"  # throttled: try again after a pause
    WINDOW_CLOSED = "window_closed"  # WhatsApp 24-hour window: only a template goes through
    RECIPIENT_INVALID = "recipient_invalid"  # not on WhatsApp / bad number: no retry on this channel
    OPTED_OUT = "opted_out"  # the recipient said STOP at the provider
    AUTH = "auth"  # our credentials are wrong or expired
    PERMANENT = "permanent"  # anything else the provider refused for good

    @property
    def retryable(self) -> bool:
        return self in (ErrorKind.RETRYABLE, ErrorKind.RATE_LIMITED)


class ProviderError(Exception):
    """A provider call failed. ``detail`` is written for a receptionist, never holds secrets."""

    def __init__(
        self,
        kind: ErrorKind | str,
        code: str | int | None = None,
        detail: str = "",
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = ErrorKind(kind)
        self.code = None if code is None else str(code)
        self.detail = detail or self.kind.value.replace("_", " ")
        self.status_code = status_code
        self.retry_after = retry_after
        super().__init__(f"{self.kind.value}[{self.code}]: {self.detail}")

    @property
    def retryable(self) -> bool:
        return self.kind.retryable


class WebhookError(Exception):
    """A webhook body could not be read (the web layer answers 400)."""
