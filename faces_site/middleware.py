"""Response headers that Django's SecurityMiddleware does not set; friendly upload limits."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve

from .http import wants_json


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


class UploadLimitsMiddleware:
    """Turn over-limit uploads into a message on the form's page, not a 400 error page.

    Django refuses a multipart body with more than ``DATA_UPLOAD_MAX_NUMBER_FILES``
    files by raising ``TooManyFilesSent`` while parsing it, which normally
    happens inside the CSRF check and ends in a bare "Bad Request". Parsing
    here first (this runs before any view middleware) lets us answer with a
    message instead. A search request bigger than one photo may be is refused
    from its Content-Length before its body is read.
    """

    # Where a refused upload sends the user back to, by URL name.
    FORM_PAGES = {"upload_photos": "import", "upload_export": "import", "search": "search"}

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.content_type == "multipart/form-data":
            refused = self._check(request)
            if refused is not None:
                return refused
        return self.get_response(request)

    def _check(self, request: HttpRequest) -> HttpResponse | None:
        url_name = self._url_name(request)
        limit = self._body_limit(url_name)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit and length > limit:
            megabytes = settings.FACES_MAX_UPLOAD_BYTES // (1024 * 1024)
            message = f"This photo is too large (the limit is {megabytes} MB)."
            return self._refuse(request, url_name, message, 413)
        try:
            request.POST  # noqa: B018 - parse now, so that limits surface here
        except TooManyFilesSent:
            return self._refuse(
                request,
                url_name,
                f"Please upload at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files at a time.",
                400,
            )
        except RequestDataTooBig:
            return self._refuse(request, url_name, "The form data is too large.", 413)
        return None

    @staticmethod
    def _url_name(request: HttpRequest) -> str:
        try:
            return resolve(request.path_info).url_name or ""
        except Resolver404:
            return ""

    @staticmethod
    def _body_limit(url_name: str) -> int | None:
        if url_name == "search":
            return settings.FACES_MAX_UPLOAD_BYTES + 1024 * 1024  # the photo plus form fields
        return None

    def _refuse(self, request: HttpRequest, url_name: str, message: str, status: int) -> HttpResponse:
        if wants_json(request):
            return JsonResponse({"error": message}, status=status)
        messages.error(request, message)
        page = self.FORM_PAGES.get(url_name)
        return redirect(page if page else "home")
