"""10,000 outbound messages through the whole delivery pipeline to the Meta emulator, rate limits off.

Pipeline per message: queued row in PostgreSQL → RQ job (a batch of ids) → claim (conditional
UPDATE) → consent / window checks → circuit breaker (Redis) → attempt row committed → Meta adapter
→ HTTP to the emulator → result committed. Prints messages/s, p50 and p95 time from queued to the
provider call, peak worker memory, and proves 0 lost / 0 duplicated from the emulator's own count.

    .venv/bin/python tests/benchmarks/bench_delivery.py [--messages 10000] [--workers 3] [--batch 50]

Worker model: several non-forking RQ workers (``flask wa worker --queues delivery``, each an
``AppWorker`` = RQ SimpleWorker with an app context per job), and jobs that carry a batch of
message ids (``tasks.deliver_messages``). Batching amortizes RQ's per-job cost (a forking worker
does ~50 trivial jobs/s here, a non-forking one ~150); each message keeps its own claim, attempt
row and commit, so the per-message guarantees are the same as with one job per message.
Creates and drops its own database; uses Redis db 14 (BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
ADMIN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
KEYS = "b1:" + base64.b64encode(b"b" * 32).decode()

EMULATOR = r"""
import json, sys
from collections import Counter
from werkzeug.serving import make_server
from tests.emulators.meta_graph import MetaGraphEmulator, make_meta_app

emu = MetaGraphEmulator()
inner = make_meta_app(emu)

