"""Bring items into a library: one upsert for Instagram, export ZIPs and uploads.

Every source reduces to ``RemotePost`` items (``sources.py``) and every item
goes through ``upsert_post`` (a listed page's new posts in bulk: ``upsert_posts``), which also stores the bytes of ZIP and upload
photos and skips those already in the library. Uploaded photos are upserted at
once, while the request still has their bytes; an export ZIP is stored whole
and read by the crawl. The pipeline calls into this module, never the reverse:
the caller starts the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from . import storage
from .images import sha256
from .instagram.export import ExportError, open_export
from .models import Photo, Post, Source
from .photo_dates import taken_at
from .sources import RemotePhoto, RemotePost, SourceError
from .video import VIDEO_EXTENSIONS, is_video

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".gif", ".bmp", ".tif", ".tiff", ".avif")


@dataclass
class Upserted:
    """What one item did to the library."""

    post: Post | None = None  # the post to index; None when skipped, finished or all duplicates
    skipped: bool = False  # a new post that will not be indexed (``skip_reason``, or all in the library)
    skipped_post: Post | None = None  # that post, for the run to list with its reason
    added: int = 0  # photos whose bytes were stored now
    duplicates: int = 0  # photos already in the library from another item


@dataclass
class UploadSummary:
    source: Source | None = None  # None when nothing new was uploaded
    added: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)


def upsert_posts(source: Source, remotes: list[RemotePost]) -> list[Upserted]:
    """``upsert_post`` for each of a listed page, in order; the page's new posts in bulk.

    A first crawl lists only new posts: creating them and their photos with a
    few bulk inserts keeps the listing ahead of many workers. Posts already in
    the library, and items with bytes to store, take ``upsert_post``.
    """
    known = set(
        Post.objects.filter(source=source, external_id__in=[r.external_id for r in remotes])
        .values_list("external_id", flat=True)
    )
    fresh: dict[str, RemotePost] = {}
    for remote in remotes:
        if remote.external_id not in known and remote.external_id not in fresh and (
            remote.skip_reason or (remote.photos and all(p.load is None for p in remote.photos))
        ):
            fresh[remote.external_id] = remote
    created: dict[str, Post] = {}
    if fresh:
        with transaction.atomic():  # one crawl at a time claims a page; a clash would roll back all of it
            posts = Post.objects.bulk_create(
                Post(source=source, owner_id=source.owner_id, external_id=r.external_id, media_type=r.media_type,
                     permalink=r.permalink, caption=r.caption, timestamp=r.timestamp,
                     status=Post.Status.SKIPPED if r.skip_reason else Post.Status.PENDING, error=r.skip_reason)
                for r in fresh.values()
            )
            created = {post.external_id: post for post in posts}
            Photo.objects.bulk_create(
                Photo(post=created[r.external_id], owner_id=source.owner_id, external_id=p.external_id,
                      position=p.position, kind=p.kind, media_url=p.media_url, video_url=p.video_url)
                for r in fresh.values() if not r.skip_reason for p in r.photos
            )
    out = []
    for remote in remotes:
        post = created.pop(remote.external_id, None)
        if post is None:
            out.append(upsert_post(source, remote))
        elif remote.skip_reason:
            out.append(Upserted(skipped=True, skipped_post=post))
        else:
            out.append(Upserted(post=post))
    return out


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
            outcome.skipped, outcome.skipped_post = created, post if created else None
        return outcome
    if post.status in (Post.Status.INDEXED, Post.Status.SKIPPED):
        return outcome
    already: list[Photo] = []  # photos of this item the library holds from another item
    for remote_photo in remote.photos:
        photo, _ = Photo.objects.get_or_create(
            post=post,
            external_id=remote_photo.external_id,
            defaults={"owner_id": source.owner_id, "position": remote_photo.position, "kind": remote_photo.kind},
        )
        if remote_photo.media_url or remote_photo.video_url:
            Photo.objects.filter(pk=photo.pk).update(
                media_url=remote_photo.media_url, video_url=remote_photo.video_url
            )
        is_video = remote_photo.kind == Photo.Kind.VIDEO
        if remote_photo.load is not None and not (photo.video if is_video else photo.original):
            try:
                data = remote_photo.load()
            except (OSError, SourceError) as exc:
                Photo.objects.filter(pk=photo.pk).update(
                    status=Photo.Status.FAILED, error=f"Could not read the file: {exc}"
                )
                continue
            # An empty file is no duplicate of anything: it fails alone when indexed.
            existing = _in_library(source.owner_id, data, photo) if data else None
            if existing is not None:
                photo.delete()
                outcome.duplicates += 1
                already.append(existing)
                _merge_post_details(existing.post, remote)
                continue
            (storage.store_video if is_video else storage.store_original)(photo, data)
            outcome.added += 1
    if not post.photos.exists():
        # Every photo of this item was already imported from another item. An upload
        # says so in one message; a post of an export or of Instagram says so on its run.
        if source.kind == Source.Kind.UPLOAD or not already:
            post.delete()
            return outcome
        names = ", ".join(sorted({p.external_id for p in already}))[:200]
        Post.objects.filter(pk=post.pk).update(status=Post.Status.SKIPPED, error=f"Already in your library ({names})")
        outcome.skipped, outcome.skipped_post = created, post if created else None
        return outcome
    outcome.post = post
    return outcome


def _in_library(owner_id: int, data: bytes, photo: Photo) -> Photo | None:
    """The owner's photo with these very bytes, if another item brought it already."""
    return (
        Photo.objects.filter(owner_id=owner_id, sha256=sha256(data))
        .exclude(pk=photo.pk)
        .select_related("post__source")
        .order_by("pk")
        .first()
    )


