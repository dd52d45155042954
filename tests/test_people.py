"""People: automatic grouping, corrections that survive it, the pages, Rekognition Users."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils.module_loading import import_string

from bench.scoring import pairwise_scores
from indexing.engines import get_engine
from indexing.people import clustering, corrections, grouping, queries
from indexing.models import Face, IndexRun, Person, Photo, Post, Source

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------
# Helpers: faces with chosen embeddings, no images needed

_counter = itertools.count()


def identities(count: int, per: int, seed: int = 0, spread: float = 0.55) -> list[np.ndarray]:
    """``count`` people with ``per`` normalized embeddings each (same-person cosine ~0.75)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        centre = rng.standard_normal(128)
        centre /= np.linalg.norm(centre)
        faces = centre + spread * rng.standard_normal((per, 128)) / np.sqrt(128)
        out.append((faces / np.linalg.norm(faces, axis=1, keepdims=True)).astype(np.float32))
    return out


def add_face(owner, embedding, photo: Photo | None = None, **fields) -> Face:
    """One face on its own photo (or ``photo``), like the pipeline writes it."""
    source, _ = Source.objects.get_or_create(owner=owner, kind=Source.Kind.UPLOAD, defaults={"name": "test"})
    if photo is None:
        n = next(_counter)
        post = Post.objects.create(owner=owner, source=source, external_id=f"p{n}", status=Post.Status.INDEXED)
        photo = Photo.objects.create(owner=owner, post=post, external_id=f"p{n}.jpg", status=Photo.Status.INDEXED)
    values = dict(
        owner=owner, photo=photo, engine="local", engine_face_id=f"f{next(_counter)}",
        box_x=0.3, box_y=0.2, box_w=0.3, box_h=0.4, confidence=93.0, quality=95.0,
        embedding=None if embedding is None else np.asarray(embedding, np.float32).tobytes(),
    )
    values.update(fields)
    return Face.objects.create(**values)


def add_people(owner, groups) -> list[list[Face]]:
    return [[add_face(owner, vector) for vector in group] for group in groups]


def person_of(face: Face) -> int | None:
    return Face.objects.values_list("person_id", flat=True).get(pk=face.pk)


def persons_of(faces) -> set:
    return {person_of(f) for f in faces}


def import_people(user, fixtures_dir, *names) -> None:
    """Index fixture photos through the real pipeline (local engine); --sync also groups.

    Photos keep ``<identity>/<n>.jpg`` as their external id, also for a subset.
    """
    folder = fixtures_dir / "people"
    if not names:
        call_command("faces_import", "--user", user.email, "--sync", str(folder))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            shutil.copytree(folder / name, Path(tmp) / name)
        call_command("faces_import", "--user", user.email, "--sync", tmp)


def identity(face: Face) -> str:
    """The fixture identity of a face imported from people/ (its folder)."""
    return face.photo.external_id.split("/")[0]


# --------------------------------------------------------------------------
# The clustering core


def test_knn_matches_brute_force_with_big_and_small_groups():
    groups = identities(3, 60, seed=1) + identities(20, 2, seed=2)  # rows with many and few candidates
    matrix = np.concatenate(groups)
    matrix = matrix[np.random.default_rng(3).permutation(len(matrix))]
    neighbours, cosines = clustering.knn(matrix, k=8, block_bytes=4 * len(matrix) * 7)  # 7-row blocks
    scores = matrix @ matrix.T
    np.fill_diagonal(scores, -np.inf)
    for row in range(len(matrix)):
        expected = [c for c in np.argsort(-scores[row], kind="stable")[:8] if scores[row, c] >= clustering.EDGE_COSINE]
        found = [c for c in neighbours[row] if c >= 0]
        assert sorted(found) == sorted(expected)
        assert np.all(np.diff(cosines[row][: len(found)]) <= 1e-6)  # best first
        assert np.allclose(cosines[row][: len(found)], scores[row, found], atol=1e-5)


def test_chinese_whispers_separates_people_and_keeps_fixed_labels():
    groups = identities(5, 12, seed=4)
    matrix = np.concatenate(groups)
    truth = np.repeat(np.arange(5), 12)
    labels = clustering.cluster(matrix)
    assert pairwise_scores(truth, labels) == (1.0, 1.0)
    # Rows outside ``rows`` keep their label and pull their free neighbours to it.
    free = np.arange(6, 60)
    neighbours, cosines = clustering.knn(matrix, free)
    start = np.arange(60) + 100
    start[:6] = 7
    result = clustering.chinese_whispers(start, free, neighbours, cosines)
    assert set(result[:12]) == {7}
    others = [set(result[i : i + 12]) for i in range(12, 60, 12)]
    assert all(len(labels) == 1 for labels in others) and len(set.union(*others) | {7}) == 5