def app(environ, start_response):
    if environ.get("PATH_INFO") == "/__count":
        refs = Counter(
            (r.get("json") or {}).get("biz_opaque_callback_data")
            for r in emu.log.find(route="messages") if r.get("status") == 200
        )
        body = json.dumps({"accepted": sum(refs.values()), "distinct": len(refs),
                           "duplicates": sum(1 for v in refs.values() if v > 1)}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    return inner(environ, start_response)

server = make_server("127.0.0.1", 0, app, threaded=True)
emu.root_url = f"http://127.0.0.1:{server.server_port}"
print(emu.root_url, flush=True)
server.serve_forever()
"""


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_peak_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()

    name = f"wa_bench_delivery_{os.getpid()}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    db_url = ADMIN.rsplit("/", 1)[0] + "/" + name
    redis.Redis.from_url(REDIS_URL).flushdb()
    emulator = subprocess.Popen(
        [sys.executable, "-c", EMULATOR],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        graph_root = emulator.stdout.readline().strip()  # type: ignore[union-attr]
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            "SECRET_KEY": "bench-secret-" + "x" * 32,
            "ENCRYPTION_KEYS": KEYS,
            "WA_DELIVERY_RATE_LIMITS": "0",
            "WA_INSTANCE_DIR": tempfile.mkdtemp(prefix="wa-bench-"),
            "NO_PROXY": "127.0.0.1,localhost",
        }
        os.environ.update({k: env[k] for k in ("WA_INSTANCE_DIR", "WA_DELIVERY_RATE_LIMITS")})
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade", "heads"],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip

        from flask_migrate import upgrade  # noqa: F401 - the schema is already there

        from wa_portal import create_app
        from wa_portal.extensions import db
        from wa_portal.jobs import DELIVERY, enqueue_many, tasks
        from wa_portal.models import Clinic, Contact, Conversation, Message, utcnow
        from wa_portal.services import connections

        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": db_url.replace("postgresql://", "postgresql+psycopg://"),
                "REDIS_URL": REDIS_URL,
                "SECRET_KEY": env["SECRET_KEY"],
                "ENCRYPTION_KEYS": KEYS,
                "DELIVERY_RATE_LIMITS": False,
            }
        )
        with app.app_context():
            clinic = Clinic(name="Bench Clinic", slug="bench", timezone="UTC", country="ES")
            db.session.add(clinic)
            db.session.commit()
            conn = connections.create_connection(
                clinic=clinic,
                provider="meta",
                settings={
                    "phone_number_id": "106540352242922",
                    "waba_id": "102290129340398",
                    "display_phone": "+15550783881",
                    "access_token": "test_access_token",
                    "app_secret": "test_app_secret",
                    "base_url": graph_root + "/v23.0",
                },
            )
            now = utcnow()
            n = args.messages
            db.session.execute(
                db.insert(Contact),
                [{"clinic_id": clinic.id, "phone": f"+3460{i:07d}", "name": f"P{i}", "created_at": now,
                  "updated_at": now} for i in range(n)],
            )  # fmt: skip
            contact_ids = db.session.scalars(db.select(Contact.id).order_by(Contact.id)).all()
            db.session.execute(
                db.insert(Conversation),
                [{"clinic_id": clinic.id, "connection_id": conn.id, "contact_id": cid, "last_inbound_at": now,
                  "created_at": now, "updated_at": now} for cid in contact_ids],
            )  # fmt: skip
            conv_ids = db.session.scalars(db.select(Conversation.id).order_by(Conversation.id)).all()
            db.session.commit()

            t_queued = utcnow()
            db.session.execute(
                db.insert(Message),
                [{"clinic_id": clinic.id, "conversation_id": cv, "connection_id": conn.id, "direction": "out",
                  "kind": "text", "body": f"Reminder {i}: your appointment is tomorrow at 10:00.",
                  "author_type": "system", "status": "queued", "purpose": "reminder_1d", "extra": {},
                  "created_at": t_queued, "updated_at": t_queued} for i, cv in enumerate(conv_ids)],
            )  # fmt: skip
            db.session.commit()
            ids = db.session.scalars(db.select(Message.id).order_by(Message.id)).all()
            calls = [((ids[i : i + args.batch],), f"bench-{i}") for i in range(0, len(ids), args.batch)]
            for k in range(0, len(calls), 100):
                enqueue_many(tasks.deliver_messages, calls[k : k + 100], queue=DELIVERY, timeout=600)

        import resource

        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        emu_cpu_before = cpu_seconds(emulator.pid)
        start = time.monotonic()
        for _ in range(args.workers):
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "flask",
                        "--app",
                        "wsgi",
                        "wa",
                        "worker",
                        "--queues",
                        DELIVERY,
                        "--burst",
                        "--no-sweeper",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        peak = dict.fromkeys((w.pid for w in workers), 0)
        while any(w.poll() is None for w in workers):
            for w in workers:
                if w.poll() is None:
                    peak[w.pid] = max(peak[w.pid], rss_peak_kb(w.pid))
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_cpu = (children.ru_utime + children.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        emu_cpu = cpu_seconds(emulator.pid) - emu_cpu_before

        with app.app_context():
            from wa_portal.models import DeliveryAttempt

            rows = db.session.execute(
                db.select(Message.created_at, db.func.min(DeliveryAttempt.started_at), Message.status)
                .join(DeliveryAttempt, DeliveryAttempt.message_id == Message.id)
                .group_by(Message.id)
            ).all()
            sent = db.session.scalar(db.select(db.func.count()).where(Message.status == "sent"))
            first = db.session.scalar(db.select(db.func.min(DeliveryAttempt.started_at)))
            last = db.session.scalar(db.select(db.func.max(DeliveryAttempt.finished_at)))
            db.session.remove()
            db.engine.dispose()
        lat = sorted((a - q).total_seconds() * 1000 for q, a, _ in rows)
        count = requests.get(graph_root + "/__count", timeout=10).json()
        busy = (last - first).total_seconds() if first and last else elapsed
        print(f"messages           {args.messages} ({args.workers} workers, batches of {args.batch})")
        print(f"sent               {sent}  (emulator accepted {count['accepted']}, distinct "
              f"{count['distinct']}, duplicates {count['duplicates']})")  # fmt: skip
        print(f"wall time          {elapsed:.2f} s (workers started → all exited)")
        print(f"throughput         {args.messages / elapsed:.0f} messages/s wall, "
              f"{args.messages / busy:.0f} messages/s first → last provider call")  # fmt: skip
        p50, p95 = statistics.median(lat), lat[int(len(lat) * 0.95)]
        print(f"queued → provider  p50 {p50:.0f} ms, p95 {p95:.0f} ms (all queued at once: backlog position)")
        per_msg = worker_cpu / args.messages * 1000
        load = os.getloadavg()[0]
        print(f"CPU                workers {worker_cpu:.1f} s ({per_msg:.1f} ms/message, startup included), "
              f"emulator {emu_cpu:.1f} s; load average {load:.1f} on {os.cpu_count()} cores")  # fmt: skip
        print(f"peak worker memory {max(peak.values()) / 1024:.0f} MiB (max VmHWM of one worker)")
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        emulator.terminate()
        emulator.wait(5)
        with psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
