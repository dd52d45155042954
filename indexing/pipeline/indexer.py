"""Indexing posts: a batch per job, photos downloaded concurrently, one guarded commit per post.

``index_posts(post_ids)`` hands the photos of its posts to ``fetch.Fetcher``
(many downloads in flight, a bounded number in memory) and feeds each photo
to the engine as it arrives: inline for an engine that keeps a core busy, on
``engine.concurrent_calls`` threads for a network-bound one. Each post, once
all its photos are done, writes its faces, photo states and run counters in
one transaction guarded by the post's status, so a job that dies mid-batch
redoes only the posts not committed, and a second delivery changes nothing.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import has_face_consent

from .. import people, storage
from ..engines import get_engine
from ..engines.base import Box, FaceEngine, IndexResult, RetryableEngineError
from ..images import ImageError, decode_image
from ..models import Face, FaceCollection, IndexRun, Person, Photo, Post, Source, UnindexedFace
from ..sources import RateLimited, SourceError, TokenExpired
from ..thumbnails import face_thumbnail
from ..video import VideoError
from . import videos
from .fetch import Fetched, Fetcher
from .queue import BROKER_ERRORS, DB_OUTAGE_ERRORS, INDEX_POSTS, survives_db_outage
from .runs import _fail_run, _maybe_finish, _wait

logger = logging.getLogger(__name__)

# Thumbnails and detection need no more than this many pixels on the long side.
THUMBNAIL_SOURCE_SIDE = 1600
# A new face takes the person of the old face it overlaps by more than this.
SAME_FACE_IOU = 0.3


@dataclass
class _PhotoOutcome:
    photo: Photo
    result: IndexResult | None = None
    error: str = ""
    thumbnails: dict[str, str] | None = None
    files: list[str] | None = None  # other stored files of this outcome (video frames)


@survives_db_outage
def index_post(post_id: int, sync: bool = False) -> None:
    """Index one post (tasks and schedules queued before batches name this job)."""
    index_posts([post_id], sync=sync)


@survives_db_outage
def index_posts(post_ids: list[int], sync: bool = False) -> None:
    """Index a batch of posts of one run and record their faces, each post exactly once.

    ``sync`` (an import in this process) leaves grouping the faces into people
    to the caller, instead of queueing it.
    """
    posts = list(Post.objects.select_related("source", "run", "owner").filter(pk__in=post_ids).order_by("pk"))
    runs = {post.run_id: post.run for post in posts if post.run_id}
    todo = []
    for post in posts:
        if post.status != Post.Status.PENDING or (post.run and post.run.status == IndexRun.Status.CANCELLED):
            continue
        if not has_face_consent(post.owner):
            if post.run:
                _fail_run(post.run, "Face-processing consent was withdrawn.")
            continue
        todo.append(post)
    engine = get_engine()
    batch = _Batch(engine, todo)
    try:
        batch.run()
    except RateLimited as exc:
        _wait_for(batch, exc)
    except TokenExpired as exc:
        Source.objects.filter(pk__in={p.source_id for p in batch.left()}).update(needs_reconnect=True)
        for run in {p.run_id: p.run for p in batch.left() if p.run}.values():
            _fail_run(run, f"Instagram needs to be reconnected: {exc}")
    except RetryableEngineError as exc:
        _wait_for(batch, RateLimited(str(exc), 30))
    # A re-run after the commit (e.g. the database went away right after it) still has to close the run.
    finished = [run for run_id, run in runs.items() if _maybe_finish(run_id)]
    if engine.groups_faces and not sync:
        # People: group the new faces soon (debounced), and at once when the run is done.
        try:
            for run in finished:
                people.run_finished(run.owner_id)
            for owner_id in batch.owners_with_faces - {run.owner_id for run in finished}:
                people.faces_indexed(owner_id)
        except BROKER_ERRORS as exc:  # Redis restarting: the posts are saved, grouping catches up later
            logger.warning("Could not queue grouping (%s)", exc)


def _wait_for(batch: _Batch, exc: RateLimited) -> None:
    """Back off: the posts not committed run again after the wait, as one job per run."""
    by_run: dict[int, list[Post]] = {}
    for post in batch.left():
        by_run.setdefault(post.run_id, []).append(post)
    for posts in by_run.values():
        if posts[0].run is not None:
            _wait(posts[0].run, exc, INDEX_POSTS, [p.pk for p in posts])


class _Batch:
    """One job's posts on their way through download, engine and commit."""

    def __init__(self, engine: FaceEngine, posts: list[Post]):
        self.engine = engine
        self.posts = {post.pk: post for post in posts}
        photos = Photo.objects.filter(post__in=posts).exclude(status=Photo.Status.INDEXED)
        self.photos = list(photos.order_by("post_id", "position", "pk"))
        self.expected = {post.pk: 0 for post in posts}
        for photo in self.photos:
            self.expected[photo.post_id] += 1
        self.outcomes: dict[int, list[_PhotoOutcome]] = {post.pk: [] for post in posts}
        self.committed: set[int] = set()
        self.owners_with_faces: set[int] = set()
        self.downloads: list[Fetched] = []  # recorded with the next commit

    def left(self) -> list[Post]:
        return [post for pk, post in self.posts.items() if pk not in self.committed]

    def run(self) -> None:
        for owner in {post.owner_id: post.owner for post in self.posts.values()}.values():
            self.engine.ensure_collection(owner)
        for pk, count in self.expected.items():
            if not count:
                self._commit(self.posts[pk])
        calls = max(1, self.engine.concurrent_calls)
        pool = ThreadPoolExecutor(calls, thread_name_prefix="engine") if calls > 1 else None
        running: set[Future] = set()
        # The first engine call runs here: whatever it sets up (a collection that
        # vanished is recreated, in the database too) happens in this thread.
        first = True
        try:
            with Fetcher() as fetcher:
                for fetched in fetcher.fetch((self.posts[p.post_id], p) for p in self.photos):
                    if fetched.exc is not None:
                        raise fetched.exc
                    if fetched.stored or fetched.media_url:
                        self.downloads.append(fetched)
                    if fetched.error:
                        self._add(fetched.post, _PhotoOutcome(fetched.photo, error=fetched.error))
                    elif pool is None or first:
                        self._add(fetched.post, _index_photo(self.engine, fetched.post, fetched.photo, fetched.data))
                        first = False
                    else:
                        running.add(pool.submit(self._index, fetched))
                        # Bounded hand-off: at most two engine calls waiting per thread.
                        self._collect(running, block=len(running) >= 2 * calls)
            while running:
                self._collect(running, block=True)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            self._record_downloads()

    def _index(self, fetched: Fetched) -> tuple[Post, _PhotoOutcome]:
        try:
            return fetched.post, _index_photo(self.engine, fetched.post, fetched.photo, fetched.data)
        finally:
            connections.close_all()  # this thread's own, if the engine needed one

    def _collect(self, running: set[Future], block: bool) -> None:
        done, _ = wait(running, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            running.discard(future)
            post, outcome = future.result()
            self._add(post, outcome)

    def _add(self, post: Post, outcome: _PhotoOutcome) -> None:
        self.outcomes[post.pk].append(outcome)
        if len(self.outcomes[post.pk]) == self.expected[post.pk]:
            self._commit(post)

    def _commit(self, post: Post) -> None:
        with transaction.atomic():
            self._record_downloads()
            _commit_post(self.engine, post, self.outcomes[post.pk])
        self.committed.add(post.pk)
        if any(o.result and o.result.faces for o in self.outcomes[post.pk]):
            self.owners_with_faces.add(post.owner_id)

    def _record_downloads(self) -> None:
        """New originals and fresh media URLs; each original counts as downloaded once."""
        fetched_by_run: dict[int, int] = {}
        for item in self.downloads:
            if item.stored:
                fresh = {"media_url": item.media_url} if item.media_url else {}
                stored = Photo.objects.filter(pk=item.photo.pk, original="").update(
                    original=item.stored, sha256=item.digest, **fresh
                )
                item.photo.original.name, item.photo.sha256 = item.stored, item.digest
                if stored and item.post.run_id:
                    fetched_by_run[item.post.run_id] = fetched_by_run.get(item.post.run_id, 0) + 1
            elif item.media_url:
                Photo.objects.filter(pk=item.photo.pk).update(media_url=item.media_url)
        for run_id, count in fetched_by_run.items():
            IndexRun.objects.filter(pk=run_id).update(photos_fetched=F("photos_fetched") + count)
        self.downloads = []


def _index_photo(engine: FaceEngine, post: Post, photo: Photo, data: bytes | None = None) -> _PhotoOutcome:
    """The engine's faces of one photo, their thumbnails stored; ``data`` defaults to the stored original."""
    try:
        if photo.kind == Photo.Kind.VIDEO:  # downloads its own file: the fetcher leaves videos alone
            result, thumbnails, files = videos.index_video(engine, post, photo)
            return _PhotoOutcome(photo, result=result, thumbnails=thumbnails, files=files)
        image = data if data is not None else storage.read(photo.original.name)
        # Only engines that read from storage take the key (the others' signature may lack it).
        kwargs = {"storage_key": photo.original.name} if engine.reads_from_storage else {}
        result = engine.index_image(post.owner, image, photo.external_id, **kwargs)
        outcome = _thumbnails(post, photo, image, result)
    except (ImageError, VideoError) as exc:
        outcome = _PhotoOutcome(photo, error=str(exc))
    except (RateLimited, TokenExpired):
        raise
    except SourceError as exc:  # a video's download: expired for good, too large, too slow
        outcome = _PhotoOutcome(photo, error=str(exc))
    except (RetryableEngineError, *DB_OUTAGE_ERRORS):
        raise
    except Exception as exc:  # a bug or an engine failure must not leave the post pending forever
        logger.exception("Indexing photo %s failed", photo.pk)
        outcome = _PhotoOutcome(photo, error=f"Unexpected error while indexing ({exc.__class__.__name__}).")
    return outcome


def _thumbnails(post: Post, photo: Photo, data: bytes, result: IndexResult) -> _PhotoOutcome:
    image = result.image if result.image is not None else decode_image(data, THUMBNAIL_SOURCE_SIDE).image
    thumbnails = {
        face.face_id: storage.store_face_thumbnail(post.owner_id, face.face_id, face_thumbnail(image, face.box))
        for face in result.faces
    }
    result.image = None  # release the pixels early
    return _PhotoOutcome(photo, result=result, thumbnails=thumbnails)


def _commit_post(engine: FaceEngine, post: Post, outcomes: list[_PhotoOutcome]) -> None:
    """Write faces, photo states and counters in one transaction, once per post."""
    duplicate = False
    replaced: list[str] = []
    with transaction.atomic():
        locked = Post.objects.select_for_update().filter(pk=post.pk, status=Post.Status.PENDING).first()
        if locked is None or (
            post.run_id and IndexRun.objects.filter(pk=post.run_id, status=IndexRun.Status.CANCELLED).exists()
        ):
            # Another delivery won, or the run was cancelled (also by "delete
            # my face data") while the engine worked: keep nothing.
            duplicate = True
        else:
            photos_done = faces_found = 0
            errors = []
            now = timezone.now()
            for outcome in outcomes:
                photo = outcome.photo
                if outcome.error:
                    errors.append(f"{photo.external_id}: {outcome.error}")
                    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.FAILED, error=outcome.error)
                    continue
                result = outcome.result
                old_faces = Face.objects.filter(photo=photo)
                replaced += list(old_faces.values_list("engine_face_id", flat=True))
                old_faces.delete()
                UnindexedFace.objects.filter(photo=photo).delete()
                faces = _face_rows(engine, photo, result, outcome.thumbnails)
                Face.objects.bulk_create(faces)
                UnindexedFace.objects.bulk_create(
                    UnindexedFace(owner_id=post.owner_id, photo=photo, engine=engine.name,
                                  reasons=info.reasons, box=info.box.as_list())
                    for info in result.unindexed
                )
                Photo.objects.filter(pk=photo.pk).update(
                    status=Photo.Status.INDEXED,
                    error="",
                    indexed_at=now,
                    width=result.width,
                    height=result.height,
                    faces_skipped=sum(1 for f in result.faces if not f.searchable) + len(result.unindexed),
                )
                photos_done += 1
                faces_found += len(faces)
            failed = bool(errors)
            Post.objects.filter(pk=post.pk).update(
                status=Post.Status.FAILED if failed else Post.Status.INDEXED,
                error="\n".join(errors),
                indexed_at=None if failed else now,
                attempts=F("attempts") + 1,
            )
            if post.run_id:
                IndexRun.objects.filter(pk=post.run_id).update(
                    posts_done=F("posts_done") + (0 if failed else 1),
                    posts_failed=F("posts_failed") + (1 if failed else 0),
                    photos_done=F("photos_done") + photos_done,
                    faces_found=F("faces_found") + faces_found,
                )
            if faces_found:
                FaceCollection.bump(post.owner_id, engine.name)
    if replaced:
        # Faces of an earlier indexing of the same photo leave the engine too.
        engine.delete_faces(post.owner, replaced)
    if duplicate:
        # Another delivery of this task won the race: drop what this one made.
        made = [f.face_id for o in outcomes if o.result for f in o.result.faces]
        if made:
            engine.delete_faces(post.owner, made)
        for outcome in outcomes:
            for name in [*(outcome.thumbnails or {}).values(), *(outcome.files or [])]:
                default_storage.delete(name)


