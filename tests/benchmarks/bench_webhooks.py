"""Signed Meta webhook ingestion against gunicorn, PostgreSQL and Redis on this machine.

Prints requests/s, p50 and p99 time to acknowledge for POST /webhooks/meta, the same
figures for GET /healthz in the same run and their ratio, then drains the ingest queue with
a real worker and counts rows to prove 0 lost and 0 duplicated.

    .venv/bin/python tests/benchmarks/bench_webhooks.py [--seconds 10] [--connections 32] [--rate 1000]

Two kinds of load: closed loop (wrk's 32 connections send as fast as answers come: the most the
box serves) and open loop (``--rate`` webhooks/s offered on a schedule, as providers send, which
is what the target of 1,000/s with p99 < 50 ms is about).

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
  if args[1] == "-" then return end
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
  if n == 0 then return wrk.format("GET", "/healthz") end
  i = i + 1
  if i > n then i = 1 end
  local l = lines[i]
  return wrk.format("POST", "/webhooks/meta",
    { ["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = l[1] }, l[2])
end
"""

# Open loop (an offered rate, as providers send): each wrk thread hands out send slots every
# threads/rate seconds; a connection that is free claims the next slot and waits for it. wrk times
# a request from its actual send, so a slot that starts late (every connection still waiting for an
# answer) would hide queueing (coordinated omission): the script counts late starts and the run
# reports them; with many connections, none start late unless answers take longer than
# connections/rate seconds.
PACED = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } wa_timespec;
int clock_gettime(int clk_id, wa_timespec *tp);
]]
local ts = ffi.new("wa_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval, slot = nil, nil
late, latemax = 0, 0
delay = function()
  local now = now_ms()
  if slot == nil then
    interval = 1000 * tonumber(paced_threads) / tonumber(paced_rate)
    slot = now
  end
  slot = slot + interval
  local wait = slot - now
  if wait < 0 then
    if -wait > 1 then late = late + 1 end
    if -wait > latemax then latemax = -wait end
    return 0
  end
  return math.floor(wait)
end
local base_done = done
done = function(summary, latency, requests)
  local total, worst = 0, 0
  for _, t in ipairs(threads) do
    total = total + (t:get("late") or 0)
    local m = t:get("latemax") or 0
    if m > worst then worst = m end
  end
  io.write("LATE ", total, " ", string.format("%.1f", worst), "\n")
  base_done(summary, latency, requests)
end
local base_init = init
init = function(args)
  paced_rate = args[3]
  paced_threads = args[2]
  base_init(args)
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


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (all their threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def server_pids(master: int) -> dict[str, list[int]]:
    """The gunicorn workers (children of the master) and the PostgreSQL processes."""
    workers, postgres = [], []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if int(rest.split()[1]) == master:
            workers.append(int(entry.name))
        elif name.startswith("postgres"):
            postgres.append(int(entry.name))
    return {"workers": workers, "postgres": postgres}


def wrk(
    url: str,
    seconds: int,
    conns: int,
    threads: int,
    script: Path | None,
    *args: str,
    master: int | None = None,
) -> dict[str, float]:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script), url, "--", *args]
    else:
        cmd.append(url)
    pids = server_pids(master) if master else {"workers": [], "postgres": []}
    before = {k: cpu_seconds(v) for k, v in pids.items()}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pids["postgres"] = server_pids(master)["postgres"] if master else []  # backends come and go
    cpu = {k: cpu_seconds(v) - before[k] for k, v in pids.items()}

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
    late = re.search(r"^LATE (\d+) ([\d.]+)$", out, re.MULTILINE)
    return {
        "cpu_worker_ms": 1000 * cpu["workers"] / max(total, 1),
        "cpu_pg_ms": 1000 * max(cpu["postgres"], 0.0) / max(total, 1),
        "late": int(late.group(1)) if late else 0,
        "late_max": float(late.group(2)) if late else 0.0,
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
    ap.add_argument(
        "--rate", type=int, default=1000, help="offered webhooks/s of the open-loop run (0: skip)"
    )
    ap.add_argument("--paced-connections", type=int, default=100)
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
        data, paced_data = tmp / "bodies.tsv", tmp / "paced.tsv"
        for path, numbers in (
            (data, range(count)),
            (paced_data, range(count, count + args.rate * (args.seconds + 2))),
        ):
            with path.open("w") as f:
                for i in numbers:
                    b = body(i)
                    sig = "sha256=" + hmac.new(APP_SECRET.encode(), b, hashlib.sha256).hexdigest()
                    f.write(f"{sig}\t{b.decode()}\n")
        script, paced_script = tmp / "post.lua", tmp / "paced.lua"
        script.write_text(LUA)
        paced_script.write_text(LUA + PACED)

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
            master=gunicorn.pid,
        )
        health = wrk(
            base + "/healthz", args.seconds, args.connections, wrk_threads, None, master=gunicorn.pid
        )
        paced: dict[str, dict] = {}
        if args.rate:
            for what, url, source in (
                ("hook", base + "/webhooks/meta", str(paced_data)),
                ("health", base + "/healthz", "-"),
            ):
                paced[what] = wrk(
                    url,
                    args.seconds,
                    args.paced_connections,
                    wrk_threads,
                    paced_script,
                    source,
                    str(wrk_threads),
                    str(args.rate),
                    master=gunicorn.pid,
                )
        gunicorn.terminate()
        gunicorn.wait(10)
        gunicorn = None

        with psycopg.connect(db_url) as c:
            stored = c.execute("select count(*) from webhook_event").fetchone()[0]
        acked = hook["total"] - hook["non2xx"]
        if paced:
            acked += paced["hook"]["total"] - paced["hook"]["non2xx"]
        if args.no_ingest:
            print(
                f"{args.workers}x{args.threads}: POST {hook['rps']:.0f} req/s p50 {hook['p50']:.2f} ms "
                f"p99 {hook['p99']:.2f} ms non-2xx {hook['non2xx']} {hook['bad']} "
                f"cpu {hook['cpu_worker_ms']:.2f}+{hook['cpu_pg_ms']:.2f} ms/req; "
                f"healthz {health['rps']:.0f} req/s p99 {health['p99']:.2f} ms "
                f"cpu {health['cpu_worker_ms']:.2f}; "
                f"stored {stored} acked {acked}"
            )
            if paced:
                print(
                    f"  paced {args.rate}/s: POST {paced['hook']['rps']:.0f} req/s "
                    f"p50 {paced['hook']['p50']:.2f} ms "
                    f"p99 {paced['hook']['p99']:.2f} ms late {paced['hook']['late']} "
                    f"cpu {paced['hook']['cpu_worker_ms']:.2f}+{paced['hook']['cpu_pg_ms']:.2f} ms/req; "
                    f"healthz p99 {paced['health']['p99']:.2f} ms"
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
        print(
            f"    CPU per webhook: {hook['cpu_worker_ms']:.2f} ms in gunicorn"
            f" + {hook['cpu_pg_ms']:.2f} ms in PostgreSQL"
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
        if paced:
            print(
                f"open loop, {args.rate} req/s offered over {args.paced_connections} connections "
                f"(a late start would hide queueing; counted):"
            )
            for label, fig in (
                ("POST /webhooks/meta", paced["hook"]),
                ("GET  /healthz      ", paced["health"]),
            ):
                print(
                    f"{label} : {fig['rps']:8.0f} req/s   p50 {fig['p50']:6.2f} ms   p99 {fig['p99']:6.2f} ms"
                    f"   non-2xx {fig['non2xx']}   late starts {fig['late']} (worst {fig['late_max']:.0f} ms)"
                )
                print(
                    f"    CPU per request: {fig['cpu_worker_ms']:.2f} ms in gunicorn"
                    f" + {fig['cpu_pg_ms']:.2f} ms in PostgreSQL"
                )
            hook_p = paced["hook"]
            met = hook_p["p99"] < 50 and hook_p["rps"] >= 0.98 * args.rate and not hook_p["late"]
            print(
                f"webhook/healthz     : p99 {hook_p['p99'] / paced['health']['p99']:.2f}x at the same rate; "
                f"target p99 < 50 ms: {'met' if met else 'NOT met'}"
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
