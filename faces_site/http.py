"""What a request asks for, read the same way by every view, decorator and middleware."""

from __future__ import annotations

from django.http import HttpRequest


def wants_json(request: HttpRequest) -> bool:
    """True for the page scripts' fetches (``Accept: application/json``): they get JSON errors, not pages."""
    return request.headers.get("Accept", "").startswith("application/json")
