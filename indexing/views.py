"""Import, progress and privacy pages. Thin: the work lives in pipeline and deletion."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.models import FaceConsent, has_face_consent

from .deletion import delete_face_data
from .models import Face, Person, Photo, Source


@login_required
@require_http_methods(["GET", "POST"])
def privacy(request: HttpRequest) -> HttpResponse:
    """What we hold about you, and the button that deletes your face data."""
    if request.method == "POST":
        report = delete_face_data(request.user, photos=request.POST.get("photos") == "1")
        parts = [f"{count} {kind.replace('_', ' ')}" for kind, count in report.items() if count]
        messages.success(request, "Deleted " + (", ".join(parts) if parts else "nothing (there was no face data)") + ".")
        return redirect("privacy")
    user = request.user
    context = {
        "counts": {
            "photos": Photo.objects.filter(owner=user).count(),
            "faces": Face.objects.filter(owner=user).count(),
            "people": Person.objects.filter(owner=user).count(),
            "sources": Source.objects.filter(owner=user).count(),
        },
        "consent": FaceConsent.objects.filter(user=user).first(),
        "has_consent": has_face_consent(user),
    }
    return render(request, "indexing/privacy.html", context)
