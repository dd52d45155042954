"""Videos for their owner: the file itself (seekable) and the frame a face was seen in."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from indexing.models import Photo
from indexing.streaming import serve_video

from .views import serve_face_file


@login_required
def photo_video(request: HttpRequest, photo_id: int) -> HttpResponse:
    """The owner's stored video, with byte ranges so the player can jump to a face's moment."""
    photo = get_object_or_404(Photo, pk=photo_id, owner=request.user, kind=Photo.Kind.VIDEO)
    if not photo.video:
        raise Http404
    return serve_video(request, photo.video.name)


@login_required
def face_frame(request: HttpRequest, face_id: int) -> HttpResponse:
    """The video frame a face's box is on (a photo face's picture is its photo)."""
    return serve_face_file(request, face_id, "frame")