def test_pairwise_scores_counts_unassigned_as_apart():
    assert pairwise_scores(["a", "a", "b"], [1, 1, None]) == (1.0, 1.0)
    assert pairwise_scores(["a", "a", "b"], [1, None, None]) == (1.0, 0.0)
    assert pairwise_scores(["a", "a", "b"], [1, 1, 1]) == (1 / 3, 1.0)


# --------------------------------------------------------------------------
# Quality on real faces


def test_fixture_people_are_grouped_with_high_precision_and_recall(user, fixtures_dir):
    import_people(user, fixtures_dir)  # --sync groups at the end of the run
    faces = list(Face.objects.filter(owner=user).select_related("photo"))
    assert len(faces) == 38
    precision, recall = pairwise_scores([identity(f) for f in faces], [f.person_id for f in faces])
    assert precision >= 0.98 and recall >= 0.90, (precision, recall)
    assert Person.objects.filter(owner=user).count() == 9
    assert not Face.objects.filter(owner=user, grouped_at__isnull=True).exists()
    for person in Person.objects.filter(owner=user):
        assert person.name == "" and person.cover_face.person_id == person.pk
    # Grouping again changes nothing.
    again = grouping.regroup(user.pk)
    assert (again.assigned, again.unassigned, again.new_people) == (0, 0, 0)
    assert grouping.group_new_faces(user.pk).skipped == "No new faces."


def test_selfie_search_names_the_person_and_counts_photos(user, alice_client, fixtures_dir):
    import_people(user, fixtures_dir, "barack_obama", "joe_biden")
    obama = Person.objects.get(faces__photo__external_id="barack_obama/1.jpg")
    corrections.rename_person(obama, "Barack")
    query = (fixtures_dir / "people" / "barack_obama" / "2.jpg").read_bytes()
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = alice_client.post(reverse("search"), {"image": SimpleUploadedFile("q.jpg", query, "image/jpeg")})
    page = alice_client.get(response["Location"])
    text = page.content.decode()
    assert 'id="person-hint"' in text and "<b>Barack</b>" in text
    assert "see all 4 photos" in text and reverse("person", args=[obama.pk]) in text
    # Result cards and the gallery name the person too.
    assert text.count(f'href="{reverse("person", args=[obama.pk])}"') >= 2
    assert "Barack" in alice_client.get(reverse("gallery_all")).content.decode()


# --------------------------------------------------------------------------
# Eligibility and incremental grouping


def test_small_blurry_unsure_and_lonely_faces_stay_unassigned(user):
    mom, dad, twice, alone = identities(4, 4, seed=5)
    good = [add_face(user, v) for v in mom]
    blurry = [add_face(user, v, quality=20) for v in dad[:2]]
    unsure = [add_face(user, v, confidence=70) for v in dad[2:]]
    small = [add_face(user, None, searchable=False, quality=10) for _ in range(2)]
    lonely = add_face(user, alone[0])
    first = add_face(user, twice[0])
    same_photo = add_face(user, twice[1], photo=first.photo)  # two faces of one photo are not a person
    report = grouping.group_new_faces(user.pk)
    assert report.new_people == 1 and len(persons_of(good)) == 1 and None not in persons_of(good)
    for face in blurry + unsure + small + [lonely, first, same_photo]:
        assert person_of(face) is None


def test_new_faces_join_people_or_form_new_ones(user):
    mom, dad, aunt, stranger = identities(4, 6, seed=6)
    first = add_people(user, [mom[:4], dad[:4]])
    lone_aunt = add_face(user, aunt[0])  # a singleton for now
    grouping.group_new_faces(user.pk)
    mom_person = Person.objects.get(faces=first[0][0])
    corrections.rename_person(mom_person, "Mom")
    assert person_of(lone_aunt) is None

    new_mom = [add_face(user, v) for v in mom[4:]]
    new_aunt = [add_face(user, v) for v in aunt[1:3]]
    new_stranger = add_face(user, stranger[0])
    before = dict(Face.objects.filter(owner=user, grouped_at__isnull=False).values_list("pk", "person_id"))
    report = grouping.group_new_faces(user.pk)
    assert report.considered == 6  # five new faces and the old singleton next to them
    assert persons_of(new_mom) == {mom_person.pk}
    aunt_people = persons_of(new_aunt + [lone_aunt])
    assert len(aunt_people) == 1 and None not in aunt_people and mom_person.pk not in aunt_people
    assert person_of(new_stranger) is None
    for pk, person_id in before.items():  # old faces of people keep their person
        if person_id:
            assert Face.objects.get(pk=pk).person_id == person_id
    assert Person.objects.get(pk=mom_person.pk).name == "Mom"
    assert not Face.objects.filter(owner=user, grouped_at__isnull=True).exists()


