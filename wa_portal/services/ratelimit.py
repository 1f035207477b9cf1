"""Send-rate limits per connection, shared by every worker through a token bucket in Redis.

API
---
``TokenBucket(redis, name, *, rate_per_second, burst=None, clock=time.time, prefix="wa:ratelimit:")``
    One bucket per ``name`` (e.g. ``"conn:42"``); every process that builds a bucket with
    the same name and prefix shares it. ``rate_per_second`` of ``None`` or ``<= 0`` means
    unlimited (Redis is never touched). ``burst`` defaults to one second's worth of tokens
    (at least 1).

``TokenBucket.try_acquire(tokens=1) -> float``
    ``0.0`` when the tokens were taken, else the seconds to wait before they will be
    there (nothing is taken then). Atomic: one Lua script per call.

``TokenBucket.acquire(tokens=1, *, timeout, sleep=time.sleep) -> bool``
    Waits (through ``sleep``) until the tokens are taken or ``timeout`` seconds would pass.

``DEFAULT_RATES: dict[str, float]``
    Documented send rates per provider (messages per second; ``0`` = unlimited).

The bucket is stored as a hash (``tokens``, ``ts``) that expires once it would have
refilled anyway, so idle connections leave nothing behind. Timestamps come from the
injected ``clock`` (tests pass a fake one); between hosts a few milliseconds of clock skew
only shifts refills by a fraction of a token, and a clock that steps backwards never
refills the bucket twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["DEFAULT_PREFIX", "DEFAULT_RATES", "TokenBucket"]

DEFAULT_PREFIX = "wa:ratelimit:"

# Messages per second per sender. Providers queue or reject above these; staying under
# them keeps sends from bouncing back as rate_limited errors.
DEFAULT_RATES: dict[str, float] = {
    # Cloud API: 80 mps per business phone number by default (up to 1,000 after an
    # automatic upgrade; 20 for numbers shared with the WhatsApp Business app).
    # Docs: https://developers.facebook.com/documentation/business-messaging/whatsapp/throughput
    "meta": 80.0,
    # 360dialog hosts the same Cloud API: "up to 80 messages per second".
    # Docs: https://docs.360dialog.com/partner/get-started/billing-and-invocing
    "dialog360": 80.0,
    # Twilio WhatsApp senders: 80 MPS by default for text and media alike (the older
    # 10 MPS text / 1.5 MPS media figures are gone from the current page).
    # Docs: https://www.twilio.com/docs/whatsapp/best-practices-and-faqs
    "twilio": 80.0,
    # Twilio SMS from a long code: 1 message *segment* per second per number (toll-free
    # 3, short code 30). Acquire one token per segment: bucket.acquire(len(segments)).
    # Docs: https://www.twilio.com/help/faq/twilio-basics/what-are-the-limits-on-outbound-calls-and-sms-messages-per-second
    "twilio_sms": 1.0,
    # WAHA drives WhatsApp Web for a personal/Business-app number; WhatsApp publishes no
    # limit and bans numbers that send like a bot. One message every 5 s keeps a clinic's
    # reminder run human-paced (200 reminders ≈ 17 minutes).
    # Docs: https://waha.devlike.pro/docs/overview/ ("How to Avoid Blocking")
    "waha": 0.2,
    # The in-app simulated phone: nothing to protect.
    "sandbox": 0.0,
    # SES sending rate is per account and region: 1 email/s in the sandbox; out of the
    # sandbox AWS now says only that it "varies based on your specific use case". 1/s is
    # the one documented number; raise it to the account's MaxSendRate (GetSendQuota).
    # Docs: https://docs.aws.amazon.com/ses/latest/dg/quotas.html
    "ses": 1.0,
    # Self-hosted Chatwoot throttles 3,000 requests/minute per IP (RACK_ATTACK_LIMIT);
    # one reply can cost several API calls (contact, conversation, message), so stay well
    # below 50 req/s.
    # Docs: https://github.com/chatwoot/chatwoot/blob/develop/config/initializers/rack_attack.rb
    "chatwoot": 5.0,
}

# KEYS[1] bucket hash. ARGV: rate, burst, now, requested, ttl_ms.
# Returns the seconds to wait as a string (Lua numbers become integers in replies).
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local requested = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local wait = 0
if tokens >= requested then
  tokens = tokens - requested
else
  wait = (requested - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return string.format('%.17g', wait)
"""


class TokenBucket:
    """A token bucket in Redis: ``rate_per_second`` refill, at most ``burst`` tokens saved up."""

    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        rate_per_second: float | None,
        burst: int | None = None,
        clock: Callable[[], float] = time.time,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.name = name
        self.key = f"{prefix}{name}"
        self.rate = float(rate_per_second) if rate_per_second and rate_per_second > 0 else 0.0
        if burst is None:
            burst = max(1, math.ceil(self.rate))
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.burst = burst
        self._redis = redis
        self._clock = clock
        self._take = redis.register_script(_TAKE)
        # A missing key is a full bucket, so the hash may go once it would be full again.
        self._ttl_ms = math.ceil(burst / self.rate * 1000) + 1000 if self.rate else 0

    @property
    def unlimited(self) -> bool:
        return self.rate == 0.0

    def try_acquire(self, tokens: int = 1) -> float:
        """Take ``tokens`` now and return 0.0, or take nothing and return the seconds to wait."""
        if tokens < 1:
            raise ValueError("tokens must be at least 1")
        if self.unlimited:
            return 0.0
        if tokens > self.burst:
            # The bucket never holds that many: waiting would be forever.
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self.burst}")
        now = self._clock()
        wait = self._take(
            keys=[self.key],
            args=[repr(self.rate), self.burst, repr(now), tokens, self._ttl_ms],
        )
        return max(float(wait), 0.0)

    def acquire(
        self, tokens: int = 1, *, timeout: float, sleep: Callable[[float], object] = time.sleep
    ) -> bool:
        """Wait for ``tokens`` up to ``timeout`` seconds; True once taken, False if it would take longer."""
        start = self._clock()
        slept = 0.0
        while True:
            wait = self.try_acquire(tokens)
            if wait == 0.0:
                return True
            # Both measures: the clock (real time spent in Redis calls counts) and the sum of
            # sleeps (so a fake sleep that does not move the clock still ends the loop).
            elapsed = max(self._clock() - start, slept)
            if elapsed + wait > timeout:
                return False
            sleep(wait)
            slept += wait

    def reset(self) -> None:
        """Forget the bucket's state (it is full again)."""
        self._redis.delete(self.key)
