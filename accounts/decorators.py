"""View decorators for pages that process faces."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from faces_site.http import wants_json

from .models import has_face_consent


def consent_required(view):
    """Log-in required, and the current consent accepted, before any face work."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not has_face_consent(request.user):
            if wants_json(request):
                return JsonResponse({"error": "Face-processing consent is required."}, status=403)
            return redirect(f"{reverse('consent')}?next={request.get_full_path()}")
        return view(request, *args, **kwargs)

    return wrapper


def safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default
