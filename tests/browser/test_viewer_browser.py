"""Face boxes on the rendered photo, the photo viewer, picking faces left to right,
the same photo imported twice shown once."""

from __future__ import annotations

import io
import re
import shutil

import pytest
from django.core.management import call_command
from PIL import Image
from playwright.sync_api import expect

from indexing.engines import get_engine
from indexing.models import Face, Photo, Post
from tests.browser.conftest import login
from tests.conftest import FIXTURES, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PORTRAIT = FIXTURES / "people" / "joe_biden" / "3.jpg"  # 575 x 800
LANDSCAPE = FIXTURES / "people" / "kit_harington" / "1.jpg"  # 1200 x 599
ROTATED = FIXTURES / "special" / "exif_rotated.jpg"  # stored 1137 x 910, EXIF orientation 6: upright portrait
SHAPES = {"portrait": PORTRAIT, "landscape": LANDSCAPE, "rotated": ROTATED}
WIDTHS = (1280, 800, 390)

# The picture's own rectangle inside an <img> (object-fit: contain may letterbox it),
# and each face box's rectangle as fractions of that picture.
MEASURE = """([img, boxes]) => {
  const r = img.getBoundingClientRect();
  const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
  const w = img.naturalWidth * s, h = img.naturalHeight * s;
  const x = r.left + (r.width - w) / 2, y = r.top + (r.height - h) / 2;
  return {ratio: img.naturalWidth / img.naturalHeight, drawn: w / h, boxes: boxes.map((b) => {
    const q = b.getBoundingClientRect();
    return [(q.left - x) / w, (q.top - y) / h, q.width / w, q.height / h];
  })};
}"""


def measure(page, image_selector: str, box_selector: str) -> dict:
    page.wait_for_function(f"(() => {{ const i = document.querySelector('{image_selector}'); return i && i.complete && i.naturalWidth > 0; }})()")
    image = page.locator(image_selector).element_handle()
    boxes = page.locator(box_selector).element_handles()
    return page.evaluate(MEASURE, [image, boxes])


def assert_boxes_on(measured: dict, expected: list[list[float]], tolerance: float = 0.02) -> None:
    """Every expected face box is drawn at its place on the picture, in any order."""
    assert abs(measured["drawn"] - measured["ratio"]) < 0.02, measured  # the picture is not squashed
    drawn = sorted(measured["boxes"])
    assert len(drawn) == len(expected), (drawn, expected)
    for got, want in zip(drawn, sorted(expected)):
        assert all(abs(g - w) < tolerance for g, w in zip(got, want)), (got, want)


def swipe(page, selector: str, dx: int) -> None:
    """A horizontal one-finger swipe of ``dx`` px, as a touch screen sends it."""
    page.locator(selector).evaluate("""(el, dx) => {
      const touch = (x) => new Touch({identifier: 1, target: el, clientX: x, clientY: 300});
      el.dispatchEvent(new TouchEvent("touchstart", {touches: [touch(200)], changedTouches: [touch(200)], bubbles: true}));
      el.dispatchEvent(new TouchEvent("touchend", {touches: [], changedTouches: [touch(200 + dx)], bubbles: true}));
    }""", dx)


def load(user, tmp_path, files: dict[str, object]) -> None:
    library = tmp_path / "library"
    library.mkdir(exist_ok=True)
    for name, source in files.items():
        shutil.copy(source, library / f"{name}.jpg")
    call_command("faces_import", "--user", user.email, "--sync", str(library))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_search_boxes_sit_on_the_faces_at_every_width(page, live_server, shape):
    user = make_user(f"boxes-{shape}@example.com")
    login(page, live_server, user.email)
    data = SHAPES[shape].read_bytes()
    expected = [f.box.as_list() for f in get_engine().search_by_image(user, data, 10, 80).query_faces]
    assert expected, "the fixture has a face"
    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(SHAPES[shape]))
    page.click("#upload-search-submit")
    expect(page).to_have_url(re.compile(r"/search/[0-9a-f]{32}/"))
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        assert_boxes_on(measure(page, "#query img", "#query .facebox"), expected)


