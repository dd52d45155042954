"""Every key under which the product stores a file, in one place.

Pipeline, imports, media views and deletion all name files through these
functions, so deleting a user's files can rely on the per-user prefixes below
catching every one of them (also orphans a crashed job left behind).
"""

from __future__ import annotations

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage

from .images import EXTENSIONS, sha256, sniff_format
from .models import Photo

# The long side of the JPEG that pages show instead of an original (HEIC, huge).
RENDITION_SIDE = 1280


def photos_prefix(owner_id: int) -> str:
    """Originals and their renditions."""
    return f"photos/{owner_id}"


def faces_prefix(owner_id: int) -> str:
    """Face thumbnails."""
    return f"faces/{owner_id}"


def imports_prefix(owner_id: int) -> str:
    """Uploaded export ZIPs."""
    return f"imports/{owner_id}"


def original_key(owner_id: int, digest: str, fmt: str | None) -> str:
    """Content-addressed: the same bytes stored twice share one file."""
    return f"{photos_prefix(owner_id)}/{digest[:2]}/{digest}.{EXTENSIONS.get(fmt or '', 'bin')}"


def rendition_key(photo: Photo) -> str:
    return f"{photos_prefix(photo.owner_id)}/renditions/{photo.sha256 or photo.pk}-{RENDITION_SIDE}.jpg"


def face_thumbnail_key(owner_id: int, face_id: str) -> str:
    return f"{faces_prefix(owner_id)}/{face_id[:2]}/{face_id}.jpg"


def export_key(owner_id: int, source_id: int) -> str:
    return f"{imports_prefix(owner_id)}/{source_id}/export.zip"


def store_original(photo: Photo, data: bytes) -> None:
    """Store the photo's bytes under their content-addressed key (re-storing is harmless)."""
    digest = sha256(data)
    name = original_key(photo.owner_id, digest, sniff_format(data))
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(data))
    Photo.objects.filter(pk=photo.pk).update(original=name, sha256=digest)
    photo.original.name, photo.sha256 = name, digest


def store_face_thumbnail(owner_id: int, face_id: str, jpeg: bytes) -> str:
    """Store a face thumbnail; returns the key it was stored under."""
    return default_storage.save(face_thumbnail_key(owner_id, face_id), ContentFile(jpeg))


def store_export(owner_id: int, source_id: int, archive) -> str:
    """Store an uploaded export ZIP whole; returns the key it was stored under."""
    return default_storage.save(export_key(owner_id, source_id), File(archive))


def read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()