def test_a_busy_owner_is_grouped_again_by_the_running_pass(user):
    add_people(user, identities(1, 3, seed=7))
    cache.add(grouping._lock_key(user.pk), "someone", timeout=60)
    assert "running" in grouping.group_new_faces(user.pk).skipped
    assert not Face.objects.filter(owner=user, person__isnull=False).exists()
    assert cache.get(f"{grouping._lock_key(user.pk)}:again")
    cache.delete(grouping._lock_key(user.pk))
    assert grouping.group_new_faces(user.pk).new_people == 1


def test_grouping_is_per_owner(user, other_user):
    vectors = identities(1, 6, seed=8)[0]
    mine = [add_face(user, v) for v in vectors[:3]]
    theirs = [add_face(other_user, v) for v in vectors[3:]]
    grouping.group_new_faces(user.pk)
    assert None not in persons_of(mine) and persons_of(theirs) == {None}
    grouping.group_new_faces(other_user.pk)
    assert Person.objects.get(pk=person_of(theirs[0])).owner == other_user


# --------------------------------------------------------------------------
# Corrections survive automatic grouping


def test_corrections_are_never_undone_by_grouping(user):
    a, b, c = identities(3, 5, seed=9)
    fa, fb, fc = add_people(user, [a, b, c])
    grouping.group_new_faces(user.pk)
    pa, pb, pc = (Person.objects.get(faces=group[0]) for group in (fa, fb, fc))
    # Rename, merge two different people, move one face to a new person, one to nobody.
    corrections.rename_person(pa, "Ann")
    merged = corrections.merge_people(pb, pc)
    moved_to = corrections.move_faces(pa, [fa[0].pk], new_name="Not Ann")
    corrections.move_faces(pa, [fa[1].pk])
    corrections.set_hidden(merged, True)
    state = dict(Face.objects.filter(owner=user).values_list("pk", "person_id"))
    for regroup in (grouping.regroup, grouping.group_new_faces):
        regroup(user.pk)
        assert dict(Face.objects.filter(owner=user).values_list("pk", "person_id")) == state
    assert Person.objects.get(pk=pa.pk).name == "Ann"
    assert not Person.objects.filter(pk=pc.pk).exists() and Person.objects.get(pk=merged.pk).hidden
    assert person_of(fa[0]) == moved_to.pk and person_of(fa[1]) is None
    # New faces of the moved-out face's look-alikes still join Ann, not the lone face's person.
    new = add_face(user, (a[2] + a[3]) / np.linalg.norm(a[2] + a[3]))
    grouping.group_new_faces(user.pk)
    assert person_of(new) == pa.pk


def test_rename_to_an_existing_name_merges(user):
    fa, fb = add_people(user, identities(2, 3, seed=10))
    grouping.group_new_faces(user.pk)
    pa, pb = Person.objects.get(faces=fa[0]), Person.objects.get(faces=fb[0])
    corrections.rename_person(pa, "Mom")
    result = corrections.rename_person(pb, " mom ")
    assert result.pk == pa.pk and not Person.objects.filter(pk=pb.pk).exists()
    assert persons_of(fa + fb) == {pa.pk}
    assert corrections.rename_person(result, "").name == ""


def test_this_is_me(user):
    fa, fb = add_people(user, identities(2, 3, seed=11))
    loner = add_face(user, identities(1, 1, seed=12)[0][0])
    grouping.group_new_faces(user.pk)
    pa = Person.objects.get(faces=fa[0])
    me = corrections.mark_me(Face.objects.get(pk=fa[0].pk))
    assert me.pk == pa.pk and me.is_me and me.name == "Me"
    assert Face.objects.get(pk=fa[0].pk).person_locked
    # Another face: it joins "me" alone; a face without a person too.
    corrections.mark_me(Face.objects.get(pk=fb[0].pk))
    corrections.mark_me(Face.objects.get(pk=loner.pk))
    assert person_of(fb[0]) == person_of(loner) == me.pk
    assert person_of(fb[1]) not in (None, me.pk)
    assert Person.objects.filter(owner=user, is_me=True).count() == 1


