"""People pages: the people of a library, one person's photos, and the corrections.

Thin views over ``indexing.people`` (corrections, queries): every lookup is scoped to the signed-in
owner (another user's ids are 404, never 403), every change is a POST with
CSRF, and nothing here runs before face-processing consent.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.decorators import consent_required, safe_next
from indexing.people import corrections, grouping, queries
from indexing.models import Face, Person

PEOPLE_PER_PAGE = 120
PHOTOS_PER_PAGE = 60


def _person(request: HttpRequest, person_id: int) -> Person:
    return get_object_or_404(Person, pk=person_id, owner=request.user)


def _other_person(request: HttpRequest, field: str) -> Person | None:
    """The person picked in a form field, if it is one of the owner's (404 otherwise)."""
    value = request.POST.get(field, "")
    if not value.isdigit():
        return None
    return get_object_or_404(Person, pk=int(value), owner=request.user)


@consent_required
def people_list(request: HttpRequest) -> HttpResponse:
    """People by number of photos, each with a cover face; unnamed ones can be named here."""
    show_hidden = request.GET.get("hidden") == "1"
    page = Paginator(queries.people_with_counts(request.user, include_hidden=show_hidden), PEOPLE_PER_PAGE).get_page(
        request.GET.get("page")
    )
    listed = list(page.object_list)
    queries.ensure_covers(listed)
    waiting = grouping.eligible_faces(request.user.pk).filter(grouped_at__isnull=True).count()
    return render(
        request,
        "search/people.html",
        {
            "people": listed,
            "page": page,
            "show_hidden": show_hidden,
            "hidden_count": Person.objects.filter(owner=request.user, hidden=True).count(),
            "waiting": waiting,
        },
    )


@consent_required
def person_detail(request: HttpRequest, person_id: int) -> HttpResponse:
    """All photos of one person, newest first, with the corrections."""
    person = _person(request, person_id)
    faces = (
        Face.objects.filter(owner=request.user, person=person)
        .select_related("photo__post")
        .order_by("-photo__post__timestamp", "-photo_id", "-pk")
    )
    page = Paginator(faces, PHOTOS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "search/person.html",
        {
            "person": person,
            "faces": page.object_list,
            "page": page,
            "photo_count": queries.photo_count(person),
            "others": queries.choices_for(request.user, exclude=person),
        },
    )


@consent_required
@require_POST
def person_rename(request: HttpRequest, person_id: int) -> HttpResponse:
    person = _person(request, person_id)
    name = request.POST.get("name", "")
    result = corrections.rename_person(person, name)
    if result.pk != person.pk:
        messages.success(request, f"{result.name} already existed: the two are one person now.")
        return redirect("person", result.pk)
    messages.success(request, f"Named {result.name}." if result.name else "The name was removed.")
    return redirect(safe_next(request, reverse("person", args=[result.pk])))


@consent_required
@require_POST
def person_merge(request: HttpRequest, person_id: int) -> HttpResponse:
    """Merge the picked person into this one (this one stays, with both people's photos)."""
    person = _person(request, person_id)
    other = _other_person(request, "other")
    if other is None:
        messages.error(request, "Pick the person to merge with.")
        return redirect("person", person.pk)
    try:
        result = corrections.merge_people(person, other)
    except corrections.PeopleError as exc:
        messages.error(request, str(exc))
        return redirect("person", person.pk)
    messages.success(request, f"Merged: {result} now has {queries.photo_count(result)} photos.")
    return redirect("person", result.pk)


@consent_required
@require_POST
def person_move(request: HttpRequest, person_id: int) -> HttpResponse:
    """Move the selected faces out: to another person, a new person, or nobody."""
    person = _person(request, person_id)
    face_ids = [int(v) for v in request.POST.getlist("faces") if v.isdigit()]
    choice = request.POST.get("target", "")
    target = _other_person(request, "target")
    new_name = request.POST.get("name", "") if choice == "new" else None
    if target is None and choice not in ("new", "none"):
        messages.error(request, "Pick where the selected photos go.")
        return redirect("person", person.pk)
    try:
        result = corrections.move_faces(person, face_ids, target, new_name=new_name)
    except corrections.PeopleError as exc:
        messages.error(request, str(exc))
        return redirect("person", person.pk)
    count = len(face_ids)
    where = f"to {result}" if result is not None else "out of this person"
    messages.success(request, f"Moved {count} photo{'s' if count != 1 else ''} {where}.")
    if Person.objects.filter(pk=person.pk).exists():
        return redirect("person", person.pk)
    return redirect("person", result.pk) if result is not None else redirect("people")


@consent_required
@require_POST
def person_hide(request: HttpRequest, person_id: int) -> HttpResponse:
    person = _person(request, person_id)
    hidden = request.POST.get("hidden", "1") == "1"
    corrections.set_hidden(person, hidden)
    messages.success(request, f"{person} is hidden." if hidden else f"{person} is shown again.")
    return redirect(safe_next(request, reverse("person", args=[person.pk])))


@consent_required
@require_POST
def face_me(request: HttpRequest, face_id: int) -> HttpResponse:
    """ "This is me" on a face."""
    face = get_object_or_404(Face.objects.select_related("person"), pk=face_id, owner=request.user)
    me = corrections.mark_me(face)
    messages.success(request, f"Got it: this is you. See all your photos under {me}.")
    return redirect("face", face.pk)


@consent_required
@require_POST
def face_name(request: HttpRequest, face_id: int) -> HttpResponse:
    """Say who a face is: into the person with that name, or a new one."""
    face = get_object_or_404(Face.objects.select_related("person"), pk=face_id, owner=request.user)
    try:
        person = corrections.assign_face(face, request.POST.get("name", ""))
    except corrections.PeopleError as exc:
        messages.error(request, str(exc))
        return redirect("face", face.pk)
    messages.success(request, f"This is {person}.")
    return redirect("face", face.pk)


@consent_required
@require_POST
def people_group(request: HttpRequest) -> HttpResponse:
    """Group the faces not grouped yet, in the background."""
    grouping.run_finished(request.user.pk)
    messages.success(request, "Grouping your new faces; refresh in a minute.")
    return redirect("people")

