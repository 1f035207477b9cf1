"""The inbox at scale: 50,000 conversations and 1,000,000 messages in PostgreSQL.

Run: ``.venv/bin/python tests/benchmarks/bench_inbox.py [--conversations N] [--messages M] [--samples S]
[--live K] [--redis-url URL]``. Creates and drops its own database. Prints p50/p95 server time (Flask
test client, logged in) for the list, a filtered list, a search and a thread page, then the time from a
webhook POST to the message showing in an open browser (live server + real worker process + Chromium)
over K messages. Targets: p95 < 100 ms per page, p95 < 1 s webhook-to-screen. Prints figures only.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WA_INSTANCE_DIR", str(ROOT / "instance" / "bench"))

import psycopg  # noqa: E402

from tests.conftest import (  # noqa: E402
    PASSWORD,
    TEST_KEYS,
    TEST_SECRET_KEY,
    _pg_admin_url,
    _with_db,
    app_config,
    csrf_token,
)

WORDS = [
    "appointment",
    "cleaning",
    "tooth",
    "pain",
    "tomorrow",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "morning",
    "afternoon",
    "evening",
    "invoice",
    "insurance",
    "prescription",
    "reschedule",
    "cancel",
    "confirm",
    "thanks",
    "hello",
    "please",
    "doctor",
    "therapist",
    "session",
    "physio",
    "back",
    "knee",
    "shoulder",
    "massage",
    "xray",
    "results",
    "referral",
    "parking",
    "address",
    "opening",
    "hours",
    "price",
    "payment",
    "card",
    "cash",
    "receipt",
    "late",
    "early",
    "sorry",
    "available",
    "slot",
    "week",
    "next",
    "today",
    "urgent",
    "bleeding",
    "swelling",
    "crown",
    "filling",
    "braces",
    "whitening",
    "checkup",
    "children",
    "daughter",
    "son",
    "husband",
    "wife",
    "form",
    "email",
    "document",
    "photo",
]

# Real text has a long tail: besides the common words, one message in three carries a rarer word
# (a medicine, a street, a surname) drawn from 20,000 made-up ones.
_SYL = ["ba", "ce", "di", "fo", "gu", "ha", "ki", "lo", "mu", "ne", "pi", "ra", "so", "tu", "ve", "xi", "zo"]
RARE = [a + b + c + d for a in _SYL for b in _SYL for c in _SYL for d in _SYL][:20_000]
FIRST_NAMES = ["Maria", "John", "Ana", "Luis", "Sara", "Pedro", "Lucia", "Raj"]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def load(url: str, clinic_id: int, conn_ids: list[int], user_ids: list[int], n_conv: int, n_msg: int) -> None:
    """COPY contacts, conversations and messages straight into PostgreSQL."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    statuses = ["awaiting_human"] * 2 + ["assigned"] * 3 + ["bot"] * 3 + ["closed"] * 2
    with psycopg.connect(url) as pg:
        with pg.cursor() as cur:
            with cur.copy(
                "COPY contact (clinic_id, phone, name, consent, notes, created_at, updated_at) FROM STDIN"
            ) as cp:
                for i in range(n_conv):
                    name = f"{rng.choice(FIRST_NAMES)} Patient{i}"
                    cp.write_row((clinic_id, f"+346{i:08d}", name, "unknown", "", now, now))
            cur.execute("SELECT id FROM contact WHERE clinic_id = %s ORDER BY id", (clinic_id,))
            contact_ids = [r[0] for r in cur.fetchall()]
            per_conv = n_msg // n_conv
            with cur.copy(
                "COPY conversation (clinic_id, connection_id, contact_id, status, assignee_id, "
                "last_inbound_at, last_message_at, last_message_preview, awaiting_since, unread_count, "
                "created_at, updated_at) FROM STDIN"
            ) as cp:
                for i, cid in enumerate(contact_ids):
                    st = rng.choice(statuses)
                    last = now - timedelta(minutes=rng.randint(0, 90 * 24 * 60))
                    cp.write_row(
                        (
                            clinic_id,
                            conn_ids[i % len(conn_ids)],
                            cid,
                            st,
                            rng.choice(user_ids) if st == "assigned" else None,
                            last,
                            last,
                            " ".join(rng.choices(WORDS, k=8)),
                            last if st == "awaiting_human" else None,
                            rng.randint(0, 3),
                            last,
                            last,
                        )
                    )
            cur.execute(
                "SELECT id, connection_id, last_message_at FROM conversation "
                "WHERE clinic_id = %s ORDER BY id",
                (clinic_id,),
            )
            convs = cur.fetchall()
            buf_rows = 0
            with cur.copy(
                "COPY message (clinic_id, conversation_id, connection_id, direction, kind, body, "
                "author_type, author_id, status, provider_message_id, channel, purpose, critical, "
                "attempts, extra, created_at, updated_at) FROM STDIN"
            ) as cp:
                for conv_id, conn_id, last in convs:
                    for j in range(per_conv):
                        at = last - timedelta(minutes=(per_conv - j) * 7)
                        inbound = j % 2 == 0
                        cp.write_row(
                            (
                                clinic_id,
                                conv_id,
                                conn_id,
                                "in" if inbound else "out",
                                "text",
                                " ".join(rng.choices(WORDS, k=rng.randint(4, 18)))
                                + (" " + rng.choice(RARE) if rng.random() < 0.33 else ""),
                                "patient" if inbound else "staff",
                                None if inbound else rng.choice(user_ids),
                                "received" if inbound else rng.choice(["sent", "delivered", "read", "read"]),
                                f"wamid.b{conv_id}x{j}",
                                "whatsapp",
                                "reply",
                                False,
                                0,
                                "{}",
                                at,
                                at,
                            )
                        )
                        buf_rows += 1
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('message', 'id'), (SELECT max(id) FROM message))"
            )
        pg.commit()
        pg.autocommit = True
        pg.execute("VACUUM ANALYZE contact")
        pg.execute("VACUUM ANALYZE conversation")
        pg.execute("VACUUM ANALYZE message")


