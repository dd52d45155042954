"""A request-rate limit shared by every process that uses the same Django cache.

AWS counts Rekognition transactions per second per account and region, not per
process: four workers each keeping to 5 TPS still get throttled at 20. So the
limit lives in the cache (Redis in production, the file cache on one machine)
as a sliding window per operation class: a request goes out only when fewer
than the allowance went out in the window before it, otherwise it sleeps
until the oldest one leaves the window.

The check, the clock reading and the count are one atomic step
(``faces_site.counters``: a Lua script on Redis, an ``flock`` on the file
cache), so no window ever holds more than the allowance, whatever the number
of threads and processes.
"""

from __future__ import annotations

import logging
import math
import random
import time

from faces_site import counters

logger = logging.getLogger(__name__)


class RateLimiter:
    """At most ``rate`` requests per second per ``key``, across processes."""

    def __init__(self, prefix: str = "faces:tps", max_wait: float = 60.0):
        self.prefix = prefix
        self.max_wait = max_wait

    def acquire(self, key: str, rate: float) -> float:
        """Block until a slot is free; return the seconds waited.

        Raises ``TimeoutError`` after ``max_wait`` seconds so that a stuck
        counter can never hang a worker forever.
        """
        started = time.monotonic()
        self.acquire_at(key, rate)
        return time.monotonic() - started

    def acquire_at(self, key: str, rate: float) -> float:
        """Like ``acquire``, but return the instant the request was counted at.

        The instants of all requests of one key, in any process, never put
        more than the allowance in one window (what the tests check).
        """
        if rate <= 0:
            return time.time()
        # Rates below one per second use a longer window holding one request.
        window = max(1, math.ceil(1 / rate))
        allowance = max(1, int(rate * window))
        started = time.monotonic()
        name = f"{self.prefix}:{key}:{window}"
        while True:
            counted, value = counters.hit(name, allowance, window)
            if counted:
                return value
            waited = time.monotonic() - started
            if waited >= self.max_wait:
                raise TimeoutError(f"rate limit {rate}/s for {key} still full after {waited:.0f}s")
            # Sleep until the oldest request leaves the window, with a little
            # jitter so that waiters do not all retry at the same instant.
            time.sleep(min(value, self.max_wait) + random.uniform(0, 0.02 * window))
