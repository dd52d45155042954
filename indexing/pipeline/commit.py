"""Writing what an index job found: several posts a transaction, the shared rows last.

Every worker of a run updates the same two rows: the run's counters and the
owner's collection version. A transaction holds those row locks until it
commits (PostgreSQL), and on SQLite any write holds the whole database, so a
commit per post made the workers wait for each other. ``commit_posts`` writes
a group of finished posts in one transaction, with bulk inserts and bulk
updates, and touches the shared rows in its last statements. Each post stays
guarded by its status: a post that another delivery already wrote, or whose
run was cancelled meanwhile, keeps nothing, and its faces leave the engine again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..engines.base import FaceEngine, IndexResult
from ..models import Face, FaceCollection, IndexRun, Photo, Post, UnindexedFace
from .fetch import Fetched

PHOTO_FIELDS = ["status", "error", "indexed_at", "width", "height", "faces_skipped"]


@dataclass
class PhotoOutcome:
    photo: Photo
    result: IndexResult | None = None
    error: str = ""
    thumbnails: dict[str, str] | None = None
    files: list[str] | None = None  # other stored files of this outcome (video frames)


@dataclass
class _RunCounts:
    posts_done: int = 0
    posts_failed: int = 0
    photos_done: int = 0
    photos_fetched: int = 0
    faces_found: int = 0


def commit_posts(
    engine: FaceEngine, finished: list[tuple[Post, list[PhotoOutcome]]], downloads: Iterable[Fetched] = ()
) -> set[int]:
    """Write the faces, photo and post states and run counters of ``finished`` posts, and record ``downloads``.

    One transaction. Returns the owners who got new faces.
    """
    counts: dict[int, _RunCounts] = defaultdict(_RunCounts)
    owners_with_faces: set[int] = set()
    replaced: dict[int, list[str]] = defaultdict(list)
    owners = {post.owner_id: post.owner for post, _ in finished}
    with transaction.atomic():
        kept, dropped = _claim(finished)
        now = timezone.now()
        indexed: list[Photo] = []
        faces: list[Face] = []
        unindexed: list[UnindexedFace] = []
        indexed_posts: list[int] = []
        for post, outcomes in kept:
            errors = []
            run = counts[post.run_id]
            for outcome in outcomes:
                photo = outcome.photo
                if outcome.error:
                    errors.append(f"{photo.external_id}: {outcome.error}")
                    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.FAILED, error=outcome.error)
                    continue
                result = outcome.result
                photo.status, photo.error, photo.indexed_at = Photo.Status.INDEXED, "", now
                photo.width, photo.height = result.width, result.height
                photo.faces_skipped = sum(1 for f in result.faces if not f.searchable) + len(result.unindexed)
                indexed.append(photo)
                rows = face_rows(engine, photo, result, outcome.thumbnails or {})
                faces += rows
                unindexed += (
                    UnindexedFace(owner_id=post.owner_id, photo=photo, engine=engine.name,
                                  reasons=info.reasons, box=info.box.as_list())
                    for info in result.unindexed
                )
                run.photos_done += 1
                run.faces_found += len(rows)
                if rows:
                    owners_with_faces.add(post.owner_id)
            if errors:
                run.posts_failed += 1
                Post.objects.filter(pk=post.pk).update(
                    status=Post.Status.FAILED, error="\n".join(errors), indexed_at=None, attempts=F("attempts") + 1
                )
            else:
                run.posts_done += 1
                indexed_posts.append(post.pk)
        old = Face.objects.filter(photo__in=indexed)
        for owner_id, face_id in old.values_list("owner_id", "engine_face_id"):
            replaced[owner_id].append(face_id)  # an earlier indexing of the same photo
        old.delete()
        UnindexedFace.objects.filter(photo__in=indexed).delete()
        Face.objects.bulk_create(faces)
        UnindexedFace.objects.bulk_create(unindexed)
        Photo.objects.bulk_update(indexed, PHOTO_FIELDS, batch_size=200)
        Post.objects.filter(pk__in=indexed_posts).update(
            status=Post.Status.INDEXED, error="", indexed_at=now, attempts=F("attempts") + 1
        )
        for run_id, fetched in _record_photos(downloads).items():
            counts[run_id].photos_fetched += fetched
        # The rows every worker writes: last, in a fixed order (no deadlocks).
        for run_id in sorted(r for r in counts if r):
            c = counts[run_id]
            IndexRun.objects.filter(pk=run_id).update(
                posts_done=F("posts_done") + c.posts_done, posts_failed=F("posts_failed") + c.posts_failed,
                photos_done=F("photos_done") + c.photos_done, faces_found=F("faces_found") + c.faces_found,
                photos_fetched=F("photos_fetched") + c.photos_fetched,
            )
        for owner_id in sorted(owners_with_faces):
            FaceCollection.bump(owner_id, engine.name)
    for owner_id, face_ids in replaced.items():
        engine.delete_faces(owners[owner_id], face_ids)
    for post, outcomes in dropped:
        _discard(engine, post, outcomes)
    return owners_with_faces


def record_downloads(downloads: Iterable[Fetched]) -> None:
    """New originals and fresh media URLs of posts not committed yet (a job that stops early)."""
    with transaction.atomic():
        for run_id, fetched in sorted(_record_photos(downloads).items()):
            IndexRun.objects.filter(pk=run_id).update(photos_fetched=F("photos_fetched") + fetched)


def _claim(finished: list[tuple[Post, list[PhotoOutcome]]]) -> tuple[list, list]:
    """(posts still pending in a live run, the others), the pending ones locked until commit."""
    ids = sorted(post.pk for post, _ in finished)
    pending = set(
        Post.objects.select_for_update().filter(pk__in=ids, status=Post.Status.PENDING).order_by("pk")
        .values_list("pk", flat=True)
    )
    runs = {post.run_id for post, _ in finished if post.run_id}
    cancelled = set(IndexRun.objects.filter(pk__in=runs, status=IndexRun.Status.CANCELLED).values_list("pk", flat=True))
    kept, dropped = [], []
    for item in finished:
        post = item[0]
        (kept if post.pk in pending and post.run_id not in cancelled else dropped).append(item)
    return kept, dropped


def _record_photos(downloads: Iterable[Fetched]) -> dict[int, int]:
    """Store new originals' names and fresh URLs on their photos; returns new originals per run.

    Each original counts as downloaded once, whichever delivery stored it first:
    the photos still without one are locked as they are read (PostgreSQL; on
    SQLite the write transaction holds the database), then all are written in
    two bulk updates instead of one query a photo. Call inside a transaction.
    """
    downloads = list(downloads)
    stored = {item.photo.pk: item for item in downloads if item.stored}
    first = Photo.objects.select_for_update().filter(pk__in=list(stored), original="").order_by("pk")
    fetched_by_run: dict[int, int] = defaultdict(int)
    originals = []
    for pk in first.values_list("pk", flat=True):
        item = stored[pk]
        item.photo.original.name, item.photo.sha256 = item.stored, item.digest
        originals.append(item.photo)
        if item.post.run_id:
            fetched_by_run[item.post.run_id] += 1
    Photo.objects.bulk_update(originals, ["original", "sha256"], batch_size=200)
    fresh = []
    for item in downloads:
        if item.media_url:
            item.photo.media_url = item.media_url
            fresh.append(item.photo)
    Photo.objects.bulk_update(fresh, ["media_url"], batch_size=200)
    return fetched_by_run


def _discard(engine: FaceEngine, post: Post, outcomes: list[PhotoOutcome]) -> None:
    """Another delivery won, or the run was cancelled (also by "delete my face data"): drop what was made."""
    made = [f.face_id for o in outcomes if o.result for f in o.result.faces]
    if made:
        engine.delete_faces(post.owner, made)
    for outcome in outcomes:
        for name in [*(outcome.thumbnails or {}).values(), *(outcome.files or [])]:
            default_storage.delete(name)


def face_rows(engine: FaceEngine, photo: Photo, result: IndexResult, thumbnails: dict[str, str]) -> list[Face]:
    """Unsaved Face rows mirroring what the engine indexed in ``photo``."""
    return [
        Face(
            owner_id=photo.owner_id,
            photo=photo,
            engine=engine.name,
            engine_face_id=face.face_id,
            box_x=face.box.x,
            box_y=face.box.y,
            box_w=face.box.w,
            box_h=face.box.h,
            confidence=face.confidence,
            quality=face.quality,
            landmarks=face.landmarks,
            embedding=face.embedding,
            searchable=face.searchable,
            thumbnail=thumbnails.get(face.face_id, ""),
            seen_at=face.seen_at,
            frame=face.frame if isinstance(face.frame, str) else "",
        )
        for face in result.faces
    ]
