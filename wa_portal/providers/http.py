"""Shared HTTP plumbing for adapters: one pooled session, timeouts, and transport errors as ProviderError."""

from __future__ import annotations

from typing import Any

import requests

from .errors import ErrorKind, ProviderError

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 20.0

POOL_CONNECTIONS = 16  # hosts kept in the pool (one per provider API host, plus emulators in tests)
POOL_MAXSIZE = 16  # kept-alive connections per host: enough for the threads of one process

_session = requests.Session()
# Providers are reached directly; a proxy from the environment must not capture loopback emulators.
_session.trust_env = False
# HTTP keep-alive: a worker sending a batch reuses one TCP (and TLS) connection per provider host
# instead of a handshake per message. max_retries=0: urllib3 must never resend a POST by itself, since
# a send the provider already accepted would reach the patient twice; retries are the delivery
# service's decision (attempt rows, backoff).
for _prefix in ("https://", "http://"):
    _session.mount(
        _prefix,
        requests.adapters.HTTPAdapter(
            pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_MAXSIZE, max_retries=0
        ),
    )


def session() -> requests.Session:
    return _session


def request(method: str, url: str, *, provider: str, **kwargs: Any) -> requests.Response:
    """Make a request; connection problems and timeouts become retryable ProviderErrors."""
    kwargs.setdefault("timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
    try:
        return _session.request(method, url, **kwargs)
    except requests.Timeout as exc:
        raise ProviderError(ErrorKind.RETRYABLE, "timeout", f"{provider} did not answer in time") from exc
    except requests.ConnectionError as exc:
        raise ProviderError(ErrorKind.RETRYABLE, "connection", f"Could not reach {provider}") from exc


def retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None
