"""Reminders at scale in PostgreSQL: plan 100,000 appointments into reminder rows, then time a sweeper pass.

Run: ``.venv/bin/python tests/benchmarks/bench_reminders.py [--count N] [--batch B] [--redis-url URL]``.
Creates and drops its own database. Loads N appointments (COPY; not timed), then times
``reminders.plan_many`` (plan + bulk INSERT + commit, in batches) and prints appointments planned per
second; then times one ``sweeper.sweep()`` pass and the due-reminder query over the pending rows, shows
the query plan (it must use the (state, due_at) index) and the peak memory. Targets: >= 2,000
appointments/s planned, a sweeper pass under 200 ms. Prints figures only.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import secrets
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WA_INSTANCE_DIR", str(ROOT / "instance" / "bench"))

import psycopg  # noqa: E402

from tests.conftest import _pg_admin_url, _with_db, app_config  # noqa: E402

THERAPISTS = 200


def load(url: str, clinic_id: int, therapist_ids: list[int], count: int, now: datetime) -> None:
    """COPY contacts, patients and appointments (distinct therapist/start pairs, next 60 days)."""
    rng = random.Random(11)
    with psycopg.connect(url) as pg, pg.cursor() as cur:
        with cur.copy(
            "COPY contact (clinic_id, phone, name, consent, notes, created_at, updated_at) FROM STDIN"
        ) as cp:
            for i in range(count):
                cp.write_row((clinic_id, f"+346{i:08d}", f"Patient {i}", "unknown", "", now, now))
        cur.execute("SELECT id FROM contact WHERE clinic_id = %s ORDER BY id", (clinic_id,))
        contact_ids = [r[0] for r in cur.fetchall()]
        with cur.copy(
            "COPY patient (clinic_id, contact_id, first_name, last_name, preferred_channels, "
            "created_at, updated_at) FROM STDIN"
        ) as cp:
            for i, cid in enumerate(contact_ids):
                cp.write_row((clinic_id, cid, "Patient", str(i), '["whatsapp"]', now, now))
        cur.execute("SELECT id FROM patient WHERE clinic_id = %s ORDER BY id", (clinic_id,))
        patient_ids = [r[0] for r in cur.fetchall()]
        base = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        used: set[tuple[int, datetime]] = set()
        with cur.copy(
            "COPY appointment (clinic_id, patient_id, therapist_id, starts_at, ends_at, status, mode, "
            "notes, source, created_at, updated_at) FROM STDIN"
        ) as cp:
            for pid in patient_ids:
                while True:
                    tid = rng.choice(therapist_ids)
                    start = base + timedelta(
                        minutes=10 * rng.randrange(0, 60 * 24 * 6)
                    )  # 60 days, 10-minute grid
                    if (tid, start) not in used:
                        used.add((tid, start))
                        break
                cp.write_row(
                    (
                        clinic_id,
                        pid,
                        tid,
                        start,
                        start + timedelta(minutes=50),
                        "booked",
                        "in_person",
                        "",
                        "api",
                        now,
                        now,
                    )
                )
        pg.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    args = parser.parse_args()

    from flask_migrate import upgrade
    from sqlalchemy import select, text

    from wa_portal import create_app
    from wa_portal.extensions import db
    from wa_portal.models import Appointment, Clinic, Reminder, Role, User
    from wa_portal.services import reminders, sweeper

    admin = _pg_admin_url()
    name = f"wa_bench_rem_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(admin, name)
    app = create_app(app_config(url, args.redis_url))
    try:
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"), revision="heads")
            clinic = Clinic(name="Bench", slug="bench", timezone="Europe/Madrid", country="ES")
            db.session.add(clinic)
            db.session.flush()
            for i in range(THERAPISTS):
                user = User(
                    clinic_id=clinic.id, email=f"t{i}@bench.test", role=Role.THERAPIST, password_hash="x"
                )
                db.session.add(user)
            db.session.commit()
            therapist_ids = list(db.session.scalars(select(User.id).where(User.clinic_id == clinic.id)))
            now = datetime.now(UTC)
            t0 = time.perf_counter()
            load(url, clinic.id, therapist_ids, args.count, now)
            print(
                f"loaded {args.count:,} appointments in {time.perf_counter() - t0:.1f} s "
                "(COPY, not timed below)"
            )

            rows = db.session.execute(
                select(Appointment.id, Appointment.clinic_id, Appointment.starts_at).order_by(Appointment.id)
            ).all()
            gc.collect()
            started = time.perf_counter()
            planned = 0
            for i in range(0, len(rows), args.batch):
                planned += reminders.plan_many(rows[i : i + args.batch], clinic=clinic, now=now)
                db.session.commit()
            elapsed = time.perf_counter() - started
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            # Memory in a separate, untimed pass (tracemalloc slows allocation down several times): the
            # first four batches again, rolled back.
            tracemalloc.start()
            for i in range(0, min(len(rows), 4 * args.batch), args.batch):
                reminders.plan_many(rows[i : i + args.batch], clinic=clinic, now=now)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            db.session.rollback()
            db.session.execute(text("ANALYZE reminder"))
            db.session.commit()
            pending = db.session.scalar(select(db.func.count(Reminder.id)).where(Reminder.state == "pending"))
            print(
                f"planned {len(rows):,} appointments -> {planned:,} reminder rows in {elapsed:.2f} s: "
                f"{len(rows) / elapsed:,.0f} appointments/s ({planned / elapsed:,.0f} rows/s; "
                "target >= 2,000 appointments/s)"
            )
            print(
                f"peak memory: process max RSS {rss:.0f} MB (rows of {len(rows):,} appointments loaded); "
                f"Python allocations while planning batches of {args.batch:,}: "
                f"peak {peak / 1e6:.1f} MB (tracemalloc)"
            )

            # One sweeper pass over the pending rows: nothing is due yet (the steady state), so the pass is
            # the cost of finding out. The due query must be an index range scan on (state, due_at).
            sweep_times, due_times = [], []
            for _ in range(7):
                db.session.remove()
                t = time.perf_counter()
                result = sweeper.sweep()
                sweep_times.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                reminders.due_ids(cutoff=datetime.now(UTC))
                due_times.append((time.perf_counter() - t) * 1000)
            print(
                f"sweeper pass over {pending:,} pending reminders: "
                f"median {statistics.median(sweep_times):.1f} ms, "
                f"max {max(sweep_times):.1f} ms (target < 200 ms); result: {result}"
            )
            print(f"due-reminder query alone: median {statistics.median(due_times):.2f} ms")
            cutoff = (now + timedelta(days=3)).isoformat()
            plan = (
                db.session.execute(
                    text(
                        "EXPLAIN SELECT id FROM reminder WHERE state = 'pending' AND due_at <= :cutoff "
                        "ORDER BY due_at LIMIT 1000"
                    ),
                    {"cutoff": cutoff},
                )
                .scalars()
                .all()
            )
            print("plan of the due-reminder query (3 days of reminders due):")
            for line in plan:
                print("   ", line)
            t = time.perf_counter()
            due = reminders.due_ids(cutoff=now + timedelta(days=3))
            print(
                f"due query with {len(due)} rows due (batch limit 1000): "
                f"{(time.perf_counter() - t) * 1000:.2f} ms"
            )
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
