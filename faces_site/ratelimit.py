"""Per-user rate limits for the expensive views (searching, importing).

A search runs face detection and, with Rekognition, costs money per call; an
import fills the queue. Each user gets ``settings.FACES_RATE_LIMITS[scope]``
requests per sliding window, counted in the Django cache (Redis in
production, the shared file cache on one machine) by an atomic check, so
every web process agrees and concurrent requests never overshoot. Over the
limit the view answers 429 with a page that says when to come back, or JSON
for ``Accept: application/json`` requests. Limits are per account, never per
IP address, so users behind one proxy do not share them.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from . import counters
from .http import wants_json

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
SCOPE_NAMES = {"search": "searches", "import": "imports"}

# The clock of the file cache and local-memory counters; tests replace it.
clock: Callable[[], float] = time.time


def parse_rate(rate: str) -> tuple[int, int]:
    """``"30/m"`` -> (30, 60); ``"100/5m"`` -> (100, 300)."""
    match = RATE.match(rate or "")
    if not match:
        raise ValueError(f"Bad rate {rate!r}: use N/s, N/m, N/h, N/d (or N/5m).")
    amount, multiple, unit = match.groups()
    return int(amount), int(multiple or 1) * UNITS[unit]


def hit(scope: str, ident: object, rate: str, token: str = "") -> float:
    """Count one request of ``ident`` in ``scope``.

    Returns 0 when it is allowed, else the seconds until the oldest request
    in the window expires (the request is then not counted). Exact across
    threads and processes: see ``faces_site.counters``.
    """
    amount, period = parse_rate(rate)
    counted, value = counters.hit(f"faces:rl:{scope}:{ident}", amount, period, clock=clock, token=token)
    return 0.0 if counted else value


def refund(request: HttpRequest) -> None:
    """Uncount this request: the view refused it before doing any of the limited work."""
    counted = getattr(request, "_faces_rate_limited", None)
    if counted:
        scope, rate, token = counted
        counters.release(f"faces:rl:{scope}:{request.user.pk}", token, parse_rate(rate)[1])
        request._faces_rate_limited = None


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
                token = uuid.uuid4().hex
                retry_after = hit(scope, request.user.pk, rate, token=token)
                if retry_after:
                    return too_many_requests(request, scope, retry_after)
                request._faces_rate_limited = (scope, rate, token)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
