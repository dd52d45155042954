"""An exact sliding-window counter in the shared Django cache.

Both the per-user view limits (``faces_site.ratelimit``) and the Rekognition
transaction limit (``indexing.engines.ratelimit``) count requests that several
threads and processes make at once, so the check and the update must be one
atomic step, and the clock must be read inside it: a time read before the
step can land a request counted in one window in the next one.

- Redis: one Lua script per hit (a sorted set of request times; Redis's own
  ``TIME`` is the clock, so every host agrees on it).
- The file cache (one machine): an ``flock`` on a lock file in the cache
  folder, held for the whole read-check-write. The kernel releases it if a
  process dies, so nothing ever waits on a stale lock.
- Any other backend (local memory, tests): a process-wide thread lock, which
  is exact within the one process that such a cache serves anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache

_thread_lock = threading.Lock()

# KEYS[1]: the sorted set; ARGV: amount, period (s), a unique member.
# Returns {1, now} when the request is counted, else {0, seconds to wait}.
SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local amount = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) >= amount then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(tonumber(oldest[2]) + period - now)}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(period) + 1)
return {1, tostring(now)}
"""


def hit(
    key: str, amount: int, period: float, clock: Callable[[], float] = time.time, token: str = ""
) -> tuple[bool, float]:
    """Count one request under ``key`` if fewer than ``amount`` fell in the last ``period`` seconds.

    Returns ``(True, now)`` with the instant it was counted at, or
    ``(False, seconds)`` until the oldest counted request leaves the window
    (the request is then not counted). ``clock`` is used except on Redis,
    whose server clock is authoritative. ``token`` names the request for
    ``release``.
    """
    token = token or uuid.uuid4().hex
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return _redis_hit(backend, key, amount, period, token)
    with _exclusive(backend):
        now = clock()
        entries = [(stamp, name) for stamp, name in backend.get(key, []) if stamp > now - period]
        if len(entries) >= amount:
            return False, max(0.001, entries[0][0] + period - now)
        entries.append((now, token))
        backend.set(key, entries, timeout=int(period) + 2)
    return True, now


def release(key: str, token: str, period: float) -> None:
    """Take back the request ``token`` counted under ``key`` (it turned out to do nothing)."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        full_key = backend.make_and_validate_key(key)
        backend._cache.get_client(full_key, write=True).zrem(full_key, token)
        return
    with _exclusive(backend):
        entries = backend.get(key, [])
        kept = [(stamp, name) for stamp, name in entries if name != token]
        if len(kept) != len(entries):
            backend.set(key, kept, timeout=int(period) + 2)


def _redis_hit(backend: RedisCache, key: str, amount: int, period: float, token: str) -> tuple[bool, float]:
    full_key = backend.make_and_validate_key(key)
    client = backend._cache.get_client(full_key, write=True)
    # EVALSHA: the script's text goes to the server once, not with every request.
    script = client.register_script(SLIDING_WINDOW_LUA)
    counted, value = script(keys=[full_key], args=[amount, period, token])
    return bool(int(counted)), float(value)


@contextlib.contextmanager
def _exclusive(backend) -> Iterator[None]:
    """Hold the lock that makes a read-check-write on ``backend`` atomic."""
    if not isinstance(backend, FileBasedCache):
        with _thread_lock:
            yield
        return
    os.makedirs(backend._dir, exist_ok=True)
    # flock locks belong to the open file, so threads of one process that
    # each open the file exclude each other just as processes do.
    with open(os.path.join(backend._dir, "faces-counters.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