def test_this_is_me_creates_me(user):
    face = add_face(user, identities(1, 1, seed=13)[0][0])
    me = corrections.mark_me(face)
    assert (me.name, me.is_me, me.cover_face_id) == ("Me", True, face.pk)
    assert person_of(face) == me.pk


# --------------------------------------------------------------------------
# Pipeline hooks


def test_pipeline_queues_one_grouping_per_window_and_one_at_the_end(user, fixtures_dir):
    from django_q.models import OrmQ, Schedule

    from indexing import pipeline
    from indexing.imports import import_photos

    files = [(f"joe_biden/{p.name}", p.read_bytes()) for p in sorted((fixtures_dir / "people/joe_biden").glob("*.jpg"))]
    run = pipeline.start_run(import_photos(user, files, name="t").source)
    pipeline.crawl_source(run.pk)  # queues index_post jobs
    for post in Post.objects.filter(owner=user).order_by("pk"):
        pipeline.index_post(post.pk)
    assert IndexRun.objects.get(pk=run.pk).status == IndexRun.Status.DONE
    assert Schedule.objects.filter(func="indexing.people.group_new_faces").count() == 1
    queued = [task.func() for task in OrmQ.objects.all()]
    assert queued.count("indexing.people.group_new_faces") == 1
    # What the worker runs: the stored path still imports.
    import_string(Schedule.objects.get(func="indexing.people.group_new_faces").func)(user.pk)
    assert len(persons_of(Face.objects.filter(owner=user))) == 1


# --------------------------------------------------------------------------
# Pages


@pytest.fixture
def library(user):
    """Three grouped people (5, 3 and 2 photos) of the signed-in user."""
    groups = add_people(user, identities(3, 5, seed=14))
    for face in groups[1][3:] + groups[2][2:]:
        face.delete()
    grouping.group_new_faces(user.pk)
    return [list(Face.objects.filter(pk__in=[f.pk for f in g])) for g in groups]


def person_pk(faces) -> int:
    return person_of(faces[0])


def test_people_page_lists_by_photos_and_names_in_place(alice_client, library):
    big, mid, small = (person_pk(g) for g in library)
    page = alice_client.get(reverse("people"))
    text = page.content.decode()
    order = [text.index(f'data-person-id="{pk}"') for pk in (big, mid, small)]
    assert order == sorted(order)
    assert text.count('name="name"') == 3 + 0  # three unnamed cards, each with a name field
    assert reverse("face_thumbnail", args=[Person.objects.get(pk=big).cover_face_id]) in text
    response = alice_client.post(reverse("person_rename", args=[small]), {"name": "Granny", "next": "/people/"})
    assert response.status_code == 302 and response["Location"] == "/people/"
    assert Person.objects.get(pk=small).name == "Granny"
    assert "Granny" in alice_client.get(reverse("people")).content.decode()


def test_person_page_shows_all_photos_newest_first(alice_client, library):
    faces = library[0]
    for days, face in enumerate(faces):
        Post.objects.filter(photos__faces=face).update(timestamp=f"2024-01-{days + 1:02d}T12:00:00Z")
    text = alice_client.get(reverse("person", args=[person_pk(faces)])).content.decode()
    positions = [text.index(f'data-face-id="{f.pk}"') for f in reversed(faces)]
    assert positions == sorted(positions) and "5 photos" in text
    assert reverse("photo_image", args=[faces[0].photo_id]) in text


def test_merge_move_hide_views(alice_client, user, library):
    big, mid, small = (person_pk(g) for g in library)
    response = alice_client.post(reverse("person_merge", args=[big]), {"other": mid})
    assert response["Location"] == reverse("person", args=[big])
    assert not Person.objects.filter(pk=mid).exists() and persons_of(library[1]) == {big}
    # Move two wrong faces: one to a new named person, one to an existing one.
    wrong = library[1][0]
    alice_client.post(reverse("person_move", args=[big]), {"faces": [wrong.pk], "target": "new", "name": "Uncle"})
    uncle = Person.objects.get(owner=user, name="Uncle")
    assert person_of(wrong) == uncle.pk and Face.objects.get(pk=wrong.pk).person_locked
    alice_client.post(reverse("person_move", args=[big]), {"faces": [library[1][1].pk], "target": str(small)})
    assert person_of(library[1][1]) == small
    alice_client.post(reverse("person_move", args=[big]), {"faces": [library[1][2].pk], "target": "none"})
    assert person_of(library[1][2]) is None
    # Hide: gone from the list, back with "show hidden".
    alice_client.post(reverse("person_hide", args=[small]), {"hidden": "1"})
    assert f'data-person-id="{small}"' not in alice_client.get(reverse("people")).content.decode()
    assert f'data-person-id="{small}"' in alice_client.get(reverse("people") + "?hidden=1").content.decode()
    alice_client.post(reverse("person_hide", args=[small]), {"hidden": "0"})
    assert not Person.objects.get(pk=small).hidden


