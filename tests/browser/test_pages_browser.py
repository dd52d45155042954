"""Every page: an axe-core audit (light and dark), no sideways scrolling and 44 px
tap targets at 390 px, keyboard focus; first run, upload limits, deleting and
indexing again, undoing people corrections."""

from __future__ import annotations

import re
import shutil

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core.management import call_command
from playwright.sync_api import expect

from indexing.models import Face, IndexRun, Person, Photo
from tests.browser.conftest import confirm_email, login
from tests.conftest import FIXTURES, PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ANONYMOUS_PAGES = ["/", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]


def load_people(user, tmp_path, names=("barack_obama", "joe_biden", "kit_harington")) -> None:
    for name in names:
        shutil.copytree(FIXTURES / "people" / name, tmp_path / "library" / name)
    call_command("faces_import", "--user", user.email, "--sync", str(tmp_path / "library"))


def signed_in_pages(page, live_server, user) -> list[str]:
    """Every page a signed-in user with a library can open (a search made to get its results page)."""
    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "people" / "barack_obama" / "2.jpg"))
    page.click("#upload-search-submit")
    expect(page).to_have_url(re.compile(r"/search/[0-9a-f]{32}/"))
    results = page.url.removeprefix(live_server.url)
    face = Face.objects.filter(owner=user).first()
    person = Person.objects.filter(owner=user).first()
    run = IndexRun.objects.filter(owner=user).first()
    return [
        "/", "/search/", results, "/gallery/", "/gallery/all/", f"/faces/{face.pk}/", f"/photos/{face.photo_id}/",
        "/people/", f"/people/{person.pk}/", "/import/", f"/runs/{run.pk}/", "/settings/", "/settings/delete/",
        "/settings/delete/?photos=1", "/settings/delete-account/", "/consent/", "/instagram/connect/",
        "/accounts/email/", "/accounts/password/change/",
    ]