def test_viewer_boxes_keyboard_and_the_face_page_photo(page, live_server, tmp_path, shoot):
    user = make_user("viewer@example.com")
    load(user, tmp_path, {**SHAPES, "biden-1": FIXTURES / "people" / "joe_biden" / "1.jpg",
                          "biden-2": FIXTURES / "people" / "joe_biden" / "2.jpg"})
    Post.objects.filter(owner=user, external_id="portrait.jpg").update(
        caption="At the lake", permalink="https://www.instagram.com/p/PORTRAIT1/")
    login(page, live_server, user.email)
    biden = Face.objects.get(owner=user, photo__external_id="biden-1.jpg")
    page.goto(f"{live_server.url}/faces/{biden.pk}/")
    # The face page shows the photo the face came from, the face boxed on it.
    assert_boxes_on(measure(page, "#source-photo img", "#source-photo .facebox"), [biden.box])
    results = page.locator("#results .result")
    expect(results.first).to_be_visible()
    ids = results.evaluate_all("els => els.map(e => e.dataset.photoId)")
    assert len(ids) >= 2, ids

    page.locator("#results .result .pic").first.click()
    dialog = page.locator("#lightbox")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("data-loaded", ids[0])
    photo = Photo.objects.get(pk=int(ids[0]))
    assert_boxes_on(measure(page, "#lightbox #viewer-image", "#lightbox .facebox"), [f.box for f in photo.faces.all()])
    shoot(page, "20-photo-viewer", full_page=False)
    page.keyboard.press("ArrowRight")
    expect(dialog).to_have_attribute("data-loaded", ids[1])
    expect(page.locator("#lightbox-count")).to_have_text(f"Photo 2 of {len(ids)}")
    page.keyboard.press("ArrowLeft")
    expect(dialog).to_have_attribute("data-loaded", ids[0])
    swipe(page, "#lightbox", -120)  # a swipe to the left shows the next photo
    expect(dialog).to_have_attribute("data-loaded", ids[1])
    swipe(page, "#lightbox", 120)
    expect(dialog).to_have_attribute("data-loaded", ids[0])
    # Each box opens the face's similar photos; the list under the photo names its person.
    face = photo.faces.first()
    expect(page.locator(f'#lightbox .facebox[data-face-id="{face.pk}"]')).to_have_attribute("href", f"/faces/{face.pk}/")
    expect(page.locator(f'#lightbox li[data-face-id="{face.pk}"] .person-link')).to_have_attribute(
        "href", f"/people/{face.person_id}/")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # The portrait's own page: date, caption, permalink; boxes on the faces at every width.
    portrait = Photo.objects.get(owner=user, external_id="portrait.jpg")
    page.goto(f"{live_server.url}/photos/{portrait.pk}/")
    expect(page.locator("#viewer .caption")).to_have_text("At the lake")
    expect(page.locator("#viewer .permalink")).to_have_attribute("href", "https://www.instagram.com/p/PORTRAIT1/")
    expect(page.locator("#viewer .post-date")).not_to_be_empty()
    for name in SHAPES:
        shown = Photo.objects.get(owner=user, external_id=f"{name}.jpg")
        page.goto(f"{live_server.url}/photos/{shown.pk}/")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            assert_boxes_on(measure(page, "#viewer-image", "#viewer .facebox"), [f.box for f in shown.faces.all()])


def test_face_picker_numbers_left_to_right_with_big_tap_targets(page, live_server):
    user = make_user("picker@example.com")
    login(page, live_server, user.email)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "groups" / "two_people.jpg"))
    page.click("#upload-search-submit")
    expect(page.locator("h1")).to_have_text("Which face?")
    picks = page.locator("#query .facebox.pick")
    expect(picks).to_have_count(2)
    lefts = picks.evaluate_all("els => els.map(e => e.getBoundingClientRect().left)")
    labels = picks.evaluate_all("els => els.map(e => e.textContent.trim())")
    assert [label for _, label in sorted(zip(lefts, labels))] == ["1", "2"], (lefts, labels)
    # Each pick answers a 44 x 44 px tap around its centre, however small the face is drawn.
    for i in range(2):
        hit = picks.nth(i).evaluate("""(el) => {
          const r = el.getBoundingClientRect(), cx = r.left + r.width / 2, cy = r.top + r.height / 2;
          return [[-21, 0], [21, 0], [0, -21], [0, 21]].every(([dx, dy]) =>
            el.contains(document.elementFromPoint(cx + dx, cy + dy)));
        }""")
        assert hit, f"face {i + 1} is not a 44 px tap target"


def test_the_same_photo_imported_twice_is_one_result(page, live_server, tmp_path):
    user = make_user("twice@example.com")
    original = FIXTURES / "people" / "barack_obama" / "4.jpg"
    with Image.open(original) as img:  # what Instagram serves: the same picture, re-encoded smaller
        buffer = io.BytesIO()
        img.convert("RGB").resize((img.width * 3 // 4, img.height * 3 // 4)).save(buffer, "JPEG", quality=80)
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(buffer.getvalue())
    load(user, tmp_path, {"original": original, "copy": copy, "other": FIXTURES / "people" / "barack_obama" / "1.jpg"})
    assert Photo.objects.filter(owner=user, status=Photo.Status.INDEXED).count() == 3
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "people" / "barack_obama" / "2.jpg"))
    page.click("#upload-search-submit")
    results = page.locator("#results .result")
    expect(results.first).to_be_visible()
    external = results.evaluate_all("els => els.map(e => e.dataset.externalId)")
    assert sorted(external) in (["original.jpg", "other.jpg"], ["copy.jpg", "other.jpg"]), external
    expect(page.locator("#results .result[data-duplicates='1'] .dupes")).to_contain_text("Also imported 1 more time")
