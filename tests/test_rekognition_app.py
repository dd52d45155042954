"""The whole app with FACES_ENGINE=rekognition and S3 storage, through real HTTP.

boto3 talks to the loopback Rekognition (backed by the local engine's face math)
and to a moto S3 server; nothing is stubbed inside the process.
"""

from __future__ import annotations

import json

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse

from indexing.deletion import delete_face_data
from indexing.models import Face, FaceCollection, Photo
from search.services import search_by_face

pytestmark = pytest.mark.django_db


@pytest.fixture
def rekognition_app(settings, fake_rekognition, moto_s3):
    settings.FACES_ENGINE = "rekognition"
    fake_rekognition.s3_endpoint = moto_s3.url
    return fake_rekognition


def test_import_search_and_delete_through_rekognition_and_s3(rekognition_app, moto_s3, user, fixtures_dir, capsys, client):
    people = fixtures_dir / "people"
    call_command("faces_import", "--user", user.email, "--sync", "--json", str(people))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["posts_done"] == 38 and summary["faces_found"] == 38

    # Face rows mirror the FaceIds in the user's own collection.
    collection = FaceCollection.objects.get(owner=user, engine="rekognition")
    assert collection.external_id == f"faces-{user.pk}"
    stored = rekognition_app.faces(collection.external_id)
    assert set(Face.objects.filter(owner=user).values_list("engine_face_id", flat=True)) == set(stored)
    assert not Face.objects.filter(owner=user).exclude(engine="rekognition").exists()
    # Originals live in the private bucket, and IndexFaces read them from S3.
    photo = Photo.objects.filter(owner=user).first()
    assert moto_s3.client().head_object(Bucket=moto_s3.bucket, Key=photo.original.name)["ContentLength"] > 0
    assert any("S3Object" in json.dumps(params) for op, params in rekognition_app.calls if op == "IndexFaces")

    # Search by image (command) and by face id (service), through SearchFacesByImage / SearchFaces.
    query = people / "kit_harington" / "2.jpg"
    call_command("faces_search", "--user", user.email, "--json", "--limit", "3", str(query))
    line = json.loads(capsys.readouterr().out.strip())
    assert [m["external_id"].split("/")[0] for m in line["matches"]] == ["kit_harington"] * 3
    assert line["matches"][0]["similarity"] > 90
    obama = Face.objects.filter(owner=user, photo__external_id__startswith="barack_obama").first()
    similar = search_by_face(user, obama, limit=10)
    assert [m.photo.external_id.split("/")[0] for m in similar] == ["barack_obama"] * 3  # the other 3 of 4
    assert rekognition_app.count("SearchFaces") >= 1 and rekognition_app.count("SearchFacesByImage") >= 1

    # Pages get short-lived presigned URLs, and the bucket refuses anonymous reads.
    client.force_login(user)
    response = client.get(reverse("photo_image", args=[photo.pk]))
    assert response.status_code == 302 and "X-Amz-Expires=" in response["Location"]
    assert requests.get(response["Location"], timeout=10).status_code == 200
    assert requests.get(f"{moto_s3.url}/{moto_s3.bucket}/{photo.original.name}", timeout=10).status_code == 403

    # Deleting face data deletes the collection and every face row.
    report = delete_face_data(user)
    assert report["faces"] == 38 and report["collections"] == 1
    assert collection.external_id not in rekognition_app.collections
    assert not Face.objects.filter(owner=user).exists()


def test_tenants_get_separate_collections(rekognition_app, user, other_user, fixtures_dir, capsys):
    people = fixtures_dir / "people"
    call_command("faces_import", "--user", user.email, "--sync", str(people / "joe_biden"))
    call_command("faces_import", "--user", other_user.email, "--sync", str(people / "barack_obama"))
    capsys.readouterr()
    call_command("faces_search", "--user", other_user.email, "--json", "--threshold", "0",
                 str(people / "joe_biden" / "1.jpg"))
    line = json.loads(capsys.readouterr().out.strip())
    own = set(Photo.objects.filter(owner=other_user).values_list("pk", flat=True))
    assert line["matches"] and {m["photo_id"] for m in line["matches"]} <= own
    assert {f"faces-{user.pk}", f"faces-{other_user.pk}"} <= set(rekognition_app.collections)


def test_reindex_moves_a_library_between_engines_keeping_people(settings, fake_rekognition, user, fixtures_dir, capsys):
    from indexing.models import Person

    call_command("faces_import", "--user", user.email, "--sync", str(fixtures_dir / "people" / "joe_biden"))
    local_faces = list(Face.objects.filter(owner=user))
    assert {f.engine for f in local_faces} == {"local"} and len(local_faces) == 3
    joe = Person.objects.create(owner=user, name="Joe", cover_face=local_faces[0])
    Face.objects.filter(owner=user).update(person=joe, person_locked=True)

    capsys.readouterr()
    call_command("faces_reindex", "--engine", "rekognition", "--user", user.email, "--json")
    report = json.loads(capsys.readouterr().out.strip())
    assert (report["photos"], report["faces"], report["failed"]) == (3, 3, [])
    faces = Face.objects.filter(owner=user)
    assert {f.engine for f in faces} == {"rekognition"} and faces.count() == 3
    assert all(f.person_id == joe.pk and f.person_locked and f.thumbnail for f in faces)
    joe.refresh_from_db()
    assert joe.cover_face.engine == "rekognition"
    assert set(fake_rekognition.faces(f"faces-{user.pk}")) == {f.engine_face_id for f in faces}
    assert not FaceCollection.objects.filter(owner=user, engine="local").exists()

    settings.FACES_ENGINE = "rekognition"
    matches = search_by_face(user, faces.first(), limit=5)
    assert len(matches) == 2
