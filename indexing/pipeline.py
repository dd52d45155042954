"""The indexing pipeline: crawl a source, then index each post, on django-q2.

``crawl_source(run_id)`` enumerates a source's posts (Instagram Graph API,
export ZIP, or uploaded photos), upserts Post and Photo rows and enqueues one
``index_post(post_id)`` per post that is not indexed yet. ``index_post`` runs
the face engine outside any transaction and then writes faces, photo states
and run counters in one transaction guarded by the post's status, so a second
delivery of the same task (a retry after a killed worker) changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import has_face_consent

from .engines import get_engine
from .engines.base import IndexResult, RetryableEngineError
from .images import ImageError, decode_image, sha256, sniff_format
from .models import Face, FaceCollection, IndexRun, Person, Photo, Post, Source, UnindexedFace
from .sources import MediaExpired, RateLimited, RemotePost, SourceError, TokenExpired
from .thumbnails import face_thumbnail

logger = logging.getLogger(__name__)

# A pending post enqueued longer ago than this is assumed lost (e.g. its worker
# was killed while the Redis broker held the task) and is enqueued again.
STALE_AFTER = dt.timedelta(minutes=10)
# Thumbnails and detection need no more than this many pixels on the long side.
THUMBNAIL_SOURCE_SIDE = 1600
# A database restart or fail-over takes seconds: a job that meets one waits and
# runs again from the start (jobs are idempotent) instead of failing its post.
DB_OUTAGE_DELAYS = (0.5, 1, 2, 4, 8, 15)
# The same for the Redis broker while a job enqueues.
BROKER_OUTAGE_DELAYS = (0.5, 1, 2, 4, 8)
# Set in the Redis broker; gone after Redis restarted without its data.
BROKER_EPOCH_KEY = "faces:broker-epoch"
DB_OUTAGE_ERRORS = (OperationalError, InterfaceError)


def survives_db_outage(job: Callable) -> Callable:
    """Re-run ``job`` when the database goes away under it (restart, fail-over).

    Without this a job that meets a restart fails: django-q2 acknowledges the
    failure, the post stays pending and only the periodic resume, minutes
    later, would pick it up. Inside a transaction the caller owns the retry.
    """

    @wraps(job)
    def wrapper(*args, **kwargs):
        for delay in (*DB_OUTAGE_DELAYS, None):
            try:
                return job(*args, **kwargs)
            except DB_OUTAGE_ERRORS as exc:
                if delay is None or connections["default"].in_atomic_block:
                    raise
                logger.warning(
                    "%s%s met a database outage (%s); again in %ss", job.__name__, list(args), exc, delay
                )
                _drop_connections()
                time.sleep(delay)

    return wrapper


def _drop_connections() -> None:
    """Close broken connections so the next query connects afresh."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except DatabaseError:
            pass


def _broker_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - redis is a pinned dependency
        return ()
    return (RedisConnectionError, RedisTimeoutError)


# --------------------------------------------------------------------------
# Queue helpers


def enqueue(func: str, *args, **kwargs) -> None:
    """Enqueue a pipeline job on django-q2; wait out a short Redis restart."""
    from django_q.tasks import async_task

    # Results are not kept: the pipeline records its outcome in its own rows, and
    # thousands of Success rows per import would only slow the ORM broker down.
    # Failures are still saved for the admin.
    options = {"task_name": f"{func}{list(args)}"[:100], "save": False}
    for delay in (*BROKER_OUTAGE_DELAYS, None):
        try:
            async_task(f"indexing.pipeline.{func}", *args, q_options=options, **kwargs)
            return
        except _broker_errors() as exc:
            if delay is None:
                raise
            logger.warning("Could not enqueue %s%s (%s); again in %ss", func, list(args), exc, delay)
            time.sleep(delay)


def enqueue_later(func: str, at: dt.datetime, *args) -> None:
    """Run a job once at ``at`` (rate-limit back-off) through a django-q2 schedule."""
    from django_q.models import Schedule

    Schedule.objects.create(
        func=f"indexing.pipeline.{func}",
        args=",".join(repr(a) for a in args),
        schedule_type=Schedule.ONCE,
        next_run=at,
        name=f"{func}{list(args)} at {at:%H:%M:%S}"[:100],
        repeats=-1,
    )


# --------------------------------------------------------------------------
# Starting runs


