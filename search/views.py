"""Home, search (webcam or upload), gallery, similar faces and private media."""

from __future__ import annotations

import random
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.decorators import consent_required
from accounts.models import has_face_consent
from faces_site.http import wants_json
from faces_site.ratelimit import rate_limit
from indexing.engines.base import EngineError, NoFaceError
from indexing.images import ImageError, decode_image, encode_jpeg
from indexing.media import ensure_rendition, serve_stored
from indexing.models import Face, IndexRun, Photo, Source
from indexing.people.queries import person_hint

from .services import search_by_face, search_by_image

QUERY_TTL = 15 * 60  # seconds a query photo is kept for picking a face / moving the threshold
QUERY_SIDE = 1600
GALLERY_SAMPLE = 50


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(request, "search/landing.html")
    user = request.user
    context = {
        "has_consent": has_face_consent(user),
        "latest_run": IndexRun.objects.filter(owner=user).select_related("source").first(),
        "photo_count": Photo.objects.filter(owner=user, status=Photo.Status.INDEXED).count(),
        "face_count": Face.objects.filter(owner=user).count(),
        "reconnect": Source.objects.filter(owner=user, kind=Source.Kind.INSTAGRAM, needs_reconnect=True).first(),
    }
    return render(request, "search/home.html", context)


def _threshold(request: HttpRequest) -> float:
    try:
        return max(0.0, min(100.0, float(request.GET.get("threshold", settings.FACES_DEFAULT_THRESHOLD))))
    except ValueError:
        return settings.FACES_DEFAULT_THRESHOLD


def _query_key(user, query_id: str) -> str:
    return f"faces:query:{user.pk}:{query_id}"


def _query_index_key(user) -> str:
    return f"faces:queries:{user.pk}"


def remember_query(user, query_id: str, image: bytes) -> None:
    """Keep a query photo briefly, and note its key so deleting face data can drop it."""
    cache.set(_query_key(user, query_id), image, QUERY_TTL)
    ids = [i for i in cache.get(_query_index_key(user), []) if cache.has_key(_query_key(user, i))]
    cache.set(_query_index_key(user), [*ids, query_id], QUERY_TTL)


def forget_queries(user) -> None:
    """Drop every query photo the user searched with (face data or account deleted)."""
    ids = cache.get(_query_index_key(user), [])
    cache.delete_many([_query_key(user, i) for i in ids] + [_query_index_key(user)])


