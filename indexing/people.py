"""People: faces grouped into persons automatically, and the user's corrections.

Automatic grouping (local engine only: it needs embeddings)
------------------------------------------------------------
Chinese Whispers on a k-nearest-neighbour graph of the owner's faces:

* Only faces worth grouping take part: searchable, with an embedding, quality
  at least ``MIN_QUALITY`` and detection confidence at least
  ``MIN_CONFIDENCE``. Tiny, blurry and unsure faces stay unassigned instead of
  gluing different people together (on the fixtures, the small blurry faces of
  one crowd photo reach cosine 0.41 between different people).
* Every face links to its ``NEIGHBOURS`` most similar faces whose similarity
  (the engines' 0-100 scale, ``local.similarity_from_cosine``) is at least
  ``EDGE_SIMILARITY``, weighted by cosine. The k-NN search is a chunked matrix
  product with a threshold, never an n x n matrix in memory.
* Chinese Whispers: each face in turn takes the label with the largest summed
  edge weight among its neighbours, until nothing changes. Faces the user
  placed (``person_locked``) and, in incremental runs, every face already
  grouped keep their label and only vote; that is how new faces join an
  existing person (a nearest-neighbour vote) and how corrections are never
  undone.
* A new group becomes a Person when its faces come from at least
  ``MIN_PHOTOS`` photos: one face alone is noise and stays unassigned.

Calibration (``bench/people.py`` prints the sweep): on
``shared/fixtures/faces/people`` (38 faces of 9 people) same-person cosines
are 0.537-0.944 and different-person cosines at most 0.337; adding the
strangers of ``groups/`` that pass the quality gate, at most 0.359. The edge
threshold sits in the middle of that gap: cosine 0.4415, similarity 93
(the search default, 80, is cosine 0.363: right for "show me candidates",
too loose for automatic merging at 50,000 faces: on the synthetic library of
``bench/people.py`` pairwise precision is 0.962 at 80 and 0.998 at 93). The
fixtures group with pairwise precision and recall 1.0 anywhere from 70 to 99,
so they bound the threshold but do not pick it; the middle of the gap does.

Incremental grouping (``group_new_faces``) handles the faces that grouping has
not seen yet (``Face.grouped_at`` empty), plus unassigned faces next to them,
against the whole library; a full pass (``regroup``) lets every unlocked face
vote again, starting from its current person so groups stay stable. The
pipeline calls ``faces_indexed`` after each post (debounced: one grouping per
owner per ``GROUP_DEBOUNCE`` seconds) and ``run_finished`` at the end of a run.

Manual corrections
------------------
Renaming, merging, moving a face and "this is me" go through the services
below. A face the user placed is locked (``person_locked``); merging locks
every face of both people; a person the user named, marked as "me" or hid is
never deleted by grouping. With the Rekognition engine a named person is a
Rekognition User (``user_id_for``) whose faces follow every correction
(CreateUser, AssociateFaces, DisassociateFaces, DeleteUser); grouping itself is
skipped there, since Rekognition keeps no embeddings we could cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Q, QuerySet
from django.utils import timezone

from .engines.base import EngineError
from .engines.local import DIM, EMBEDDING_BYTES, cosine_from_similarity
from .models import Face, Person

logger = logging.getLogger(__name__)

LOCAL = "local"
EDGE_SIMILARITY = 93.0  # 0-100: two faces closer than this are linked (see calibration above)
EDGE_COSINE = cosine_from_similarity(EDGE_SIMILARITY)  # 0.4415
NEIGHBOURS = 20  # k of the k-NN graph
MIN_QUALITY = 40.0  # Face.quality (0-100) to take part in grouping
MIN_CONFIDENCE = 80.0  # Face.confidence (0-100) to take part in grouping
MIN_PHOTOS = 2  # a new group needs faces from this many photos to become a person
ITERATIONS = 30  # Chinese Whispers rounds at most (it settles in 5-10)
BLOCK_BYTES = 64 * 1024 * 1024  # score block of the k-NN search
GROUP_DEBOUNCE = 60  # seconds: at most one queued grouping per owner in this window
LOCK_SECONDS = 15 * 60  # a grouping of one owner at a time
WRITE_BATCH = 2000  # ids per UPDATE ... WHERE id IN (...)
ME_NAME = "Me"


# --------------------------------------------------------------------------
# The clustering itself (numpy only, no database)


def knn(
    matrix: np.ndarray,
    rows: np.ndarray | None = None,
    k: int = NEIGHBOURS,
    min_cosine: float = EDGE_COSINE,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar rows of ``matrix`` to each of ``rows`` with cosine >= ``min_cosine``.

    Returns (neighbours, cosines), both ``len(rows) x k``, best first; missing
    neighbours are -1 with cosine 0. A row is never its own neighbour. Scores
    are computed a block of rows at a time (about ``block_bytes`` each), so
    memory stays bounded whatever the library size.
    """
    n = len(matrix)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    neighbours = np.full((len(rows), k), -1, dtype=np.int64)
    cosines = np.zeros((len(rows), k), dtype=np.float32)
    if not n or not len(rows) or k <= 0:
        return neighbours, cosines
    block = int(max(1, min(len(rows), block_bytes // (4 * n))))
    scores = np.empty((block, n), dtype=np.float32)
    transposed = matrix.T
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        out = scores[: len(chunk)]
        np.matmul(matrix[chunk], transposed, out=out)
        out[np.arange(len(chunk)), chunk] = -np.inf  # not itself
        # flatnonzero, not nonzero: 15x faster on a 2-D mask; row-major, so sorted by row.
        hit_row, hit_col = np.divmod(np.flatnonzero(out >= min_cosine), n)
        if not len(hit_row):
            continue
        hit_cos = out[hit_row, hit_col]
        counts = np.bincount(hit_row, minlength=len(chunk))
        rank = np.arange(len(hit_row)) - np.concatenate(([0], np.cumsum(counts)[:-1]))[hit_row]
        light = counts[hit_row] <= k
        if light.any():  # rows with at most k candidates keep them all, best first
            r, c, v = hit_row[light], hit_col[light], hit_cos[light]
            order = np.argsort(r + (1.0 - v.astype(np.float64)) / 4.0, kind="stable")  # (1-v)/4 < 1
            r, c, v = r[order], c[order], v[order]
            slot = rank[light]  # a sort within rows leaves each row's slots where they were
            neighbours[start + r, slot] = c
            cosines[start + r, slot] = v
        heavy = counts[hit_row] > k
        if heavy.any():
            # Rows in big groups: padded candidate tables and argpartition, O(candidates).
            # Rows are bucketed by candidate count (powers of two) so padding stays small.
            buckets = np.ceil(np.log2(counts[hit_row[heavy]])).astype(np.int64)
            for bucket in np.unique(buckets):
                pick = np.flatnonzero(heavy)[buckets == bucket]
                table_rows = np.unique(hit_row[pick])
                where = np.searchsorted(table_rows, hit_row[pick])
                table = np.full((len(table_rows), int(counts[table_rows].max())), -np.inf, dtype=np.float32)
                columns = np.zeros(table.shape, dtype=np.int64)
                table[where, rank[pick]] = hit_cos[pick]
                columns[where, rank[pick]] = hit_col[pick]
                top = np.argpartition(table, table.shape[1] - k, axis=1)[:, -k:]
                values = np.take_along_axis(table, top, axis=1)
                order = np.argsort(-values, axis=1, kind="stable")
                neighbours[start + table_rows] = np.take_along_axis(columns, np.take_along_axis(top, order, axis=1), axis=1)
                cosines[start + table_rows] = np.take_along_axis(values, order, axis=1)
    return neighbours, cosines


def chinese_whispers(
    labels: np.ndarray,
    rows: np.ndarray,
    neighbours: np.ndarray,
    weights: np.ndarray,
    iterations: int = ITERATIONS,
    seed: int = 0,
) -> np.ndarray:
    """Chinese Whispers (Biemann 2006) where only ``rows`` update their label.

    ``labels`` holds a label per matrix row (the other rows keep theirs and only
    vote); ``neighbours``/``weights`` are the k-NN lists of ``rows``. Each round
    visits the free rows in a random order, in batches of about 1/64 of them (a
    batch votes on the labels of the previous one, which keeps the result of the
    sequential algorithm at numpy speed), and each row takes the label with
    the largest summed weight among its neighbours. Stops when a round changes
    nothing. Returns the new labels (a copy); ties go to the smaller label, and
    the seed makes runs repeatable.
    """
    labels = labels.copy()
    rows = np.asarray(rows, dtype=np.int64)
    linked = neighbours[:, 0] >= 0
    local = np.flatnonzero(linked)  # positions in rows/neighbours
    if not len(local):
        return labels
    span = int(labels.max()) + 1
    batch = max(1, len(local) // 64)
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        changed = 0
        order = rng.permutation(local)
        for start in range(0, len(order), batch):
            picked = order[start : start + batch]
            nbr = neighbours[picked]
            valid = nbr >= 0
            which = np.nonzero(valid)[0]  # position in the batch, per edge
            votes = labels[nbr[valid]]
            key = which.astype(np.int64) * span + votes
            unique, inverse = np.unique(key, return_inverse=True)
            totals = np.bincount(inverse, weights=weights[picked][valid])
            voter = unique // span
            # Per voter the heaviest label: sort by voter, then weight descending.
            best = np.lexsort((-totals, voter))
            first = best[np.r_[True, voter[best][1:] != voter[best][:-1]]]
            winners = unique[first] % span
            targets = rows[picked[voter[first]]]
            moved = labels[targets] != winners
            if moved.any():
                labels[targets[moved]] = winners[moved]
                changed += int(moved.sum())
        if not changed:
            break
    return labels


def cluster(matrix: np.ndarray, **kwargs) -> np.ndarray:
    """Labels for every row of ``matrix`` from scratch (benchmarks and tests)."""
    neighbours, cosines = knn(matrix, **{k: v for k, v in kwargs.items() if k in ("k", "min_cosine")})
    labels = np.arange(len(matrix), dtype=np.int64)
    return chinese_whispers(labels, np.arange(len(matrix)), neighbours, cosines)


def pairwise_scores(truth, predicted) -> tuple[float, float]:
    """Pairwise precision and recall of a grouping against true identities.

    A pair of faces is predicted together when both have the same label that is
    not None (None = unassigned), and truly together when their identities are
    equal. Counted from the contingency table, so 50,000 faces take milliseconds.
    """
    from collections import Counter

    def pairs(counts) -> int:
        return sum(c * (c - 1) // 2 for c in counts)

    truth, predicted = list(truth), list(predicted)
    together_true = pairs(Counter(truth).values())
    assigned = [(t, p) for t, p in zip(truth, predicted) if p is not None]
    together_pred = pairs(Counter(p for _, p in assigned).values())
    both = pairs(Counter(assigned).values())
    precision = both / together_pred if together_pred else 1.0
    recall = both / together_true if together_true else 1.0
    return precision, recall


# --------------------------------------------------------------------------
# Grouping an owner's library


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
    """The owner's faces good enough to group (local engine, sharp, sure, with an embedding)."""
    return (
        Face.objects.filter(
            owner_id=owner_id,
            engine=LOCAL,
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
    if getattr(settings, "FACES_ENGINE", LOCAL) != LOCAL and not Face.objects.filter(
        owner_id=owner_id, engine=LOCAL
    ).exists():
        return GroupingReport(skipped="Automatic grouping needs the local engine's embeddings.")
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
            _refresh_covers(emptied)
            report.deleted_people = _delete_empty_automatic(owner_id, emptied)


def _refresh_covers(person_ids) -> None:
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
        from django_q.models import Schedule

        at = timezone.now() + dt.timedelta(seconds=GROUP_DEBOUNCE)
        Schedule.objects.create(
            func="indexing.people.group_new_faces",
            args=repr(int(owner_id)),
            schedule_type=Schedule.ONCE,
            next_run=at,
            repeats=-1,
            name=f"group_new_faces[{owner_id}] at {at:%H:%M:%S}"[:100],
        )


def run_finished(owner_id: int) -> None:
    """An index run is done: group its last faces now."""
    from django_q.tasks import async_task

    async_task(
        "indexing.people.group_new_faces", int(owner_id), q_options={"task_name": f"group_new_faces[{owner_id}]"}
    )


# --------------------------------------------------------------------------
# People as the user sees them


def people_with_counts(owner, include_hidden: bool = False) -> QuerySet:
    """The owner's people that have photos, "me" first, then by number of photos."""
    people = Person.objects.filter(owner=owner)
    if not include_hidden:
        people = people.filter(hidden=False)
    return (
        people.annotate(photo_count=Count("faces__photo", distinct=True))
        .filter(photo_count__gt=0)
        .select_related("cover_face")
        .order_by("-is_me", "-photo_count", "name", "pk")
    )


def photo_count(person: Person) -> int:
    """Photos the person is in (two faces of one photo count once)."""
    return person.faces.values("photo").distinct().count()


def ensure_covers(people) -> None:
    """Fix missing or stale covers of the given (already loaded) people."""
    stale = [p.pk for p in people if p.cover_face_id is None or p.cover_face.person_id != p.pk]
    if stale:
        _refresh_covers(stale)
        covers = dict(Person.objects.filter(pk__in=stale).values_list("pk", "cover_face_id"))
        for person in people:
            if person.pk in covers:
                person.cover_face_id = covers[person.pk]
                person.cover_face = Face.objects.filter(pk=covers[person.pk]).first()


def choices_for(owner, exclude: Person | None = None, unnamed_limit: int = 50) -> list[Person]:
    """People to pick from in a form: every named one, then the biggest unnamed groups."""
    people = people_with_counts(owner, include_hidden=True)
    if exclude is not None:
        people = people.exclude(pk=exclude.pk)
    named = list(people.exclude(name="").order_by("-is_me", "name", "pk"))
    unnamed = list(people.filter(name="")[:unnamed_limit])
    return named + unnamed


# --------------------------------------------------------------------------
# Corrections


class PeopleError(Exception):
    """A correction that cannot be made; the message is safe to show."""


def clean_name(name: str) -> str:
    return " ".join((name or "").split())[: Person._meta.get_field("name").max_length]


def _named(owner, name: str, exclude: Person | None = None) -> Person | None:
    people = Person.objects.filter(owner=owner, name__iexact=name)
    if exclude is not None:
        people = people.exclude(pk=exclude.pk)
    return people.order_by("pk").first()


def rename_person(person: Person, name: str) -> Person:
    """Name (or unname) a person. Naming it like another person merges the two.

    Returns the person that carries the name afterwards.
    """
    name = clean_name(name)
    if name:
        other = _named(person.owner, name, exclude=person)
        if other is not None:
            return merge_people(other, person)
    was_named = bool(person.name)
    Person.objects.filter(pk=person.pk).update(name=name)
    person.name = name
    if name and not was_named:
        _rekognition_adopt(person)
    elif not name and was_named and not person.is_me:
        _rekognition_drop(person)
    return person


def merge_people(target: Person, source: Person) -> Person:
    """Move every face of ``source`` into ``target`` and delete ``source``.

    The merge confirms both people: all their faces are locked, so later
    grouping cannot split them again. ``target`` keeps its name, or takes
    the source's when it has none; "me" carries over.
    """
    if target.pk == source.pk or target.owner_id != source.owner_id:
        raise PeopleError("Pick another person to merge with.")
    source_user = source.rekognition_user_id
    moved = list(Face.objects.filter(person=source, engine="rekognition").values_list("engine_face_id", flat=True))
    with transaction.atomic():
        locked = {p.pk: p for p in Person.objects.select_for_update().filter(pk__in=[target.pk, source.pk])}
        if len(locked) != 2:
            raise PeopleError("That person no longer exists.")
        target, source = locked[target.pk], locked[source.pk]
        Face.objects.filter(person=source).update(person=target, person_locked=True)
        Face.objects.filter(person=target).update(person_locked=True)
        target.name = target.name or source.name
        target.is_me = target.is_me or source.is_me
        target.cover_face_id = target.cover_face_id or source.cover_face_id
        if target.is_me:
            Person.objects.filter(owner_id=target.owner_id, is_me=True).exclude(pk__in=[target.pk]).update(is_me=False)
        source.delete()
        target.save(update_fields=["name", "is_me", "cover_face"])
    if source_user:
        _rekognition_call("delete_user", target.owner, source_user)
    if target.name or target.is_me:
        if target.rekognition_user_id:
            _rekognition_associate(target, moved)
        else:
            _rekognition_adopt(target)
    return target


def move_faces(
    person: Person, face_ids, target: Person | None = None, *, new_name: str | None = None
) -> Person | None:
    """Take faces out of ``person`` and lock them there, so grouping never puts them back.

    They go to ``target``; or, without one, to a new person when ``new_name`` is
    given (a string, possibly empty; a name another person has means that
    person); or to nobody. Returns the person the faces went to, if any.
    """
    faces = Face.objects.filter(owner_id=person.owner_id, person=person, pk__in=list(face_ids))
    if not faces.exists():
        raise PeopleError("Select at least one photo of this person.")
    if target is not None and (target.owner_id != person.owner_id or target.pk == person.pk):
        raise PeopleError("Pick another person.")
    return _place(person.owner, faces, target, new_name)


def assign_face(face: Face, name: str) -> Person:
    """Put one face into the person with this name, creating it if needed (face page)."""
    name = clean_name(name)
    if not name:
        raise PeopleError("Type a name.")
    target = _named(face.owner, name)
    if target is not None and target.pk == face.person_id:
        Face.objects.filter(pk=face.pk).update(person_locked=True)
        return target
    return _place(face.owner, Face.objects.filter(pk=face.pk), target, name)


def mark_me(face: Face) -> Person:
    """"This is me": the face's person becomes "me" (named "Me" if unnamed), or the face
    joins the existing "me", or a new "Me" is made; the face is locked either way.

    When another person already is "me", only this face moves there: the rest
    of its group is the user's to merge, so a wrong group never joins "me" whole.
    """
    owner = face.owner
    me = Person.objects.filter(owner=owner, is_me=True).order_by("pk").first()
    person = face.person
    if me is not None:
        if person is not None and person.pk == me.pk:
            Face.objects.filter(pk=face.pk).update(person_locked=True)
            return me
        return _place(owner, Face.objects.filter(pk=face.pk), me, None)
    if person is not None:
        with transaction.atomic():
            Person.objects.filter(pk=person.pk).update(is_me=True, name=person.name or ME_NAME)
            Face.objects.filter(pk=face.pk).update(person_locked=True)
        person.refresh_from_db()
        if not person.rekognition_user_id:
            _rekognition_adopt(person)
        return person
    me = Person.objects.create(owner=owner, name=ME_NAME, is_me=True, cover_face=face)
    return _place(owner, Face.objects.filter(pk=face.pk), me, None)


def set_hidden(person: Person, hidden: bool) -> None:
    """Hidden people leave the people page (unless shown) and the "This looks like" hint."""
    Person.objects.filter(pk=person.pk).update(hidden=hidden)
    person.hidden = hidden


def _place(owner, faces: QuerySet, target: Person | None, new_name: str | None) -> Person | None:
    """Move ``faces`` to ``target`` (or a new person named ``new_name``; nobody when
    that is None too), lock them, and keep covers and Rekognition Users in step."""
    moved = list(faces.values_list("pk", "engine", "engine_face_id", "person_id"))
    sources = {m[3] for m in moved if m[3]}
    users = dict(Person.objects.filter(pk__in=sources).values_list("pk", "rekognition_user_id"))
    with transaction.atomic():
        if target is None and new_name is not None:
            name = clean_name(new_name)
            target = (_named(owner, name) if name else None) or Person.objects.create(owner=owner, name=name)
        Face.objects.filter(pk__in=[m[0] for m in moved]).update(person=target, person_locked=True)
        _refresh_covers(sources | ({target.pk} if target else set()))
        # A group the user emptied is gone, unless they named it or it is "me".
        Person.objects.filter(pk__in=sources - ({target.pk} if target else set()), name="", is_me=False).filter(
            faces__isnull=True
        ).delete()
    # Rekognition: the faces leave their old Users and join the target's.
    leaving: dict[str, list[str]] = {}
    for _, engine, engine_face_id, person_id in moved:
        user_id = users.get(person_id, "")
        if engine == "rekognition" and user_id and (target is None or user_id != target.rekognition_user_id):
            leaving.setdefault(user_id, []).append(engine_face_id)
    for user_id, ids in leaving.items():
        _rekognition_call("disassociate_faces", owner, user_id, ids)
    if target is not None:
        target.refresh_from_db()
        if target.name or target.is_me:
            if target.rekognition_user_id:
                _rekognition_associate(target, [m[2] for m in moved if m[1] == "rekognition"])
            else:
                _rekognition_adopt(target)
    return target


# --------------------------------------------------------------------------
# Rekognition Users: a named person is a User of the owner's collection


def _rekognition_on() -> bool:
    return getattr(settings, "FACES_ENGINE", LOCAL) == "rekognition"


def _rekognition_call(method: str, owner, *args) -> bool:
    """Call a Users API method of the Rekognition engine; log (never raise) failures.

    The database is the truth: a failed call leaves the User behind the
    person, and ``sync_rekognition_users`` (``faces_people --users``) repairs it.
    """
    if not _rekognition_on():
        return False
    from .engines import get_engine

    try:
        getattr(get_engine("rekognition"), method)(owner, *args)
        return True
    except EngineError as exc:
        logger.warning("Rekognition %s for owner %s failed: %s", method, getattr(owner, "pk", owner), exc)
        return False


def _rekognition_adopt(person: Person) -> None:
    """Create the person's User (once) and associate all of their Rekognition faces."""
    if not _rekognition_on():
        return
    from .engines.rekognition import user_id_for

    user_id = person.rekognition_user_id or user_id_for(person)
    if not person.rekognition_user_id:
        if not _rekognition_call("create_user", person.owner, user_id):
            return
        Person.objects.filter(pk=person.pk).update(rekognition_user_id=user_id)
        person.rekognition_user_id = user_id
    face_ids = list(person.faces.filter(engine="rekognition").values_list("engine_face_id", flat=True))
    _rekognition_associate(person, face_ids)


def _rekognition_associate(person: Person, face_ids: list[str]) -> None:
    if face_ids and person.rekognition_user_id:
        # The user chose these faces: no similarity bar (UserMatchThreshold 0).
        _rekognition_call("associate_faces", person.owner, person.rekognition_user_id, face_ids, 0.0)


def _rekognition_drop(person: Person) -> None:
    """The person is no longer named: delete their User."""
    if person.rekognition_user_id and _rekognition_call("delete_user", person.owner, person.rekognition_user_id):
        Person.objects.filter(pk=person.pk).update(rekognition_user_id="")
        person.rekognition_user_id = ""


def sync_rekognition_users(owner) -> int:
    """Make every named person's User hold exactly their faces (repair after failures)."""
    if not _rekognition_on():
        return 0
    count = 0
    for person in Person.objects.filter(owner=owner).filter(~Q(name="") | Q(is_me=True)):
        _rekognition_adopt(person)
        count += 1
    return count


# --------------------------------------------------------------------------
# Search: "This looks like Mom — see all 143 photos"


@dataclass
class PersonHint:
    person: Person
    photos: int


def person_hint(owner, matches, image: bytes | None = None, threshold: float | None = None) -> PersonHint | None:
    """The named, visible person a search result shows, if any.

    The best three matching faces decide first; with Rekognition and no named
    face among them, SearchUsersByImage asks which User the query looks like.
    """
    for match in list(matches)[:3]:
        person = match.face.person
        if person is not None and person.name and not person.hidden:
            return PersonHint(person, photo_count(person))
    if image is None or not _rekognition_on():
        return None
    users = Person.objects.filter(owner=owner, hidden=False).exclude(name="").exclude(rekognition_user_id="")
    if not users.exists():
        return None
    from .engines import get_engine

    try:
        found = get_engine("rekognition").search_users_by_image(
            owner, image, threshold if threshold is not None else settings.FACES_DEFAULT_THRESHOLD, limit=1
        )
    except EngineError as exc:
        logger.info("SearchUsersByImage failed: %s", exc)
        return None
    for match in found:
        person = users.filter(rekognition_user_id=match.user_id).first()
        if person is not None:
            return PersonHint(person, photo_count(person))
    return None