def timed(client, path: str, samples: int, headers: dict[str, str] | None = None) -> list[float]:
    client.get(path, headers=headers or {})  # warm-up: template compilation, plan caching
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        resp = client.get(path, headers=headers or {})
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, (path, resp.status_code)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=50_000)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--live", type=int, default=200)
    ap.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11"))
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--reuse", help="measure an existing database kept by --keep (skips the load)")
    args = ap.parse_args()

    import redis as redis_lib
    from flask_migrate import upgrade

    from wa_portal import create_app
    from wa_portal.extensions import db
    from wa_portal.models import Clinic, Connection, Conversation, Role, User
    from wa_portal.services import connections

    admin = _pg_admin_url()
    name = args.reuse or f"wa_bench_inbox_{secrets.token_hex(3)}"
    if not args.reuse:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(admin, name)
    redis_lib.Redis.from_url(args.redis_url).flushdb()
    app = create_app(app_config(url, args.redis_url, TESTING=False))
    try:
        with app.app_context():
            if args.reuse:  # a database kept by an earlier --keep run: measure only
                clinic = db.session.scalar(db.select(Clinic).where(Clinic.slug == "bench"))
                users = list(
                    db.session.scalars(db.select(User).where(User.clinic_id == clinic.id).order_by(User.id))
                )
                user_ids = [u.id for u in users]
                conns = list(
                    db.session.scalars(db.select(Connection).where(Connection.clinic_id == clinic.id))
                )
            else:
                upgrade(directory=str(ROOT / "migrations"), revision="heads")
                clinic = Clinic(name="Bench Clinic", slug="bench", timezone="Europe/Madrid", country="ES")
                db.session.add(clinic)
                db.session.commit()
                users = []
                for i, nm in enumerate(["Rita", "Ana", "Tom", "Eva"]):
                    u = User(clinic_id=clinic.id, email=f"u{i}@bench.test", name=nm, role=Role.STAFF)
                    u.set_password(PASSWORD)
                    db.session.add(u)
                    users.append(u)
                db.session.commit()
                user_ids = [u.id for u in users]
                conns = [
                    connections.create_connection(
                        clinic=clinic,
                        provider="sandbox",
                        settings={"display_phone": f"+3491000000{i}"},
                        label=f"Line {i}",
                    )
                    for i in (1, 2)
                ]
                t0 = time.perf_counter()
                load(
                    url,
                    clinic.id,
                    [c.id for c in conns],
                    [u.id for u in users],
                    args.conversations,
                    args.messages,
                )
                print(
                    f"loaded {args.conversations:,} conversations and {args.messages:,} messages in "
                    f"{time.perf_counter() - t0:.1f} s"
                )

            client = app.test_client()
            token = csrf_token(client, "/login")
            assert (
                client.post(
                    "/login", data={"email": users[0].email, "password": PASSWORD, "csrf_token": token}
                ).status_code
                == 302
            )
            conv_ids = list(db.session.scalars(db.select(Conversation.id).limit(2000)))
            rng = random.Random(3)
            hx = {"HX-Request": "true"}
            results = {
                "list (awaiting, full page)": timed(client, "/inbox", args.samples),
                "list (all, htmx fragment)": timed(client, "/inbox?view=all", args.samples, hx),
                "filtered list (mine + number)": timed(
                    client, f"/inbox?view=mine&connection={conns[0].id}", args.samples, hx
                ),
                "filtered list (all, 2nd keyset page)": [],
                "search (two common words, FTS)": [],
                "search (a rare word, FTS)": [],
                "search (name)": timed(client, "/inbox?view=all&q=Lucia", args.samples, hx),
                "thread page (full)": [],
            }
            html = client.get("/inbox?view=all", headers=hx).get_data(as_text=True)
            cursor = html.split("cursor=")[1].split('"')[0].replace("&amp;", "&")
            results["filtered list (all, 2nd keyset page)"] = timed(
                client, f"/inbox?view=all&cursor={cursor}", args.samples, hx
            )
            for _ in range(args.samples):
                q = " ".join(rng.sample(WORDS, 2))
                results["search (two common words, FTS)"] += timed(client, f"/inbox?view=all&q={q}", 1, hx)
                results["search (a rare word, FTS)"] += timed(
                    client, f"/inbox?view=all&q={rng.choice(RARE)}", 1, hx
                )
                results["thread page (full)"] += timed(client, f"/inbox/c/{rng.choice(conv_ids)}", 1)
            # The analytics page aggregates a whole period (a third of all messages at 30 days).
            heavy = max(3, args.samples // 10)
            results["analytics (30 days, counted)"] = timed(client, "/analytics/?days=30&refresh=1", heavy)
            results["analytics (90 days, counted)"] = timed(client, "/analytics/?days=90&refresh=1", heavy)
            results["analytics (30 days, kept 5 min)"] = timed(client, "/analytics/", args.samples)
            print(f"\nserver time per page, {args.samples} samples each (target p95 < 100 ms)")
            print(f"{'page':40} {'p50 ms':>8} {'p95 ms':>8}")
            for label, vals in results.items():
                print(f"{label:40} {statistics.median(vals):8.1f} {pct(vals, 95):8.1f}")

            if args.live:
                live_webhook_to_screen(app, clinic, conns[0], user_ids[0], args.live, url, args.redis_url)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if not (args.keep or args.reuse):
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def live_webhook_to_screen(app, clinic, conn, user_id: int, count: int, db_url: str, redis_url: str):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": redis_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "ENCRYPTION_KEYS": TEST_KEYS,
        "MEDIA_ROOT": app.config["MEDIA_ROOT"],
        "SANDBOX_ENABLED": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "wa", "worker"],
        cwd=ROOT,
        env=env,
        stdout=open(ROOT / "test-artifacts" / "bench-inbox-worker.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        return _measure(app, conn, user_id, count, base, worker)
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
        server.shutdown()


def _measure(app, conn, user_id: int, count: int, base: str, worker) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS
    from tests.helpers import patient_message, post_signed, sandbox_ids

    hook = app.test_client()
    secret = sandbox_ids(conn)[2]
    conn_id = conn.id
    # The conversation the browser keeps open: a new patient, so the thread holds only these messages.
    body, _ = patient_message(conn, "warm-up", phone="+34699000001", name="Live Bench")
    resp = post_signed(hook, body, secret)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    from wa_portal.extensions import db
    from wa_portal.models import Contact, Conversation, User

    conv_id = None
    for _ in range(600):  # the worker process may take a while to start on a busy machine
        db.session.remove()
        conv_id = db.session.scalar(
            db.select(Conversation.id).join(Contact).where(Contact.phone == "+34699000001")
        )
        if conv_id:
            break
        time.sleep(0.1)
    assert conv_id, "the worker did not ingest the warm-up message"
    from wa_portal.models import Connection

    conn = db.session.get(Connection, conn_id)  # a fresh instance: the session was reset above
    times: list[float] = []
    email = db.session.get(User, user_id).email
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"), args=CHROMIUM_ARGS
        )
        page = browser.new_page()
        page.goto(base + "/login")
        page.fill("#email", email)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{base}/inbox/c/{conv_id}")
        page.wait_for_selector('#live-status[data-state="live"]', timeout=15_000)
        for i in range(count):
            text = f"bench message {i} {secrets.token_hex(4)}"
            body, _ = patient_message(conn, text, phone="+34699000001", name="Live Bench")
            t0 = time.perf_counter()
            post_signed(hook, body, secret)
            page.wait_for_function(
                "t => document.querySelector('.thread').textContent.includes(t)",
                arg=text,
                timeout=10_000,
                polling="raf",
            )
            times.append((time.perf_counter() - t0) * 1000)
        browser.close()
    print(f"\nwebhook POST → message on screen, {count} messages (target p95 < 1000 ms)")
    print(f"p50 {statistics.median(times):.0f} ms   p95 {pct(times, 95):.0f} ms   max {max(times):.0f} ms")


if __name__ == "__main__":
    main()
