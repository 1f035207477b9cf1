"""A circuit breaker per connection, shared by every web and worker process through Redis.

API
---
``CircuitBreaker(redis, name, *, threshold=3, window_seconds=60, cooldown_seconds=30,
probe_timeout_seconds=None, clock=time.time, prefix="wa:circuit:")``

``allow() -> bool``
    Closed: True. Open and cooling down: False. Open and the cooldown is over
    ("half open"): True for exactly one caller across all processes — the probe — and
    False for everyone else until the probe reports (or its lease of
    ``probe_timeout_seconds``, default ``cooldown_seconds``, runs out, so a worker that
    died mid-probe does not keep the circuit shut forever).

``record_success()``
    Closes the circuit and forgets the failures.

``record_failure() -> str``
    Counts the failure. ``threshold`` failures with no success between them, all within
    the last ``window_seconds``, open the circuit for ``cooldown_seconds``. A failure
    while half open (the probe failed) re-opens it for another cooldown; a failure while
    still cooling down (a request that was already in flight) changes nothing.
    Returns the transition: ``"closed"``, ``"opened"``, ``"open"`` or ``"reopened"``.

``state() -> CircuitState`` and ``reset()``.

``all_states(redis, prefix="wa:circuit:", *, clock=time.time) -> dict[str, CircuitState]``
    Every breaker under ``prefix`` that has something to report, by name, for a status page.

Every transition runs as one Lua script, so concurrent workers never both open a
circuit or both become the probe. Times come from the injected ``clock`` and are
stored in the hash, so tests move time without sleeping and every process agrees on
``retry_at``. Any success closes the circuit, even one that was in flight when it
opened: the provider answered, which is what the probe wants to learn.

Redis layout: one hash per breaker, ``{prefix}{name}``: ``state`` ("open", absent when
closed), ``fails`` (recent failure times, space separated), ``failures``, ``opened_at``,
``retry_at``, ``probe_until``, ``window``. A closed breaker's hash expires once its
failures are out of the window; an open one stays until a probe closes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["DEFAULT_PREFIX", "CircuitBreaker", "CircuitState", "StateName", "all_states"]

DEFAULT_PREFIX = "wa:circuit:"

StateName = Literal["closed", "open", "half_open"]

# KEYS[1] breaker hash. ARGV: now, probe lease (seconds).
# Returns 1 (closed: go), 2 (you are the probe: go), 0 (wait).
_ALLOW = """
local now = tonumber(ARGV[1])
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then
  return 1
end
local retry_at = tonumber(redis.call('HGET', KEYS[1], 'retry_at')) or 0
if now < retry_at then
  return 0
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until'))
if probe_until and now < probe_until then
  return 0
end
redis.call('HSET', KEYS[1], 'probe_until', string.format('%.17g', now + tonumber(ARGV[2])))
return 2
"""

# KEYS[1] breaker hash. ARGV: now, threshold, window, cooldown.
_FAILURE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local cooldown = tonumber(ARGV[4])
local retry_at = string.format('%.17g', now + cooldown)
if redis.call('HGET', key, 'state') == 'open' then
  redis.call('HINCRBY', key, 'failures', 1)
  local current = tonumber(redis.call('HGET', key, 'retry_at')) or 0
  if now >= current then
    redis.call('HSET', key, 'opened_at', ARGV[1], 'retry_at', retry_at)
    redis.call('HDEL', key, 'probe_until')
    return 'reopened'
  end
  return 'open'
end
local kept = {}
local raw = redis.call('HGET', key, 'fails')
if raw then
  for ts in string.gmatch(raw, '%S+') do
    if now - tonumber(ts) <= window then
      table.insert(kept, ts)
    end
  end
end
table.insert(kept, ARGV[1])
while #kept > threshold do
  table.remove(kept, 1)
end
if #kept >= threshold then
  redis.call('HSET', key, 'state', 'open', 'failures', #kept, 'opened_at', ARGV[1],
             'retry_at', retry_at, 'window', ARGV[3])
  redis.call('HDEL', key, 'fails', 'probe_until')
  redis.call('PERSIST', key)
  return 'opened'
end
redis.call('HSET', key, 'fails', table.concat(kept, ' '), 'failures', #kept, 'window', ARGV[3])
redis.call('PEXPIRE', key, math.ceil(window * 1000) + 1000)
return 'closed'
"""