def _merge_post_details(existing: Post, remote: RemotePost) -> None:
    """Give the post a photo already came with what this item knows and it lacks.

    An upload knows no caption, permalink or post; the same photo in the export
    (or from Instagram) does. Nothing the post has is overwritten, and an upload
    post takes the Instagram post id only when it is a real media id.
    """
    changes: dict[str, object] = {}
    if remote.caption and not existing.caption:
        changes["caption"] = remote.caption
    if remote.timestamp and existing.timestamp is None:
        changes["timestamp"] = remote.timestamp
    if remote.permalink and not existing.permalink:
        changes["permalink"] = remote.permalink
    if (
        existing.source.kind == Source.Kind.UPLOAD
        and remote.external_id.isdigit()
        and not Post.objects.filter(source=existing.source, external_id=remote.external_id).exists()
    ):
        changes["external_id"] = remote.external_id
    if changes:
        Post.objects.filter(pk=existing.pk).update(**changes)


def _limit(head: bytes) -> int:
    """The size limit of one uploaded file: videos may be larger than photos."""
    return settings.FACES_VIDEO_MAX_BYTES if is_video(head) else settings.FACES_MAX_UPLOAD_BYTES


def _too_large(name: str, head: bytes = b"") -> str:
    return f"{name}: larger than {_limit(head) // (1024 * 1024)} MB"


def _head(upload: UploadedFile) -> bytes:
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    return head


def import_photos(owner, files: Iterable[tuple[str, bytes]], name: str) -> UploadSummary:
    """Upsert ``(external_id, bytes)`` pairs as the posts of a new upload source.

    Files are accepted whatever they hold: one that turns out not to be an image
    fails alone, with its error on its post, when it is indexed. When nothing is
    new, the savepoint rolls back: no empty source is left to delete.
    """
    summary = UploadSummary()
    with transaction.atomic():
        source = Source.objects.create(owner=owner, kind=Source.Kind.UPLOAD, name=name)
        seen_ids: set[str] = set()
        for external_id, data in files:
            if len(data) > _limit(data[:16]):
                summary.rejected.append(_too_large(external_id, data[:16]))
                continue
            external_id = _unique(external_id, seen_ids)
            kind = Photo.Kind.VIDEO if is_video(data[:16]) else Photo.Kind.IMAGE
            item = RemotePost(
                external_id=external_id,
                media_type=Post.MediaType.VIDEO if kind == Photo.Kind.VIDEO else Post.MediaType.IMAGE,
                timestamp=taken_at(data),  # None without an EXIF date: "No date", never the upload day
                photos=[RemotePhoto(external_id=external_id, load=lambda data=data: data, kind=kind)],
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
    heads = {id(f): _head(f) for f in files}
    fitting = [f for f in files if f.size <= _limit(heads[id(f)])]
    name = f"Upload of {len(fitting)} photo{'s' if len(fitting) != 1 else ''}, {timezone.now():%d %b %Y %H:%M}"
    summary = import_photos(owner, ((f.name, f.read()) for f in fitting), name=name)
    summary.rejected[:0] = [_too_large(f.name, heads[id(f)]) for f in files if f not in fitting]
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
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_EXTENSIONS:
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
