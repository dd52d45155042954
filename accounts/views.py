"""Consent and account pages. Knows nothing about faces beyond the consent text."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from .consent import CONSENT_POINTS
from .decorators import safe_next
from .forms import ConsentForm, DeleteAccountForm
from .models import FaceConsent, has_face_consent
from .signals import consent_given


@login_required
@require_http_methods(["GET", "POST"])
def consent(request: HttpRequest) -> HttpResponse:
    form = ConsentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        FaceConsent.objects.record(request.user, accepted=True, request=request)
        consent_given.send(sender=FaceConsent, user=request.user)
        messages.success(request, "Thank you. You can now import photos and search them by face.")
        return redirect(safe_next(request, "/"))
    return render(
        request,
        "accounts/consent.html",
        {
            "form": form,
            "points": CONSENT_POINTS,
            "version": settings.FACES_CONSENT_VERSION,
            "already": has_face_consent(request.user),
            "next": safe_next(request, ""),
        },
    )


@login_required
@require_http_methods(["POST"])
def withdraw_consent(request: HttpRequest) -> HttpResponse:
    """Withdrawing stops all face processing; deleting the data is a separate step."""
    FaceConsent.objects.record(request.user, accepted=False, request=request)
    messages.info(request, "Consent withdrawn. No new photos will be processed.")
    return redirect("privacy")


@login_required
@require_http_methods(["GET", "POST"])
def delete_account(request: HttpRequest) -> HttpResponse:
    """Delete the user; the indexing app's pre_delete receiver removes their data."""
    form = DeleteAccountForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)
        user.delete()
        messages.success(request, "Your account and all its photos and face data were deleted.")
        return redirect("/")
    return render(request, "accounts/delete_account.html", {"form": form})
