"""10,000 outbound messages through the whole delivery pipeline to the Meta emulator, rate limits off.

Pipeline per message: queued row in PostgreSQL → RQ batch job of ids (``messaging.enqueue_deliveries``
→ ``tasks.deliver_messages``) → one claim statement per batch (FOR UPDATE SKIP LOCKED) → consent /
window / breaker checks → the batch's ``in_flight`` attempt rows in one commit → Meta adapter → HTTP
(keep-alive) to the emulator → "sent" in one autocommit statement per message. Prints messages/s,
p50 and p95 time from queued to the provider call, CPU per message (workers, emulator, PostgreSQL),
peak worker memory, and proves 0 lost / 0 duplicated from the emulator's own count (exit status 1
otherwise).

    .venv/bin/python tests/benchmarks/bench_delivery.py [--messages 10000] [--workers 3] [--batch 50]
        [--worker-log FILE] [--profile DIR]

Worker model: several non-forking RQ workers (``flask wa worker --queues delivery``, each an
``AppWorker`` = RQ SimpleWorker with an app context per job): 3 by default on this 2-core box, since
each spends part of every message waiting (commit fsync, provider round trip). A forking worker does
~50 trivial jobs/s here, a non-forking one ~150, so jobs carry 50 message ids each; every message
keeps its own claim, attempt row and "sent" commit (crash bound: services/delivery.py docstring).

The emulator runs under gunicorn (one gthread worker, keep-alive): werkzeug's dev server answers
every request with ``Connection: close``, so each send paid a TCP handshake and a new server thread.
``--werkzeug-emulator`` restores the old serving for comparison. Creates and drops
its own database; uses Redis db 14 (BENCH_REDIS_URL). Tables are ANALYZEd after the bulk insert,
as autovacuum would do on a live database.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
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

if "--werkzeug" in sys.argv:  # the old way: Connection: close on every answer, a thread per request
    server = make_server("127.0.0.1", 0, app, threaded=True)
    emu.root_url = f"http://127.0.0.1:{server.server_port}"
    print(emu.root_url, flush=True)
    server.serve_forever()

# gunicorn gthread, one process (the emulator's state lives in it), HTTP keep-alive: werkzeug's dev
# server closes every connection, so each send paid a TCP connect and a new thread, and the
# emulator (not the pipeline) set the pace.
import socket
from gunicorn.app.base import BaseApplication

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
emu.root_url = f"http://127.0.0.1:{port}"

class Serve(BaseApplication):
    def load_config(self):
        for k, v in {"bind": f"127.0.0.1:{port}", "workers": 1, "worker_class": "gthread", "threads": 8,
                     "keepalive": 75, "accesslog": None, "loglevel": "warning",
                     "when_ready": lambda _srv: print(emu.root_url, flush=True)}.items():
            self.cfg.set(k, v)
    def load(self):
        return app

Serve().run()
"""


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (gunicorn serves the emulator from a forked worker)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            total += sum(tree_cpu_seconds(int(c)) for c in task.read_text().split())
    return total


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds of the PostgreSQL backends serving ``database`` (their title names it); poll while
    the workers run, since a backend exits with its worker."""
    out = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f" {database} " in cmdline.read_bytes().decode(errors="replace"):
                pid = int(cmdline.parent.name)
                out[pid] = cpu_seconds(pid)
        except (OSError, ValueError):
            pass
    return out


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
    ap.add_argument("--werkzeug-emulator", action="store_true", help="serve the emulator the old way")
    ap.add_argument("--worker-log", metavar="FILE", help="append the workers' log output to FILE")
    ap.add_argument("--profile", metavar="DIR", help="cProfile each worker into DIR/worker-N.prof")
    args = ap.parse_args()

    name = f"wa_bench_delivery_{os.getpid()}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    db_url = ADMIN.rsplit("/", 1)[0] + "/" + name
    redis.Redis.from_url(REDIS_URL).flushdb()
    emulator = subprocess.Popen(
        [sys.executable, "-c", EMULATOR, *(["--werkzeug"] if args.werkzeug_emulator else [])],
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
        from wa_portal.jobs import DELIVERY
        from wa_portal.models import Clinic, Contact, Conversation, Message, utcnow
        from wa_portal.services import connections, messaging

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
            # Statistics as a live database has them (autovacuum would analyze these tables soon).
            db.session.execute(db.text("ANALYZE message, conversation, contact"))
            db.session.commit()
            ids = db.session.scalars(db.select(Message.id).order_by(Message.id)).all()
            # The bulk path: one batch job (tasks.deliver_messages) per --batch ids, one Redis round trip.
            messaging.enqueue_deliveries(ids, batch_size=args.batch)

        import resource

        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        emu_cpu_before = tree_cpu_seconds(emulator.pid)
        pg_before = postgres_cpu(name)
        pg_seen = dict(pg_before)
        start = time.monotonic()
        for k in range(args.workers):
            prof = ["-m", "cProfile", "-o", f"{args.profile}/worker-{k}.prof"] if args.profile else []
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        *prof,
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
                    stderr=open(args.worker_log, "ab") if args.worker_log else subprocess.DEVNULL,  # noqa: SIM115
                )
            )
        peak = dict.fromkeys((w.pid for w in workers), 0)
        while any(w.poll() is None for w in workers):
            for w in workers:
                if w.poll() is None:
                    peak[w.pid] = max(peak[w.pid], rss_peak_kb(w.pid))
            pg_seen.update(postgres_cpu(name))
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_cpu = (children.ru_utime + children.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        emu_cpu = tree_cpu_seconds(emulator.pid) - emu_cpu_before
        pg_cpu = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_seen.items())

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
              f"emulator {emu_cpu:.1f} s, PostgreSQL {pg_cpu:.1f} s")  # fmt: skip
        total = (worker_cpu + emu_cpu + pg_cpu) / args.messages * 1000
        print(f"                   {total:.1f} ms/message in all; load average {load:.1f} "
              f"on {os.cpu_count()} cores"
              f" (other processes' CPU included)")  # fmt: skip
        print(f"peak worker memory {max(peak.values()) / 1024:.0f} MiB (max VmHWM of one worker)")
        if sent != args.messages or count["accepted"] != args.messages or count["duplicates"]:
            sys.exit("FAILED: messages were lost or duplicated (run with --worker-log FILE to see why)")
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
