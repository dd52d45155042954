"""Bring items into a library: one upsert for Instagram, export ZIPs and uploads.

Every source reduces to ``RemotePost`` items (``sources.py``) and every item
goes through ``upsert_post``, which also stores the bytes of ZIP and upload
photos and skips those already in the library. Uploaded photos are upserted at
once, while the request still has their bytes; an export ZIP is stored whole
and read by the crawl. The pipeline calls into this module, never the reverse:
the caller starts the run.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from PIL import Image

from . import storage
from .images import sha256
from .instagram.export import ExportError, open_export
from .models import Photo, Post, Source
from .sources import RemotePhoto, RemotePost, SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".gif", ".bmp", ".tif", ".tiff", ".avif"}


@dataclass
class Upserted:
    """What one item did to the library."""

    post: Post | None = None  # the post to index; None when skipped, finished or all duplicates
    skipped: bool = False  # a new post that will not be indexed (``skip_reason``)
    added: int = 0  # photos whose bytes were stored now
    duplicates: int = 0  # photos already in the library from another item


@dataclass
class UploadSummary:
    source: Source | None = None  # None when nothing new was uploaded
    added: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)


def upsert_post(source: Source, remote: RemotePost) -> Upserted:
    """Create or update the Post and its Photos; store bytes of ZIP/upload photos."""
    outcome = Upserted()
    post, created = Post.objects.get_or_create(
        source=source,
        external_id=remote.external_id,
        defaults={
            "owner_id": source.owner_id,
            "media_type": remote.media_type,
            "permalink": remote.permalink,
            "caption": remote.caption,
            "timestamp": remote.timestamp,
        },
    )
    if not created:
        changed = {
            "permalink": remote.permalink or post.permalink,
            "caption": remote.caption or post.caption,
            "timestamp": remote.timestamp or post.timestamp,
            "deleted_upstream": False,
        }
        Post.objects.filter(pk=post.pk).update(**changed)
    if remote.skip_reason:
        if post.status == Post.Status.PENDING:
            Post.objects.filter(pk=post.pk).update(status=Post.Status.SKIPPED, error=remote.skip_reason)
            outcome.skipped = created
        return outcome
    if post.status in (Post.Status.INDEXED, Post.Status.SKIPPED):
        return outcome
    for remote_photo in remote.photos:
        photo, _ = Photo.objects.get_or_create(
            post=post,
            external_id=remote_photo.external_id,
            defaults={"owner_id": source.owner_id, "position": remote_photo.position},
        )
        if remote_photo.media_url:
            Photo.objects.filter(pk=photo.pk).update(media_url=remote_photo.media_url)
        if remote_photo.load is not None and not photo.original:
            try:
                data = remote_photo.load()
            except (OSError, SourceError) as exc:
                Photo.objects.filter(pk=photo.pk).update(
                    status=Photo.Status.FAILED, error=f"Could not read the file: {exc}"
                )
                continue
            # An empty file is no duplicate of anything: it fails alone when indexed.
            if data and _in_library(source.owner_id, data, photo):
                photo.delete()
                outcome.duplicates += 1
                continue
            storage.store_original(photo, data)
            outcome.added += 1
    if not post.photos.exists():
        # Every photo of this item was already imported from another source.
        post.delete()
        return outcome
    outcome.post = post
    return outcome


def _in_library(owner_id: int, data: bytes, photo: Photo) -> bool:
    return Photo.objects.filter(owner_id=owner_id, sha256=sha256(data)).exclude(pk=photo.pk).exists()


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


def _too_large(name: str) -> str:
    return f"{name}: larger than {settings.FACES_MAX_UPLOAD_BYTES // (1024 * 1024)} MB"


def import_photos(owner, files: Iterable[tuple[str, bytes]], name: str) -> UploadSummary:
    """Upsert ``(external_id, bytes)`` pairs as the posts of a new upload source.

    Files are accepted whatever they hold: one that turns out not to be an image
    fails alone, with its error on its post, when it is indexed. When nothing is
    new, the savepoint rolls back: no empty source is left to delete.
    """
    summary = UploadSummary()
    limit = settings.FACES_MAX_UPLOAD_BYTES
    with transaction.atomic():
        source = Source.objects.create(owner=owner, kind=Source.Kind.UPLOAD, name=name)
        seen_ids: set[str] = set()
        for external_id, data in files:
            if len(data) > limit:
                summary.rejected.append(_too_large(external_id))
                continue
            external_id = _unique(external_id, seen_ids)
            item = RemotePost(
                external_id=external_id,
                timestamp=taken_at(data) or timezone.now(),
                photos=[RemotePhoto(external_id=external_id, load=lambda data=data: data)],
            )
            outcome = upsert_post(source, item)
            summary.added += outcome.added
            summary.duplicates += outcome.duplicates
        if summary.added:
            summary.source = source
        else:
            transaction.set_rollback(True)
    return summary


def import_uploads(owner, files: list[UploadedFile]) -> UploadSummary:
    """The upload form's files; oversized ones are refused without being read."""
    limit = settings.FACES_MAX_UPLOAD_BYTES
    fitting = [f for f in files if f.size <= limit]
    name = f"Upload of {len(fitting)} photo{'s' if len(fitting) != 1 else ''}, {timezone.now():%d %b %Y %H:%M}"
    summary = import_photos(owner, ((f.name, f.read()) for f in fitting), name=name)
    summary.rejected[:0] = [_too_large(f.name) for f in files if f.size > limit]
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


def check_export(archive: BinaryIO) -> None:
    """Refuse a file that is no ZIP, or a bad or unsafe archive, now rather than in the worker.

    Raises ``ExportError`` with a message for the user; leaves ``archive`` at its start.
    """
    head = archive.read(4)
    archive.seek(0)
    if not is_zip(head):
        raise ExportError("This is not a ZIP file. Choose the ZIP that Instagram sent you.")
    try:
        open_export(archive).close()
    finally:
        archive.seek(0)


def import_export_zip(owner, archive: BinaryIO, name: str) -> Source:
    """Store an Instagram export ZIP as a source; the crawl reads its posts."""
    source = Source.objects.create(owner=owner, kind=Source.Kind.EXPORT, name=name)
    stored = storage.store_export(owner.pk, source.pk, archive)
    Source.objects.filter(pk=source.pk).update(archive=stored)
    source.archive.name = stored
    return source
