"""A request-rate limit shared by every process that uses the same Django cache.

AWS counts Rekognition transactions per second per account and region, not per
process: four workers each keeping to 5 TPS still get throttled at 20. So the
limit lives in the cache (Redis in production, the file cache on one machine):
a fixed-window counter per operation class. Each request takes a slot in the
current window; when the window is full it sleeps until the next one.

Redis's INCR is atomic. The file cache's ``incr`` is a read and a write, so
for it the counter update is serialized with a lock file in the cache folder
(and, within a process, a thread lock), which keeps the count exact across
the web and worker processes of one machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import random
import threading
import time

from django.core.cache import cache, caches
from django.core.cache.backends.filebased import FileBasedCache

logger = logging.getLogger(__name__)


class RateLimiter:
    """At most ``rate`` requests per second per ``key``, across processes."""

    def __init__(self, prefix: str = "faces:tps", max_wait: float = 60.0):
        self.prefix = prefix
        self.max_wait = max_wait
        self._lock = threading.Lock()

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
            used = self._take(f"{self.prefix}:{key}:{window}:{slot}", window)
            if used is not None and used <= allowance:
                return time.monotonic() - started
            waited = time.monotonic() - started
            if waited >= self.max_wait:
                raise TimeoutError(f"rate limit {rate}/s for {key} still full after {waited:.0f}s")
            if used is not None:
                # Sleep to the next window, with jitter so waiters do not stampede it.
                time.sleep((slot + 1) * window - now + random.uniform(0, 0.05 * window))

    def _take(self, name: str, window: int) -> int | None:
        """Count one request in the window ``name``; None if the key vanished meanwhile."""
        with self._lock, _file_lock():
            cache.add(name, 0, timeout=window + 5)
            try:
                return cache.incr(name)
            except ValueError:  # expired between add() and incr(): try again
                return None


@contextlib.contextmanager
def _file_lock():
    """An exclusive lock shared by processes using the same file cache (no-op otherwise)."""
    backend = caches["default"]
    if not isinstance(backend, FileBasedCache):
        yield
        return
    os.makedirs(backend._dir, exist_ok=True)
    with open(os.path.join(backend._dir, "faces-ratelimit.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
