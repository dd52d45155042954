"""Limits a stranger's upload runs into, and the headers every page carries.

Upload size, pixel count, files per import, ZIP limits (through the upload
view), per-user rate limits on search and import, allauth's login throttle,
the Content-Security-Policy that still lets the camera page work.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from faces_site import ratelimit
from faces_site.ratelimit import parse_rate
from indexing.images import ImageError, decode_image
from indexing.models import IndexRun, Photo, Source
from tests.conftest import PASSWORD, ROOT
from tests.test_pipeline import png_header_bomb

pytestmark = pytest.mark.django_db


def jpeg(side: int = 64, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buffer, "JPEG")
    return buffer.getvalue()


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def followed_text(response) -> str:
    return response.content.decode(errors="replace")


# -- upload size ------------------------------------------------------------------


def test_search_refuses_a_photo_over_the_size_limit(alice_client, settings, fixtures_dir):
    photo = (fixtures_dir / "people/barack_obama/1.jpg").read_bytes()
    settings.FACES_MAX_UPLOAD_BYTES = len(photo) - 1
    response = alice_client.post(reverse("search"), {"image": SimpleUploadedFile("big.jpg", photo)})
    assert response.status_code == 400
    assert "This photo is too large (the limit is" in followed_text(response)
    as_json = alice_client.post(
        reverse("search"), {"image": SimpleUploadedFile("big.jpg", photo)}, HTTP_ACCEPT="application/json"
    )
    assert as_json.status_code == 400 and "too large" in as_json.json()["error"]


def test_search_refuses_an_oversized_body_before_reading_it(alice_client, settings):
    settings.FACES_MAX_UPLOAD_BYTES = 10_000
    body = b"\xff\xd8" + b"\x00" * (1024 * 1024 + 20_000)
    response = alice_client.post(reverse("search"), {"image": SimpleUploadedFile("huge.jpg", body)}, follow=True)
    assert response.redirect_chain[0] == (reverse("search"), 302)
    assert "This photo is too large" in followed_text(response)
    as_json = alice_client.post(
        reverse("search"), {"image": SimpleUploadedFile("huge.jpg", body)}, HTTP_ACCEPT="application/json"
    )
    assert as_json.status_code == 413 and "too large" in as_json.json()["error"]


def test_photo_upload_skips_files_over_the_size_limit(alice_client, user, settings):
    small, big = jpeg(32), jpeg(400)
    settings.FACES_MAX_UPLOAD_BYTES = len(big) - 1
    response = alice_client.post(
        reverse("upload_photos"),
        {"photos": [SimpleUploadedFile("small.jpg", small), SimpleUploadedFile("big.jpg", big)]},
        follow=True,
    )
    assert "Not imported: big.jpg: larger than" in followed_text(response)
    assert list(Photo.objects.filter(owner=user).values_list("external_id", flat=True)) == ["small.jpg"]


# -- pixel count ------------------------------------------------------------------


def test_pillows_bomb_guard_is_set_from_settings(settings):
    assert Image.MAX_IMAGE_PIXELS == settings.FACES_MAX_IMAGE_PIXELS == 80_000_000
    settings.FACES_MAX_IMAGE_PIXELS = 10_000
    assert Image.MAX_IMAGE_PIXELS == 10_000
    with pytest.raises(ImageError, match="too large"):
        decode_image(png(200, 200))
    # Code that opens images without decode_image is guarded too.
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(png(300, 300))).load()
    assert decode_image(png(90, 90)).width == 90


def test_a_decompression_bomb_is_refused_with_a_message(alice_client):
    response = alice_client.post(reverse("search"), {"image": SimpleUploadedFile("bomb.png", png_header_bomb())})
    assert response.status_code == 400
    assert "The image is too large" in followed_text(response)


def rgb_image(kind: str, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "gray").save(buffer, kind)
    return buffer.getvalue()


def test_search_photos_have_a_lower_pixel_limit_than_imports(alice_client, user, settings):
    """A search photo is decoded in the web process: at most FACES_MAX_SEARCH_PIXELS of it."""
    settings.FACES_MAX_SEARCH_PIXELS = 2_000_000
    big_png = rgb_image("PNG", 2000, 1500)  # 3 MP
    response = alice_client.post(reverse("search"), {"image": SimpleUploadedFile("big.png", big_png)})
    assert response.status_code == 400
    assert "too many pixels (2000x1500; the limit here is 2 megapixels)" in followed_text(response)
    # The same photo imports: the import limit is FACES_MAX_IMAGE_PIXELS.
    assert decode_image(big_png, max_side=1600).width == 2000
    imported = alice_client.post(reverse("upload_photos"), {"photos": [SimpleUploadedFile("big.png", big_png)]})
    assert imported.status_code == 302 and Photo.objects.filter(owner=user).count() == 1


def test_a_big_jpeg_search_photo_is_decoded_reduced(alice_client, settings):
    """A JPEG counts at the scale it is decoded at (draft), so a 31 MP one fits a 2 MP limit."""
    settings.FACES_MAX_SEARCH_PIXELS = 2_000_000
    big_jpeg = rgb_image("JPEG", 6400, 4800)
    decoded = decode_image(big_jpeg, max_side=1600, pixel_limit=settings.FACES_MAX_SEARCH_PIXELS)
    assert (decoded.width, decoded.height) == (6400, 4800) and max(decoded.image.size) == 1600
    response = alice_client.post(reverse("search"), {"image": SimpleUploadedFile("big.jpg", big_jpeg)})
    assert response.status_code == 302
    with pytest.raises(ImageError, match="too many pixels"):
        decode_image(rgb_image("JPEG", 2000, 1500), max_side=1600, pixel_limit=1_000_000)  # no draft below 2x


def test_decoding_reduced_keeps_every_mode_upright_and_rgb():
    for mode in ("RGBA", "LA", "I;16", "P", "CMYK"):
        buffer = io.BytesIO()
        Image.new(mode, (4000, 1000)).save(buffer, "TIFF")
        decoded = decode_image(buffer.getvalue(), max_side=1000)
        assert decoded.image.mode == "RGB" and max(decoded.image.size) <= 1000, mode
        assert (decoded.width, decoded.height) == (4000, 1000)


# -- files per import -------------------------------------------------------------


def test_too_many_files_gives_a_message_not_an_error_page(alice_client, user, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    files = [SimpleUploadedFile(f"{n}.jpg", jpeg(16, color)) for n, color in enumerate(["red", "green", "blue", "black"])]
    response = alice_client.post(reverse("upload_photos"), {"photos": files}, follow=True)
    assert response.redirect_chain == [(reverse("import"), 302)]
    assert "Please upload at most 3 files at a time." in followed_text(response)
    assert not Source.objects.filter(owner=user).exists()
    files = [SimpleUploadedFile(f"{n}.jpg", jpeg(16, color)) for n, color in enumerate(["red", "green", "blue", "black"])]
    as_json = alice_client.post(reverse("upload_photos"), {"photos": files}, HTTP_ACCEPT="application/json")
    assert as_json.status_code == 400 and "at most 3" in as_json.json()["error"]


def test_the_file_count_limit_itself_is_accepted(alice_client, user, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    files = [SimpleUploadedFile(f"{n}.jpg", jpeg(16, color)) for n, color in enumerate(["red", "green", "blue"])]
    response = alice_client.post(reverse("upload_photos"), {"photos": files})
    assert response.status_code == 302 and response["Location"].startswith("/runs/")
    assert Photo.objects.filter(owner=user).count() == 3


# -- ZIP limits through the upload view -------------------------------------------


def export_zip(posts_name: str = "your_instagram_activity/media/posts_1.json", extra: dict | None = None,
               photos: int = 2, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    posts = [{"media": [{"uri": f"media/posts/202401/1790000000000000{n}.jpg", "creation_timestamp": 1704067200 + n,
                         "title": f"post {n}"}]} for n in range(photos)]
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr(posts_name, json.dumps(posts))
        for n in range(photos):
            archive.writestr(f"media/posts/202401/1790000000000000{n}.jpg", jpeg(32 + n))
        for name, data in (extra or {}).items():
            archive.writestr(zipfile.ZipInfo(name) if ".." in name else name, data)
    return buffer.getvalue()


def upload_export(client: Client, data: bytes, name: str = "export.zip"):
    return client.post(reverse("upload_export"), {"archive": SimpleUploadedFile(name, data)}, follow=True)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_zip", "This is not a ZIP file"),
        ("unsafe_path", "unsafe path"),
        ("too_many_members", "at most 5 are accepted"),
        ("too_large_total", "can be imported at once"),
        ("html_export", "HTML format"),
        ("json_bomb", "suspiciously compressed"),
    ],
)
def test_zip_limits_through_the_upload_view(alice_client, user, settings, case, message):
    if case == "not_zip":
        data = jpeg()
    elif case == "unsafe_path":
        data = export_zip(extra={"../../etc/cron.d/evil": b"x"})
    elif case == "too_many_members":
        settings.FACES_MAX_EXPORT_MEMBERS = 5
        data = export_zip(photos=5)
    elif case == "too_large_total":
        settings.FACES_MAX_EXPORT_BYTES = 1000
        data = export_zip(photos=3)
    elif case == "html_export":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("your_instagram_activity/media/posts_1.html", "<html></html>")
        data = buffer.getvalue()
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("content/posts_1.json", "[" + " " * (8 * 1024**2) + "]")
        data = buffer.getvalue()
    response = upload_export(alice_client, data)
    assert response.redirect_chain == [(reverse("import"), 302)]
    assert message in followed_text(response)
    assert not Source.objects.filter(owner=user).exists() and not IndexRun.objects.filter(owner=user).exists()


def test_a_good_export_starts_a_run(alice_client, user):
    response = upload_export(alice_client, export_zip())
    assert response.redirect_chain[0][0].startswith("/runs/")
    assert IndexRun.objects.filter(owner=user, source__kind=Source.Kind.EXPORT).count() == 1


# -- per-user rate limits ---------------------------------------------------------


def test_rate_strings():
    assert parse_rate("30/m") == (30, 60)
    assert parse_rate("10/h") == (10, 3600)
    assert parse_rate("100/5m") == (100, 300)
    assert parse_rate(" 2 / s ") == (2, 1)
    with pytest.raises(ValueError):
        parse_rate("ten per hour")


def search_post(client: Client, fixtures_dir: Path, **headers):
    with (fixtures_dir / "people/joe_biden/1.jpg").open("rb") as image:
        return client.post(reverse("search"), {"image": image}, **headers)


def test_search_is_rate_limited_per_user(alice_client, other_user, settings, fixtures_dir):
    settings.FACES_RATE_LIMITS = {"search": "3/m", "import": "10/h"}
    for _ in range(3):
        assert search_post(alice_client, fixtures_dir).status_code == 302
    limited = search_post(alice_client, fixtures_dir)
    assert limited.status_code == 429
    assert "Too many searches in a short time. Please try again in" in followed_text(limited)
    assert 1 <= int(limited["Retry-After"]) <= 60
    as_json = search_post(alice_client, fixtures_dir, HTTP_ACCEPT="application/json")
    assert as_json.status_code == 429 and as_json.json()["error"].startswith("Too many searches")
    # The results page runs a search too, so it counts in the same scope.
    assert alice_client.get(reverse("search_results", args=["0" * 32])).status_code == 429
    # Only Alice is slowed down; the search page itself still opens for her.
    assert alice_client.get(reverse("search")).status_code == 200
    bob = Client()
    bob.force_login(other_user)
    assert search_post(bob, fixtures_dir).status_code == 302


def test_rate_limit_window_slides(alice_client, settings, fixtures_dir, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(ratelimit, "clock", lambda: now[0])  # however long a search takes on a busy machine
    settings.FACES_RATE_LIMITS = {"search": "2/s"}
    assert [search_post(alice_client, fixtures_dir).status_code for _ in range(3)] == [302, 302, 429]
    now[0] += 1.0
    assert search_post(alice_client, fixtures_dir).status_code == 302


def test_imports_are_rate_limited_per_user(alice_client, user, settings):
    settings.FACES_RATE_LIMITS = {"search": "30/m", "import": "2/h"}
    statuses = []
    for n in range(3):
        response = alice_client.post(reverse("upload_photos"), {"photos": [SimpleUploadedFile("a.jpg", jpeg(20 + n))]})
        statuses.append(response.status_code)
    assert statuses == [302, 302, 429]
    assert Source.objects.filter(owner=user).count() == 2
    export = alice_client.post(reverse("upload_export"), {"archive": SimpleUploadedFile("e.zip", export_zip())})
    assert export.status_code == 429 and "Too many imports" in followed_text(export)
    assert 3000 <= int(export["Retry-After"]) <= 3600


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


def test_an_empty_file_fails_alone_with_its_name(alice_client, user):
    files = [SimpleUploadedFile("a.jpg", jpeg(30)), SimpleUploadedFile("empty.jpg", b""),
             SimpleUploadedFile("b.jpg", jpeg(31, "blue"))]
    response = alice_client.post(reverse("upload_photos"), {"photos": files}, follow=True)
    assert response.redirect_chain[-1][0].startswith("/runs/")
    assert "Not imported: empty.jpg: the file is empty" in messages_of(response)
    assert sorted(Photo.objects.filter(owner=user).values_list("external_id", flat=True)) == ["a.jpg", "b.jpg"]


def test_an_upload_that_imports_nothing_does_not_count_against_the_limit(alice_client, user, settings):
    settings.FACES_RATE_LIMITS = {"import": "1/h"}
    for _ in range(3):
        refused = alice_client.post(reverse("upload_photos"), {"photos": [SimpleUploadedFile("empty.jpg", b"")]},
                                    follow=True)
        assert refused.redirect_chain == [(reverse("import"), 302)]
        assert "Not imported: empty.jpg: the file is empty" in messages_of(refused)
    assert not Source.objects.filter(owner=user).exists()
    done = alice_client.post(reverse("upload_photos"), {"photos": [SimpleUploadedFile("a.jpg", jpeg(30))]})
    assert done.status_code == 302 and done["Location"].startswith("/runs/")
    # The one real import is counted: the next is over the limit.
    again = alice_client.post(reverse("upload_photos"), {"photos": [SimpleUploadedFile("b.jpg", jpeg(31))]})
    assert again.status_code == 429


def test_failed_logins_are_throttled(client, user):
    url = reverse("account_login")
    for _ in range(5):
        response = client.post(url, {"login": user.email, "password": "wrong password"})
        assert response.status_code == 200 and "not correct" in followed_text(response)
    # The sixth try is refused even with the right password.
    throttled = client.post(url, {"login": user.email, "password": PASSWORD})
    assert "Too many failed login attempts" in followed_text(throttled)
    assert "_auth_user_id" not in client.session


# -- headers and templates --------------------------------------------------------


def csp_directives(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_security_headers_on_the_camera_page(alice_client):
    response = alice_client.get(reverse("search"))
    assert response.status_code == 200
    csp = csp_directives(response["Content-Security-Policy"])
    assert csp["script-src"] == ["'self'"], "scripts only from our origin: no inline, no eval"
    assert csp["default-src"] == ["'self'"] and csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    # The camera page shows the live stream and the captured frame as a blob: image.
    assert "mediastream:" in csp["media-src"] and "blob:" in csp["media-src"]
    assert "blob:" in csp["img-src"] and csp["connect-src"] == ["'self'"]
    assert "camera=(self)" in response["Permissions-Policy"]
    assert "microphone=()" in response["Permissions-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in response  # HSTS is opt-in


def test_hsts_behind_its_flag(alice_client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    response = alice_client.get(reverse("search"), secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_private_media_is_nosniff(alice_client, user, fixtures_dir):
    from indexing.imports import import_photos

    summary = import_photos(user, [("a.jpg", (fixtures_dir / "people/joe_biden/1.jpg").read_bytes())], name="u")
    photo = Photo.objects.get(post__source=summary.source)
    response = alice_client.get(reverse("photo_image", args=[photo.pk]))
    assert response.status_code == 200 and response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"].startswith("private")


SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


def test_templates_have_no_inline_scripts():
    """CSP script-src 'self' would block them: every script is a static file."""
    templates = sorted((ROOT / "templates").rglob("*.html"))
    assert templates
    for path in templates:
        text = path.read_text()
        for attributes, body in SCRIPT.findall(text):
            assert "src=" in attributes and not body.strip(), f"inline <script> in {path.relative_to(ROOT)}"
        assert not INLINE_HANDLER.search(text), f"inline event handler in {path.relative_to(ROOT)}"
        assert "javascript:" not in text, f"javascript: URL in {path.relative_to(ROOT)}"


def test_a_full_file_cache_drops_expired_entries_not_searches_in_progress(tmp_path):
    from faces_site.cache import FileCache

    cache = FileCache(str(tmp_path / "cache"), {"OPTIONS": {"MAX_ENTRIES": 10}})
    live = [f"faces:query:1:{n}" for n in range(6)]
    for key in live[:3]:
        cache.set(key, b"photo", 900)
    for n in range(7):
        cache.set(f"old:{n}", b"x", 1)
    time.sleep(1.1)
    for key in live[3:]:  # the cache is full: this must cull
        cache.set(key, b"photo", 900)
    assert all(cache.get(key) == b"photo" for key in live)
    assert len(list((tmp_path / "cache").glob("*.djcache"))) == len(live)