def test_this_is_me_and_name_a_face_views(alice_client, user, library):
    face = library[2][0]
    page = alice_client.get(reverse("face", args=[face.pk])).content.decode()
    assert 'id="this-is-me"' in page
    alice_client.post(reverse("face_me", args=[face.pk]))
    me = Person.objects.get(owner=user, is_me=True)
    assert person_of(face) == me.pk and me.name == "Me"
    assert 'id="this-is-me"' not in alice_client.get(reverse("face", args=[face.pk])).content.decode()
    other = library[0][0]
    alice_client.post(reverse("face_name", args=[other.pk]), {"name": "Dad"})
    assert Person.objects.get(pk=person_of(other)).name == "Dad"


def test_people_views_are_owner_scoped_post_only_and_need_consent(client, user, other_user, library):
    person = person_pk(library[0])
    face = library[0][0]
    client.force_login(other_user)
    assert client.get(reverse("person", args=[person])).status_code == 404
    for name, data in (
        ("person_rename", {"name": "x"}), ("person_merge", {"other": person}),
        ("person_move", {"faces": [face.pk], "target": "none"}), ("person_hide", {"hidden": "1"}),
    ):
        assert client.post(reverse(name, args=[person]), data).status_code == 404
    for name in ("face_me", "face_name"):
        assert client.post(reverse(name, args=[face.pk]), {"name": "x"}).status_code == 404
    # Bob's own person cannot reach Alice's through a form field either.
    bobs = add_people(other_user, identities(1, 2, seed=15))[0]
    grouping.group_new_faces(other_user.pk)
    assert client.post(reverse("person_merge", args=[person_of(bobs[0])]), {"other": person}).status_code == 404
    assert client.post(reverse("person_move", args=[person_of(bobs[0])]), {"faces": [bobs[0].pk], "target": person}).status_code == 404
    assert Person.objects.get(pk=person).name == "" and persons_of(library[0]) == {person}
    assert f'data-person-id="{person}"' not in client.get(reverse("people")).content.decode()
    # Changes are POST only; pages need consent.
    client.force_login(user)
    assert client.get(reverse("person_rename", args=[person])).status_code == 405
    assert client.get(reverse("face_me", args=[face.pk])).status_code == 405
    from accounts.models import FaceConsent

    FaceConsent.objects.filter(user=user).delete()
    assert client.get(reverse("people"))["Location"].startswith(reverse("consent"))


def test_forms_carry_csrf(user, library):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    person = person_pk(library[0])
    assert strict.post(reverse("person_rename", args=[person]), {"name": "x"}).status_code == 403
    assert "csrfmiddlewaretoken" in strict.get(reverse("person", args=[person])).content.decode()


# --------------------------------------------------------------------------
# Rekognition: a named person is a Rekognition User


@pytest.fixture
def rekognition(settings, fake_rekognition):
    settings.FACES_ENGINE = "rekognition"
    return fake_rekognition


