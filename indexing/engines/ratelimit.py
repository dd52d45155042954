"""A request-rate limit shared by every process that uses the same Django cache.

AWS counts Rekognition transactions per second per account and region, not per
process: four workers each keeping to 5 TPS still get throttled at 20. So the
limit lives in the cache (Redis in production, the file cache on one machine):
a fixed-window counter per operation class. Each request takes a slot in the
current window; when the window is full it sleeps until the next one.

The file cache's ``incr`` is not atomic across processes, so on one machine the
limit is approximate; Redis makes it exact. Adaptive retries in botocore catch
whatever slips through.
"""

from __future__ import annotations

import logging
import math
import random
import time

from django.core.cache import cache

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
        if rate <= 0:
            return 0.0
        # Rates below one per second use a longer window holding one request.
        window = max(1, math.ceil(1 / rate))
        allowance = max(1, int(rate * window))
        started = time.monotonic()
        while True:
            now = time.time()
            slot = int(now // window)
            name = f"{self.prefix}:{key}:{window}:{slot}"
            cache.add(name, 0, timeout=window + 5)
            try:
                used = cache.incr(name)
            except ValueError:  # the key expired between add() and incr()
                continue
            if used <= allowance:
                return time.monotonic() - started
            waited = time.monotonic() - started
            if waited >= self.max_wait:
                raise TimeoutError(f"rate limit {rate}/s for {key} still full after {waited:.0f}s")
            # Sleep to the next window, with jitter so waiters do not stampede it.
            time.sleep((slot + 1) * window - now + random.uniform(0, 0.05 * window))
