"""Import, progress and privacy pages. Thin: the work lives in pipeline and deletion."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import consent_required
from accounts.instagram.provider import InstagramLoginProvider
from accounts.models import FaceConsent, has_face_consent
from faces_site.ratelimit import rate_limit

from . import pipeline
from .deletion import delete_face_data
from .forms import ExportUploadForm, PhotoUploadForm
from .imports import check_export, import_export_zip, import_uploads
from .instagram.export import ExportError
from .models import Face, IndexRun, Person, Photo, Source


@consent_required
def import_page(request: HttpRequest) -> HttpResponse:
    """Connect Instagram, upload photos or an export ZIP; recent runs below."""
    return render(
        request,
        "indexing/import.html",
        {
            "photo_form": PhotoUploadForm(),
            "export_form": ExportUploadForm(),
            "runs": IndexRun.objects.filter(owner=request.user).select_related("source")[:20],
            "instagram_sources": Source.objects.filter(owner=request.user, kind=Source.Kind.INSTAGRAM),
        },
    )


@consent_required
@require_POST
@rate_limit("import")
def upload_photos(request: HttpRequest) -> HttpResponse:
    form = PhotoUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        for error in form.errors.get("photos", []):
            messages.error(request, error)
        return redirect("import")
    summary = import_uploads(request.user, form.cleaned_data["photos"])
    for rejected in summary.rejected:
        messages.warning(request, f"Not imported: {rejected}")
    if summary.duplicates:
        messages.info(request, f"{summary.duplicates} photo(s) were already in your library and were skipped.")
    if summary.source is None:
        messages.warning(request, "No new photos to index.")
        return redirect("import")
    run = pipeline.start_run(summary.source)
    return redirect("run", run_id=run.pk)


@consent_required
@require_POST
@rate_limit("import")
def upload_export(request: HttpRequest) -> HttpResponse:
    form = ExportUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Please choose the ZIP file of your Instagram export.")
        return redirect("import")
    archive = form.cleaned_data["archive"]
    try:
        check_export(archive)
    except ExportError as exc:
        messages.error(request, str(exc))
        return redirect("import")
    source = import_export_zip(request.user, archive, name=f"Instagram export {archive.name}")
    run = pipeline.start_run(source)
    return redirect("run", run_id=run.pk)


@login_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(IndexRun.objects.select_related("source"), pk=run_id, owner=request.user)
    return render(request, "indexing/run.html", {"run": run, "progress": pipeline.progress(run)})


@login_required
def run_progress_json(request: HttpRequest, run_id: int) -> JsonResponse:
    run = get_object_or_404(IndexRun, pk=run_id, owner=request.user)
    response = JsonResponse(pipeline.progress(run))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(IndexRun, pk=run_id, owner=request.user)
    if pipeline.cancel_run(run):
        messages.info(request, "Import cancelled. Photos indexed so far stay searchable.")
    return redirect("run", run_id=run.pk)


@consent_required
@require_POST
def run_retry(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(IndexRun, pk=run_id, owner=request.user)
    post_id = request.POST.get("post")
    ids = [int(post_id)] if post_id and post_id.isdigit() else None
    count = pipeline.retry_failed(run, ids)
    messages.info(request, f"Retrying {count} post{'s' if count != 1 else ''}.")
    return redirect("run", run_id=run.pk)


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


@consent_required
def instagram_connect(request: HttpRequest) -> HttpResponse:
    """Explain what linking does, then hand over to the allauth provider."""
    provider = InstagramLoginProvider.id
    apps = settings.SOCIALACCOUNT_PROVIDERS.get(provider, {}).get("APPS", [])
    return render(request, "indexing/instagram_connect.html", {"configured": bool(apps), "provider": provider})


@consent_required
@require_POST
@rate_limit("import")
def instagram_sync(request: HttpRequest, source_id: int) -> HttpResponse:
    """Fetch posts newer than the last crawl ("Sync now")."""
    source = get_object_or_404(Source, pk=source_id, owner=request.user, kind=Source.Kind.INSTAGRAM)
    if not source.active:
        messages.error(request, "This Instagram account is unlinked. Connect it again to sync.")
        return redirect("import")
    run = pipeline.active_run(source) or pipeline.start_run(source)
    return redirect("run", run_id=run.pk)


@login_required
def instagram_linked(request: HttpRequest) -> HttpResponse:
    """Where Instagram linking lands: the progress of the crawl it started."""
    run = IndexRun.objects.filter(owner=request.user, source__kind=Source.Kind.INSTAGRAM).first()
    if run is None:
        messages.info(request, "Instagram is linked. Give consent to start indexing your posts.")
        return redirect("import")
    return redirect("run", run_id=run.pk)
