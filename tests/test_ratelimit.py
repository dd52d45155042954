"""The shared rate limit holds across threads and across processes (file cache here, Redis in production)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from indexing.engines.ratelimit import RateLimiter
from tests.conftest import ROOT

RATE = 10

TAKE = """
import json, time
from concurrent.futures import ThreadPoolExecutor
import django
django.setup()
from indexing.engines.ratelimit import RateLimiter
limiter = RateLimiter(prefix="test")
time.sleep(max(0.0, {start} - time.time()))  # both processes start hammering at the same instant
def take(_):
    limiter.acquire("index", {rate})
    return time.time()
with ThreadPoolExecutor(4) as pool:
    print(json.dumps(list(pool.map(take, range({n})))))
"""


def assert_within_rate(stamps: list[float]) -> None:
    per_second = Counter(int(stamp) for stamp in stamps)
    assert max(per_second.values()) <= RATE, per_second


def test_threads_share_the_limit(settings):
    limiter = RateLimiter(prefix="test")
    stamps: list[float] = []

    def take(_):
        limiter.acquire("index", RATE)
        stamps.append(time.time())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(take, range(25)))
    assert_within_rate(stamps)
    assert max(stamps) - min(stamps) >= 1.0  # 25 requests at 10/s span at least three windows


def test_processes_share_the_limit(data_dir):
    env = {"DJANGO_SETTINGS_MODULE": "faces_site.settings", "FACES_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    start = time.time() + 3  # after both have imported Django
    workers = [
        subprocess.Popen([sys.executable, "-c", TAKE.format(n=25, rate=RATE, start=start)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    stamps = [stamp for worker in workers for stamp in json.loads(worker.communicate(timeout=60)[0])]
    assert len(stamps) == 50
    assert_within_rate(stamps)