def start_run(source: Source, *, sync: bool = False) -> IndexRun:
    """Create an IndexRun for ``source`` and crawl it (queued, or here when ``sync``)."""
    if not has_face_consent(source.owner):
        raise PermissionError("Face-processing consent is required before importing photos.")
    run = IndexRun.objects.create(owner=source.owner, source=source)
    if sync:
        crawl_source(run.pk, sync=True)
    else:
        transaction.on_commit(lambda: enqueue("crawl_source", run.pk))
    return run


def active_run(source: Source) -> IndexRun | None:
    return source.runs.filter(status__in=IndexRun.ACTIVE).first()


# --------------------------------------------------------------------------
# Crawling


@survives_db_outage
def crawl_source(run_id: int, sync: bool = False) -> None:
    """Enumerate the run's source, upsert posts and photos, enqueue their indexing."""
    run = IndexRun.objects.select_related("source", "owner").filter(pk=run_id).first()
    if run is None or run.status in (IndexRun.Status.DONE, IndexRun.Status.CANCELLED, IndexRun.Status.FAILED):
        return
    source = run.source
    if not has_face_consent(run.owner):
        _fail_run(run, "Face-processing consent was withdrawn.")
        return
    IndexRun.objects.filter(pk=run.pk).update(
        status=IndexRun.Status.CRAWLING, started_at=run.started_at or timezone.now(), resume_at=None
    )
    from .crawlers import iter_source_posts

    newest = source.newest_post_at
    try:
        for remote in iter_source_posts(source, since=source.newest_post_at):
            post = _upsert_post(run, remote)
            if post is not None and remote.timestamp and (newest is None or remote.timestamp > newest):
                newest = remote.timestamp
            if post is not None:
                _assign_and_enqueue(run, post, enqueue_job=not sync)
            if _cancelled(run.pk):
                return
    except RateLimited as exc:
        _wait(run, exc, "crawl_source", run.pk)
        return
    except TokenExpired as exc:
        Source.objects.filter(pk=source.pk).update(needs_reconnect=True)
        _fail_run(run, f"Instagram needs to be reconnected: {exc}")
        return
    except SourceError as exc:
        _fail_run(run, str(exc))
        return
    except DB_OUTAGE_ERRORS:
        raise  # not the run's fault: survives_db_outage runs the crawl again
    except Exception as exc:
        _fail_run(run, f"Unexpected error while finding posts ({exc.__class__.__name__}); support has been notified.")
        raise

    # Uploaded photos are posts already, and earlier failures get another try:
    # take every unfinished post of the source that is not in this run yet.
    unfinished = source.posts.filter(status__in=[Post.Status.PENDING, Post.Status.FAILED]).exclude(run=run)
    for post in list(unfinished.order_by("pk")):
        _assign_and_enqueue(run, post, enqueue_job=not sync)
    if source.kind == Source.Kind.INSTAGRAM:
        from .crawlers import instagram_media_ids

        try:
            notice_deleted_posts(source, instagram_media_ids(source))
        except SourceError as exc:  # not worth failing a finished crawl for
            logger.info("Could not check run %s for deleted posts: %s", run.pk, exc)
    Source.objects.filter(pk=source.pk).update(newest_post_at=newest, needs_reconnect=False)
    IndexRun.objects.filter(pk=run.pk).update(crawled_at=timezone.now())
    IndexRun.objects.filter(pk=run.pk, status=IndexRun.Status.CRAWLING).update(status=IndexRun.Status.INDEXING)
    if sync:
        for post_id in run.posts.filter(status=Post.Status.PENDING).values_list("pk", flat=True):
            index_post(post_id, sync=True)
    finished = _maybe_finish(run.pk)
    if get_engine().name == "local":
        from . import people

        if sync:
            try:
                people.group_new_faces(run.owner_id)
            except Exception:  # the import itself succeeded; the next grouping catches up
                logger.exception("Grouping the faces of run %s failed", run.pk)
        elif finished:
            people.run_finished(run.owner_id)


