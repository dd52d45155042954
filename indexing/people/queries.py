"""People as the user sees them: lists with photo counts, covers, form choices, the search hint."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, QuerySet

from ..engines import get_engine
from ..engines.base import EngineError
from ..models import Face, Person
from .grouping import refresh_covers

logger = logging.getLogger(__name__)


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
        refresh_covers(stale)
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
# Search: "This looks like Mom — see all 143 photos"


@dataclass
class PersonHint:
    person: Person
    photos: int


def person_hint(
    owner, matches, image: bytes | None = None, threshold: float | None = None
) -> PersonHint | None:
    """The named, visible person a search result shows, if any.

    The best three matching faces decide first; when none of them is named,
    the engine is asked which of the owner's people the query looks like (an
    engine without its own notion of people answers nobody).
    """
    for match in list(matches)[:3]:
        person = match.face.person
        if person is not None and person.name and not person.hidden:
            return PersonHint(person, photo_count(person))
    if image is None:
        return None
    named = Person.objects.filter(owner=owner, hidden=False).exclude(name="")
    if not named.exists():
        return None
    try:
        found = get_engine().search_people_by_image(
            owner, image, threshold if threshold is not None else settings.FACES_DEFAULT_THRESHOLD, limit=1
        )
    except EngineError as exc:
        logger.info("Searching people by image failed: %s", exc)
        return None
    for match in found:
        person = named.filter(pk=match.person_id).first()
        if person is not None:
            return PersonHint(person, photo_count(person))
    return None
