"""How Instagram's answers read: JSON with long ids, and its two error shapes.

Login (this app) and crawling (``indexing.instagram.client``) both talk to
Instagram; they read answers and errors here so that a change in Meta's format
is fixed once. Nothing here raises: callers turn what they read into their own
exceptions (``OAuth2Error`` at login, ``SourceError`` kinds when crawling).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings

from faces_site.logging import redact


def base_url(name: str) -> str:
    """``INSTAGRAM_AUTH_URL`` / ``_API_URL`` / ``_GRAPH_URL``, read per call so tests can move them."""
    return str(getattr(settings, name)).rstrip("/")


def loads(text: str) -> Any:
    """JSON with integers kept as strings: Instagram ids have 17 digits and must not pass a float."""
    return json.loads(text, parse_int=str)


def json_object(resp: requests.Response) -> dict | None:
    """The JSON object of an answer, or None when it is not readable JSON or not an object."""
    try:
        data = loads(resp.text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class InstagramError:
    """An error answer, whichever shape it came in.

    The Graph API nests ``{"error": {"message", "type", "code", "error_subcode"}}``;
    the token endpoints answer flat ``{"error_type", "code", "error_message"}``;
    OAuth redirects may say ``{"error": "...", "error_description": "..."}``.
    """

    status: int
    code: int | None = None
    subcode: int | None = None
    kind: str = ""
    message: str = ""

    def __str__(self) -> str:
        """A short, token-free description for logs and error messages."""
        if not (self.kind or self.message or self.code is not None):
            return f"HTTP {self.status}"
        code = "" if self.code is None else f" {self.code}"
        return redact(f"{self.kind or 'error'}{code} (HTTP {self.status}): {self.message}")[:300]


def error_of(resp: requests.Response) -> InstagramError:
    """Read an error answer of any of Instagram's shapes."""
    try:
        data = loads(resp.text)
    except ValueError:  # not JSON: a proxy's or CDN's text is the message
        return InstagramError(resp.status_code, message=resp.text[:200].strip())
    if not isinstance(data, dict):
        return InstagramError(resp.status_code)
    nested = data.get("error")
    if isinstance(nested, str):
        return InstagramError(resp.status_code, kind=nested, message=str(data.get("error_description") or ""))
    graph = isinstance(nested, dict)
    fields = nested if graph else data
    return InstagramError(
        resp.status_code,
        code=_int(fields.get("code")),
        subcode=_int(fields.get("error_subcode")),
        kind=str(fields.get("type" if graph else "error_type") or ""),
        message=str(fields.get("message" if graph else "error_message") or ""),
    )
