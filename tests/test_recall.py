"""Recall of the local engine on hard photos: heads tilted, photos stored sideways, small faces.

The sets (``bench/recall_sets.py``) are the people/ and groups/ fixtures
transformed; each known face is a query against the clean people/ library
without its own photo. They are generated once into the temp folder and
scored once per test session.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.recall_sets import CONDITIONS, build, engine_finder, recall, transformed
from indexing.engines.local import detection
from indexing.engines.local.engine import analyze
from indexing.engines.local.runtime import face_models
from tests.conftest import FIXTURES

# The bar for each condition, rank-1 over the faces big enough to search.
MINIMUM = {
    "clean": 1.0,
    **{f"tilt{sign}{angle}": 0.98 for angle in (15, 30) for sign in "+-"},
    **{f"tilt{sign}45": 0.95 for sign in "+-"},
    **{f"turn{angle}": 0.95 for angle in (90, 180, 270)},
    "small3": 0.98,
    "small6": 0.98,
    "small10": 0.90,
}


@pytest.fixture(scope="session")
def scores():
    return recall(build(FIXTURES), engine_finder(analyze))


def test_every_condition_is_asserted():
    assert set(MINIMUM) == set(CONDITIONS)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_rank1_per_condition(scores, condition):
    score = scores[condition]
    assert score.queries >= 35  # 41 faces of known people; at 1/10 six are under 20 px
    assert score.rank1 >= MINIMUM[condition], (condition, score.rank1, score.misses)


def test_no_false_match_at_the_default_threshold(scores):
    """Tilted, turned or small, a searched face rarely has another person at similarity 80 or more.

    Measured: none (with 560 px detection, one dlib chip blown up onto the canvas at 1/3 and 1/6).
    """
    assert max(score.other_pass for score in scores.values()) <= 1
    assert sum(score.other_pass for score in scores.values()) <= 3


@pytest.mark.parametrize("condition", ["tilt+30", "tilt-30", "turn90", "turn180", "turn270", "small3"])
def test_group_faces_are_found_again(scores, condition):
    """Of the 20 faces of the five group photos (measured: 18-20 found again)."""
    score = scores[condition]
    assert score.group_found >= score.group_faces - 2, (condition, score.group_found, score.group_faces)


def test_no_face_photos_stay_empty_when_turned():
    """The turned and tilted passes add no face to eagle and giraffe photos; the dog collage turned
    on its side holds a dog the upright pass itself takes for a face, so it is left out."""
    for sample in build(FIXTURES):
        if sample.source.startswith("noface/") and "dogs" not in sample.source:
            assert analyze(sample.data).faces == [], (sample.condition, sample.source)


# --------------------------------------------------------------------------
# The geometry behind the turned passes


@pytest.mark.parametrize("angle", [90, 180, 270, 45, -45])
def test_turned_copies_map_back_exactly(angle):
    rng = np.random.default_rng(angle % 360)
    image = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    turned, back = detection._turn(image, angle)
    if angle % 90 == 0:
        assert turned.shape[:2] == ((37, 53) if angle % 180 == 0 else (53, 37))
    # A pixel of the turned copy comes from where ``back`` says.
    for y, x in [(5, 7), (20, 30), (turned.shape[0] // 2, turned.shape[1] // 2)]:
        sx, sy = back @ [x, y, 1.0]
        if 1 <= sx < 52 and 1 <= sy < 36:
            near = image[int(round(sy)), int(round(sx))].astype(int)
            assert np.abs(turned[y, x].astype(int) - near).max() <= (0 if angle % 90 == 0 else 255)
    row = np.zeros((1, 15), np.float32)
    row[0, :4] = (10, 4, 8, 12)
    row[0, 4:14] = (11, 6, 16, 6, 14, 10, 12, 14, 16, 14)
    mapped = detection._mapped(row, back, angle)[0]
    center = back @ [14, 10, 1.0]
    assert np.allclose(mapped[:2] + mapped[2:4] / 2, center, atol=1e-4)
    assert sorted(mapped[2:4]) == [8, 12]


def test_roll_is_the_eye_line():
    row = np.zeros(15, np.float32)
    row[4:8] = (10, 10, 20, 20)
    assert detection.roll(row) == pytest.approx(45)
    row[4:8] = (20, 10, 10, 10)  # upside down
    assert abs(detection.roll(row)) == pytest.approx(180)


@pytest.mark.parametrize("condition", ["tilt+45", "turn90", "turn270"])
def test_landmarks_follow_the_face_when_turned(condition):
    """The right eye stays the person's right eye: mapped back, the eye line turns with the photo."""
    path = FIXTURES / "people/barack_obama/1.jpg"
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    turned, _ = transformed(pixels, condition, "people/barack_obama/1.jpg")
    rows = detection.find_faces(face_models(), np.ascontiguousarray(turned))
    assert len(rows) == 1
    expected = {"tilt+45": -45, "turn90": 90, "turn270": -90}[condition]
    assert abs((detection.roll(rows[0]) - expected + 180) % 360 - 180) < 12
