"""People in a real browser: name a group, fix a wrong face, merge a split person,
all photos of a person, hide, and a selfie search that names the person."""

from __future__ import annotations

import datetime as dt
import re
import shutil

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from indexing.models import Face, Person, Post
from tests.browser.conftest import login
from tests.conftest import FIXTURES, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def load_people(user, tmp_path, names=("barack_obama", "joe_biden", "kit_harington")) -> None:
    """Index fixture people for ``user`` in this process; the import groups them at the end."""
    for name in names:
        shutil.copytree(FIXTURES / "people" / name, tmp_path / "library" / name)
    call_command("faces_import", "--user", user.email, "--sync", str(tmp_path / "library"))


def faces_of(user, name: str) -> list[Face]:
    return list(Face.objects.filter(owner=user, photo__external_id__startswith=f"{name}/").order_by("photo__external_id"))


def person_card(page, person_id: int):
    return page.locator(f'.person-card[data-person-id="{person_id}"]')


def test_name_fix_merge_and_find_a_person(page, live_server, tmp_path, shoot):
    user = make_user("people@example.com")
    load_people(user, tmp_path)
    obama, biden, kit = (faces_of(user, n) for n in ("barack_obama", "joe_biden", "kit_harington"))
    assert len({f.person_id for f in obama}) == 1 and None not in {f.person_id for f in obama + biden + kit}
    for days, face in enumerate(obama):  # newest first: 4.jpg, 3.jpg, 2.jpg, 1.jpg
        Post.objects.filter(photos__faces=face).update(timestamp=dt.datetime(2024, 1, days + 1, tzinfo=dt.UTC))
    # Two mistakes grouping could make: Obama split in two, one Biden photo among Obama's.
    split = Person.objects.create(owner=user, cover_face=obama[3])
    Face.objects.filter(pk__in=[obama[2].pk, obama[3].pk]).update(person=split)
    Face.objects.filter(pk=biden[0].pk).update(person=obama[0].person_id)
    main, biden_person = obama[0].person_id, biden[1].person_id

    login(page, live_server, user.email)
    page.click("nav >> text=People")
    expect(page).to_have_url(f"{live_server.url}/people/")
    expect(page.locator(".person-card")).to_have_count(4)
    expect(person_card(page, main).locator(".photo-count")).to_have_text("3")

    # Name a person in place.
    card = person_card(page, main)
    card.locator("input[name=name]").fill("Barack")
    card.locator("button[type=submit]").click()
    expect(person_card(page, main).locator(".person-name")).to_have_text("Barack")
    shoot(page, "18-people")

    # Move the wrong face out, to Biden's group.
    person_card(page, main).locator(".person-name").click()
    expect(page.locator("#person-name")).to_contain_text("Barack")
    expect(page.locator("#photos .result")).to_have_count(3)
    page.locator(f'.result[data-face-id="{biden[0].pk}"] input[name=faces]').check()
    expect(page.locator(f"label[for=move-target-{biden_person}] img")).to_be_visible()  # targets show faces
    page.check(f"#move-target-{biden_person}")
    page.click("#move-submit")
    expect(page.locator(".message.success")).to_contain_text("Moved 1 photo")
    expect(page.locator("#photos .result")).to_have_count(2)
    assert Face.objects.get(pk=biden[0].pk).person_id == biden_person

    # Merge the other half of the split person into Barack.
    page.check(f"#merge-other-{split.pk}")
    page.click("#merge-form button[type=submit]")
    expect(page.locator(".message.success")).to_contain_text("Barack now has 4 photos")

    # All photos of Barack, newest first, and only his.
    results = page.locator("#photos .result")
    expect(results).to_have_count(4)
    external = results.evaluate_all("els => els.map(e => e.dataset.externalId)")
    assert external == [f"barack_obama/{n}.jpg" for n in (4, 3, 2, 1)], external
    expect(page.locator("#person-count")).to_contain_text("4 photos")
    expect(page.locator("#photos .facebox")).to_have_count(4)
    shoot(page, "19-person")
    assert not Person.objects.filter(pk=split.pk).exists()

    # Hide Kit: gone from People until "show hidden".
    page.goto(f"{live_server.url}/people/")
    person_card(page, kit[0].person_id).locator(".cover").click()
    page.click("#hide-form button")
    page.goto(f"{live_server.url}/people/")
    expect(person_card(page, kit[0].person_id)).to_have_count(0)
    page.click("#show-hidden")
    expect(person_card(page, kit[0].person_id)).to_be_visible()

    # A selfie search names the person and links to all their photos.
    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "people" / "barack_obama" / "2.jpg"))
    page.click("#upload-search-submit")
    expect(page).to_have_url(re.compile(r"/search/[0-9a-f]{32}/"))
    hint = page.locator("#person-hint")
    expect(hint).to_contain_text("This looks like Barack")
    expect(hint).to_contain_text("see all 4 photos")
    expect(page.locator("#results .result").first).to_contain_text("Barack")
    hint.locator("a").click()
    expect(page).to_have_url(f"{live_server.url}/people/{main}/")


def test_this_is_me_from_a_face(page, live_server, tmp_path):
    user = make_user("me@example.com")
    load_people(user, tmp_path, names=("joe_biden", "kit_harington"))
    face = faces_of(user, "kit_harington")[0]
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/faces/{face.pk}/")
    page.click("#this-is-me")
    expect(page.locator(".message.success")).to_contain_text("this is you")
    expect(page.locator("#this-is-me")).to_have_count(0)
    page.click("nav >> text=People")
    first = page.locator(".person-card").first  # "me" comes first
    expect(first.locator(".person-name")).to_have_text("Me")
    expect(first.locator(".badge")).to_have_text("You")
    # Name another face from its page.
    other = faces_of(user, "joe_biden")[0]
    page.goto(f"{live_server.url}/faces/{other.pk}/")
    page.fill("#face-name", "Joe")
    page.click("#face-name-form button")
    expect(page.locator(".message.success")).to_contain_text("This is Joe")
    expect(page.locator(".face-head")).to_contain_text("This is Joe")
