"""An export's JSON is bounded before it is parsed: sizes, parse memory, nesting; in the view, the worker and the CLI."""

from __future__ import annotations

import io
import json
import types
import zipfile
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from indexing import pipeline
from indexing.imports import import_export_zip
from indexing.instagram import jsonbudget
from indexing.instagram.export import ExportError, open_export
from indexing.models import IndexRun, Source
from tests.test_limits import export_zip

pytestmark = pytest.mark.django_db

POSTS = "your_instagram_activity/media/posts_{n}.json"


def many_members(count: int, member: bytes, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """The issue's archive: ``count`` posts_N.json members, deflated (1 MiB of ``{}`` packs to about 1 KB)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for n in range(1, count + 1):
            archive.writestr(POSTS.format(n=n), member)
    return buffer.getvalue()


EMPTY_DICTS = b"[" + b",".join([b"{}"] * 349_000) + b"]"  # just under 1 MiB, below the ratio check's 1 MiB
DEEP = b"[" * 200_000 + b"]" * 200_000


@pytest.fixture
def parsed(monkeypatch):
    """The sizes of the JSON documents that reached json.loads."""
    sizes: list[int] = []
    real = jsonbudget.json.loads

    def loads(data, *args, **kwargs):
        sizes.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(jsonbudget, "json", types.SimpleNamespace(loads=loads))
    return sizes


def upload(client, data: bytes):
    return client.post(reverse("upload_export"), {"archive": SimpleUploadedFile("export.zip", data)}, follow=True)


def test_members_that_would_parse_into_too_much_memory_are_refused_before_parsing(alice_client, user, parsed):
    archive = many_members(20, EMPTY_DICTS)
    assert len(archive) < 100_000 and len(EMPTY_DICTS) < 1024**2
    response = upload(alice_client, archive)
    text = response.content.decode()
    assert "holds more data than can be read safely" in text and "the limit is 256 MB" in text
    # Two members fit the 256 MB budget (about 95 MB each, estimated); the third is never parsed.
    assert parsed == [len(EMPTY_DICTS)] * 2
    assert not Source.objects.filter(owner=user).exists()


def test_the_unpacked_size_of_all_json_members_is_bounded_before_reading(settings, parsed):
    settings.FACES_MAX_EXPORT_JSON_BYTES = 2 * 1024**2
    with pytest.raises(ExportError, match=r"post lists add up to 3 MiB unpacked; at most 2 MiB are read"):
        open_export(many_members(3, b"[" + b" " * (1024**2 - 2) + b"]", zipfile.ZIP_STORED))
    assert parsed == []


def test_one_json_member_is_bounded_before_reading(settings, parsed):
    settings.FACES_MAX_EXPORT_JSON_MEMBER_BYTES = 512 * 1024
    with pytest.raises(ExportError, match=r"posts_1.json is too large \(1 MiB unpacked; at most 0.5 MiB\)"):
        open_export(many_members(1, b"[" + b" " * (1024**2 - 2) + b"]", zipfile.ZIP_STORED))
    assert parsed == []


def test_a_real_export_fits_the_budget(parsed):
    with open_export(export_zip(photos=3)) as export:
        assert len(list(export.iter_posts())) == 3


def test_the_worker_refuses_the_same_archive_with_the_message(user, settings):
    """An archive stored without the upload view's check fails its run with the message, not a crash."""
    source = import_export_zip(user, io.BytesIO(many_members(20, EMPTY_DICTS)), name="export")
    run = IndexRun.objects.create(owner=user, source=source)
    pipeline.crawl_source(run.pk)
    run.refresh_from_db()
    assert run.status == IndexRun.Status.FAILED
    assert "holds more data than can be read safely" in run.last_error


def test_deeply_nested_json_is_refused_in_the_upload_view(alice_client, user):
    response = upload(alice_client, many_members(1, DEEP))
    assert response.status_code == 200
    assert "posts_1.json is nested too deeply to be an Instagram export" in response.content.decode()
    assert not Source.objects.filter(owner=user).exists()


def test_deeply_nested_json_is_refused_by_faces_import(user, tmp_path):
    path = tmp_path / "export.zip"
    path.write_bytes(many_members(1, DEEP))
    with pytest.raises(CommandError, match="nested too deeply to be an Instagram export"):
        call_command("faces_import", "--user", user.email, "--sync", str(path), stdout=StringIO())
    assert not Source.objects.filter(owner=user).exists()


def test_deeply_nested_json_fails_the_run_in_the_worker(user):
    source = import_export_zip(user, io.BytesIO(many_members(1, DEEP)), name="export")
    run = IndexRun.objects.create(owner=user, source=source)
    pipeline.crawl_source(run.pk)
    run.refresh_from_db()
    assert run.status == IndexRun.Status.FAILED and "nested too deeply" in run.last_error


@pytest.mark.parametrize("document", [
    b"[" + b",".join([b"{}"] * 10_000) + b"]",
    b"[" + b",".join([b'{"a": 1.5, "b": [1, 2]}'] * 5_000) + b"]",
    json.dumps([{"media": [{"uri": f"media/{n}.jpg", "title": "caf\u00c3\u00a9 \\\" {["}]} for n in range(3000)]).encode(),
    json.dumps(["\U0001F600" * 40] * 3000, ensure_ascii=False).encode(),
])
def test_the_estimate_is_never_below_what_parsing_takes(document):
    import tracemalloc

    kept, transient = jsonbudget.estimate(document)
    tracemalloc.start()
    value = json.loads(document)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert value and kept >= current and kept + transient >= peak
