"""Small helpers shared by tests: signed sandbox webhooks."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from wa_portal.providers.sandbox import inbound_payload, sign, status_payload


def sandbox_ids(conn) -> tuple[str, str, str]:
    from wa_portal.services import connections

    return (
        conn.config["phone_number_id"],
        conn.config["display_phone"],
        connections.get_secrets(conn)["app_secret"],
    )


def post_signed(
    client: FlaskClient, body: bytes, secret: str, path: str = "/webhooks/sandbox", **headers: str
):
    return client.post(
        path,
        data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body), **headers},
    )


def patient_message(
    conn, text: str, phone: str = "+34612345678", name: str = "Maria Lopez"
) -> tuple[bytes, str]:
    pnid, display, _ = sandbox_ids(conn)
    payload, msg_id = inbound_payload(
        phone_number_id=pnid, display_phone=display, patient_phone=phone, patient_name=name, text=text
    )
    return json.dumps(payload).encode(), msg_id


def status_body(conn, message_ids: list[str], status: str, phone: str = "+34612345678") -> bytes:
    pnid, display, _ = sandbox_ids(conn)
    payload: dict[str, Any] = status_payload(
        phone_number_id=pnid,
        display_phone=display,
        patient_phone=phone,
        message_ids=message_ids,
        status=status,
    )
    return json.dumps(payload).encode()