def test_named_people_are_rekognition_users(rekognition, user, fixtures_dir):
    import_people(user, fixtures_dir, "barack_obama", "joe_biden")
    assert not Person.objects.filter(owner=user).exists()  # no automatic grouping without embeddings
    collection = rekognition.collections[f"faces-{user.pk}"]
    obama = list(Face.objects.filter(owner=user, photo__external_id__startswith="barack_obama").order_by("pk"))
    biden = list(Face.objects.filter(owner=user, photo__external_id__startswith="joe_biden").order_by("pk"))

    barack = corrections.assign_face(obama[0], "Barack")
    for face in obama[1:]:
        assert corrections.assign_face(Face.objects.get(pk=face.pk), "barack").pk == barack.pk
    barack.refresh_from_db()
    assert barack.rekognition_user_id == f"person-{barack.pk}"
    assert collection.users[barack.rekognition_user_id] == {f.engine_face_id for f in obama}

    # A wrong face moved out leaves the User.
    corrections.move_faces(barack, [obama[3].pk])
    assert collection.users[barack.rekognition_user_id] == {f.engine_face_id for f in obama[:3]}
    assert rekognition.count("DisassociateFaces") == 1

    # Selfie search: the faces point at Barack; with none of them named, SearchUsersByImage does.
    selfie = (fixtures_dir / "people" / "barack_obama" / "4.jpg").read_bytes()
    hint = queries.person_hint(user, [], image=selfie, threshold=80)
    assert hint is not None and hint.person.pk == barack.pk and hint.photos == 3
    assert rekognition.count("SearchUsersByImage") == 1

    # Merging a named person away deletes its User; the survivor's User gets the faces.
    joe = corrections.assign_face(biden[0], "Joe")
    joe.refresh_from_db()
    corrections.assign_face(biden[1], "Joe")
    old_user = joe.rekognition_user_id
    corrections.merge_people(barack, joe)
    assert old_user not in collection.users
    assert {f.engine_face_id for f in obama[:3] + biden[:2]} == collection.users[barack.rekognition_user_id]

    # Unnaming a person deletes its User; naming again recreates it with every face.
    corrections.rename_person(barack, "")
    assert barack.rekognition_user_id not in collection.users
    corrections.rename_person(barack, "Barack")
    barack.refresh_from_db()
    assert len(collection.users[barack.rekognition_user_id]) == 5


def test_rekognition_failure_keeps_the_correction(rekognition, user, fixtures_dir):
    import_people(user, fixtures_dir, "joe_biden")
    face = Face.objects.filter(owner=user).first()
    rekognition.fail_next("CreateUser", times=5)
    person = corrections.assign_face(face, "Joe")
    assert person_of(face) == person.pk and person.rekognition_user_id == ""
    assert get_engine().sync_people(user) == 1
    person.refresh_from_db()
    assert rekognition.collections[f"faces-{user.pk}"].users[person.rekognition_user_id] == {face.engine_face_id}


def test_faces_people_command(user, capsys):
    import json

    add_people(user, identities(2, 3, seed=16))
    call_command("faces_people", "--user", user.email, "--json")
    summary = json.loads(capsys.readouterr().out)
    assert (summary["new_people"], summary["assigned"]) == (2, 6)
    call_command("faces_people", "--user", user.email, "--full")
    assert "6 of 6 faces considered, 0 placed" in capsys.readouterr().out
    with pytest.raises(Exception, match="Unknown user"):
        call_command("faces_people", "--user", "nobody@example.com")


def test_an_old_singleton_two_steps_away_joins_the_new_group(user):
    # A chain in a plane: old - middle - new at cosine 0.6 each, old - new at -0.28 (no edge).
    angle = np.arccos(0.6)
    vectors = [np.eye(128)[0] * np.cos(a) + np.eye(128)[1] * np.sin(a) for a in (0.0, angle, 2 * angle)]
    old = add_face(user, vectors[0])
    grouping.group_new_faces(user.pk)
    assert person_of(old) is None
    # A new face whose only neighbour is a second old singleton, itself next to ``old``.
    middle = add_face(user, vectors[1], grouped_at="2024-01-01T00:00:00Z")
    new = add_face(user, vectors[2])
    report = grouping.group_new_faces(user.pk)
    assert report.new_people == 1 and len(persons_of([old, middle, new])) == 1 and person_of(new)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_groups_an_upload_when_its_run_finishes(user, fixtures_dir, start_worker):
    from indexing import pipeline
    from indexing.imports import import_photos
    from tests.conftest import wait_for

    files = [
        (f"{name}/{path.name}", path.read_bytes())
        for name in ("barack_obama", "joe_biden")
        for path in sorted((fixtures_dir / "people" / name).glob("*.jpg"))
    ]
    pipeline.start_run(import_photos(user, files, name="upload").source)
    start_worker()
    wait_for(
        lambda: Person.objects.filter(owner=user).count() == 2
        and not Face.objects.filter(owner=user, grouped_at__isnull=True).exists(),
        timeout=120,
        message="the faces grouped into two people",
    )
    faces = list(Face.objects.filter(owner=user).select_related("photo"))
    assert pairwise_scores([identity(f) for f in faces], [f.person_id for f in faces]) == (1.0, 1.0)