def _upsert_post(run: IndexRun, remote: RemotePost) -> Post | None:
    """Create or update the Post and its Photos; store bytes of ZIP/upload photos."""
    source = run.source
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
            if created:
                run.add(posts_skipped=1)
        return None
    if post.status in (Post.Status.INDEXED, Post.Status.SKIPPED):
        return None
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
                _fail_photo(photo, f"Could not read the file: {exc}")
                continue
            if _is_duplicate(source.owner_id, data, photo):
                photo.delete()
                continue
            store_original(photo, data)
    if not post.photos.exists():
        # Every photo of this item was already imported from another source.
        post.delete()
        return None
    return post


def _is_duplicate(owner_id: int, data: bytes, photo: Photo) -> bool:
    digest = sha256(data)
    return Photo.objects.filter(owner_id=owner_id, sha256=digest).exclude(pk=photo.pk).exists()


def store_original(photo: Photo, data: bytes) -> None:
    """Store the photo's bytes under a content-addressed key (re-storing is harmless)."""
    digest = sha256(data)
    fmt = sniff_format(data)
    from .images import EXTENSIONS

    ext = EXTENSIONS.get(fmt or "", "bin")
    name = f"photos/{photo.owner_id}/{digest[:2]}/{digest}.{ext}"
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(data))
    Photo.objects.filter(pk=photo.pk).update(original=name, sha256=digest)
    photo.original.name, photo.sha256 = name, digest


def _assign_and_enqueue(run: IndexRun, post: Post, enqueue_job: bool = True) -> None:
    """Count the post into this run and queue its indexing, exactly once.

    A crawl that runs again (after a crash or a rate-limit wait) finds its posts
    already assigned and queues nothing twice; lost tasks are the business of
    ``resume_interrupted_runs``.
    """
    moved = Post.objects.filter(pk=post.pk).filter(~Q(run_id=run.pk) | Q(run__isnull=True)).update(
        run=run, status=Post.Status.PENDING, error="", enqueued_at=timezone.now()
    )
    if not moved:
        return
    run.add(posts_total=1)
    if enqueue_job:
        enqueue("index_post", post.pk)


# --------------------------------------------------------------------------
# Indexing


@dataclass
class _PhotoOutcome:
    photo: Photo
    result: IndexResult | None = None
    error: str = ""
    thumbnails: dict[str, str] | None = None


@survives_db_outage
def index_post(post_id: int, sync: bool = False) -> None:
    """Index every photo of a post and record the faces, exactly once.

    ``sync`` (an import in this process) leaves grouping the faces into people
    to the caller, instead of queueing it.
    """
    post = Post.objects.select_related("source", "run", "owner").filter(pk=post_id).first()
    if post is None:
        return
    if post.status != Post.Status.PENDING:
        # A re-run after the commit (e.g. the database went away right after
        # it) still has to close the run.
        if post.run_id and _maybe_finish(post.run_id) and not sync and get_engine().name == "local":
            from . import people

            people.run_finished(post.owner_id)
        return
    run = post.run
    if run is not None and run.status == IndexRun.Status.CANCELLED:
        return
    owner = post.owner
    if not has_face_consent(owner):
        if run is not None:
            _fail_run(run, "Face-processing consent was withdrawn.")
        return
    engine = get_engine()
    engine.ensure_collection(owner)
    outcomes: list[_PhotoOutcome] = []
    try:
        for photo in post.photos.exclude(status=Photo.Status.INDEXED):
            outcomes.append(_index_photo(engine, post, photo))
    except RateLimited as exc:
        if run is not None:
            _wait(run, exc, "index_post", post.pk)
        return
    except TokenExpired as exc:
        Source.objects.filter(pk=post.source_id).update(needs_reconnect=True)
        if run is not None:
            _fail_run(run, f"Instagram needs to be reconnected: {exc}")
        return
    except RetryableEngineError as exc:
        if run is not None:
            _wait(run, RateLimited(str(exc), 30), "index_post", post.pk)
        return
    _commit_post(engine, post, outcomes)
    finished = run is not None and _maybe_finish(run.pk)
    if engine.name == "local" and not sync:
        # People: group the new faces soon (debounced), and at once when the run is done.
        from . import people

        try:
            if finished:
                people.run_finished(post.owner_id)
            elif any(o.result and o.result.faces for o in outcomes):
                people.faces_indexed(post.owner_id)
        except _broker_errors() as exc:  # Redis restarting: the post is saved, grouping catches up later
            logger.warning("Could not queue grouping for user %s: %s", post.owner_id, exc)


