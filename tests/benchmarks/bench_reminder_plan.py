"""Throughput and memory of reminder planning: 100,000 appointments over 60 days in four timezones.

Run: ``.venv/bin/python tests/benchmarks/bench_reminder_plan.py [--count N] [--seed S]``. Prints figures only;
the target is at least 2,000 appointments planned per second.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from wa_portal.services.reminder_plan import PlannedReminder, plan_reminders

TIMEZONES = ("Europe/Madrid", "America/Sao_Paulo", "Asia/Kolkata", "Europe/London")
# A fixed "now" in late March so the 60-day window crosses the European spring clock change.
NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def make_appointments(count: int, seed: int) -> list[tuple[datetime, str]]:
    rng = random.Random(seed)
    horizon = int(timedelta(days=60).total_seconds() // 300)
    # Appointments start on five-minute boundaries, like a booking calendar.
    return [
        (NOW + timedelta(minutes=5 * rng.randrange(1, horizon)), rng.choice(TIMEZONES)) for _ in range(count)
    ]


def plan_all(appointments: list[tuple[datetime, str]]) -> list[list[PlannedReminder]]:
    return [plan_reminders(starts_at=starts_at, tz=tz, now=NOW) for starts_at, tz in appointments]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20270301)
    args = parser.parse_args()

    appointments = make_appointments(args.count, args.seed)
    plan_all(appointments[:1_000])  # warm the zone and offset caches

    gc.collect()
    started = time.perf_counter()
    plans = plan_all(appointments)
    elapsed = time.perf_counter() - started

    # Measured in a second pass: tracemalloc slows allocation down, so it must not touch the timing.
    del plans
    gc.collect()
    tracemalloc.start()
    plans = plan_all(appointments)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    reminders = Counter(r.kind for plan in plans for r in plan)
    shifted = sum(r.shifted for plan in plans for r in plan)
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    print(f"appointments:           {len(appointments):,} over 60 days in {len(TIMEZONES)} timezones")
    by_kind = ", ".join(f"{kind} {n:,}" for kind, n in sorted(reminders.items()))
    print(f"reminders planned:      {sum(reminders.values()):,} ({by_kind})")
    print(f"moved by quiet hours:   {shifted:,}")
    print(f"elapsed:                {elapsed:.3f} s")
    print(f"appointments/second:    {len(appointments) / elapsed:,.0f}")
    print(f"microseconds/appt:      {elapsed / len(appointments) * 1e6:.1f}")
    print(f"peak traced memory:     {peak / 2**20:.1f} MiB (planning all and keeping the results)")
    print(f"process max RSS:        {max_rss_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
