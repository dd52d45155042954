"""Delete a user's face data (on request) or everything (with the account)."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import transaction
from django.dispatch import Signal
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from . import storage
from .engines import get_engine
from .models import Face, FaceCollection, IndexRun, Person, Photo, Post, Source, UnindexedFace

logger = logging.getLogger(__name__)

# Sent with ``user`` after a user's face data is deleted, so other apps drop
# what they keep of it (search drops the query photos it holds briefly).
face_data_deleted = Signal()


def _delete_files(names) -> int:
    deleted = 0
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
            deleted += 1
        except Exception:  # a missing file is already deleted
            logger.warning("Could not delete stored file %s", name)
    return deleted


def _delete_prefix(prefix: str) -> int:
    """Delete every stored file under ``prefix`` (also orphans of crashed jobs)."""
    try:
        directories, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    deleted = _delete_files(f"{prefix}/{name}" for name in files)
    for directory in directories:
        deleted += _delete_prefix(f"{prefix}/{directory}")
    return deleted


def delete_face_data(user, *, photos: bool = False) -> dict[str, int]:
    """Delete faces, embeddings, people, thumbnails and engine collections.

    With ``photos=True`` also delete stored originals, posts, sources and runs.
    Returns what was deleted, by kind, so the page can say so.
    """
    report: Counter[str] = Counter()
    # Stop running imports first: their queued jobs would index the photos again.
    IndexRun.objects.filter(owner=user, status__in=IndexRun.ACTIVE).update(
        status=IndexRun.Status.CANCELLED, finished_at=timezone.now()
    )
    for collection in FaceCollection.objects.filter(owner=user):
        get_engine(collection.engine).delete_collection(user)
        report["collections"] += 1
    thumbnails = list(Face.objects.filter(owner=user).values_list("thumbnail", flat=True))
    report["thumbnails"] = _delete_files(thumbnails) + _delete_prefix(storage.faces_prefix(user.pk))
    with transaction.atomic():
        report["faces"] = Face.objects.filter(owner=user).delete()[0]
        report["people"] = Person.objects.filter(owner=user).delete()[0]
        UnindexedFace.objects.filter(owner=user).delete()
        FaceCollection.objects.filter(owner=user).delete()
        if not photos:
            # Photos stay, but nothing of them counts as indexed any more.
            Photo.objects.filter(owner=user).update(status=Photo.Status.PENDING, indexed_at=None)
            Post.objects.filter(owner=user, status=Post.Status.INDEXED).update(
                status=Post.Status.PENDING, indexed_at=None
            )
    if photos:
        originals = list(Photo.objects.filter(owner=user).values_list("original", flat=True))
        report["photo_files"] = (
            _delete_files(originals) + _delete_prefix(storage.photos_prefix(user.pk))
            + _delete_prefix(storage.imports_prefix(user.pk))
        )
        with transaction.atomic():
            report["photos"] = Photo.objects.filter(owner=user).delete()[0]
            report["posts"] = Post.objects.filter(owner=user).delete()[0]
            IndexRun.objects.filter(owner=user).delete()
            report["sources"] = Source.objects.filter(owner=user).delete()[0]
    face_data_deleted.send(sender=Face, user=user)
    logger.info("Deleted face data of user %s: %s", user.pk, dict(report))
    return dict(report)


def delete_posts(owner, posts) -> dict[str, int]:
    """Delete posts with their photos, faces (also from the engine) and stored files."""
    report: Counter[str] = Counter()
    photos = list(Photo.objects.filter(owner=owner, post__in=posts))
    faces = Face.objects.filter(owner=owner, photo__in=photos)
    for engine_name in set(faces.values_list("engine", flat=True)):
        ids = list(faces.filter(engine=engine_name).values_list("engine_face_id", flat=True))
        get_engine(engine_name).delete_faces(owner, ids)
        FaceCollection.bump(owner.pk, engine_name)
    report["thumbnails"] = _delete_files(list(faces.values_list("thumbnail", flat=True)))
    report["faces"] = faces.count()
    keep = set(
        Photo.objects.filter(owner=owner).exclude(pk__in=[p.pk for p in photos]).values_list("original", flat=True)
    )
    report["photo_files"] = _delete_files(
        [p.original.name for p in photos if p.original and p.original.name not in keep]
        + [storage.rendition_key(p) for p in photos if p.original and p.original.name not in keep]
    )
    with transaction.atomic():
        report["photos"] = len(photos)
        report["posts"] = Post.objects.filter(owner=owner, pk__in=posts.values("pk")).delete()[1].get("indexing.Post", 0)
    return dict(report)


def inactive_users(days: int) -> QuerySet:
    """Users who have not logged in for ``days`` days (counted from sign-up if never)."""
    cutoff = timezone.now() - dt.timedelta(days=days)
    return get_user_model().objects.filter(
        Q(last_login__lt=cutoff) | Q(last_login__isnull=True, date_joined__lt=cutoff)
    )


def delete_inactive_face_data(days: int | None = None) -> int:
    """The daily retention job: delete the face data of accounts inactive for N days.

    N is ``FACES_RETENTION_DAYS`` (0 turns retention off). Photos stay, as
    after "Delete my face data"; faces, embeddings, people, thumbnails and the
    engine collection go. Returns the number of accounts purged.
    """
    days = settings.FACES_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    has_face_data = (
        Exists(Face.objects.filter(owner=OuterRef("pk")))
        | Exists(Person.objects.filter(owner=OuterRef("pk")))
        | Exists(FaceCollection.objects.filter(owner=OuterRef("pk")))
    )
    purged = 0
    for user in inactive_users(days).filter(has_face_data).order_by("pk").iterator():
        delete_face_data(user)
        purged += 1
    if purged:
        logger.info("Retention: deleted the face data of %s accounts inactive for %s days", purged, days)
    return purged