def _index_photo(engine, post: Post, photo: Photo) -> _PhotoOutcome:
    try:
        data = _photo_bytes(post, photo)
        storage_key = photo.original.name if engine.reads_from_storage else None
        result = engine.index_image(post.owner, data, photo.external_id, storage_key=storage_key or None)
    except ImageError as exc:
        return _PhotoOutcome(photo, error=str(exc))
    except MediaExpired as exc:
        return _PhotoOutcome(photo, error=f"The photo is no longer available: {exc}")
    except SourceError as exc:
        if isinstance(exc, (RateLimited, TokenExpired)):
            raise
        return _PhotoOutcome(photo, error=str(exc))
    except (RetryableEngineError, *DB_OUTAGE_ERRORS):
        raise
    except Exception as exc:  # a bug or an engine failure must not leave the post pending forever
        logger.exception("Indexing photo %s failed", photo.pk)
        return _PhotoOutcome(photo, error=f"Unexpected error while indexing ({exc.__class__.__name__}).")
    image = result.image if result.image is not None else decode_image(data, THUMBNAIL_SOURCE_SIDE).image
    thumbnails = {}
    for face in result.faces:
        name = f"faces/{post.owner_id}/{face.face_id[:2]}/{face.face_id}.jpg"
        thumbnails[face.face_id] = default_storage.save(name, ContentFile(face_thumbnail(image, face.box)))
    result.image = None  # release the pixels early
    return _PhotoOutcome(photo, result=result, thumbnails=thumbnails)


def _photo_bytes(post: Post, photo: Photo) -> bytes:
    """The stored original, or a download from Instagram (stored for next time)."""
    if photo.original:
        with default_storage.open(photo.original.name, "rb") as handle:
            return handle.read()
    if not photo.media_url and post.source.kind != Source.Kind.INSTAGRAM:
        raise ImageError("The photo file is missing.")
    from .crawlers import download_instagram_photo

    data = download_instagram_photo(post.source, photo)
    store_original(photo, data)
    return data


def _commit_post(engine, post: Post, outcomes: list[_PhotoOutcome]) -> None:
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
            for name in (outcome.thumbnails or {}).values():
                default_storage.delete(name)


def _face_rows(engine, photo: Photo, result: IndexResult, thumbnails: dict[str, str]) -> list[Face]:
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
        )
        for face in result.faces
    ]


