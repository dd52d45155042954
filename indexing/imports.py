"""Create sources from uploaded photos, folders and export ZIPs.

Uploaded photos become posts right away (their bytes are stored while the
request still has them); an export ZIP is stored whole and read by the crawl.
Either way ``pipeline.start_run`` then takes over.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from PIL import Image

from .images import sha256
from .models import Photo, Post, Source
from .pipeline import store_original

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".gif", ".bmp", ".tif", ".tiff", ".avif"}


@dataclass
class UploadSummary:
    source: Source | None = None
    added: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)


def taken_at(data: bytes) -> dt.datetime | None:
    """When the photo was taken, from EXIF (DateTimeOriginal, else DateTime)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            exif = img.getexif()
            value = exif.get_ifd(0x8769).get(36867) or exif.get(306)
    except Exception:
        return None
    if not value:
        return None
    try:
        return dt.datetime.strptime(str(value).strip("\x00 "), "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def import_photos(owner, files: Iterable[tuple[str, bytes]], name: str) -> UploadSummary:
    """Store ``(external_id, bytes)`` pairs as posts of a new upload source.

    Files are accepted whatever they hold: one that turns out not to be an image
    fails alone, with its error on its post, when it is indexed.
    """
    summary = UploadSummary()
    limit = settings.FACES_MAX_UPLOAD_BYTES
    with transaction.atomic():
        source = Source.objects.create(owner=owner, kind=Source.Kind.UPLOAD, name=name)
        seen_ids: set[str] = set()
        for external_id, data in files:
            if len(data) > limit:
                summary.rejected.append(f"{external_id}: larger than {limit // (1024 * 1024)} MB")
                continue
            if data and Photo.objects.filter(owner=owner, sha256=sha256(data)).exists():
                summary.duplicates += 1
                continue
            external_id = _unique(external_id, seen_ids)
            post = Post.objects.create(
                owner=owner,
                source=source,
                external_id=external_id,
                caption="",
                timestamp=taken_at(data) or timezone.now(),
            )
            photo = Photo.objects.create(owner=owner, post=post, external_id=external_id)
            store_original(photo, data)
            summary.added += 1
        summary.source = source
    return summary


def _unique(external_id: str, seen: set[str]) -> str:
    candidate, n = external_id, 1
    while candidate in seen:
        n += 1
        stem, dot, suffix = external_id.rpartition(".")
        candidate = f"{stem} ({n}).{suffix}" if dot else f"{external_id} ({n})"
    seen.add(candidate)
    return candidate


def iter_folder(root: Path) -> Iterable[tuple[str, bytes]]:
    """Image files under ``root``, named by their path relative to it."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            yield path.relative_to(root).as_posix(), path.read_bytes()


def is_zip(head: bytes) -> bool:
    return head[:4] == b"PK\x03\x04"


def import_export_zip(owner, archive: BinaryIO, name: str) -> Source:
    """Store an Instagram export ZIP as a source; the crawl reads its posts."""
    source = Source.objects.create(owner=owner, kind=Source.Kind.EXPORT, name=name)
    stored = default_storage.save(f"imports/{owner.pk}/{source.pk}/export.zip", File(archive))
    Source.objects.filter(pk=source.pk).update(archive=stored)
    source.archive.name = stored
    return source