@consent_required
@require_http_methods(["GET", "POST"])
@rate_limit("search", methods=("POST",))
def search(request: HttpRequest) -> HttpResponse:
    """The search page; a POSTed photo (upload or selfie) is kept briefly and searched."""
    as_json = wants_json(request)
    error = ""
    if request.method == "POST":
        upload = request.FILES.get("image")
        if upload is None:
            error = "Choose a photo or take a selfie first."
        elif upload.size > settings.FACES_MAX_UPLOAD_BYTES:
            error = f"This photo is too large (the limit is {settings.FACES_MAX_UPLOAD_BYTES // (1024 * 1024)} MB)."
        else:
            try:
                decoded = decode_image(upload.read(), max_side=QUERY_SIDE)
            except ImageError as exc:
                error = f"We could not read this photo: {exc}"
            else:
                query_id = uuid.uuid4().hex
                remember_query(request.user, query_id, encode_jpeg(decoded.image, 90))
                url = reverse("search_results", args=[query_id])
                if request.POST.get("threshold"):
                    url += f"?threshold={request.POST['threshold']}"
                if as_json:
                    return JsonResponse({"redirect": url})
                return redirect(url)
        if as_json:
            return JsonResponse({"error": error}, status=400)
    return render(
        request,
        "search/search.html",
        {"error": error, "threshold": settings.FACES_DEFAULT_THRESHOLD, "max_mb": settings.FACES_MAX_UPLOAD_BYTES // (1024 * 1024)},
        status=400 if error else 200,
    )


@consent_required
@rate_limit("search", methods=("GET",))
def search_results(request: HttpRequest, query_id: str) -> HttpResponse:
    data = cache.get(_query_key(request.user, query_id))
    if data is None:
        return render(request, "search/search.html", {
            "error": "That search has expired. Please take or upload the photo again.",
            "threshold": settings.FACES_DEFAULT_THRESHOLD,
        }, status=404)
    threshold = _threshold(request)
    face = request.GET.get("face")
    face_index = int(face) if face and face.isdigit() else None
    context = {"query_id": query_id, "threshold": threshold, "face_index": face_index}
    try:
        result, matches = search_by_image(request.user, data, threshold=threshold, face_index=face_index)
        must_pick = result.faces_in_query > 1 and face_index is None
    except NoFaceError:
        context["error"] = "We could not find a face in this photo. Try a brighter, closer photo that faces the camera."
        return render(request, "search/results.html", context)
    except (EngineError, ImageError) as exc:
        context["error"] = str(exc)
        return render(request, "search/results.html", context)
    context.update(
        {
            "query_faces": [
                {"index": i, "box": f.box, "chosen": not must_pick and i == result.searched_face}
                for i, f in enumerate(result.query_faces)
            ],
            "must_pick": must_pick,
            "matches": [] if must_pick else matches,
            "person": None if must_pick else _named_person(request.user, matches, data, threshold),
        }
    )
    return render(request, "search/results.html", context)


def _named_person(owner, matches, image: bytes, threshold: float):
    """The named person the best matches belong to, to say "This looks like Mom"."""
    return person_hint(owner, matches, image=image, threshold=threshold)


@consent_required
def query_image(request: HttpRequest, query_id: str) -> HttpResponse:
    data = cache.get(_query_key(request.user, query_id))
    if data is None:
        raise Http404
    response = HttpResponse(data, content_type="image/jpeg")
    response["Cache-Control"] = "private, no-store"
    return response


@consent_required
def gallery(request: HttpRequest) -> HttpResponse:
    """A random sample of the library's faces (like the original), with shuffle."""
    ids = list(Face.objects.filter(owner=request.user, searchable=True).values_list("id", flat=True))
    seed = request.GET.get("seed") or uuid.uuid4().hex[:8]
    sample = random.Random(seed).sample(ids, min(GALLERY_SAMPLE, len(ids)))
    faces = Face.objects.filter(pk__in=sample).select_related("person")
    return render(
        request,
        "search/gallery.html",
        {"faces": faces, "total": len(ids), "mode": "random", "seed": seed, "has_runs": IndexRun.objects.filter(owner=request.user).exists()},
    )


@consent_required
def gallery_all(request: HttpRequest) -> HttpResponse:
    faces = (
        Face.objects.filter(owner=request.user, searchable=True)
        .select_related("person")
        .order_by("-photo__post__timestamp", "-id")
    )
    page = Paginator(faces, 120).get_page(request.GET.get("page"))
    return render(
        request,
        "search/gallery.html",
        {"faces": page.object_list, "page": page, "total": page.paginator.count, "mode": "all", "has_runs": True},
    )


@consent_required
@rate_limit("search", methods=("GET",))
def face_detail(request: HttpRequest, face_id: int) -> HttpResponse:
    """Photos with faces similar to this one (search by face id)."""
    face = get_object_or_404(Face.objects.select_related("photo__post", "person"), pk=face_id, owner=request.user)
    threshold = _threshold(request)
    matches = search_by_face(request.user, face, threshold=threshold)
    return render(request, "search/face.html", {"face": face, "matches": matches, "threshold": threshold})


@login_required
def photo_image(request: HttpRequest, photo_id: int) -> HttpResponse:
    """A JPEG rendition of the owner's photo (originals may be HEIC or huge)."""
    photo = get_object_or_404(Photo, pk=photo_id, owner=request.user)
    if not photo.original:
        raise Http404
    try:
        name = ensure_rendition(photo)
    except ImageError:
        raise Http404
    return serve_stored(name)


@login_required
def face_thumbnail(request: HttpRequest, face_id: int) -> HttpResponse:
    face = get_object_or_404(Face, pk=face_id, owner=request.user)
    if not face.thumbnail:
        raise Http404
    return serve_stored(face.thumbnail.name)
