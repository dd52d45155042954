"""Response headers that Django's SecurityMiddleware does not set."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class SecurityHeadersMiddleware:
    """Add a Content-Security-Policy and a Permissions-Policy to every page.

    The policy allows the camera for our own origin only, so the selfie page
    works while no third-party script or frame can reach it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.FACES_CSP)
        response.headers.setdefault("Permissions-Policy", settings.FACES_PERMISSIONS_POLICY)
        return response
