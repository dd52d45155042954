"""search/services.py on real faces: the local engine indexes fixture photos through faces_import.

Each photo is imported under a name that says who is in it, so the assertions
read the outcome (which photos came back, in which order) rather than counts.
"""

from __future__ import annotations

import shutil
from io import StringIO

import pytest
from django.core.management import call_command

from indexing.engines.base import NoFaceError
from indexing.models import Face, Photo
from search.services import search_by_face, search_by_image

ALICE = {
    "obama_1.jpg": "people/barack_obama/1.jpg",
    "obama_2.jpg": "people/barack_obama/2.jpg",
    "biden_1.jpg": "people/joe_biden/1.jpg",
    "kit_2.jpg": "people/kit_harington/2.jpg",
    "obama_and_biden.jpg": "groups/two_people.jpg",
}
BOB = {
    "bob_obama_3.jpg": "people/barack_obama/3.jpg",
    "bob_biden_2.jpg": "people/joe_biden/2.jpg",
}


def import_library(user, fixtures_dir, tmp_path, files: dict[str, str]) -> None:
    folder = tmp_path / user.email
    folder.mkdir()
    for name, fixture in files.items():
        shutil.copyfile(fixtures_dir / fixture, folder / name)
    call_command("faces_import", "--user", user.email, "--sync", str(folder), stdout=StringIO())


@pytest.fixture
def libraries(user, other_user, fixtures_dir, tmp_path, settings):
    settings.FACES_ENGINE = "local"
    import_library(user, fixtures_dir, tmp_path, ALICE)
    import_library(other_user, fixtures_dir, tmp_path, BOB)
    assert set(Photo.objects.filter(owner=user, status=Photo.Status.INDEXED).values_list("external_id", flat=True)) \
        == set(ALICE), "every fixture photo of Alice's library indexes"
    return user, other_user


def query(fixtures_dir, fixture: str) -> bytes:
    return (fixtures_dir / fixture).read_bytes()


def names(matches) -> list[str]:
    return [m.photo.external_id for m in matches]


def test_results_come_only_from_the_searching_users_library(libraries, fixtures_dir):
    alice, bob = libraries
    for owner, own in ((alice, set(ALICE)), (bob, set(BOB))):
        for fixture in ("people/barack_obama/4.jpg", "people/joe_biden/3.jpg"):
            _, matches = search_by_image(owner, query(fixtures_dir, fixture), threshold=0)
            assert matches and set(names(matches)) <= own
            assert {m.face.owner_id for m in matches} == {owner.pk}
    bobs_obama = Face.objects.filter(owner=bob, photo__external_id="bob_obama_3.jpg").first()
    assert bobs_obama is not None
    assert set(names(search_by_face(bob, bobs_obama, threshold=0))) <= set(BOB) - {"bob_obama_3.jpg"}


def test_best_match_first_and_the_same_person_above_strangers(libraries, fixtures_dir):
    alice, _ = libraries
    result, matches = search_by_image(alice, query(fixtures_dir, "people/barack_obama/4.jpg"), threshold=0)
    assert result.faces_in_query == 1
    similarities = [m.similarity for m in matches]
    assert similarities == sorted(similarities, reverse=True)
    found = names(matches)
    assert set(found[:3]) == {"obama_1.jpg", "obama_2.jpg", "obama_and_biden.jpg"}, found
    obama = next(m for m in matches if m.photo.external_id == "obama_and_biden.jpg")
    assert obama.face.box[0] < 0.5, "the group photo matched through Obama (left), not Biden"


def test_each_photo_once_through_its_best_face(libraries, fixtures_dir):
    alice, _ = libraries
    _, matches = search_by_image(alice, query(fixtures_dir, "people/joe_biden/3.jpg"), threshold=0)
    found = names(matches)
    assert sorted(found) == sorted(set(found)) == sorted(ALICE), "threshold 0: every photo, each once"
    group = next(m for m in matches if m.photo.external_id == "obama_and_biden.jpg")
    group_faces = Face.objects.filter(photo=group.face.photo).count()
    assert group_faces == 2 and group.face.box[0] > 0.5, "Biden's face (right) stands for the group photo"


def test_the_threshold_and_the_limit_cut_the_results(libraries, fixtures_dir, settings):
    alice, _ = libraries
    image = query(fixtures_dir, "people/barack_obama/4.jpg")
    _, everything = search_by_image(alice, image, threshold=0)
    cut = (everything[2].similarity + everything[3].similarity) / 2
    _, above = search_by_image(alice, image, threshold=cut)
    assert names(above) == names(everything)[:3] and all(m.similarity >= cut for m in above)
    settings.FACES_DEFAULT_THRESHOLD = cut
    assert names(search_by_image(alice, image)[1]) == names(above), "no threshold: the setting's"
    _, best = search_by_image(alice, image, limit=1, threshold=0)
    assert names(best) == names(everything)[:1]
    assert search_by_image(alice, image, threshold=everything[0].similarity + 0.01)[1] == []


def test_a_chosen_face_of_a_group_query_is_searched(libraries, fixtures_dir):
    alice, _ = libraries
    image = query(fixtures_dir, "groups/two_people.jpg")
    result, _ = search_by_image(alice, image, threshold=0)
    assert result.faces_in_query == 2
    right = max(range(2), key=lambda i: result.query_faces[i].box.x)
    chosen, matches = search_by_image(alice, image, threshold=0, face_index=right)
    assert chosen.searched_face == right
    assert names(matches)[0] == "obama_and_biden.jpg"  # the same photo, then Biden alone
    assert names(matches)[1] == "biden_1.jpg"


def test_search_by_face_leaves_out_the_faces_own_photo(libraries):
    alice, _ = libraries
    face = Face.objects.get(owner=alice, photo__external_id="obama_1.jpg")
    matches = search_by_face(alice, face, threshold=0)
    found = names(matches)
    assert "obama_1.jpg" not in found and len(found) == len(set(found)) == len(ALICE) - 1
    assert found[:2] in (["obama_2.jpg", "obama_and_biden.jpg"], ["obama_and_biden.jpg", "obama_2.jpg"])


def test_a_query_without_a_face_says_so(libraries, fixtures_dir):
    alice, _ = libraries
    with pytest.raises(NoFaceError):
        search_by_image(alice, query(fixtures_dir, "noface/eagle.jpg"))
