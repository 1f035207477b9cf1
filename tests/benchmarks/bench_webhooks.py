"""Signed Meta webhook ingestion against gunicorn, PostgreSQL and Redis on this machine.

Prints requests/s, p50 and p99 time to acknowledge for POST /webhooks/meta, the same
figures for GET /healthz in the same run and their ratio, then drains the ingest queue with
a real worker and counts rows to prove 0 lost and 0 duplicated.

    .venv/bin/python tests/benchmarks/bench_webhooks.py [--seconds 10] [--connections 32]

Needs `wrk` (apt-get install wrk). Creates and drops its own database; uses Redis db 15.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parents[2]
ADMIN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
APP_SECRET = "bench_app_secret"
PNID = "100200300400"

LUA = r"""
local lines = {}
local n, i = 0, 0
local counter = 0
local threads = {}
setup = function(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
-- what the non-2xx answers were: "status body" -> count, kept per thread as one string
bad = {}
badtext = ""
response = function(status, headers, body)
  if status >= 300 then
    local k = tostring(status) .. " " .. string.gsub(string.sub(body or "", 1, 80), "[\r\n;=]", " ")
    bad[k] = (bad[k] or 0) + 1
    local parts = {}
    for key, n in pairs(bad) do parts[#parts + 1] = key .. "=" .. n end
    badtext = table.concat(parts, ";")
  end
end
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    local text = t:get("badtext")
    if text and text ~= "" then
      for part in string.gmatch(text, "[^;]+") do io.write("BAD ", part, "\n") end
    end
  end
end
init = function(args)
  local tid = tonumber(wrk.thread:get("tid"))
  local nthreads = tonumber(args[2])
  local k = 0
  for line in io.lines(args[1]) do
    if k % nthreads == tid then
      local tab = string.find(line, "\t", 1, true)
      n = n + 1
      lines[n] = { string.sub(line, 1, tab - 1), string.sub(line, tab + 1) }
    end
    k = k + 1
  end
end
request = function()
  i = i + 1
  if i > n then i = 1 end
  local l = lines[i]
  return wrk.format("POST", "/webhooks/meta",
    { ["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = l[1] }, l[2])
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(i: int) -> bytes:
    wa = f"3461{i:07d}"
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "900800700",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "34910000001", "phone_number_id": PNID},
                            "contacts": [{"profile": {"name": f"Patient {i}"}, "wa_id": wa}],
                            "messages": [
                                {
                                    "from": wa,
                                    "id": f"wamid.BENCH{i:010d}",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": f"Hello, this is benchmark message {i}"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def wrk(
    url: str, seconds: int, conns: int, threads: int, script: Path | None, *args: str
) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script), url, "--", *args]
    else:
        cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    bad: dict[str, int] = {}
    for key, n in re.findall(r"^BAD (.*)=(\d+)$", out, re.MULTILINE):
        bad[key.strip()] = bad.get(key.strip(), 0) + int(n)
    return {
        "bad": bad,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms("50%"),
        "p99": ms("99%"),
        "total": total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "none",
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--no-ingest", action="store_true", help="only the HTTP figures (tuning runs)")
    ap.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("needs wrk: apt-get install wrk", file=sys.stderr)
        return 2

    name = f"wa_bench_webhooks_{os.getpid()}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    db_url = ADMIN.rsplit("/", 1)[0] + "/" + name
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": "bench-" + "s" * 40,
        "ENCRYPTION_KEYS": "b1:" + base64.b64encode(b"b" * 32).decode(),
        "SANDBOX_ENABLED": "0",
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    gunicorn = None
    tmp = Path(tempfile.mkdtemp(prefix="wa-bench-"))
    try:
        subprocess.run([*flask, "db", "upgrade", "heads"], cwd=ROOT, env=env, check=True, capture_output=True)
        subprocess.run(
            [*flask, "wa", "create-clinic", "--name", "Bench", "--slug", "bench"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *flask,
                "wa",
                "add-connection",
                "--clinic",
                "bench",
                "--provider",
                "meta",
                f"phone_number_id={PNID}",
                "waba_id=900800700",
                "display_phone=+34910000001",
                "access_token=bench-token",
                f"app_secret={APP_SECRET}",
                "verify_token=bench-verify",
            ],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        # Enough unique bodies that no request repeats one within the run.
        count = max(args.seconds * 6000, 20000)
        data = tmp / "bodies.tsv"
        with data.open("w") as f:
            for i in range(count):
                b = body(i)
                sig = "sha256=" + hmac.new(APP_SECRET.encode(), b, hashlib.sha256).hexdigest()
                f.write(f"{sig}\t{b.decode()}\n")
        script = tmp / "post.lua"
        script.write_text(LUA)

        port = free_port()
        gunicorn = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "wsgi:app",
                "-k",
                "gthread",
                "--workers",
                str(args.workers),
                "--threads",
                str(args.threads),
                "--bind",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                *args.gunicorn_arg,
            ],
            cwd=ROOT,
            env={**env, "WA_LOG_LEVEL": "WARNING"},
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):  # a busy box may take a while to boot the workers
            try:
                if requests.get(base + "/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        wrk_threads = 2
        # warm up both workers (imports, route cache, connection pools)
        wrk(base + "/healthz", 2, args.connections, wrk_threads, None)

        hook = wrk(
            base + "/webhooks/meta",
            args.seconds,
            args.connections,
            wrk_threads,
            script,
            str(data),
            str(wrk_threads),
        )
        health = wrk(base + "/healthz", args.seconds, args.connections, wrk_threads, None)
        gunicorn.terminate()
        gunicorn.wait(10)
        gunicorn = None

        with psycopg.connect(db_url) as c:
            stored = c.execute("select count(*) from webhook_event").fetchone()[0]
        acked = hook["total"] - hook["non2xx"]
        if args.no_ingest:
            print(
                f"{args.workers}x{args.threads}: POST {hook['rps']:.0f} req/s p50 {hook['p50']:.2f} ms "
                f"p99 {hook['p99']:.2f} ms non-2xx {hook['non2xx']} {hook['bad']}; "
                f"healthz {health['rps']:.0f} req/s p99 {health['p99']:.2f} ms; stored {stored} acked {acked}"
            )
            return 0
        t0 = time.perf_counter()
        subprocess.run(
            [*flask, "wa", "worker", "--burst", "--queues", "webhooks"],
            cwd=ROOT,
            env={**env, "WA_LOG_LEVEL": "WARNING"},
            check=True,
            capture_output=True,
        )
        ingest_s = time.perf_counter() - t0
        with psycopg.connect(db_url) as c:
            messages = c.execute("select count(*) from message").fetchone()[0]
            distinct = c.execute("select count(distinct provider_message_id) from message").fetchone()[0]
            pending = c.execute("select count(*) from webhook_event where state <> 'processed'").fetchone()[0]

        print(
            f"gunicorn gthread: {args.workers} workers x {args.threads} threads; wrk {wrk_threads} threads, "
            f"{args.connections} connections, {args.seconds} s each"
        )
        print(
            f"POST /webhooks/meta : {hook['rps']:8.0f} req/s"
            f"   p50 {hook['p50']:6.2f} ms   p99 {hook['p99']:6.2f} ms"
            f"   non-2xx {hook['non2xx']}   socket errors: {hook['socket_errors']}"
        )
        for what, n in sorted(hook["bad"].items()):
            print(f"    non-2xx: {n} x {what}")
        print(
            f"GET  /healthz       : {health['rps']:8.0f} req/s   p50 {health['p50']:6.2f} ms   "
            f"p99 {health['p99']:6.2f} ms"
        )
        print(
            f"webhook/healthz     : {hook['rps'] / health['rps']:.2f} of the throughput, "
            f"p99 {hook['p99'] / health['p99']:.2f}x"
        )
        print(f"acknowledged {acked}, stored {stored}  -> lost {acked - stored if acked > stored else 0}")
        print(
            f"ingested by one worker in {ingest_s:.1f} s: {messages} messages, "
            f"{distinct} distinct provider ids, "
            f"{pending} events not processed -> duplicated {messages - distinct}"
        )
        return 0
    finally:
        if gunicorn is not None:
            gunicorn.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
