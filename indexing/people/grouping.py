"""Grouping an owner's faces into people, incrementally or in full, one pass per owner at a time.

* Only faces worth grouping take part (``eligible_faces``): searchable, with
  an embedding, quality at least ``MIN_QUALITY`` and detection confidence at
  least ``MIN_CONFIDENCE``. Tiny, blurry and unsure faces stay unassigned
  instead of gluing different people together.
* Faces the user placed (``person_locked``) and, in incremental runs, every
  face already grouped keep their person and only vote.
* A new group becomes a Person when its faces come from at least
  ``MIN_PHOTOS`` photos: one face alone is noise and stays unassigned.

Incremental grouping (``group_new_faces``) handles the faces that grouping has
not seen yet (``Face.grouped_at`` empty), plus unassigned faces next to them,
against the whole library; a full pass (``regroup``) lets every unlocked face
vote again, starting from its current person so groups stay stable. The
pipeline calls ``faces_indexed`` after each post (debounced: one grouping per
owner per ``GROUP_DEBOUNCE`` seconds) and ``run_finished`` at the end of a run.
Grouping needs embeddings, so it only runs for an engine that ``groups_faces``
(or on embeddings such an engine left behind).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field

import numpy as np
from django.core.cache import cache
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, F, Q, QuerySet
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from ..engines import get_engine
from ..engines.local import DIM, EMBEDDING_BYTES
from ..models import Face, Person
from ..tasks import GROUP_NEW_FACES
from .clustering import chinese_whispers, knn

logger = logging.getLogger(__name__)

MIN_QUALITY = 40.0  # Face.quality (0-100) to take part in grouping
MIN_CONFIDENCE = 80.0  # Face.confidence (0-100) to take part in grouping
MIN_PHOTOS = 2  # a new group needs faces from this many photos to become a person
GROUP_DEBOUNCE = 60  # seconds: at most one queued grouping per owner in this window
LOCK_SECONDS = 15 * 60  # a grouping of one owner at a time
WRITE_BATCH = 2000  # ids per UPDATE ... WHERE id IN (...)
# Queued tasks and Schedule rows store this path; the package re-exports it.
GROUP_TASK = GROUP_NEW_FACES


@dataclass
class GroupingReport:
    """What one grouping pass did; the management command and logs print it."""

    faces: int = 0  # faces that took part (eligible)
    considered: int = 0  # faces whose label could change
    assigned: int = 0  # faces given a (different) person
    unassigned: int = 0  # faces taken out of a person by the vote
    new_people: int = 0
    deleted_people: int = 0
    skipped: str = ""  # why nothing was done, if so
    seconds: float = 0.0
    details: dict = field(default_factory=dict)


def eligible_faces(owner_id: int) -> QuerySet:
    """The owner's faces good enough to group (sharp, sure, with an embedding)."""
    return (
        Face.objects.filter(
            owner_id=owner_id,
            searchable=True,
            embedding__isnull=False,
            quality__gte=MIN_QUALITY,
            confidence__gte=MIN_CONFIDENCE,
        )
        # A face the user took out of every person stays out.
        .exclude(person_locked=True, person__isnull=True)
    )


@dataclass
class _Library:
    ids: np.ndarray  # Face pk per row
    photos: np.ndarray
    persons: np.ndarray  # Person pk, 0 = none
    locked: np.ndarray  # bool
    new: np.ndarray  # bool: grouped_at is empty
    quality: np.ndarray
    matrix: np.ndarray  # (n, 128) float32, normalized rows


def _load(owner_id: int) -> _Library:
    rows = (
        eligible_faces(owner_id)
        .annotate(is_new=ExpressionWrapper(Q(grouped_at__isnull=True), output_field=BooleanField()))
        .order_by("pk")
        .values_list("pk", "photo_id", "person_id", "person_locked", "is_new", "quality", "embedding")
    )
    meta: list[tuple] = []
    blobs: list[bytes] = []
    for pk, photo_id, person_id, locked, is_new, quality, blob in rows.iterator(chunk_size=10_000):
        if blob is None or len(blob) != EMBEDDING_BYTES:
            continue
        meta.append((pk, photo_id, person_id or 0, bool(locked), bool(is_new), float(quality)))
        blobs.append(bytes(blob))
    columns = list(zip(*meta)) if meta else [()] * 6
    return _Library(
        ids=np.array(columns[0], dtype=np.int64),
        photos=np.array(columns[1], dtype=np.int64),
        persons=np.array(columns[2], dtype=np.int64),
        locked=np.array(columns[3], dtype=bool),
        new=np.array(columns[4], dtype=bool),
        quality=np.array(columns[5], dtype=np.float32),
        matrix=np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), DIM),
    )


def group_new_faces(owner_id: int) -> GroupingReport:
    """Group the faces grouping has not seen yet into people (a django-q task; cheap if none)."""
    return _group_locked(int(owner_id), full=False)


