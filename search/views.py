"""Home, search, gallery and people pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import has_face_consent
from indexing.models import Face, IndexRun, Photo


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(request, "search/landing.html")
    user = request.user
    context = {
        "has_consent": has_face_consent(user),
        "latest_run": IndexRun.objects.filter(owner=user).select_related("source").first(),
        "photo_count": Photo.objects.filter(owner=user).count(),
        "face_count": Face.objects.filter(owner=user).count(),
    }
    return render(request, "search/home.html", context)