def serious_violations(page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def phone_problems(page) -> list[str]:
    """Sideways scrolling, and visible controls smaller than 44 px to tap."""
    return page.evaluate("""() => {
      const problems = [];
      const width = document.documentElement.clientWidth;
      if (document.documentElement.scrollWidth > width) problems.push(`scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
      for (const el of document.querySelectorAll("button, a.button, .nav-toggle-label, label.target, input[type=file], select, input[type=text], input[type=email], input[type=password]")) {
        const r = el.getBoundingClientRect();
        if (!r.width || !r.height || getComputedStyle(el).visibility === "hidden") continue;
        if (el.closest(".visually-hidden") || el.classList.contains("visually-hidden")) continue;
        if (r.height < 43.5 || r.width < 43.5) problems.push(`${el.tagName.toLowerCase()}#${el.id || ""}.${el.className} is ${Math.round(r.width)}x${Math.round(r.height)}`);
        if (r.right > width + 1) problems.push(`${el.tagName.toLowerCase()}#${el.id} sticks out (${Math.round(r.right)} > ${width})`);
      }
      return problems;
    }""")


def test_every_page_passes_axe_and_holds_on_a_phone(page, live_server, tmp_path, shoot):
    found: dict[str, list[str]] = {}
    for path in ANONYMOUS_PAGES:
        page.goto(f"{live_server.url}{path}")
        found[f"{path} (light)"] = serious_violations(page)
        page.set_viewport_size({"width": 390, "height": 844})
        found[f"{path} (phone)"] = phone_problems(page)
        page.set_viewport_size({"width": 1280, "height": 860})
    user = make_user("pages@example.com")
    load_people(user, tmp_path)
    login(page, live_server, user.email)
    pages = signed_in_pages(page, live_server, user)
    for path in pages:
        page.emulate_media(color_scheme="light")
        page.set_viewport_size({"width": 1280, "height": 860})
        page.goto(f"{live_server.url}{path}")
        found[f"{path} (light)"] = serious_violations(page)
        page.emulate_media(color_scheme="dark")
        found[f"{path} (dark)"] = serious_violations(page)
        if path.startswith("/search/") and len(path) > 20:
            shoot(page, "23-dark-results")
        page.emulate_media(color_scheme="light")
        page.set_viewport_size({"width": 390, "height": 844})
        found[f"{path} (phone)"] = phone_problems(page)
        page.click(".nav-toggle-label")  # the open menu fits too
        found[f"{path} (phone menu)"] = phone_problems(page)
        if path.startswith("/search/") and len(path) > 20:
            page.click(".nav-toggle-label")
            columns = page.locator("#results").evaluate("el => getComputedStyle(el).gridTemplateColumns.split(' ').length")
            assert columns == 2, "results are two columns on a phone"
            shoot(page, "22-phone-results")
    problems = [f"{where}: {problem}" for where, listed in found.items() for problem in listed]
    assert not problems, "\n".join(problems)


def test_keyboard_skip_link_and_visible_focus(page, live_server):
    user = make_user("keys@example.com")
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/search/")
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    assert skip.bounding_box()["y"] >= 0, "the skip link shows when focused"
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    for _ in range(40):  # the file input is reached by Tab, and its drop zone shows the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "search-file":
            break
    else:
        pytest.fail("Tab never reached the search file input")
    outline = page.locator("#search-dropzone").evaluate("el => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth")
    assert outline.startswith("solid") and not outline.endswith(" 0px"), outline


def test_first_run_and_sign_up_errors_by_their_field(page, live_server, tmp_path, shoot):
    page.goto(f"{live_server.url}/")
    sign_up = page.locator(".nav a.button")
    colours = sign_up.evaluate("el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]")
    assert contrast(*colours) >= 4.5, colours
    page.click("text=Create your account")
    page.fill("input[name=email]", "first.run@example.com")
    page.fill("input[name=password1]", "short")
    page.fill("input[name=password2]", "short")
    page.click("form button[type=submit]")
    expect(page.locator("#field-password1 .errorlist")).to_contain_text("too short")
    expect(page.locator("#field-email .errorlist")).to_have_count(0)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Verify Your Email")
    confirm_email(page, live_server, "first.run@example.com")
    page.goto(f"{live_server.url}/")
    expect(page.locator("#greeting")).to_have_text("Welcome to Faces")
    page.click("text=Review and give consent")
    page.check("#id_agree")
    page.click("button:has-text('I agree')")
    page.goto(f"{live_server.url}/")
    expect(page.locator("#greeting")).not_to_contain_text("back")
    steps = page.locator("#next-steps")
    for step in ("Connect Instagram", "Upload photos", "Upload the export"):
        expect(steps).to_contain_text(step)
    expect(page.locator("#search-shortcut")).to_have_count(0)
    shoot(page, "03b-first-home")
    from django.contrib.auth import get_user_model

    load_people(get_user_model().objects.get(email="first.run@example.com"), tmp_path, names=("joe_biden",))
    page.reload()
    expect(page.locator("#greeting")).to_have_text("Welcome back")
    page.click("#search-shortcut a.button >> text=Search by face")
    expect(page).to_have_url(f"{live_server.url}/search/")


def contrast(foreground: str, background: str) -> float:
    def luminance(css: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", css)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    a, b = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_search_upload_over_the_limit_is_refused_in_the_page(page, live_server, settings, tmp_path):
    settings.FACES_MAX_UPLOAD_BYTES = 1024 * 1024
    big = tmp_path / "big.jpg"
    big.write_bytes((FIXTURES / "people" / "joe_biden" / "1.jpg").read_bytes() + b"\0" * (3 * 1024 * 1024))
    user = make_user("limit@example.com")
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/search/")
    expect(page.locator("#search-file-help")).to_contain_text("up to 1 MB")
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.set_input_files("#search-file", str(big))
    error = page.locator("#search-file-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("This photo is too large")
    expect(error).to_contain_text("the limit is 1 MB")
    page.click("#upload-search-submit")
    expect(page).to_have_url(f"{live_server.url}/search/")
    assert posts == [], posts
    page.set_input_files("#search-file", str(FIXTURES / "people" / "john_salley" / "1.jpg"))
    expect(error).to_be_hidden()


def test_delete_asks_first_then_index_again_from_stored_photos(page, live_server, tmp_path, start_worker, shoot):
    user = make_user("delete@example.com")
    load_people(user, tmp_path, names=("barack_obama", "joe_biden"))
    faces, people = Face.objects.filter(owner=user).count(), Person.objects.filter(owner=user).count()
    named = Person.objects.filter(owner=user).first()
    Person.objects.filter(pk=named.pk).update(name="Barack")
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/settings/")
    expect(page.locator("#count-faces")).to_have_text(str(faces))
    page.click("#delete-face-data")
    expect(page.locator("#confirm-faces")).to_have_text(str(faces))
    expect(page.locator("#confirm-people")).to_have_text(str(people))
    expect(page.locator("#confirm-names")).to_have_text("Barack")
    shoot(page, "21-delete-confirm")
    page.click("text=Cancel")
    assert Face.objects.filter(owner=user).count() == faces, "nothing is deleted before the confirmation"
    page.click("#delete-face-data")
    page.click("#confirm-delete")
    expect(page.locator(".message.success")).to_contain_text(f"{faces} faces")
    expect(page.locator("#count-faces")).to_have_text("0")
    photos = Photo.objects.filter(owner=user).count()
    page.goto(f"{live_server.url}/gallery/")
    expect(page.locator("#gallery-empty")).to_contain_text("face data was deleted")
    expect(page.locator("#gallery-empty")).not_to_contain_text("still running")
    page.goto(f"{live_server.url}/")
    expect(page.locator("#home-faces")).to_have_text("0")
    expect(page.locator("#home-photos")).to_have_text(str(photos))
    page.goto(f"{live_server.url}/settings/")
    expect(page.locator("#count-photos")).to_have_text(str(photos))

    start_worker()
    page.click("#reindex")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("#run-done")).to_be_visible(timeout=120_000)
    expect(page.locator("#faces-found")).to_have_text(str(faces))
    assert Face.objects.filter(owner=user).count() == faces
    page.goto(f"{live_server.url}/")
    expect(page.locator("#home-faces")).to_have_text(str(faces))
    page.goto(f"{live_server.url}/settings/")
    expect(page.locator("#count-faces")).to_have_text(str(faces))
    expect(page.locator("#reindex")).to_have_count(0)


def test_moves_and_merges_can_be_undone(page, live_server, tmp_path):
    user = make_user("undo@example.com")
    load_people(user, tmp_path, names=("barack_obama", "joe_biden"))
    obama = Face.objects.filter(owner=user, photo__external_id__startswith="barack_obama/").first().person
    biden = Face.objects.filter(owner=user, photo__external_id__startswith="joe_biden/").first().person
    Person.objects.filter(pk=obama.pk).update(name="Barack")
    obama_faces = set(Face.objects.filter(person=obama).values_list("pk", flat=True))
    biden_faces = set(Face.objects.filter(person=biden).values_list("pk", flat=True))
    login(page, live_server, user.email)

    page.goto(f"{live_server.url}/people/{obama.pk}/")
    moved = sorted(obama_faces)[0]
    page.locator(f'.result[data-face-id="{moved}"] input[name=faces]').check()
    page.check(f"#move-target-{biden.pk}")
    page.click("#move-submit")
    expect(page.locator(".message.success")).to_contain_text("Moved 1 photo")
    assert Face.objects.get(pk=moved).person_id == biden.pk
    page.click("#undo")
    expect(page.locator(".message.success")).to_contain_text("Undone")
    assert Face.objects.get(pk=moved).person_id == obama.pk

    page.goto(f"{live_server.url}/people/{obama.pk}/")
    page.check(f"#merge-other-{biden.pk}")
    page.click("#merge-form button[type=submit]")
    expect(page.locator(".message.success")).to_contain_text("Merged")
    assert not Person.objects.filter(pk=biden.pk).exists()
    page.click("#undo")
    expect(page.locator(".message.success")).to_contain_text("Undone")
    assert set(Face.objects.filter(person__name="Barack").values_list("pk", flat=True)) == obama_faces
    back = {f.person_id for f in Face.objects.filter(pk__in=biden_faces)}
    assert len(back) == 1 and back != {obama.pk}, back
