"""A real ``moto_server`` subprocess for SES and S3, and helpers to read what it received.

Start it (about half a second)::

    with moto_server() as url:                      # http://127.0.0.1:<free port>
        verify_email(url, "clinic@example.com")     # SES refuses unverified senders, like the real sandbox
        SesProvider({"from_email": "clinic@example.com", "endpoint_url": url, **credentials()}).send(...)
        assert sent_emails(url)[0]["destinations"]["ToAddresses"] == ["patient@example.com"]

Helpers:
- ``sent_emails(url)``: SES messages from ``GET /moto-api/data.json`` (``id, source, destinations, subject,
  body``; moto keeps only the HTML part when both parts are sent).
- ``reset(url)`` (``POST /moto-api/reset``); ``verify_email(url, address)``.
- ``enforce_auth(url, True)``: every call needs a known IAM key (unknown keys get ``InvalidClientTokenId``).
- ``boto_kwargs(url)`` for ``boto3.client(...)`` (S3 works the same way); ``credentials()`` for the adapter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

REGION = "eu-west-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # moto accepts any key unless enforce_auth() is on

_http = requests.Session()
_http.trust_env = False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def moto_server_path() -> str:
    """The moto_server script next to this interpreter (the virtualenv's bin/)."""
    candidate = Path(sys.executable).parent / "moto_server"
    if not candidate.exists():
        raise RuntimeError(f"moto_server not found next to {sys.executable}: pip install 'moto[server]'")
    return str(candidate)


@contextmanager
def moto_server(timeout: float = 20.0) -> Iterator[str]:
    """Run ``moto_server -H 127.0.0.1 -p <free port>``; yields its URL and stops it on exit."""
    port = _free_port()
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.Popen(
        [moto_server_path(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}")
            try:
                _http.get(f"{url}/moto-api/data.json", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer within {timeout}s") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def boto_kwargs(url: str, region: str = REGION) -> dict[str, Any]:
    """Keyword arguments for ``boto3.client(service, **boto_kwargs(url))``."""
    return {
        "endpoint_url": url,
        "region_name": region,
        "aws_access_key_id": ACCESS_KEY_ID,
        "aws_secret_access_key": SECRET_ACCESS_KEY,
    }


def credentials() -> dict[str, str]:
    """The key settings of the ses adapter."""
    return {"region": REGION, "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY}


def verify_email(url: str, address: str, region: str = REGION) -> None:
    """Verify a sender identity (moto, like the SES sandbox, rejects unverified senders)."""
    import boto3

    boto3.client("ses", **boto_kwargs(url, region)).verify_email_identity(EmailAddress=address)


def sent_emails(url: str) -> list[dict[str, Any]]:
    """SES messages moto accepted, oldest first."""
    data = _http.get(f"{url}/moto-api/data.json", timeout=10).json()
    return list(data.get("ses", {}).get("Message", []))


def reset(url: str) -> None:
    """Forget everything: sent mail, identities, buckets."""
    _http.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()


def enforce_auth(url: str, on: bool = True) -> None:
    """Make moto check access keys like IAM does (unknown keys → InvalidClientTokenId), or stop checking."""
    _http.post(f"{url}/moto-api/reset-auth", data="0" if on else "inf", timeout=10).raise_for_status()
