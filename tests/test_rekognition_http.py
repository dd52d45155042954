"""RekognitionEngine end to end: real boto3 HTTP calls to the loopback Rekognition.

The fake detects and embeds faces with the local engine's real models, so a
search for Obama has to come back with Obama's photos: these tests check what
a user would see, through signing, retries and error parsing as in production.
"""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError

from indexing.engines.base import NoFaceError, RetryableEngineError
from indexing.engines.rekognition import RekognitionEngine, user_id_for
from indexing.models import Face, FaceCollection, Person, Photo, Post, Source
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

PEOPLE = {
    "barack_obama": ["1", "2", "3"],
    "joe_biden": ["1", "2"],
    "kit_harington": ["1", "2"],
    "alex_lacamoire": ["1", "2"],
    "john_salley": ["1", "2"],
}


def read(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def index_photos(engine: RekognitionEngine, owner, paths: list[str], s3: bool = False) -> dict[str, list[Face]]:
    """Index fixture photos as the pipeline would: Source/Post/Photo rows, then Face rows per result."""
    source, _ = Source.objects.get_or_create(owner=owner, kind=Source.Kind.UPLOAD, name="fixtures")
    faces: dict[str, list[Face]] = {}
    for path in paths:
        data = read(path)
        post = Post.objects.create(owner=owner, source=source, external_id=path)
        photo = Photo.objects.create(owner=owner, post=post, external_id=path)
        if s3:
            photo.original.save(path.replace("/", "_"), ContentFile(data), save=True)
        result = engine.index_image(owner, data, photo.external_id, storage_key=photo.original.name or None)
        photo.width, photo.height = result.width, result.height
        photo.status = Photo.Status.INDEXED
        photo.faces_skipped = len(result.unindexed)
        photo.save()
        faces[path] = [
            Face.objects.create(
                owner=owner, photo=photo, engine=engine.name, engine_face_id=face.face_id,
                box_x=face.box.x, box_y=face.box.y, box_w=face.box.w, box_h=face.box.h,
                confidence=face.confidence, quality=face.quality, landmarks=face.landmarks,
                searchable=face.searchable,
            )
            for face in result.faces
        ]
    FaceCollection.bump(owner.pk, engine.name)
    return faces


def people_paths(*names: str) -> list[str]:
    return [f"people/{name}/{n}.jpg" for name in (names or PEOPLE) for n in PEOPLE[name]]


def identity(owner, face_id: str) -> str:
    """The fixture person a face id belongs to, read back through the database as the app would."""
    return Face.objects.select_related("photo").get(owner=owner, engine_face_id=face_id).photo.external_id.split("/")[1]


@pytest.fixture
def engine(fake_rekognition) -> RekognitionEngine:
    return RekognitionEngine()


@pytest.fixture
def library(engine, user):
    """Alice's indexed fixture library: 11 photos of 5 people."""
    return index_photos(engine, user, people_paths())


def test_indexing_fills_the_users_collection(engine, fake_rekognition, user, library):
    assert all(len(faces) == 1 for faces in library.values())
    collection = FaceCollection.objects.get(owner=user, engine="rekognition")
    assert collection.external_id == f"faces-{user.pk}"
    stored = fake_rekognition.faces(collection.external_id)
    assert set(stored) == set(Face.objects.filter(owner=user).values_list("engine_face_id", flat=True))
    # ExternalImageId is the photo's external id, sanitized.
    assert {face.external_image_id for face in stored.values()} == {
        path.replace("/", "_") for path in library
    }
    listed = list(engine.list_faces(user))
    assert {face.face_id for face in listed} == set(stored)
    face = library["people/barack_obama/1.jpg"][0]
    assert 0 < face.box_w < 1 and 0 < face.confidence <= 100 and len(face.landmarks) == 5


def test_search_by_image_returns_the_same_persons_photos_first(engine, user, library):
    for person, query in [("barack_obama", "people/barack_obama/4.jpg"), ("joe_biden", "people/joe_biden/3.jpg"),
                          ("kit_harington", "people/kit_harington/3.jpg")]:
        search = engine.search_by_image(user, read(query), limit=10, threshold=80)
        assert search.faces_in_query == 1 and search.searched_face == 0
        found = [identity(user, match.face_id) for match in search.matches]
        expected = len(PEOPLE[person])
        assert found == [person] * expected, (query, found)
        assert all(80 <= match.similarity <= 100 for match in search.matches)


def test_search_by_face_id_finds_the_other_photos_of_that_person(engine, user, library):
    face = library["people/barack_obama/1.jpg"][0]
    matches = engine.search_by_face(user, face.engine_face_id, limit=10, threshold=80)
    assert face.engine_face_id not in {m.face_id for m in matches}
    assert sorted(identity(user, m.face_id) for m in matches) == ["barack_obama", "barack_obama"]
    assert matches == sorted(matches, key=lambda m: m.similarity, reverse=True)


def test_group_photo_query_can_pick_each_face(engine, user, library):
    group = read("groups/two_people.jpg")
    search = engine.search_by_image(user, group, limit=5, threshold=80)
    assert search.faces_in_query == 2
    by_face = {}
    for index in range(2):
        picked = engine.search_by_image(user, group, limit=5, threshold=80, face_index=index)
        assert picked.searched_face == index
        by_face[index] = {identity(user, m.face_id) for m in picked.matches}
    # Obama stands left, Biden right: left-hand face finds Obama, right-hand finds Biden.
    left = min(range(2), key=lambda i: search.query_faces[i].box.x)
    assert by_face[left] == {"barack_obama"} and by_face[1 - left] == {"joe_biden"}


def test_query_without_a_face_is_no_face_error(engine, user, library):
    with pytest.raises(NoFaceError, match="No face found in this photo."):
        engine.search_by_image(user, read("noface/dogs.jpg"), limit=5, threshold=80)


def test_tenants_are_isolated(engine, fake_rekognition, user, other_user, library):
    bob = index_photos(engine, other_user, ["people/joe_biden/1.jpg", "people/joe_biden/2.jpg"])
    assert FaceCollection.objects.get(owner=other_user, engine="rekognition").external_id == f"faces-{other_user.pk}"
    assert set(fake_rekognition.collections) == {f"faces-{user.pk}", f"faces-{other_user.pk}"}

    bobs_ids = {f.engine_face_id for faces in bob.values() for f in faces}
    alices_ids = {f.engine_face_id for faces in library.values() for f in faces}
    biden = read("people/joe_biden/3.jpg")
    assert {m.face_id for m in engine.search_by_image(other_user, biden, 10, 80).matches} == bobs_ids
    assert {m.face_id for m in engine.search_by_image(user, biden, 10, 80).matches} <= alices_ids
    # Even at threshold 0 (every face matches), Bob's search only ever sees Bob's faces.
    obama = read("people/barack_obama/4.jpg")
    assert {m.face_id for m in engine.search_by_image(other_user, obama, 10, 0).matches} == bobs_ids
    # Alice's face id is unknown in Bob's collection.
    alices_face = library["people/barack_obama/1.jpg"][0].engine_face_id
    assert engine.search_by_face(other_user, alices_face, 10, 0) == []


def test_deleted_faces_are_no_longer_found(engine, fake_rekognition, user, library):
    obama_ids = [f.engine_face_id for path in people_paths("barack_obama") for f in library[path]]
    engine.delete_faces(user, obama_ids)
    assert not set(obama_ids) & {face.face_id for face in engine.list_faces(user)}
    search = engine.search_by_image(user, read("people/barack_obama/4.jpg"), limit=10, threshold=80)
    assert search.matches == []


def test_deleted_collection_is_gone_and_recreated_empty_on_next_use(engine, fake_rekognition, user, library):
    collection_id = f"faces-{user.pk}"
    engine.delete_collection(user)
    assert collection_id not in fake_rekognition.collections
    assert FaceCollection.objects.get(owner=user, engine="rekognition").external_id == ""
    face = library["people/barack_obama/1.jpg"][0]
    assert engine.search_by_face(user, face.engine_face_id, limit=10, threshold=0) == []
    assert collection_id in fake_rekognition.collections and not fake_rekognition.faces(collection_id)
    engine.delete_collection(user)
    engine.delete_collection(user)  # deleting twice is fine


def test_collection_deleted_behind_our_back_is_recreated(engine, fake_rekognition, user, library):
    fake_rekognition.collections.clear()  # e.g. someone ran `aws rekognition delete-collection`
    result = engine.index_image(user, read("people/joe_biden/3.jpg"), "again")
    assert len(result.faces) == 1
    assert set(fake_rekognition.faces(f"faces-{user.pk}")) == {result.faces[0].face_id}


def test_throttling_backs_off_then_gives_up_as_retryable(engine, fake_rekognition, user, library):
    photo = read("people/joe_biden/3.jpg")
    before = fake_rekognition.count("IndexFaces")
    fake_rekognition.fail_next("IndexFaces", "ProvisionedThroughputExceededException", times=1)
    assert len(engine.index_image(user, photo, "retried").faces) == 1  # adaptive retry absorbed it
    assert fake_rekognition.count("IndexFaces") - before == 2

    fake_rekognition.fail_next("IndexFaces", "ThrottlingException", times=3)  # every attempt
    with pytest.raises(RetryableEngineError):
        engine.index_image(user, photo, "gave-up")
    fake_rekognition.fail_next("SearchFacesByImage", "InternalServerError", times=3, status=500)
    with pytest.raises(RetryableEngineError):
        engine.search_by_image(user, photo, limit=5, threshold=80)


def test_index_reads_the_photo_from_s3(engine, fake_rekognition, moto_s3, user):
    fake_rekognition.s3_endpoint = moto_s3.url
    faces = index_photos(engine, user, ["people/alex_lacamoire/1.jpg", "special/face.heic"], s3=True)
    assert len(faces["people/alex_lacamoire/1.jpg"]) == 1 and len(faces["special/face.heic"]) == 1
    images = [params["Image"] for name, params in fake_rekognition.calls if name == "IndexFaces"]
    # The JPEG is read from the bucket; the HEIC (which Rekognition cannot read) goes as JPEG bytes.
    key = faces["people/alex_lacamoire/1.jpg"][0].photo.original.name
    assert images[0] == {"S3Object": {"Bucket": moto_s3.bucket, "Name": key}}
    assert list(images[1]) == ["Bytes"]


def test_people_through_the_users_api(engine, user, library):
    person = Person.objects.create(owner=user, name="Obama")
    person.rekognition_user_id = user_id_for(person)
    person.save()
    obama = [f.engine_face_id for path in people_paths("barack_obama") for f in library[path]]
    biden = library["people/joe_biden/1.jpg"][0].engine_face_id

    engine.create_user(user, person.rekognition_user_id)
    engine.create_user(user, person.rekognition_user_id)  # idempotent
    association = engine.associate_faces(user, person.rekognition_user_id, obama)
    assert sorted(association.face_ids) == sorted(obama) and association.user_status == "ACTIVE"
    # Once a user has faces, a face must look like them (UserMatchThreshold) to join.
    refused = engine.associate_faces(user, person.rekognition_user_id, [biden], threshold=80)
    assert refused.face_ids == [] and refused.failed == {biden: ["LOW_MATCH_CONFIDENCE"]}

    found = engine.search_users_by_image(user, read("people/barack_obama/4.jpg"), threshold=80)
    assert [m.user_id for m in found] == [person.rekognition_user_id]
    assert engine.search_users_by_image(user, read("people/kit_harington/3.jpg"), threshold=80) == []

    engine.delete_faces(user, obama[:1])  # belongs to the user: detached, then deleted
    assert obama[0] not in {face.face_id for face in engine.list_faces(user)}
    assert engine.disassociate_faces(user, person.rekognition_user_id, obama[1:]).face_ids == obama[1:]
    engine.delete_user(user, person.rekognition_user_id)
    engine.delete_user(user, person.rekognition_user_id)  # already gone: fine
    with pytest.raises(NoFaceError):
        engine.search_users_by_image(user, read("noface/eagle.jpg"), threshold=80)


# -- people hooks: the database's named people as Rekognition Users ----------------


def face_ids(faces: list[Face]) -> set[str]:
    return {face.engine_face_id for face in faces}


def give(faces: list[Face], person: Person | None) -> None:
    """What the people corrections do in the database before they call the hooks."""
    Face.objects.filter(pk__in=[face.pk for face in faces]).update(person=person, person_locked=True)


def test_person_named_creates_one_user_with_every_face(engine, fake_rekognition, user, library):
    users = fake_rekognition.collections[f"faces-{user.pk}"].users
    obama = [f for path in people_paths("barack_obama") for f in library[path]]
    barack = Person.objects.create(owner=user, name="Barack")
    give(obama, barack)
    engine.person_named(barack)
    assert barack.rekognition_user_id == user_id_for(barack)
    assert Person.objects.get(pk=barack.pk).rekognition_user_id == barack.rekognition_user_id
    assert users == {barack.rekognition_user_id: face_ids(obama)}
    engine.person_named(Person.objects.get(pk=barack.pk))  # again: nothing changes, nothing fails
    assert fake_rekognition.count("CreateUser") == 1 and users == {barack.rekognition_user_id: face_ids(obama)}


def test_faces_moved_follow_their_persons_users(engine, fake_rekognition, user, library):
    users = fake_rekognition.collections[f"faces-{user.pk}"].users
    obama = [f for path in people_paths("barack_obama") for f in library[path]]
    biden = [f for path in people_paths("joe_biden") for f in library[path]]
    barack = Person.objects.create(owner=user, name="Barack")
    give(obama, barack)
    engine.person_named(barack)

    # Out of a named person to nobody: the face leaves the User.
    give(obama[2:], None)
    engine.faces_moved(user, [(obama[2].engine_face_id, barack.pk)], None)
    assert users[barack.rekognition_user_id] == face_ids(obama[:2])

    # Into a named person without a User yet: it gets one with all its faces.
    joe = Person.objects.create(owner=user, name="Joe")
    give(biden, joe)
    engine.faces_moved(user, [(f.engine_face_id, None) for f in biden], joe)
    assert joe.rekognition_user_id == user_id_for(joe) and users[joe.rekognition_user_id] == face_ids(biden)

    # From one named person to another: out of one User, into the other.
    give(obama[1:2], joe)
    engine.faces_moved(user, [(obama[1].engine_face_id, barack.pk)], joe)
    assert users[barack.rekognition_user_id] == face_ids(obama[:1])
    assert users[joe.rekognition_user_id] == face_ids(biden + obama[1:2])

    # Into an unnamed group: out of the User, and the group gets none.
    group = Person.objects.create(owner=user)
    give(biden[:1], group)
    engine.faces_moved(user, [(biden[0].engine_face_id, joe.pk)], group)
    assert users[joe.rekognition_user_id] == face_ids(biden[1:] + obama[1:2])
    assert set(users) == {barack.rekognition_user_id, joe.rekognition_user_id}
    assert Person.objects.get(pk=group.pk).rekognition_user_id == ""


def test_person_removed_deletes_the_user(engine, fake_rekognition, user, library):
    users = fake_rekognition.collections[f"faces-{user.pk}"].users
    kit = Person.objects.create(owner=user, name="Kit")
    give(library["people/kit_harington/1.jpg"], kit)
    engine.person_named(kit)
    user_id = kit.rekognition_user_id
    assert user_id in users
    engine.person_removed(kit)
    assert user_id not in users and kit.rekognition_user_id == ""
    assert Person.objects.get(pk=kit.pk).rekognition_user_id == ""
    # Its faces stay in the collection, free for another User.
    assert face_ids(library["people/kit_harington/1.jpg"]) <= set(fake_rekognition.faces(f"faces-{user.pk}"))
    engine.person_removed(kit)  # no User: nothing to do


def test_failed_user_calls_are_logged_and_sync_people_repairs_them(engine, fake_rekognition, user, library, caplog):
    users = fake_rekognition.collections[f"faces-{user.pk}"].users
    obama = [f for path in people_paths("barack_obama") for f in library[path]]
    biden = [f for path in people_paths("joe_biden") for f in library[path]]
    barack = Person.objects.create(owner=user, name="Barack")
    me = Person.objects.create(owner=user, is_me=True)
    Person.objects.create(owner=user)  # unnamed: never a User
    give(obama, barack)
    give(biden, me)
    fake_rekognition.fail_next("CreateUser", times=3)  # FACES_REKOGNITION_MAX_ATTEMPTS in tests
    engine.person_named(barack)  # throttled past every retry: logged, not raised
    assert barack.rekognition_user_id == "" and users == {}
    assert "Rekognition create_user" in caplog.text
    assert engine.sync_people(user) == 2
    barack.refresh_from_db()
    me.refresh_from_db()
    assert users == {barack.rekognition_user_id: face_ids(obama), me.rekognition_user_id: face_ids(biden)}


def test_search_people_by_image_finds_visible_named_people(engine, fake_rekognition, user, library, other_user):
    obama = [f for path in people_paths("barack_obama") for f in library[path]]
    selfie = read("people/barack_obama/4.jpg")
    assert engine.search_people_by_image(user, selfie, threshold=80) == []  # no named people: no call
    assert fake_rekognition.count("SearchUsersByImage") == 0
    barack = Person.objects.create(owner=user, name="Barack")
    give(obama, barack)
    engine.person_named(barack)
    found = engine.search_people_by_image(user, selfie, threshold=80)
    assert [match.person_id for match in found] == [barack.pk] and 80 <= found[0].similarity <= 100
    assert engine.search_people_by_image(user, read("people/kit_harington/3.jpg"), threshold=80) == []
    assert engine.search_people_by_image(user, read("noface/eagle.jpg"), threshold=80) == []  # NoFace: logged
    assert engine.search_people_by_image(other_user, selfie, threshold=80) == []  # another tenant
    Person.objects.filter(pk=barack.pk).update(hidden=True)
    assert engine.search_people_by_image(user, selfie, threshold=80) == []


# -- faces_reconcile ----------------------------------------------------------


def reconcile(*args: str) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("faces_reconcile", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_reconcile_reports_and_repairs_drift(engine, fake_rekognition, user, library):
    clean = reconcile("--user", user.email)
    assert clean["orphans"] == [] and clean["missing"] == [] and clean["faces_in_collection"] == 11

    # A job died after IndexFaces: the face is in the collection with no row.
    orphan = engine.index_image(user, read("people/kit_harington/3.jpg"), "lost").faces[0].face_id
    # A face vanished from the collection: its row can never be found again.
    gone = library["people/john_salley/1.jpg"][0]
    del fake_rekognition.collections[f"faces-{user.pk}"].faces[gone.engine_face_id]

    drift = reconcile("--user", user.email.upper())
    assert drift["orphans"] == [orphan] and drift["missing"] == [gone.engine_face_id]
    assert drift["repaired"] is False and Face.objects.filter(pk=gone.pk).exists()

    repaired = reconcile("--user", user.email, "--repair")
    assert repaired["orphans_deleted"] == 1 and repaired["rows_deleted"] == 1 and repaired["photos_to_reindex"] == 1
    assert orphan not in fake_rekognition.faces(f"faces-{user.pk}")
    assert not Face.objects.filter(pk=gone.pk).exists()
    assert Photo.objects.get(pk=gone.photo_id).status == Photo.Status.PENDING
    assert reconcile("--user", user.email)["orphans"] == [] == reconcile("--user", user.email)["missing"]


def test_reconcile_unknown_user_is_a_one_line_error(fake_rekognition):
    with pytest.raises(CommandError, match=r"^Unknown user nobody@example.com\.$"):
        call_command("faces_reconcile", "--user", "nobody@example.com")
