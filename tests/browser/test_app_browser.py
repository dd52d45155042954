"""The product in a real browser: sign-up to search, webcam selfie, isolation."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from indexing.models import Face, IndexRun, Photo
from tests.browser.conftest import confirm_email, login, named_copies
from tests.conftest import FIXTURES, PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIBRARY = [
    f"people/{name}/{n}.jpg"
    for name, count in [("barack_obama", 4), ("joe_biden", 3), ("kit_harington", 3), ("alex_lacamoire", 3)]
    for n in range(1, count + 1)
]


def identity(external_id: str) -> str:
    return external_id.rsplit("-", 1)[0].split("/")[0]


def load_library(user) -> None:
    """Index the fixture people for ``user`` in this process (fast set-up)."""
    call_command("faces_import", "--user", user.email, "--sync", str(FIXTURES / "people"))


def test_sign_up_consent_upload_progress_gallery_similar(page, live_server, start_worker, tmp_path, shoot):
    start_worker()
    page.goto(live_server.url)
    shoot(page, "01-landing")
    page.click("text=Create your account")
    page.fill("input[name=email]", "new.person@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    shoot(page, "02-sign-up")
    page.click("form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Verify Your Email")  # the same page whether or not it is registered
    confirm_email(page, live_server, "new.person@example.com")
    page.click("text=Review and give consent")
    expect(page.locator("h1")).to_have_text("Before we look at any face")
    shoot(page, "03-consent")
    page.check("#id_agree")
    page.click("button:has-text('I agree')")
    expect(page.locator(".message.success")).to_contain_text("Thank you")

    page.click("nav >> text=Import")
    page.set_input_files("#id_photos", named_copies(tmp_path, LIBRARY))
    expect(page.locator("#file-count")).to_contain_text(f"{len(LIBRARY)} photos selected")
    shoot(page, "04-import")
    page.click("#upload-submit")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("#run-done")).to_be_visible(timeout=120_000)
    expect(page.locator("#posts-done")).to_have_text(str(len(LIBRARY)))
    expect(page.locator("#faces-found")).to_have_text(str(len(LIBRARY)))
    expect(page.locator("#run-status")).to_have_text("Done")
    shoot(page, "05-progress-done")

    page.click("#open-gallery")
    faces = page.locator("#faces a")
    expect(faces).to_have_count(len(LIBRARY))
    shoot(page, "06-gallery")
    clicked = faces.first
    face = Face.objects.get(pk=int(clicked.get_attribute("data-face-id")))
    who = identity(face.photo.external_id)
    clicked.click()
    results = page.locator("#results .result")
    expect(results.first).to_be_visible()
    same = sum(1 for n in LIBRARY if f"/{who}/" in f"/{n}")
    got = [identity(e) for e in results.evaluate_all("els => els.map(e => e.dataset.externalId)")]
    assert got[: same - 1] == [who] * (same - 1), got  # the person's other photos come first
    assert face.photo.external_id not in results.evaluate_all("els => els.map(e => e.dataset.externalId)")
    shoot(page, "07-similar-faces")


def test_webcam_selfie_finds_the_person(page, live_server, shoot):
    user = make_user("selfie@example.com")
    load_library(user)
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/search/")
    page.click("#camera-start")
    expect(page.locator("body")).to_have_attribute("data-camera", "ready")
    expect(page.locator("#camera-capture")).to_be_enabled()
    page.wait_for_function("document.getElementById('camera-video').videoWidth > 0")
    shoot(page, "08-search-camera")
    page.click("#camera-capture")
    expect(page.locator("#camera-shot")).to_be_visible()
    expect(page.locator("#camera-retake")).to_be_visible()
    page.click("#camera-search")
    expect(page).to_have_url(re.compile(r"/search/[0-9a-f]{32}/"))
    results = page.locator("#results .result")
    expect(results.first).to_be_visible()
    ids = results.evaluate_all("els => els.map(e => e.dataset.externalId)")
    assert [i.split("/")[0] for i in ids[:4]] == ["barack_obama"] * 4, ids
    expect(page.locator(".result .similarity").first).to_contain_text("%")
    shoot(page, "09-selfie-results")
    # Raising the threshold narrows the results.
    page.goto(page.url.split("?")[0] + "?threshold=99")
    assert page.locator("#results .result").count() <= len(ids)


def test_upload_search_with_two_faces_asks_which(page, live_server, shoot):
    user = make_user("pick@example.com")
    load_library(user)
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "groups" / "two_people.jpg"))
    page.click("#upload-search-submit")
    expect(page.locator("h1")).to_have_text("Which face?")
    picks = page.locator("#query .facebox.pick")
    expect(picks).to_have_count(2)
    expect(page.locator("#results")).to_have_count(0)
    shoot(page, "10-which-face")
    # Faces are ordered largest first; pick the one on the right (Biden).
    boxes = picks.evaluate_all("els => els.map(e => parseFloat(e.style.left))")
    picks.nth(boxes.index(max(boxes))).click()
    results = page.locator("#results .result")
    expect(results.first).to_be_visible()
    ids = results.evaluate_all("els => els.map(e => e.dataset.externalId)")
    assert [i.split("/")[0] for i in ids[:3]] == ["joe_biden"] * 3, ids
    shoot(page, "11-search-results")


def test_upload_search_without_a_face_says_so(page, live_server):
    user = make_user("noface@example.com")
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "noface" / "eagle.jpg"))
    page.click("#upload-search-submit")
    expect(page.locator("#search-error")).to_contain_text("could not find a face")


@pytest.mark.browser_context_args(permissions=[])
def test_camera_permission_denied_is_explained(page, live_server):
    user = make_user("denied@example.com")
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/search/")
    page.click("#camera-start")
    expect(page.locator("#camera-error")).to_contain_text("permission was denied")


def test_no_camera_is_explained(launch_browser, live_server):
    user = make_user("nocamera@example.com")
    browser = launch_browser(args=["--use-fake-device-for-media-stream=device-count=0"])
    try:
        context = browser.new_context(permissions=["camera"])
        page = context.new_page()
        login(page, live_server, user.email)
        page.goto(f"{live_server.url}/search/")
        page.click("#camera-start")
        expect(page.locator("#camera-error")).to_contain_text("No camera was found")
    finally:
        browser.close()


def test_second_user_sees_nothing_of_the_first(page, live_server, shoot):
    owner = make_user("owner@example.com")
    load_library(owner)
    stranger = make_user("stranger@example.com")
    login(page, live_server, stranger.email)
    page.goto(f"{live_server.url}/gallery/")
    expect(page.locator("#gallery-empty")).to_be_visible()
    shoot(page, "12-empty-gallery")
    photo = Photo.objects.filter(owner=owner).first()
    face = Face.objects.filter(owner=owner).first()
    run = IndexRun.objects.filter(owner=owner).first()
    for path in [f"/photos/{photo.pk}/image.jpg", f"/faces/{face.pk}/", f"/faces/{face.pk}/thumb.jpg",
                 f"/runs/{run.pk}/", f"/runs/{run.pk}/progress.json"]:
        response = page.request.get(f"{live_server.url}{path}")
        assert response.status == 404, path
    # A search by the owner's face finds nothing in the stranger's empty library.
    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "people" / "joe_biden" / "1.jpg"))
    page.click("#upload-search-submit")
    expect(page.locator("#no-results")).to_be_visible()


def test_pages_on_a_phone(page, live_server, shoot):
    user = make_user("phone@example.com")
    load_library(user)
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/gallery/")
    expect(page.locator(".nav")).to_be_hidden()
    page.click(".nav-toggle-label")
    expect(page.locator(".nav")).to_be_visible()
    shoot(page, "13-phone-gallery")
    page.goto(f"{live_server.url}/settings/")
    shoot(page, "14-phone-settings")
