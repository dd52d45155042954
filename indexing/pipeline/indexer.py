"""Indexing posts: a batch per job, photos downloaded concurrently, finished posts committed in groups.

``index_posts(post_ids)`` hands the photos of its posts to ``fetch.Fetcher``
(many downloads in flight, a bounded number in memory) and feeds each photo
to the engine as it arrives: inline for an engine that keeps a core busy, on
``engine.concurrent_calls`` threads for a network-bound one. Posts whose
photos are all done are written by ``commit.commit_posts``, a few at a time,
each guarded by its status, so a job that dies mid-batch redoes only the
posts not committed, and a second delivery changes nothing.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.core.files.storage import default_storage
from django.db import connections, transaction

from accounts.models import has_face_consent

from .. import people, storage
from ..engines import get_engine
from ..engines.base import Box, FaceEngine, IndexResult, RetryableEngineError
from ..images import ImageError, decode_image
from ..models import Face, FaceCollection, IndexRun, Person, Photo, Post, Source
from ..sources import RateLimited, SourceError, TokenExpired
from ..thumbnails import face_thumbnail
from ..video import VideoError
from . import videos
from .commit import PhotoOutcome, commit_posts, face_rows, record_downloads
from .fetch import Fetched, Fetcher
from .queue import BROKER_ERRORS, DB_OUTAGE_ERRORS, INDEX_POSTS, survives_db_outage
from .runs import _fail_run, _maybe_finish, _wait

logger = logging.getLogger(__name__)

# Thumbnails and detection need no more than this many pixels on the long side.
THUMBNAIL_SOURCE_SIDE = 1600
# A new face takes the person of the old face it overlaps by more than this.
SAME_FACE_IOU = 0.3
# Finished posts are written together once this many are ready or this long after the last write.
COMMIT_POSTS = 8
COMMIT_SECONDS = 1.0


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
    consent: dict[int, bool] = {}  # one query per owner, not per post
    for post in posts:
        if post.status != Post.Status.PENDING or (post.run and post.run.status == IndexRun.Status.CANCELLED):
            continue
        if post.owner_id not in consent:
            consent[post.owner_id] = has_face_consent(post.owner)
        if not consent[post.owner_id]:
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
        self.outcomes: dict[int, list[PhotoOutcome]] = {post.pk: [] for post in posts}
        self.committed: set[int] = set()
        self.owners_with_faces: set[int] = set()
        self.downloads: list[Fetched] = []  # recorded with the next commit
        self.ready: list[Post] = []  # posts with every photo done, not committed yet
        self.last_commit = -math.inf

    def left(self) -> list[Post]:
        return [post for pk, post in self.posts.items() if pk not in self.committed]

    def run(self) -> None:
        for owner in {post.owner_id: post.owner for post in self.posts.values()}.values():
            self.engine.ensure_collection(owner)
        self.ready = [self.posts[pk] for pk, count in self.expected.items() if not count]
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
                        self._add(fetched.post, PhotoOutcome(fetched.photo, error=fetched.error))
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
            # Finished posts are kept even when the job stops early (a rate limit, a revoked token).
            self._commit()
            if self.downloads:
                record_downloads(self.downloads)
                self.downloads = []

    def _index(self, fetched: Fetched) -> tuple[Post, PhotoOutcome]:
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

    def _add(self, post: Post, outcome: PhotoOutcome) -> None:
        self.outcomes[post.pk].append(outcome)
        if len(self.outcomes[post.pk]) == self.expected[post.pk]:
            self.ready.append(post)
            # The first post at once (search while indexing), then in groups.
            if len(self.ready) >= COMMIT_POSTS or time.monotonic() - self.last_commit >= COMMIT_SECONDS:
                self._commit()

    def _commit(self) -> None:
        if not self.ready:
            return
        finished = [(post, self.outcomes[post.pk]) for post in self.ready]
        self.owners_with_faces |= commit_posts(self.engine, finished, self.downloads)
        self.committed.update(post.pk for post in self.ready)
        self.ready, self.downloads = [], []
        self.last_commit = time.monotonic()


def _index_photo(engine: FaceEngine, post: Post, photo: Photo, data: bytes | None = None) -> PhotoOutcome:
    """The engine's faces of one photo, their thumbnails stored; ``data`` defaults to the stored original."""
    try:
        if photo.kind == Photo.Kind.VIDEO:  # downloads its own file: the fetcher leaves videos alone
            result, thumbnails, files = videos.index_video(engine, post, photo)
            return PhotoOutcome(photo, result=result, thumbnails=thumbnails, files=files)
        image = data if data is not None else storage.read(photo.original.name)
        # Only engines that read from storage take the key (the others' signature may lack it).
        kwargs = {"storage_key": photo.original.name} if engine.reads_from_storage else {}
        result = engine.index_image(post.owner, image, photo.external_id, **kwargs)
        outcome = _thumbnails(post, photo, image, result)
    except (ImageError, VideoError) as exc:
        outcome = PhotoOutcome(photo, error=str(exc))
    except (RateLimited, TokenExpired):
        raise
    except SourceError as exc:  # a video's download: expired for good, too large, too slow
        outcome = PhotoOutcome(photo, error=str(exc))
    except (RetryableEngineError, *DB_OUTAGE_ERRORS):
        raise
    except Exception as exc:  # a bug or an engine failure must not leave the post pending forever
        logger.exception("Indexing photo %s failed", photo.pk)
        outcome = PhotoOutcome(photo, error=f"Unexpected error while indexing ({exc.__class__.__name__}).")
    return outcome


def _thumbnails(post: Post, photo: Photo, data: bytes, result: IndexResult) -> PhotoOutcome:
    image = result.image if result.image is not None else decode_image(data, THUMBNAIL_SOURCE_SIDE).image
    thumbnails = {
        face.face_id: storage.store_face_thumbnail(post.owner_id, face.face_id, face_thumbnail(image, face.box))
        for face in result.faces
    }
    result.image = None  # release the pixels early
    return PhotoOutcome(photo, result=result, thumbnails=thumbnails)


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
    rows = face_rows(engine, photo, outcome.result, outcome.thumbnails or {})
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
