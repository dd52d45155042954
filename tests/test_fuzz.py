"""Fuzzing the paths that read strangers' bytes: image decoding, the face engine, export ZIPs.

Hypothesis mutates real JPEG, PNG, GIF and WebP files and real export ZIPs
(bit flips, overwritten header bytes, inserted, deleted, duplicated and cut
ranges) and generates odd posts JSON. Each input runs in a sandbox process
with a time limit, so a crash or a hang in C code is reported with the input
instead of taking the test run down. The only acceptable failures are the
clean ones the callers handle: ``ImageError`` from images, ``ExportError`` (a
``SourceError``) from ZIPs. The whole module stays within about 30 seconds.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import multiprocessing
import zipfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests import fuzz_sandbox
from tests.conftest import FIXTURES

TIMEOUT = 10.0  # seconds per input: a decoder that takes longer is hanging
ALLOWED = {
    "decode": {"indexing.images.ImageError"},
    "analyze": {"indexing.images.ImageError"},
    "export": {"indexing.instagram.export.ExportError", "indexing.sources.SourceError"},
}
FUZZ = settings(
    max_examples=250,
    deadline=dt.timedelta(seconds=TIMEOUT + 5),  # the sandbox reports hangs first
    database=None,  # nothing written into the work tree; a failure prints its reproduction
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Sandbox:
    """One child process (spawned, not forked) that runs targets from fuzz_sandbox."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._start()

    def _start(self) -> None:
        self.conn, child = self._context.Pipe()
        self.process = self._context.Process(target=fuzz_sandbox.serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(120):
            raise RuntimeError("the fuzz sandbox did not start")
        assert self.conn.recv()[0] == "ready"

    def _restart(self) -> None:
        self.process.kill()
        self.process.join(10)
        self._start()

    def run(self, target: str, data: bytes, timeout: float = TIMEOUT) -> tuple[str, str, str]:
        self.conn.send((target, data))
        if not self.conn.poll(timeout):
            self._restart()
            return ("hang", f"no answer within {timeout:.0f}s", "")
        try:
            return self.conn.recv()
        except EOFError:
            self.process.join(10)
            code = self.process.exitcode
            self._restart()
            return ("crash", f"the process died (exit code {code})", "")

    def close(self) -> None:
        self.conn.close()
        self.process.kill()
        self.process.join(10)


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def check(sandbox: Sandbox, target: str, data: bytes) -> None:
    outcome, kind, trace = sandbox.run(target, data)
    if outcome == "ok":
        return
    assert outcome == "raised" and kind in ALLOWED[target], (
        f"{target} on {len(data)} bytes (head {data[:32]!r}): {outcome} {kind}\n{trace}"
    )


# -- seeds: small real files, so that each input decodes in milliseconds --------


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _face(side: int = 160) -> Image.Image:
    image = Image.open(FIXTURES / "people" / "barack_obama" / "1.jpg").convert("RGB")
    image.thumbnail((side, side))
    return image


def _seeds() -> dict[str, bytes]:
    face = _face()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the orientation path
    rgba = Image.open(FIXTURES / "special" / "face.png")
    rgba.thumbnail((96, 96))
    frames = [face.convert("P", palette=Image.Palette.ADAPTIVE), face.rotate(90).convert("P")]
    return {
        "jpeg": _encode(face, "JPEG", quality=80, exif=exif),
        "progressive_jpeg": _encode(face, "JPEG", quality=70, progressive=True),
        "png": _encode(rgba, "PNG"),
        "png16": _encode(face.convert("L").point(lambda v: v * 256, "I").convert("I;16"), "PNG"),
        "gif": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "webp": _encode(face, "WEBP", quality=70),
    }


SEEDS = _seeds()


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level mutations, biased to the header where parsers branch."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "header", "set", "insert", "delete", "cut", "repeat"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "header":
            data[at % min(len(data), 96)] = draw(st.integers(0, 255))
        elif op == "set":
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 512))]
        elif op == "cut":
            del data[at:]
        else:
            chunk = data[at:at + draw(st.integers(1, 256))]
            data[at:at] = chunk * draw(st.integers(1, 4))
    return bytes(data)


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute each chunk's CRC, so that mutations get past the checksum into the decoder."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out, pos = bytearray(data[:8]), 8
    while pos + 8 <= len(data):
        end = pos + 8 + int.from_bytes(data[pos:pos + 4], "big")
        if end + 4 > len(data):
            break
        out += data[pos:end] + zlib.crc32(data[pos + 4:end]).to_bytes(4, "big")
        pos = end + 4
    return bytes(out + data[pos:])


def test_the_guard_reports_hangs_and_crashes(sandbox):
    assert sandbox.run("selftest", b"hang", timeout=1)[0] == "hang"
    assert sandbox.run("selftest", b"crash")[0] == "crash"
    assert sandbox.run("decode", SEEDS["jpeg"])[0] == "ok"  # and a fresh sandbox took over


def test_seeds_are_clean(sandbox):
    """Unmutated, every seed decodes and the face photo has its face."""
    for name, data in SEEDS.items():
        assert sandbox.run("decode", data)[0] == "ok", name
    assert sandbox.run("analyze", SEEDS["jpeg"])[0] == "ok"


@FUZZ
@given(data=mutated([SEEDS["jpeg"], SEEDS["progressive_jpeg"]]))
def test_fuzz_decode_jpeg(sandbox, data):
    check(sandbox, "decode", data)


