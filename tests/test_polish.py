"""Library counts, the delete confirmation, indexing again, undo of people corrections,
the photo page and the same photo imported twice (server side; the browser tests see the pages)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from indexing.deletion import delete_face_data
from indexing.models import Face, IndexRun, Person, Photo, Post, Source
from indexing.reindex import reindex_stored_photos
from search.services import same_photo
from tests.conftest import make_user
from tests.test_people import add_face

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def photo_with_face(owner, name: str, width=800, height=600, box=(0.3, 0.2, 0.3, 0.4), sha="") -> Face:
    source, _ = Source.objects.get_or_create(owner=owner, kind=Source.Kind.UPLOAD, defaults={"name": "uploads"})
    post = Post.objects.create(owner=owner, source=source, external_id=name, status=Post.Status.INDEXED)
    photo = Photo.objects.create(owner=owner, post=post, external_id=name, status=Photo.Status.INDEXED,
                                 width=width, height=height, sha256=sha, original=f"photos/{owner.pk}/{name}")
    x, y, w, h = box
    return add_face(owner, None, photo=photo, box_x=x, box_y=y, box_w=w, box_h=h)


def test_same_photo_needs_the_same_shape_place_and_match():
    owner = make_user("same@example.com")
    a = photo_with_face(owner, "a.jpg")
    resized = photo_with_face(owner, "b.jpg", width=600, height=450, box=(0.302, 0.199, 0.3, 0.4))
    assert same_photo(a, resized, 0.7)
    assert not same_photo(a, resized, 6.0)  # a clearly different match: another photo
    assert not same_photo(a, photo_with_face(owner, "c.jpg", box=(0.5, 0.2, 0.3, 0.4)), 0.0)
    assert not same_photo(a, photo_with_face(owner, "d.jpg", width=600, height=600), 0.0)
    twin = photo_with_face(owner, "e.jpg", width=100, height=900, box=(0, 0, 1, 1), sha="f" * 64)
    assert same_photo(photo_with_face(owner, "f.jpg", sha="f" * 64), twin, 30.0)


def test_delete_confirmation_lists_what_goes_and_deletes_nothing():
    owner = make_user("confirm@example.com")
    faces = [photo_with_face(owner, f"{n}.jpg") for n in range(3)]
    mom = Person.objects.create(owner=owner, name="Mom", cover_face=faces[0])
    Person.objects.create(owner=owner, name="")
    Face.objects.filter(pk=faces[0].pk).update(person=mom)
    page = client_for(owner).get(reverse("delete_confirm")).content.decode()
    assert '<b id="confirm-faces">3</b>' in page and '<b id="confirm-people">2</b>' in page
    assert '<span id="confirm-names">Mom</span>' in page
    assert Face.objects.filter(owner=owner).count() == 3


def test_home_and_settings_agree_after_deleting_and_index_again_starts_runs():
    owner = make_user("again@example.com")
    for n in range(2):
        photo_with_face(owner, f"{n}.jpg")
    client = client_for(owner)
    delete_face_data(owner)
    home = client.get("/").content.decode()
    settings_page = client.get(reverse("privacy")).content.decode()
    assert '<b id="home-photos">2</b>' in home and '<b id="count-photos">2</b>' in settings_page
    assert '<b id="home-faces">0</b>' in home and '<b id="count-faces">0</b>' in settings_page
    assert 'id="reindex"' in settings_page and "face data was deleted" in client.get(reverse("gallery")).content.decode()
    response = client.post(reverse("reindex"))
    run = IndexRun.objects.get(owner=owner)
    assert response.status_code == 302 and response["Location"] == reverse("run", args=[run.pk])
    assert run.status == IndexRun.Status.QUEUED
    assert reindex_stored_photos(owner).runs == [run]  # a second click reuses the running import


def test_index_again_leaves_an_unlinked_instagram_account_waiting():
    owner = make_user("unlinked@example.com")
    source = Source.objects.create(owner=owner, kind=Source.Kind.INSTAGRAM, name="@me", active=False)
    Post.objects.create(owner=owner, source=source, external_id="1", status=Post.Status.PENDING)
    outcome = reindex_stored_photos(owner)
    assert outcome.runs == [] and outcome.unlinked == [source]
    assert not IndexRun.objects.filter(owner=owner).exists()


def test_undo_a_move_to_nobody_brings_back_a_deleted_unnamed_person():
    owner = make_user("undo-none@example.com")
    faces = [photo_with_face(owner, f"{n}.jpg") for n in range(2)]
    person = Person.objects.create(owner=owner, cover_face=faces[0])
    Face.objects.filter(pk__in=[f.pk for f in faces]).update(person=person)
    client = client_for(owner)
    client.post(reverse("person_move", args=[person.pk]), {"faces": [f.pk for f in faces], "target": "none"})
    assert not Person.objects.filter(pk=person.pk).exists()  # an emptied unnamed group goes
    response = client.post(reverse("people_undo"))
    back = {f.person_id for f in Face.objects.filter(pk__in=[f.pk for f in faces])}
    assert len(back) == 1 and None not in back
    assert response["Location"] == reverse("person", args=[back.pop()])
    assert client.post(reverse("people_undo")).status_code == 302  # nothing left to undo: a message, no error


def test_undo_a_merge_restores_both_names():
    owner = make_user("undo-merge@example.com")
    a, b = (photo_with_face(owner, f"{n}.jpg") for n in range(2))
    target = Person.objects.create(owner=owner, name="")
    source = Person.objects.create(owner=owner, name="Dad")
    Face.objects.filter(pk=a.pk).update(person=target)
    Face.objects.filter(pk=b.pk).update(person=source)
    client = client_for(owner)
    client.post(reverse("person_merge", args=[target.pk]), {"other": source.pk})
    assert Person.objects.get(pk=target.pk).name == "Dad"  # the merge gave it the other's name
    client.post(reverse("people_undo"))
    assert Person.objects.get(pk=target.pk).name == ""
    assert Face.objects.get(pk=b.pk).person.name == "Dad"
    assert Face.objects.get(pk=a.pk).person_id == target.pk


def test_photo_page_is_the_owners_only_and_has_a_fragment():
    owner, stranger = make_user("photo-owner@example.com"), make_user("photo-stranger@example.com")
    face = photo_with_face(owner, "p.jpg")
    url = reverse("photo", args=[face.photo_id])
    assert client_for(stranger).get(url).status_code == 404
    full = client_for(owner).get(url).content.decode()
    fragment = client_for(owner).get(url + "?fragment=1").content.decode()
    assert "<html" in full and "<html" not in fragment
    assert f'href="/faces/{face.pk}/"' in fragment and "No date" in fragment


def test_undated_photos_say_so_and_come_after_dated_ones():
    import datetime as dt
    import re

    owner = make_user("undated@example.com")
    undated, dated = photo_with_face(owner, "undated.jpg"), photo_with_face(owner, "dated.jpg")
    Post.objects.filter(photos=dated.photo).update(timestamp=dt.datetime(2020, 5, 1, tzinfo=dt.timezone.utc))
    person = Person.objects.create(owner=owner, name="Ann", cover_face=dated)
    Face.objects.filter(pk__in=[undated.pk, dated.pk]).update(person=person)
    page = client_for(owner).get(reverse("person", args=[person.pk])).content.decode()
    assert re.findall(r'data-face-id="(\d+)"', page) == [str(dated.pk), str(undated.pk)]
    assert "1 May 2020" in page and "No date" in page
    gallery = client_for(owner).get(reverse("gallery_all")).content.decode()
    assert re.findall(r'data-face-id="(\d+)"', gallery) == [str(dated.pk), str(undated.pk)]