def _face_rows(engine: FaceEngine, photo: Photo, result: IndexResult, thumbnails: dict[str, str]) -> list[Face]:
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


def reindex_photo(engine: FaceEngine, photo: Photo) -> int:
    """Index an indexed photo again with ``engine``, keeping people and names.

    Each new face takes the person (and lock) of the old face it overlaps most,
    so moving a library between engines keeps "Mom" and "Me". Returns the
    number of faces now in the photo; the old engine's faces are deleted.
    """
    outcome = _index_photo(engine, photo.post, photo)
    if outcome.error:
        raise ImageError(outcome.error)
    old_faces = list(photo.faces.all())
    rows = _face_rows(engine, photo, outcome.result, outcome.thumbnails or {})
    for row in rows:
        box = Box(row.box_x, row.box_y, row.box_w, row.box_h)
        overlaps = [(Box(*face.box).iou(box), face) for face in old_faces]
        overlap, best = max(overlaps, key=lambda pair: pair[0], default=(0.0, None))
        if best is not None and overlap > SAME_FACE_IOU:
            row.person_id, row.person_locked = best.person_id, best.person_locked
    with transaction.atomic():
        Face.objects.bulk_create(rows)
        for row in rows:  # a person whose cover face goes away gets the new one
            if row.person_id:
                Person.objects.filter(pk=row.person_id, cover_face__in=old_faces).update(cover_face=row)
        Face.objects.filter(pk__in=[f.pk for f in old_faces]).delete()
        FaceCollection.bump(photo.owner_id, engine.name)
    for name in {f.engine for f in old_faces} - {engine.name}:
        get_engine(name).delete_faces(photo.owner, [f.engine_face_id for f in old_faces if f.engine == name])
    for face in old_faces:
        if face.thumbnail:
            default_storage.delete(face.thumbnail.name)
    return len(rows)