@FUZZ
@given(data=mutated([SEEDS["png"], SEEDS["png16"]]), fix_crcs=st.booleans())
def test_fuzz_decode_png(sandbox, data, fix_crcs):
    check(sandbox, "decode", fix_png_crcs(data) if fix_crcs else data)


@FUZZ
@given(data=mutated([SEEDS["gif"]]))
def test_fuzz_decode_gif(sandbox, data):
    check(sandbox, "decode", data)


@FUZZ
@given(data=mutated([SEEDS["webp"]]))
def test_fuzz_decode_webp(sandbox, data):
    check(sandbox, "decode", data)


@settings(FUZZ, max_examples=120)
@given(data=mutated([SEEDS["jpeg"], SEEDS["png"], SEEDS["webp"]]))
def test_fuzz_local_engine_analyze(sandbox, data):
    check(sandbox, "analyze", data)


# -- export ZIPs ------------------------------------------------------------------


def export_zip(posts: object, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    photo = _encode(_face(48), "JPEG", quality=60)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr("your_instagram_activity/media/posts_1.json", json.dumps(posts))
        archive.writestr("media/posts/202401/17900000000000001.jpg", photo)
        archive.writestr("media/posts/202401/carousel_2.jpg", photo + b"\0")
    return buffer.getvalue()


GOOD_POSTS = [
    {"media": [{"uri": "media/posts/202401/17900000000000001.jpg", "creation_timestamp": 1704067200, "title": "a"}]},
    {"title": "carousel", "creation_timestamp": 1704153600,
     "media": [{"uri": "media/posts/202401/carousel_2.jpg", "creation_timestamp": 1704153600, "title": ""},
               {"uri": "media/posts/202401/17900000000000001.jpg", "creation_timestamp": 1704153600}]},
]
ZIP_SEEDS = [export_zip(GOOD_POSTS), export_zip(GOOD_POSTS, zipfile.ZIP_STORED)]


def test_zip_seeds_are_clean(sandbox):
    for data in ZIP_SEEDS:
        assert sandbox.run("export", data)[0] == "ok"


@settings(FUZZ, max_examples=300)
@given(data=mutated(ZIP_SEEDS))
def test_fuzz_export_zip_bytes(sandbox, data):
    check(sandbox, "export", data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
uris = st.sampled_from([
    "media/posts/202401/17900000000000001.jpg", "media/posts/202401/carousel_2.jpg", "./media/posts/202401/carousel_2.jpg",
    "../../etc/passwd", "/etc/passwd", "C:\\x.jpg", "media/posts/missing.jpg", "", "media\\posts\\202401\\carousel_2.jpg",
    "m\u00c3\u00a9dia/x.jpg", "\x00",
]) | st.text(max_size=30)
media_items = st.fixed_dictionaries(
    {},
    optional={
        "uri": uris | json_values,
        "creation_timestamp": st.integers(min_value=-(2**65), max_value=2**65) | st.floats(allow_nan=True) | st.text(max_size=12) | json_values,
        "title": st.text(max_size=20) | json_values,
    },
)
posts_values = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "media": st.lists(media_items, max_size=4) | media_items | json_values,
            "title": st.text(max_size=20) | json_values,
            "creation_timestamp": st.integers(min_value=-(2**65), max_value=2**65) | json_values,
        },
    ),
    max_size=5,
) | st.dictionaries(st.sampled_from(["ig_posts", "media", "x"]), json_values, max_size=3) | json_values


@settings(FUZZ, max_examples=150)
@given(posts=posts_values)
def test_fuzz_export_posts_json(sandbox, posts):
    check(sandbox, "export", export_zip(posts))


# -- what fuzzing found, kept as plain regression tests ----------------------------


def test_export_timestamps_out_of_range_are_ignored(tmp_path):
    from indexing.instagram.export import ExportStats, iter_export_posts

    values = [253_402_300_800, 2**70, float("inf"), float("nan"), "1e9", 1_704_067_200]
    posts = [{"media": [{"uri": f"media/posts/x/photo{n}.jpg", "title": str(n), "creation_timestamp": value}]}
             for n, value in enumerate(values)]
    stats = ExportStats()
    out = list(iter_export_posts(io.BytesIO(export_zip(posts)), stats))
    years = {p.caption: p.timestamp.year if p.timestamp else None for p in out}
    assert years == {"0": None, "1": None, "2": None, "3": None, "4": None, "5": 2024}
    assert stats.posts == 6 and stats.missing == 6


def test_a_damaged_photo_in_an_export_is_counted_not_fatal():
    from indexing.instagram.export import ExportError, ExportStats, open_export

    data = bytearray(export_zip(GOOD_POSTS, zipfile.ZIP_STORED))
    name = b"media/posts/202401/carousel_2.jpg"
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name.decode())
    start = info.header_offset + 30 + len(name) + len(info.extra)  # the stored bytes follow the local header
    data[start + 100] ^= 0xFF  # its CRC no longer matches
    stats = ExportStats()
    with open_export(bytes(data), stats=stats) as export:
        posts = list(export.iter_posts())
        carousel = next(p for p in posts if p.caption == "carousel")
        assert len(carousel.photos) == 1 and stats.damaged == 1
        single = next(p for p in posts if p.caption == "a")
        assert single.photos[0].load()[:2] == b"\xff\xd8"
        with pytest.raises(ExportError, match="damaged"):
            export.read_member(name.decode())