def regroup(owner_id: int) -> GroupingReport:
    """Let every unlocked face vote again (after a parameter change, or on request)."""
    return _group_locked(int(owner_id), full=True)


def _lock_key(owner_id: int) -> str:
    return f"faces:people:grouping:{owner_id}"


def _group_locked(owner_id: int, full: bool) -> GroupingReport:
    """One grouping per owner at a time; a caller that finds it busy asks for another pass."""
    # Embeddings left by a grouping engine still group (e.g. while a re-index moves to another engine).
    with_embeddings = Face.objects.filter(owner_id=owner_id, embedding__isnull=False)
    if not get_engine().groups_faces and not with_embeddings.exists():
        return GroupingReport(skipped="Automatic grouping needs the face embeddings this engine does not keep.")
    key, again = _lock_key(owner_id), f"{_lock_key(owner_id)}:again"
    token = uuid.uuid4().hex
    if not cache.add(key, token, timeout=LOCK_SECONDS):
        cache.set(again, True, timeout=LOCK_SECONDS)
        return GroupingReport(skipped="Another grouping of this library is running; it will run again.")
    try:
        while True:
            cache.delete(again)
            report = _group(owner_id, full=full)
            if not cache.get(again):
                return report
            full = False
    finally:
        if cache.get(key) == token:
            cache.delete(key)


