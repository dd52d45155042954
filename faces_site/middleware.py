"""Response headers that Django's SecurityMiddleware does not set."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def content_security_policy() -> str:
    """FACES_CSP with the Instagram authorization origin filled in (read per request)."""
    parts = urlsplit(settings.INSTAGRAM_AUTH_URL)
    return settings.FACES_CSP.format(instagram=f"{parts.scheme}://{parts.netloc}")


class SecurityHeadersMiddleware:
    """Add a Content-Security-Policy and a Permissions-Policy to every page.

    The policy allows the camera for our own origin only, so the selfie page
    works while no third-party script or frame can reach it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        response.headers.setdefault("Permissions-Policy", settings.FACES_PERMISSIONS_POLICY)
        return response
