"""The user's corrections to people: rename, merge, move faces, name a face, "this is me", hide.

A face the user placed is locked (``person_locked``) so grouping never moves it
again; merging locks every face of both people; a person the user named,
marked as "me" or hid is never deleted by grouping. The database is the truth
about people: after each correction the engine's people hooks
(``person_named``, ``faces_moved``, ``person_removed``) let an engine that keeps
its own notion of people follow, and ``sync_people`` repairs what they missed.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from ..engines import get_engine
from ..models import Face, Person
from .grouping import refresh_covers

ME_NAME = "Me"


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
        get_engine().person_named(person)
    elif not name and was_named and not person.is_me:
        get_engine().person_removed(person)
    return person


def merge_people(target: Person, source: Person) -> Person:
    """Move every face of ``source`` into ``target`` and delete ``source``.

    The merge confirms both people: all their faces are locked, so later
    grouping cannot split them again. ``target`` keeps its name, or takes
    the source's when it has none; "me" carries over.
    """
    if target.pk == source.pk or target.owner_id != source.owner_id:
        raise PeopleError("Pick another person to merge with.")
    with transaction.atomic():
        locked = {p.pk: p for p in Person.objects.select_for_update().filter(pk__in=[target.pk, source.pk])}
        if len(locked) != 2:
            raise PeopleError("That person no longer exists.")
        kept, gone = locked[target.pk], locked[source.pk]
        Face.objects.filter(person=gone).update(person=kept, person_locked=True)
        Face.objects.filter(person=kept).update(person_locked=True)
        kept.name = kept.name or gone.name
        kept.is_me = kept.is_me or gone.is_me
        kept.cover_face_id = kept.cover_face_id or gone.cover_face_id
        if kept.is_me:
            Person.objects.filter(owner_id=kept.owner_id, is_me=True).exclude(pk__in=[kept.pk]).update(is_me=False)
        gone.delete()
        kept.save(update_fields=["name", "is_me", "cover_face"])
    engine = get_engine()
    engine.person_removed(gone)
    if kept.name or kept.is_me:
        engine.person_named(kept)
    return kept


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
        get_engine().person_named(person)
        return person
    me = Person.objects.create(owner=owner, name=ME_NAME, is_me=True, cover_face=face)
    return _place(owner, Face.objects.filter(pk=face.pk), me, None)


def set_hidden(person: Person, hidden: bool) -> None:
    """Hidden people leave the people page (unless shown) and the "This looks like" hint."""
    Person.objects.filter(pk=person.pk).update(hidden=hidden)
    person.hidden = hidden


def _place(owner, faces: QuerySet, target: Person | None, new_name: str | None) -> Person | None:
    """Move ``faces`` to ``target`` (or a new person named ``new_name``; nobody when
    that is None too), lock them, and keep covers and the engine's people in step.

    ``faces_moved`` is also how the engine hears of a target named by this very
    move (a new name, a new "Me"): Rekognition creates its User there, so
    calling ``person_named`` too would create it twice.
    """
    engine = get_engine()
    moved = list(faces.values_list("pk", "person_id"))
    # (engine face id, previous person) of the faces this engine knows, read before they move.
    moves = list(faces.filter(engine=engine.name).values_list("engine_face_id", "person_id"))
    sources = {person_id for _, person_id in moved if person_id}
    with transaction.atomic():
        if target is None and new_name is not None:
            name = clean_name(new_name)
            target = (_named(owner, name) if name else None) or Person.objects.create(owner=owner, name=name)
        Face.objects.filter(pk__in=[pk for pk, _ in moved]).update(person=target, person_locked=True)
        refresh_covers(sources | ({target.pk} if target else set()))
        # A group the user emptied is gone, unless they named it or it is "me".
        Person.objects.filter(pk__in=sources - ({target.pk} if target else set()), name="", is_me=False).filter(
            faces__isnull=True
        ).delete()
    if target is not None:
        target.refresh_from_db()
    engine.faces_moved(owner, moves, target)
    return target
