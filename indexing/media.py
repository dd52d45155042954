"""Serving stored photos and thumbnails to their owner only.

Local files go out through the owner-checked view with private caching
headers; with S3 the view answers with a short-lived presigned URL. Originals
may be HEIC or huge, so pages show a JPEG rendition made on first use.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, HttpResponseRedirect

from . import storage
from .images import decode_image, encode_jpeg
from .models import Photo

CACHE_CONTROL = "private, max-age=3600"


def ensure_rendition(photo: Photo) -> str:
    """The stored JPEG rendition of ``photo``, made from the original if missing."""
    name = storage.rendition_key(photo)
    if not default_storage.exists(name):
        decoded = decode_image(storage.read(photo.original.name), max_side=storage.RENDITION_SIDE)
        name = default_storage.save(name, ContentFile(encode_jpeg(decoded.image, quality=85)))
    return name


def serve_stored(name: str, content_type: str = "image/jpeg") -> HttpResponse:
    """Stream a stored file, or redirect to a presigned URL on S3."""
    if settings.AWS_STORAGE_BUCKET_NAME:
        response: HttpResponse = HttpResponseRedirect(default_storage.url(name))
        response["Cache-Control"] = "private, no-store"
        return response
    response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
    response["Cache-Control"] = CACHE_CONTROL
    response["X-Content-Type-Options"] = "nosniff"
    return response
