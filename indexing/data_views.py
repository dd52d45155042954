"""Settings pages around deleting face data: the confirmation, and indexing again."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_POST

from accounts.decorators import consent_required

from .library import library_counts
from .models import Person
from .reindex import reindex_stored_photos

NAMES_SHOWN = 30


@login_required
def delete_confirm(request: HttpRequest) -> HttpResponse:
    """Say exactly what "Delete" will remove before it does (``?photos=1``: photos too)."""
    names = list(Person.objects.filter(owner=request.user).exclude(name="").order_by("name").values_list("name", flat=True))
    return render(
        request,
        "indexing/delete_confirm.html",
        {
            "counts": library_counts(request.user),
            "photos": request.GET.get("photos") == "1",
            "names": names[:NAMES_SHOWN],
            "more_names": max(0, len(names) - NAMES_SHOWN),
        },
    )


@consent_required
@require_POST
def reindex(request: HttpRequest) -> HttpResponse:
    """One button: index every stored photo again; the progress page of the first run follows."""
    outcome = reindex_stored_photos(request.user)
    for source in outcome.unlinked:
        messages.warning(request, f"{source.name} is not linked any more: connect Instagram again to index its photos.")
    if not outcome.runs:
        messages.info(request, "There are no stored photos waiting to be indexed.")
        return redirect("privacy")
    count = len(outcome.runs)
    messages.success(request, f"Indexing your stored photos again ({count} import{'s' if count != 1 else ''}).")
    return redirect("run", run_id=outcome.runs[0].pk)
