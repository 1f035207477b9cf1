"""The delivery pages: notification log (filters, keyset pages, CSV), failed deliveries with Retry, health."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import select

from tests.conftest import csrf_token
from tests.delivery.conftest import PATIENT, messages_to


def _notify(contact, purpose="confirmation", body="Confirmed: Monday 10:00"):
    from wa_portal.services import messaging

    return messaging.queue_notification(
        clinic_id=contact.clinic_id, contact_id=contact.id, purpose=purpose, body=body
    )


def test_failed_delivery_retry_really_sends_again(
    db, client, login, staff, graph, conversation, contact, drain, fast_delivery
):
    from wa_portal.models import DeliveryAttempt

    graph.fail_recipient(PATIENT, 131026)
    msg = _notify(contact)
    drain()
    db.session.expire_all()
    assert msg.status == "failed"
    assert len(messages_to(graph)) == 1

    login(staff)
    page = client.get("/deliveries/failed").get_data(as_text=True)
    assert f'id="failed-{msg.id}"' in page
    assert msg.error_detail in page
    assert "hx-confirm=" in page and PATIENT not in page and "1222" in page

    graph.clear_faults()
    graph.recipient_errors.clear()
    token = csrf_token(client, "/deliveries/failed")
    assert client.post(f"/deliveries/messages/{msg.id}/retry").status_code == 400  # no CSRF token
    resp = client.post(f"/deliveries/messages/{msg.id}/retry", data={"csrf_token": token})
    assert resp.status_code == 302
    drain()
    db.session.expire_all()
    assert msg.status == "sent"
    assert len(messages_to(graph)) == 2  # the provider received a second request
    rounds = [a.round for a in db.session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id))]
    assert rounds == [0, 1]
    assert f'id="failed-{msg.id}"' not in client.get("/deliveries/failed").get_data(as_text=True)
    log = client.get("/deliveries/log").get_data(as_text=True)
    assert f'id="log-{msg.id}"' in log and msg.provider_message_id in log


def test_pages_need_admin_or_staff(db, client, login, make_user, clinic):
    therapist = make_user(clinic, "therapist")
    login(therapist)
    for path in ("/deliveries/log", "/deliveries/failed", "/deliveries/health", "/deliveries/log.csv"):
        assert client.get(path).status_code == 403
    assert client.get("/deliveries/log").status_code == 403


def test_pages_are_clinic_scoped(
    db, client, login, make_clinic, make_user, graph, conversation, contact, drain
):
    graph.fail_recipient(PATIENT, 131026)
    msg = _notify(contact)
    drain()
    outsider = make_user(make_clinic("other"), "admin")
    login(outsider)
    assert f"log-{msg.id}" not in client.get("/deliveries/log").get_data(as_text=True)
    assert f"failed-{msg.id}" not in client.get("/deliveries/failed").get_data(as_text=True)
    token = csrf_token(client, "/deliveries/failed")
    assert client.post(f"/deliveries/messages/{msg.id}/retry", data={"csrf_token": token}).status_code == 404


def test_log_filters_keyset_pages_and_csv(db, client, login, staff, graph, conversation, contact, drain):
    from wa_portal.services import delivery_log

    for i in range(7):
        _notify(contact, purpose="reminder_1d" if i % 2 else "confirmation", body=f"Message {i}")
    drain()
    login(staff)
    html = client.get("/deliveries/log?type=reminder_1d").get_data(as_text=True)
    assert html.count('class="status-') == 3
    assert "confirmation" not in re.sub(r"<option[^>]*>.*?</option>", "", html).split("<tbody")[1]

    # Keyset pages: 3 + 3 + 1, no overlap, newest first.
    flt = delivery_log.LogFilter()
    seen, before = [], None
    while True:
        page = delivery_log.log_page(clinic_id=contact.clinic_id, flt=flt, before=before, limit=3)
        seen += [r.msg.id for r in page.rows]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 7
    frag = client.get(f"/deliveries/log?before={seen[2]}", headers={"HX-Request": "true"})
    assert "<!doctype" not in frag.get_data(as_text=True) and "HX-Request" in frag.headers["Vary"]

    resp = client.get("/deliveries/log.csv?status=sent")
    assert resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(rows) == 7 and {r["status"] for r in rows} == {"sent"}
    assert all(r["recipient"] == "•••• 1222" for r in rows)
    assert all(r["provider_message_id"].startswith("wamid.") for r in rows)
    assert client.get("/deliveries/log.csv?status=failed").get_data(as_text=True).count("\n") == 1
    assert client.get("/deliveries/log?channel=sms").get_data(as_text=True).count('class="status-') == 0
    assert (
        client.get("/deliveries/log?from=2000-01-01&to=2000-01-02")
        .get_data(as_text=True)
        .count('class="status-')
        == 0
    )


def test_health_page_shows_open_circuit_and_last_error(
    db, client, login, staff, graph, conversation, contact, drain, meta_conn
):
    from wa_portal.services import delivery

    graph.down()
    msg = _notify(contact)
    for _ in range(3):
        delivery.deliver(msg.id)
    assert delivery.breaker_for(meta_conn.id).state().state == "open"
    login(staff)
    html = client.get("/deliveries/health").get_data(as_text=True)
    assert f'id="health-{meta_conn.id}"' in html
    assert "Open (paused)" in html
    assert "80 / second" in html
