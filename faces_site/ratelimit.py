"""Per-user rate limits for the expensive views (searching, importing).

A search runs face detection and, with Rekognition, costs money per call; an
import fills the queue. Each user gets ``settings.FACES_RATE_LIMITS[scope]``
requests per sliding window, counted in the Django cache (Redis in
production, the shared file cache on one machine), so every web process
agrees. Over the limit the view answers 429 with a page that says when to
come back, or JSON for ``Accept: application/json`` requests.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from .http import wants_json

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
SCOPE_NAMES = {"search": "searches", "import": "imports"}

_thread_lock = threading.Lock()


def parse_rate(rate: str) -> tuple[int, int]:
    """``"30/m"`` -> (30, 60); ``"100/5m"`` -> (100, 300)."""
    match = RATE.match(rate or "")
    if not match:
        raise ValueError(f"Bad rate {rate!r}: use N/s, N/m, N/h, N/d (or N/5m).")
    amount, multiple, unit = match.groups()
    return int(amount), int(multiple or 1) * UNITS[unit]


@contextlib.contextmanager
def _locked(key: str) -> Iterator[None]:
    """Serialize one counter's read-modify-write (cache.add is atomic on Redis)."""
    lock = f"{key}:lock"
    deadline = time.monotonic() + 1.0
    acquired = False
    with _thread_lock:
        while not (acquired := cache.add(lock, 1, timeout=5)) and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            yield
        finally:
            if acquired:
                cache.delete(lock)


def hit(scope: str, ident: object, rate: str) -> float:
    """Count one request of ``ident`` in ``scope``.

    Returns 0 when it is allowed, else the seconds until the oldest request
    in the window expires (the request is then not counted).
    """
    amount, period = parse_rate(rate)
    key = f"faces:rl:{scope}:{ident}"
    now = time.time()
    with _locked(key):
        stamps = [stamp for stamp in cache.get(key, []) if stamp > now - period]
        if len(stamps) >= amount:
            return max(0.001, stamps[0] + period - now)
        stamps.append(now)
        cache.set(key, stamps, timeout=period + 1)
    return 0.0


def too_many_requests(request: HttpRequest, scope: str, retry_after: float) -> HttpResponse:
    seconds = max(1, math.ceil(retry_after))
    wait = f"{seconds} seconds" if seconds < 90 else f"{math.ceil(seconds / 60)} minutes"
    message = f"Too many {SCOPE_NAMES.get(scope, 'requests')} in a short time. Please try again in {wait}."
    if wants_json(request):
        response: HttpResponse = JsonResponse({"error": message, "retry_after": seconds}, status=429)
    else:
        response = render(request, "429.html", {"message": message}, status=429)
    response["Retry-After"] = str(seconds)
    return response


def rate_limit(scope: str, methods: tuple[str, ...] = ("POST",)) -> Callable:
    """Limit a logged-in user's ``methods`` requests to the view by ``FACES_RATE_LIMITS[scope]``.

    Put it inside ``login_required``/``consent_required`` so that anonymous
    requests are redirected before they count.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            rate = settings.FACES_RATE_LIMITS.get(scope)
            if rate and request.method in methods and request.user.is_authenticated:
                retry_after = hit(scope, request.user.pk, rate)
                if retry_after:
                    return too_many_requests(request, scope, retry_after)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
