"""Undo the last move or merge of people, from a note kept in the session.

Only the latest correction can be undone (the message that reports it carries
the Undo button). Undoing calls the same people corrections the pages use, so
locks, covers and the engine's people stay in step.
"""

from __future__ import annotations

from django.http import HttpRequest

from indexing.people import corrections as people
from indexing.models import Face, Person

SESSION_KEY = "people_undo"


def remember_move(request: HttpRequest, person: Person, face_ids: list[int]) -> None:
    """Note that these faces left ``person`` (before the move is made)."""
    ids = list(Face.objects.filter(owner=request.user, person=person, pk__in=face_ids).values_list("pk", flat=True))
    request.session[SESSION_KEY] = {"faces": ids, "person": person.pk, "name": person.name, "hidden": person.hidden}


def remember_merge(request: HttpRequest, target: Person, source: Person) -> None:
    """Note which faces were ``source``'s and what ``target`` was called (before the merge)."""
    ids = list(Face.objects.filter(owner=request.user, person=source).values_list("pk", flat=True))
    request.session[SESSION_KEY] = {
        "faces": ids, "person": source.pk, "name": source.name, "hidden": source.hidden,
        "target": target.pk, "target_name": target.name,
    }


def undo_last(request: HttpRequest) -> Person | None:
    """Put the faces of the last correction back; returns the person they are in again."""
    note = request.session.pop(SESSION_KEY, None)
    if not note:
        raise people.PeopleError("There is nothing to undo.")
    owner = request.user
    faces = Face.objects.filter(owner=owner, pk__in=note["faces"])
    if not faces.exists():
        raise people.PeopleError("Those photos are gone, so there is nothing to undo.")
    target = Person.objects.filter(owner=owner, pk=note.get("target")).first()
    if target is not None and target.name != note["target_name"] and target.name == note["name"]:
        people.rename_person(target, note["target_name"])  # the merge had given it the other's name
    original = Person.objects.filter(owner=owner, pk=note["person"]).first()
    for current_id in set(faces.values_list("person_id", flat=True)):
        if original is not None and current_id == original.pk:
            continue
        ids = list(faces.filter(person_id=current_id).values_list("pk", flat=True))
        if current_id is None:
            original = _back_from_nobody(owner, ids, original, note["name"])
            continue
        current = Person.objects.get(pk=current_id)
        if original is not None:
            people.move_faces(current, ids, original)
        else:
            original = people.move_faces(current, ids, None, new_name=note["name"])
    if original is not None and note.get("hidden") and not original.hidden:
        people.set_hidden(original, True)
    return original


def _back_from_nobody(owner, ids: list[int], original: Person | None, name: str) -> Person:
    """Faces moved to nobody: give them back to their person (made again if it was deleted)."""
    faces = Face.objects.filter(owner=owner, pk__in=ids)
    if name:
        for face in faces:
            original = people.assign_face(face, name)
        return original
    if original is None:
        original = Person.objects.create(owner=owner, name="")
    faces.update(person=original, person_locked=True)  # an unnamed person has no engine-side User
    if original.cover_face_id is None:
        Person.objects.filter(pk=original.pk).update(cover_face_id=ids[0])
    return original
