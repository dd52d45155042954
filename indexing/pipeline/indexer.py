"""Indexing one post: the engine's work per photo, then one guarded commit.

``index_post`` runs the face engine outside any transaction and then writes
faces, photo states and run counters in one transaction guarded by the post's
status, so a second delivery of the same task (a retry after a killed worker)
changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import has_face_consent

from .. import people, storage
from ..crawlers import download_instagram_photo
from ..engines import get_engine
from ..engines.base import Box, FaceEngine, IndexResult, RetryableEngineError
from ..images import ImageError, decode_image
from ..models import Face, FaceCollection, IndexRun, Person, Photo, Post, Source, UnindexedFace
from ..sources import MediaExpired, RateLimited, SourceError, TokenExpired
from ..thumbnails import face_thumbnail
from .queue import BROKER_ERRORS, DB_OUTAGE_ERRORS, INDEX_POST, survives_db_outage
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
        if post.run_id and _maybe_finish(post.run_id) and not sync and get_engine().groups_faces:
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
            _wait(run, exc, INDEX_POST, post.pk)
        return
    except TokenExpired as exc:
        Source.objects.filter(pk=post.source_id).update(needs_reconnect=True)
        if run is not None:
            _fail_run(run, f"Instagram needs to be reconnected: {exc}")
        return
    except RetryableEngineError as exc:
        if run is not None:
            _wait(run, RateLimited(str(exc), 30), INDEX_POST, post.pk)
        return
    _commit_post(engine, post, outcomes)
    finished = run is not None and _maybe_finish(run.pk)
    if engine.groups_faces and not sync:
        # People: group the new faces soon (debounced), and at once when the run is done.
        try:
            if finished:
                people.run_finished(post.owner_id)
            elif any(o.result and o.result.faces for o in outcomes):
                people.faces_indexed(post.owner_id)
        except BROKER_ERRORS as exc:  # Redis restarting: the post is saved, grouping catches up later
            logger.warning("Could not queue grouping for user %s: %s", post.owner_id, exc)


def _index_photo(engine: FaceEngine, post: Post, photo: Photo) -> _PhotoOutcome:
    try:
        data = _photo_bytes(post, photo)
        # Only engines that read from storage take the key (the others' signature may lack it).
        kwargs = {"storage_key": photo.original.name} if engine.reads_from_storage else {}
        result = engine.index_image(post.owner, data, photo.external_id, **kwargs)
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
    thumbnails = {
        face.face_id: storage.store_face_thumbnail(post.owner_id, face.face_id, face_thumbnail(image, face.box))
        for face in result.faces
    }
    result.image = None  # release the pixels early
    return _PhotoOutcome(photo, result=result, thumbnails=thumbnails)


def _photo_bytes(post: Post, photo: Photo) -> bytes:
    """The stored original, or a download from Instagram (stored for next time)."""
    if photo.original:
        return storage.read(photo.original.name)
    if not photo.media_url and post.source.kind != Source.Kind.INSTAGRAM:
        raise ImageError("The photo file is missing.")
    data = download_instagram_photo(post.source, photo)
    storage.store_original(photo, data)
    return data


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
            for name in (outcome.thumbnails or {}).values():
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
