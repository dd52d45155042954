"""Videos: the frame sampler's limits and bad input, and the local engine's face tracks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from indexing import video
from indexing.engines.base import Box
from indexing.engines.local.tracking import Sighting, Tracker
from tests.videos import Appearance, Clip, audio_only, render

OBAMA = "people/barack_obama/1.jpg"
BIDEN = "people/joe_biden/1.jpg"
SALLEY = "people/john_salley/1.jpg"


@pytest.fixture(scope="module")
def clips(request):
    """The test clips, rendered once for the module."""
    from tests.conftest import FIXTURES

    obama, biden = FIXTURES / OBAMA, FIXTURES / BIDEN
    return {
        "enters_at_2": render(Clip(6, [Appearance(obama, 2, 6, drift=0.03)])),
        "two_people": render(Clip(6, [Appearance(obama, 1, 6, x=0.02), Appearance(biden, 3, 6, x=0.55)])),
        "middle_only": render(Clip(10, [Appearance(obama, 4, 6)])),
        "comes_back": render(Clip(10, [Appearance(obama, 1, 3), Appearance(obama, 6, 9, x=0.5)])),
        "no_face": render(Clip(5, [])),
    }


# -- the sampler -------------------------------------------------------------------


def test_sniffs_containers_by_their_bytes(clips):
    assert video.is_video(clips["no_face"][:16])
    assert video.is_video(b"\x1a\x45\xdf\xa3" + b"\0" * 12)  # WebM / Matroska
    assert not video.is_video(b"\xff\xd8\xff\xe0" + b"\0" * 12)  # a JPEG
    assert not video.is_video(b"")


def test_samples_about_one_frame_a_second_in_order(clips, settings):
    settings.FACES_VIDEO_SAMPLE_SECONDS = 1.0
    times = [frame.time for frame in video.sample_frames(clips["middle_only"])]
    assert 9 <= len(times) <= 12  # one a second, plus the cuts where Obama appears and leaves
    assert times == sorted(times) and times[0] == 0.0 and times[-1] >= 9.0
    assert all(b - a < 1.5 for a, b in itertools.pairwise(times))
    frame = next(video.sample_frames(clips["middle_only"]))
    assert frame.pixels.shape == (270, 480, 3) and frame.pixels.dtype == np.uint8


def test_limits_stop_sampling(clips):
    assert len(list(video.sample_frames(clips["middle_only"], max_frames=3))) == 3
    assert max(f.time for f in video.sample_frames(clips["middle_only"], max_seconds=4.5)) <= 4.5
    ticks = itertools.count()  # an injected clock: one "second" per call
    budgeted = list(video.sample_frames(clips["middle_only"], budget_seconds=2.5, clock=lambda: next(ticks)))
    assert len(budgeted) == 3


def test_probe_reads_duration_and_size(clips):
    info = video.probe(clips["middle_only"])
    assert (info.width, info.height) == (480, 270) and 9.5 <= info.duration <= 10.5


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("empty", b"", "empty"),
        ("not a video", b"hello" * 100, "not a video"),
        ("audio only", None, "no video picture"),
    ],
)
def test_bad_videos_fail_with_a_clear_error(name, data, message):
    data = audio_only() if data is None else data
    with pytest.raises(video.VideoError, match=message):
        list(video.sample_frames(data))


def test_a_truncated_video_fails_with_a_clear_error(clips):
    whole = clips["middle_only"]
    for cut in (len(whole) // 50, len(whole) // 2):  # PyAV writes the index (moov) at the end
        with pytest.raises(video.VideoError, match="not a video we can read|damaged|no frames"):
            list(video.sample_frames(whole[:cut]))


# -- the tracker ---------------------------------------------------------------------


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _near(base: np.ndarray, seed: int, noise: float = 0.3) -> np.ndarray:
    vector = base + noise * _unit(seed) / np.sqrt(2)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def test_tracker_keeps_two_people_apart_and_merges_a_return():
    alice, bob = _unit(1), _unit(2)
    tracker = Tracker()
    for second in range(10):
        sightings = []
        if second < 4 or second >= 7:  # Alice leaves and comes back elsewhere
            x = 0.1 if second < 4 else 0.6
            sightings.append(Sighting(second, Box(x, 0.2, 0.2, 0.3), _near(alice, 100 + second, 0.6), 70, 99))
        if 2 <= second < 6:
            sightings.append(Sighting(second, Box(0.5, 0.2, 0.2, 0.3), _near(bob, 200 + second), 60, 99))
        tracker.add_frame(sightings)
    tracks = tracker.finish()
    assert [(t.first_seen, t.sightings) for t in tracks] == [(0, 7), (2, 4)]
    assert float(tracks[0].embedding @ alice) > 0.9 and float(tracks[1].embedding @ bob) > 0.9


def test_tracker_never_merges_two_faces_of_one_frame():
    twin = _unit(3)
    tracker = Tracker()
    for second in range(3):
        tracker.add_frame([
            Sighting(second, Box(0.0, 0.2, 0.2, 0.3), _near(twin, 10 + second, 0.1), 70, 99),
            Sighting(second, Box(0.6, 0.2, 0.2, 0.3), _near(twin, 20 + second, 0.1), 70, 99),
        ])
    assert len(tracker.finish()) == 2


def test_the_best_sighting_is_kept():
    person = _unit(4)
    tracker = Tracker()
    for second, quality in enumerate([30, 80, 50]):
        tracker.add_frame([Sighting(second, Box(0.1, 0.1, 0.3, 0.3), _near(person, second), quality, 99,
                                    payload=second)])
    (track,) = tracker.finish()
    assert track.best.payload == 1 and track.first_seen == 0


# -- the local engine ------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    from indexing.engines.local import LocalEngine

    return LocalEngine()


def test_a_person_entering_at_2s_is_one_track_first_seen_then(engine, clips):
    result = engine.index_video(1, clips["enters_at_2"], "reel")
    assert len(result.faces) == 1
    (face,) = result.faces
    assert abs(face.seen_at - 2.0) <= 1.0
    assert face.searchable and len(face.embedding) == 512
    assert face.frame.size == (480, 270) and result.frames >= 6


def test_two_people_are_two_tracks_with_their_own_times(engine, clips):
    result = engine.index_video(1, clips["two_people"], "reel")
    times = sorted(face.seen_at for face in result.faces)
    assert len(times) == 2
    assert abs(times[0] - 1.0) <= 1.0 and abs(times[1] - 3.0) <= 1.0


def test_a_face_only_in_the_middle_is_found_there(engine, clips):
    (face,) = engine.index_video(1, clips["middle_only"], "reel").faces
    assert abs(face.seen_at - 4.0) <= 1.0


def test_a_person_who_comes_back_is_one_track(engine, clips):
    result = engine.index_video(1, clips["comes_back"], "reel")
    assert len(result.faces) == 1 and abs(result.faces[0].seen_at - 1.0) <= 1.0


def test_a_video_without_faces_yields_none(engine, clips):
    result = engine.index_video(1, clips["no_face"], "reel")
    assert result.faces == [] and result.frames >= 4


def test_the_video_track_matches_the_photo_of_that_person(engine, clips, fixtures_dir):
    from indexing.engines.local import analyze

    (face,) = engine.index_video(1, clips["middle_only"], "reel").faces
    track = np.frombuffer(face.embedding, dtype=np.float32)
    same = analyze((fixtures_dir / "people/barack_obama/2.jpg").read_bytes()).embedding(0)
    other = analyze((fixtures_dir / SALLEY).read_bytes()).embedding(0)
    assert float(track @ same) > 0.45 > float(track @ other)


def test_a_face_that_surely_continues_its_track_is_embedded_only_every_few_frames():
    person = _unit(5)
    computed = []

    def lazy(seed):
        def embed():
            computed.append(seed)
            return _near(person, seed, 0.2)
        return embed

    tracker = Tracker()
    for second in range(9):  # barely moving, alone, same quality: only every third is embedded
        tracker.add_frame([Sighting(second, Box(0.1 + second * 0.005, 0.1, 0.3, 0.3), lazy(second), 50, 99)])
    (track,) = tracker.finish()
    assert track.sightings == 9 and computed == [0, 3, 6]
    assert float(track.embedding @ person) > 0.9


# -- range serving ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, expected",
    [
        ("", None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=1000-", (-1, -1)),
        ("bytes=50-10", (-1, -1)),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
    ],
)
def test_byte_ranges(header, expected):
    from indexing.streaming import byte_range

    assert byte_range(header, 1000) == expected


def test_serve_video_answers_ranges_from_storage(db, rf):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from indexing.streaming import serve_video

    data = bytes(range(256)) * 40
    name = default_storage.save("videos/test/clip.mp4", ContentFile(data))
    whole = serve_video(rf.get("/"), name)
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == data
    part = serve_video(rf.get("/", HTTP_RANGE="bytes=1000-1999"), name)
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    assert b"".join(part.streaming_content) == data[1000:2000] and part["Accept-Ranges"] == "bytes"
    assert serve_video(rf.get("/", HTTP_RANGE=f"bytes={len(data)}-"), name).status_code == 416
