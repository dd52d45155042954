"""The photo viewer: one photo large, every face boxed, the post it came from."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from accounts.decorators import consent_required
from indexing.models import Photo


@consent_required
def photo_detail(request: HttpRequest, photo_id: int) -> HttpResponse:
    """The photo page; ``?fragment=1`` gives only the viewer, for the results' lightbox."""
    photo = get_object_or_404(Photo.objects.select_related("post"), pk=photo_id, owner=request.user)
    faces = sorted(photo.faces.select_related("person"), key=lambda f: (f.box_x, f.box_y))
    context = {"photo": photo, "post": photo.post, "faces": faces}
    if request.GET.get("fragment") == "1":
        response = render(request, "search/_viewer.html", context)
        response["Cache-Control"] = "private, no-store"
        return response
    return render(request, "search/photo.html", context)
