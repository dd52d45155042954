"""Reading the Graph API's answers: ids, timestamps, usage headers, errors, paging cursors.

Kept apart from the client so that its request logic stays short; nothing here
makes a request.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from faces_site.logging import redact

USAGE_HEADERS = ("X-App-Usage", "X-Business-Use-Case-Usage")
DEFAULT_RETRY_AFTER = 600.0  # Meta's windows roll over an hour; ten minutes is a fair first wait.


def loads(text: str) -> Any:
    """JSON with integers kept as strings, so 17-digit ids never lose digits."""
    return json.loads(text, parse_int=str)


def safe_url(url: str) -> str:
    """The URL as it may appear in logs: tokens redacted."""
    return redact(url)


def parse_timestamp(value: str | None) -> dt.datetime | None:
    """Instagram's ``2024-05-01T12:00:00+0000`` as an aware datetime."""
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def usage_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait when a usage header reports any metric at 100% or more, else None.

    ``X-App-Usage`` is ``{"call_count": 28, "total_time": 25, "total_cputime": 25}``;
    ``X-Business-Use-Case-Usage`` maps an account id to a list of such objects,
    which may carry ``estimated_time_to_regain_access`` in minutes.
    """
    worst: float | None = None
    for name in USAGE_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        entries: list[dict] = []
        if isinstance(data, dict) and any(isinstance(v, list) for v in data.values()):
            for value in data.values():
                if isinstance(value, list):
                    entries.extend(item for item in value if isinstance(item, dict))
        elif isinstance(data, dict):
            entries.append(data)
        for entry in entries:
            usage = max(
                (_number(entry.get(key)) for key in ("call_count", "total_time", "total_cputime")),
                default=0.0,
            )
            regain = _number(entry.get("estimated_time_to_regain_access")) * 60
            if usage >= 100 or regain > 0:
                wait = regain if regain > 0 else DEFAULT_RETRY_AFTER
                worst = max(worst or 0.0, wait)
    return worst


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def retry_after_header(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def next_cursor(data: dict) -> str:
    """The ``after`` cursor of the next page, or "" when this page is the last."""
    paging = data.get("paging") if isinstance(data.get("paging"), dict) else {}
    next_url = paging.get("next")
    if not next_url:
        return ""
    found = parse_qs(urlsplit(str(next_url)).query).get("after")
    if found:
        return found[0]
    cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
    return str(cursors.get("after") or "")


def error_fields(resp: requests.Response) -> tuple[int | None, int | None, str, str]:
    """(code, subcode, type, message) from a Graph or token-endpoint error."""
    try:
        data = loads(resp.text)
    except ValueError:
        return None, None, "", resp.text[:200].strip()
    if not isinstance(data, dict):
        return None, None, "", ""
    nested = data.get("error")
    if isinstance(nested, dict):  # Graph: {"error": {"message", "type", "code", "error_subcode"}}
        source = nested
        kind, message = str(nested.get("type") or ""), str(nested.get("message") or "")
        sub = nested.get("error_subcode")
    else:  # token endpoints: {"error_type", "code", "error_message"}
        source = data
        kind, message = str(data.get("error_type") or ""), str(data.get("error_message") or "")
        sub = data.get("error_subcode")
    return _int(source.get("code")), _int(sub), kind, message


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