def _group(owner_id: int, full: bool) -> GroupingReport:
    started = timezone.now()
    clock = _Clock()
    if not full and not eligible_faces(owner_id).filter(grouped_at__isnull=True).exists():
        return GroupingReport(skipped="No new faces.")
    library = _load(owner_id)
    clock.lap("load")
    n = len(library.ids)
    report = GroupingReport(faces=n)
    if not n:
        return report

    # Labels: 0..P-1 for existing people, P + row for a face of its own.
    person_ids = np.unique(library.persons[library.persons > 0])
    offset = len(person_ids)
    own = offset + np.arange(n, dtype=np.int64)
    has_person = library.persons > 0
    labels = own.copy()
    if has_person.any():
        labels[has_person] = np.searchsorted(person_ids, library.persons[has_person])

    free = ~library.locked if full else library.new & ~library.locked
    rows = np.flatnonzero(free)
    neighbours, cosines = knn(library.matrix, rows)
    if not full:
        # Unassigned faces next to the new ones vote again too: old singletons may pair with them.
        touched = np.unique(neighbours[neighbours >= 0])
        extra = touched[~has_person[touched] & ~library.locked[touched] & ~free[touched]]
        if len(extra):
            more, more_cosines = knn(library.matrix, extra)
            rows = np.concatenate([rows, extra])
            order = np.argsort(rows, kind="stable")
            rows = rows[order]
            neighbours = np.concatenate([neighbours, more])[order]
            cosines = np.concatenate([cosines, more_cosines])[order]
    report.considered = len(rows)
    clock.lap("knn")
    result = chinese_whispers(labels, rows, neighbours, cosines)
    clock.lap("whispers")

    # An unassigned face that only voted may have lent its own label to free faces:
    # it belongs to the group they form.
    taken = np.unique(result[rows])
    lenders = taken[taken >= offset] - offset  # the rows those labels started on
    lenders = lenders[~np.isin(lenders, rows)]
    if len(lenders):
        rows = np.union1d(rows, lenders)

    # New groups: labels >= offset shared by faces from at least MIN_PHOTOS photos.
    fresh_rows = rows[result[rows] >= offset]
    new_groups: dict[int, np.ndarray] = {}
    if len(fresh_rows):
        fresh_labels = result[fresh_rows]
        order = np.argsort(fresh_labels, kind="stable")
        fresh_rows, fresh_labels = fresh_rows[order], fresh_labels[order]
        bounds = np.flatnonzero(np.r_[True, fresh_labels[1:] != fresh_labels[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            members = fresh_rows[a:b]
            if len(np.unique(library.photos[members])) >= MIN_PHOTOS:
                new_groups[int(fresh_labels[a])] = members

    # Where each free face goes: an existing person (pk), a new group (-1 - label) or nobody (0).
    target = np.zeros(len(rows), dtype=np.int64)
    to_person = result[rows] < offset
    target[to_person] = person_ids[result[rows][to_person]]
    for label, members in new_groups.items():
        target[np.searchsorted(rows, members)] = -1 - label
    before = library.persons[rows]
    changes = target != before
    report.details["timings"] = clock.laps
    _apply(owner_id, library, rows, before, target, changes, new_groups, report, started)
    clock.lap("write")
    report.seconds = clock.total()
    logger.info("Grouped faces of owner %s: %s", owner_id, report)
    return report


def _apply(owner_id, library, rows, before, target, changes, new_groups, report, started) -> None:
    """Write the grouping, touching only faces still as they were when it was computed."""
    moves: dict[tuple[int, int], list[int]] = {}
    for row, old, new in zip(rows[changes], before[changes], target[changes]):
        moves.setdefault((int(old), int(new)), []).append(int(library.ids[row]))
    with transaction.atomic():
        existing = set(
            Person.objects.select_for_update()
            .filter(owner_id=owner_id, pk__in={old for old, _ in moves} | {new for _, new in moves if new > 0})
            .values_list("pk", flat=True)
        )
        created: dict[int, int] = {}
        if new_groups:
            people = []
            labels = list(new_groups)
            for label in labels:
                members = new_groups[label]
                cover = members[np.argmax(library.quality[members])]
                people.append(Person(owner_id=owner_id, cover_face_id=int(library.ids[cover])))
            for label, person in zip(labels, Person.objects.bulk_create(people)):
                created[-1 - label] = person.pk
        # Only faces still as they were when loaded move (the user may have moved or
        # locked some meanwhile). Rows are read and locked by primary key, and written
        # by primary key alone: with extra conditions PostgreSQL may pick the
        # (owner, person) index on a freshly imported table and scan it per statement.
        changed = [pk for face_ids in moves.values() for pk in face_ids]
        now: dict[int, tuple] = {}
        for start in range(0, len(changed), WRITE_BATCH):
            rows_now = Face.objects.select_for_update().filter(pk__in=changed[start : start + WRITE_BATCH])
            now.update((pk, (person, locked)) for pk, person, locked in rows_now.values_list("pk", "person_id", "person_locked"))
        emptied: set[int] = set()
        for (old, new), face_ids in moves.items():
            if new < 0:
                new = created[new]
            elif new > 0 and new not in existing:
                continue  # merged away or deleted meanwhile; the next pass places these faces
            still = [pk for pk in face_ids if now.get(pk) == (old or None, False)]
            for start in range(0, len(still), WRITE_BATCH):
                Face.objects.filter(pk__in=still[start : start + WRITE_BATCH]).update(person_id=new or None)
            if new:
                report.assigned += len(still)
            else:
                report.unassigned += len(still)
            if old:
                emptied.add(old)
        report.new_people = len(created)
        considered = library.ids[rows].tolist()
        for start in range(0, len(considered), WRITE_BATCH):
            Face.objects.filter(pk__in=considered[start : start + WRITE_BATCH]).update(grouped_at=started)
        # People that lost faces: fix their cover, delete the automatic ones left empty.
        if emptied:
            refresh_covers(emptied)
            report.deleted_people = _delete_empty_automatic(owner_id, emptied)


def refresh_covers(person_ids) -> None:
    """Give each person a cover face that is still theirs (their best-quality face)."""
    stale = Person.objects.filter(pk__in=list(person_ids)).exclude(
        cover_face__isnull=False, cover_face__person_id=F("pk")
    )
    for person in stale.only("pk"):
        best = Face.objects.filter(person=person).order_by("-quality", "pk").values_list("pk", flat=True).first()
        Person.objects.filter(pk=person.pk).update(cover_face_id=best)


def _delete_empty_automatic(owner_id: int, person_ids) -> int:
    """Delete people grouping made that have no face left (never named, "me" or hidden ones)."""
    empty = Person.objects.filter(
        owner_id=owner_id, pk__in=list(person_ids), name="", is_me=False, hidden=False, rekognition_user_id=""
    ).filter(faces__isnull=True)
    return empty.delete()[0]


class _Clock:
    def __init__(self) -> None:
        self.start = self.last = timezone.now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = timezone.now()
        self.laps[name] = round((now - self.last).total_seconds(), 3)
        self.last = now

    def total(self) -> float:
        return round((timezone.now() - self.start).total_seconds(), 3)


# --------------------------------------------------------------------------
# Pipeline hooks


def faces_indexed(owner_id: int) -> None:
    """A post's faces were committed: queue one grouping for the owner within GROUP_DEBOUNCE.

    A 1000-post run calls this 1000 times; the cache key lets one call per
    window through, and its delayed job groups everything that arrived meanwhile.
    """
    if cache.add(f"faces:people:queued:{owner_id}", True, timeout=GROUP_DEBOUNCE):
        at = timezone.now() + dt.timedelta(seconds=GROUP_DEBOUNCE)
        Schedule.objects.create(
            func=GROUP_TASK,
            args=repr(int(owner_id)),
            schedule_type=Schedule.ONCE,
            next_run=at,
            repeats=-1,
            name=f"group_new_faces[{owner_id}] at {at:%H:%M:%S}"[:100],
        )


def run_finished(owner_id: int) -> None:
    """An index run is done: group its last faces now."""
    async_task(GROUP_TASK, int(owner_id), q_options={"task_name": f"group_new_faces[{owner_id}]"})
