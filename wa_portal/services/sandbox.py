"""The simulated patient phone: what the patient typed goes out as a signed webhook over HTTP."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests

from ..extensions import db
from ..models import Connection
from ..providers.sandbox import PHONE_LOG_LIMIT, inbound_payload, phone_key, sign, status_payload
from . import connections
from .redis_conn import get_redis

log = logging.getLogger(__name__)


def _ids(conn: Connection) -> tuple[str, str]:
    cfg = conn.config or {}
    return str(cfg.get("phone_number_id")), str(cfg.get("display_phone") or "+15550100000")


def phone_log(conn: Connection, patient_phone: str) -> list[dict[str, Any]]:
    pnid, _ = _ids(conn)
    raw = get_redis().lrange(phone_key(pnid, patient_phone), 0, -1)
    return [json.loads(r) for r in raw]


def patient_says(
    conn: Connection,
    *,
    patient_phone: str,
    patient_name: str,
    text: str,
    base_url: str,
    button_payload: str | None = None,
) -> str:
    """Record the typed message on the phone and have the worker POST it to our webhook."""
    pnid, display = _ids(conn)
    payload, msg_id = inbound_payload(
        phone_number_id=pnid,
        display_phone=display,
        patient_phone=patient_phone,
        patient_name=patient_name,
        text=text,
        button_payload=button_payload,
    )
    entry = {"id": msg_id, "direction": "from_patient", "kind": "text", "text": text, "ts": time.time()}
    key = phone_key(pnid, patient_phone)
    r = get_redis()
    r.rpush(key, json.dumps(entry))
    r.ltrim(key, -PHONE_LOG_LIMIT, -1)
    _post_later(conn, payload, base_url)
    return msg_id


def acknowledge(conn: Connection, *, patient_phone: str, base_url: str) -> int:
    """The phone is open: report the clinic's messages as read, like WhatsApp does."""
    pnid, display = _ids(conn)
    r = get_redis()
    acked_key = f"sandbox:acked:{pnid}"
    new_ids = [
        e["id"]
        for e in phone_log(conn, patient_phone)
        if e.get("direction") == "to_patient" and not r.sismember(acked_key, e["id"])
    ]
    if not new_ids:
        return 0
    r.sadd(acked_key, *new_ids)
    payload = status_payload(
        phone_number_id=pnid,
        display_phone=display,
        patient_phone=patient_phone,
        message_ids=new_ids,
        status="read",
    )
    _post_later(conn, payload, base_url)
    return len(new_ids)


def _post_later(conn: Connection, payload: dict[str, Any], base_url: str) -> None:
    from ..jobs import DEFAULT, enqueue, tasks

    enqueue(tasks.sandbox_post, conn.id, json.dumps(payload), base_url, queue=DEFAULT)


def post_webhook(connection_id: int, body_json: str, base_url: str) -> int:
    """POST a signed body to /webhooks/sandbox over real HTTP (run by the worker, not the view)."""
    conn = db.session.get(Connection, connection_id)
    if conn is None:
        return 404
    secret = connections.get_secrets(conn).get("app_secret", "")
    body = body_json.encode()
    resp = requests.post(
        base_url.rstrip("/") + "/webhooks/sandbox",
        data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body)},
        timeout=10,
    )
    if resp.status_code >= 500:
        resp.raise_for_status()  # let RQ record the failure; the phone shows the message as not sent
    return resp.status_code