def _iou(a: list[float], b: list[float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def reindex_photo(engine, photo: Photo) -> int:
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
        best = max(old_faces, key=lambda f: _iou(f.box, [row.box_x, row.box_y, row.box_w, row.box_h]), default=None)
        if best is not None and _iou(best.box, [row.box_x, row.box_y, row.box_w, row.box_h]) > 0.3:
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


def _fail_photo(photo: Photo, message: str) -> None:
    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.FAILED, error=message)


# --------------------------------------------------------------------------
# Run state


def _maybe_finish(run_id: int) -> bool:
    """Mark the run done once crawling is over and every post is indexed or failed."""
    return bool(
        IndexRun.objects.filter(
            pk=run_id,
            status=IndexRun.Status.INDEXING,
            crawled_at__isnull=False,
            posts_total__lte=F("posts_done") + F("posts_failed"),
        ).update(status=IndexRun.Status.DONE, finished_at=timezone.now())
    )


def _cancelled(run_id: int) -> bool:
    return IndexRun.objects.filter(pk=run_id, status=IndexRun.Status.CANCELLED).exists()


def _fail_run(run: IndexRun, message: str) -> None:
    IndexRun.objects.filter(pk=run.pk, status__in=IndexRun.ACTIVE).update(
        status=IndexRun.Status.FAILED, last_error=message, finished_at=timezone.now()
    )


def _wait(run: IndexRun, exc: RateLimited, func: str, arg: int) -> None:
    """Back off: say so on the run and schedule the job again."""
    resume_at = timezone.now() + dt.timedelta(seconds=max(1.0, exc.retry_after))
    IndexRun.objects.filter(pk=run.pk, status__in=IndexRun.ACTIVE).update(
        status=IndexRun.Status.WAITING, resume_at=resume_at, last_error=str(exc)
    )
    enqueue_later("resume_job", resume_at, run.pk, func, arg)
    logger.info("Run %s waits until %s: %s", run.pk, resume_at, exc)


@survives_db_outage
def resume_job(run_id: int, func: str, arg: int) -> None:
    """After a rate-limit wait, put the run back to work and re-run the job."""
    run = IndexRun.objects.filter(pk=run_id).first()
    if run is None or not run.is_active:
        return
    IndexRun.objects.filter(pk=run_id, status=IndexRun.Status.WAITING).update(
        status=IndexRun.Status.INDEXING if run.crawled_at else IndexRun.Status.CRAWLING, resume_at=None
    )
    if func == "crawl_source":
        crawl_source(run_id)
    else:
        index_post(arg)


def progress(run: IndexRun) -> dict:
    """The numbers the progress page shows, computed from the run's counters."""
    end = run.finished_at or timezone.now()
    elapsed = (end - run.started_at).total_seconds() if run.started_at else 0.0
    finished = run.posts_finished
    remaining = max(0, run.posts_total - finished)
    rate = finished / elapsed if elapsed > 0 else 0.0
    failed = Post.objects.filter(run=run, status=Post.Status.FAILED).order_by("pk")[:50]
    return {
        "id": run.pk,
        "status": run.status,
        "status_display": run.get_status_display(),
        "active": run.is_active,
        "posts_total": run.posts_total,
        "posts_done": run.posts_done,
        "posts_failed": run.posts_failed,
        "posts_skipped": run.posts_skipped,
        "photos_done": run.photos_done,
        "faces_found": run.faces_found,
        "percent": run.percent,
        "photos_per_second": round(run.photos_done / elapsed, 2) if elapsed > 0 else 0.0,
        "eta_seconds": round(remaining / rate) if rate > 0 and run.is_active and run.crawled_at else None,
        "resume_at": run.resume_at.isoformat() if run.resume_at else None,
        "last_error": run.last_error if run.status in (IndexRun.Status.FAILED, IndexRun.Status.WAITING) else "",
        "failed_posts": [{"id": p.pk, "external_id": p.external_id, "error": p.error} for p in failed],
    }


def cancel_run(run: IndexRun) -> bool:
    return bool(
        IndexRun.objects.filter(pk=run.pk, status__in=IndexRun.ACTIVE).update(
            status=IndexRun.Status.CANCELLED, finished_at=timezone.now()
        )
    )


def retry_failed(run: IndexRun, post_ids: list[int] | None = None) -> int:
    """Queue the run's failed posts again; counters move back by the same amount."""
    posts = run.posts.filter(status=Post.Status.FAILED)
    if post_ids is not None:
        posts = posts.filter(pk__in=post_ids)
    retried = 0
    for post in posts:
        with transaction.atomic():
            if not Post.objects.filter(pk=post.pk, status=Post.Status.FAILED).update(status=Post.Status.PENDING, error=""):
                continue
            Photo.objects.filter(post=post, status=Photo.Status.FAILED).update(status=Photo.Status.PENDING, error="")
            IndexRun.objects.filter(pk=run.pk).update(
                posts_failed=F("posts_failed") - 1,
                status=IndexRun.Status.INDEXING,
                finished_at=None,
            )
            Post.objects.filter(pk=post.pk).update(enqueued_at=timezone.now())
        enqueue("index_post", post.pk)
        retried += 1
    return retried


def resume_interrupted_runs(stale_after: dt.timedelta | None = None) -> int:
    """Re-enqueue work lost with a killed worker. Safe to run at any time.

    The ORM broker redelivers unacknowledged tasks by itself; the Redis broker
    does not, so each worker start and a periodic schedule call this.
    """
    stale_after = STALE_AFTER if stale_after is None else stale_after
    if broker_lost_its_queue():
        stale_after = dt.timedelta(0)  # every queued task is gone: resume everything now
    cutoff = timezone.now() - stale_after
    resumed = 0
    for run in IndexRun.objects.filter(status__in=[IndexRun.Status.QUEUED, IndexRun.Status.CRAWLING]):
        if run.created_at <= cutoff or stale_after.total_seconds() == 0:
            enqueue("crawl_source", run.pk)
            resumed += 1
    stale = Post.objects.filter(
        status=Post.Status.PENDING, run__status=IndexRun.Status.INDEXING
    ).filter(Q(enqueued_at__lte=cutoff) | Q(enqueued_at__isnull=True))
    for post_id in stale.values_list("pk", flat=True):
        Post.objects.filter(pk=post_id).update(enqueued_at=timezone.now())
        enqueue("index_post", post_id)
        resumed += 1
    for run_id in IndexRun.objects.filter(status=IndexRun.Status.INDEXING).values_list("pk", flat=True):
        _maybe_finish(run_id)
    if resumed:
        logger.info("Resumed %s interrupted jobs", resumed)
    return resumed


def broker_lost_its_queue() -> bool:
    """True (once) when the Redis broker restarted empty, losing the queued tasks.

    A marker key lives in the broker's Redis; when it is missing, Redis lost
    its data since the last check and every pending job must be enqueued again.
    """
    if not settings.Q_CLUSTER.get("redis"):
        return False
    from django_q.brokers import get_broker

    try:
        lost = get_broker().connection.set(BROKER_EPOCH_KEY, timezone.now().isoformat(), nx=True)
    except _broker_errors() as exc:
        logger.warning("Could not check the broker for a restart: %s", exc)
        return False
    if lost:
        logger.warning("The Redis broker lost its queue (restart without persistence?): resuming all jobs")
    return bool(lost)


def first_start_of_cluster() -> bool:
    """True for the first worker process of this cluster to ask (same host and sentinel).

    Every worker process of a cluster gets django-q's ``post_spawn``; start-up
    work should run once per cluster.
    """
    key = f"faces:cluster-start:{socket.gethostname()}:{os.getppid()}"
    return bool(cache.add(key, uuid.uuid4().hex, timeout=300))


# --------------------------------------------------------------------------
# Instagram links


def link_instagram(account) -> Source:
    """The source of a linked Instagram account, crawled now when consent allows.

    Called on linking, on sign-up and on every login with Instagram: an active
    run is left alone, otherwise a crawl fetches what is new since the last one.
    """
    username = (account.extra_data or {}).get("username") or account.uid
    source, created = Source.objects.get_or_create(
        owner=account.user,
        kind=Source.Kind.INSTAGRAM,
        social_account=account,
        defaults={"name": f"@{username}"},
    )
    if not created:
        Source.objects.filter(pk=source.pk).update(active=True, needs_reconnect=False, name=f"@{username}")
        source.refresh_from_db()
    if has_face_consent(account.user) and active_run(source) is None:
        start_run(source)
    return source


def unlink_instagram(account) -> None:
    """Stop crawling an unlinked account; its photos stay until the user deletes them."""
    for source in Source.objects.filter(social_account=account):
        for run in source.runs.filter(status__in=IndexRun.ACTIVE):
            cancel_run(run)
    Source.objects.filter(social_account=account).update(active=False)


def start_uncrawled_sources(user) -> list[IndexRun]:
    """Start the first crawl of sources linked before the user consented."""
    return [
        start_run(source)
        for source in Source.objects.filter(owner=user, active=True, runs__isnull=True)
        if source.kind == Source.Kind.INSTAGRAM or source.posts.exists() or source.archive
    ]


def sync_instagram_sources() -> int:
    """The daily schedule: an incremental crawl of every linked, healthy account."""
    started = 0
    sources = Source.objects.filter(kind=Source.Kind.INSTAGRAM, active=True, needs_reconnect=False)
    if settings.FACES_RETENTION_DAYS > 0:
        # Retention deletes inactive accounts' face data: do not make new.
        from .deletion import inactive_users

        sources = sources.exclude(owner__in=inactive_users(settings.FACES_RETENTION_DAYS))
    for source in sources.select_related("owner"):
        if active_run(source) is None and has_face_consent(source.owner):
            start_run(source)
            started += 1
    return started


# Instagram lists at most this many newest media: past it, absence proves nothing.
INSTAGRAM_LISTING_LIMIT = 10_000


def notice_deleted_posts(source: Source, media_ids: set[str]) -> int:
    """Delete our copy of posts the user deleted on Instagram (photos and faces)."""
    if not media_ids or len(media_ids) >= INSTAGRAM_LISTING_LIMIT:
        return 0
    from .deletion import delete_posts

    gone = source.posts.exclude(external_id__in=media_ids)
    count = gone.count()
    if count:
        delete_posts(source.owner, gone)
    return count


def delete_source(source: Source) -> dict[str, int]:
    """Delete one source's photos, faces and stored files (e.g. after unlinking)."""
    from .deletion import delete_source_data

    return delete_source_data(source)