@dataclass(frozen=True, slots=True)
class CircuitState:
    """What a status page shows for one breaker. Times are epoch seconds from the breaker's clock."""

    name: str
    state: StateName
    failures: int  # recent consecutive failures (closed) or failures since it opened (open)
    opened_at: float | None = None
    retry_at: float | None = None  # when the next probe may go out
    probe_in_flight: bool = False


class CircuitBreaker:
    """Stop calling a provider that keeps failing; let one probe through after a cooldown."""

    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        threshold: int = 3,
        window_seconds: float = 60.0,
        cooldown_seconds: float = 30.0,
        probe_timeout_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        if window_seconds <= 0 or cooldown_seconds <= 0:
            raise ValueError("window_seconds and cooldown_seconds must be positive")
        if probe_timeout_seconds is not None and probe_timeout_seconds <= 0:
            raise ValueError("probe_timeout_seconds must be positive")
        self.name = name
        self.key = f"{prefix}{name}"
        self.threshold = threshold
        self.window_seconds = float(window_seconds)
        self.cooldown_seconds = float(cooldown_seconds)
        self.probe_timeout_seconds = float(probe_timeout_seconds or cooldown_seconds)
        self._redis = redis
        self._clock = clock
        self._allow = redis.register_script(_ALLOW)
        self._failure = redis.register_script(_FAILURE)

    def allow(self) -> bool:
        """May this caller send now? In half-open state only the one probe gets True."""
        verdict = self._allow(keys=[self.key], args=[repr(self._clock()), repr(self.probe_timeout_seconds)])
        return int(verdict) != 0

    def record_success(self) -> None:
        """The provider answered: close the circuit and forget the failures."""
        self._redis.delete(self.key)

    def record_failure(self) -> str:
        """Count a failure; returns "closed", "opened", "open" or "reopened"."""
        transition = self._failure(
            keys=[self.key],
            args=[
                repr(self._clock()),
                self.threshold,
                repr(self.window_seconds),
                repr(self.cooldown_seconds),
            ],
        )
        return _text(transition)

    def state(self) -> CircuitState:
        """The breaker as a status page shows it, read in one round trip."""
        return _state_from_hash(self.name, self._redis.hgetall(self.key), self._clock())

    def reset(self) -> None:
        """Close the circuit by hand (e.g. after fixing the connection's credentials)."""
        self._redis.delete(self.key)


def all_states(
    redis: Redis,
    prefix: str = DEFAULT_PREFIX,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, CircuitState]:
    """Every breaker under ``prefix`` that has failures or is open, by name (sorted)."""
    keys = sorted(
        _text(k) for k in redis.scan_iter(match=_glob_escape(prefix) + "*", count=500, _type="hash")
    )
    if not keys:
        return {}
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    now = clock()
    states: dict[str, CircuitState] = {}
    for key, raw in zip(keys, pipe.execute(), strict=True):
        if raw:  # expired between SCAN and HGETALL
            states[key[len(prefix) :]] = _state_from_hash(key[len(prefix) :], raw, now)
    return states


def _state_from_hash(name: str, raw: Mapping[Any, Any], now: float) -> CircuitState:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if fields.get("state") == "open":
        retry_at = float(fields.get("retry_at", "0"))
        probe_until = float(fields["probe_until"]) if "probe_until" in fields else None
        return CircuitState(
            name=name,
            state="open" if now < retry_at else "half_open",
            failures=int(fields.get("failures", "0")),
            opened_at=float(fields["opened_at"]) if "opened_at" in fields else None,
            retry_at=retry_at,
            probe_in_flight=probe_until is not None and now < probe_until,
        )
    # Closed: only failures still inside the window count (the hash may outlive them
    # by up to a second, and a fake clock in tests never lets Redis expire it).
    window = float(fields.get("window", "inf"))
    recent = [ts for ts in fields.get("fails", "").split() if now - float(ts) <= window]
    return CircuitState(name=name, state="closed", failures=len(recent))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob_escape(text: str) -> str:
    # SCAN MATCH is a glob: a prefix containing * ? [ ] or \ must match literally.
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
