"""Recall sets: the people/ and groups/ fixtures tilted, turned sideways and shrunk.

Each condition makes one JPEG per fixture (no EXIF, so a reader cannot undo a
rotation) and keeps the affine map from the upright fixture's pixels to the
sample's, so a face found in the clean photo can be looked for in the sample:

- ``tilt±15/30/45``: rotated in-plane about the centre, same size, reflected borders;
- ``turn90/180/270``: the pixels turned clockwise, EXIF orientation stripped;
- ``small3/6/10``: scaled so the long side is 1/3, 1/6 or 1/10 of a 1080 x 1080
  canvas (a 1/10 photo is 108 px long; its face 25-40 px tall) and pasted at a
  seeded place on a plain grey canvas.

``recall`` scores any engine given as a function from JPEG bytes to faces: every
face of a known person in the clean fixtures (the 38 people/ photos, Obama and
Biden in two_people, Kit in kit_with_rose) is a query against the clean people/
library minus its own photo; rank-1 is right when the face is found again
(nearest centre within half its size) and its best library match is the same
person. The images are generated once and cached in the temp folder; the tests
(``tests/test_recall.py``) and ``bench/engine.py`` use the same ones, and
``engine_finder`` and ``opencv_finder`` are the two engines they compare.
"""

from __future__ import annotations

import csv
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

VERSION = 2  # bump when the generation below changes: the cache folder is keyed by it
CANVAS = 1080
QUALITY = 92
TILTS = (15, 30, 45)
TURNS = (90, 180, 270)
SHRINKS = (3, 6, 10)
SEARCHABLE_PX = 20  # faces smaller than this in a sample are only counted (the engines' MIN_FACE_PX)
VERIFY_COSINE = 0.363  # SFace's threshold: similarity 80, the default search threshold
CONDITIONS = (
    ("clean",)
    + tuple(f"tilt{sign}{angle}" for angle in TILTS for sign in "+-")
    + tuple(f"turn{angle}" for angle in TURNS)
    + tuple(f"small{factor}" for factor in SHRINKS)
)
# Faces of enrolled people in groups/, by their order from left to right.
GROUP_IDENTITIES = {
    "groups/two_people.jpg": ("barack_obama", "joe_biden"),
    "groups/kit_with_rose.jpg": (None, "kit_harington"),
}


@dataclass(frozen=True)
class Sample:
    condition: str
    source: str  # fixture path relative to the fixtures folder
    identity: str  # "" for groups/ and noface/
    faces: int  # faces the manifest counts in the source
    path: Path  # the JPEG
    transform: np.ndarray  # 2x3: upright source pixels -> sample pixels

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()

    def map(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) @ self.transform[:, :2].T + self.transform[:, 2]

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.transform[:, :2]))))


@dataclass(frozen=True)
class Face:
    """What an engine reports of one face, in the pixels of the image it was given."""

    center: tuple[float, float]
    size: float  # the box's shorter side
    embedding: np.ndarray | None  # None: found but not searchable


def manifest(fixtures: Path) -> list[dict[str, str]]:
    with open(fixtures / "MANIFEST.csv", newline="") as handle:
        rows = csv.DictReader(handle)
        return [row for row in rows if row["path"].startswith(("people/", "groups/", "noface/"))]


def cache_folder() -> Path:
    default = Path(tempfile.gettempdir()) / f"faces-recall-v{VERSION}"
    return Path(os.environ.get("FACES_RECALL_CACHE", default))


@lru_cache(maxsize=8)
def build(
    fixtures: Path, conditions: tuple[str, ...] = CONDITIONS, folder: Path | None = None
) -> list[Sample]:
    """The clean fixtures and every sample of ``conditions``, generated unless already in ``folder``."""
    folder = folder or cache_folder()
    rows = manifest(fixtures)
    unchanged = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    samples = [
        Sample("clean", row["path"], row["identity"], int(row["faces"]), fixtures / row["path"], unchanged)
        for row in rows
    ]
    for row in rows:
        upright = None
        with Image.open(fixtures / row["path"]) as image:
            turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            size = image.size[::-1] if turned else image.size
        for condition in conditions:
            if condition == "clean":
                continue
            transform, out_size = geometry(size, condition, row["path"])
            path = folder / condition / f"{row['path'].replace('/', '__').removesuffix('.jpg')}.jpg"
            if not path.exists():
                if upright is None:
                    with Image.open(fixtures / row["path"]) as image:
                        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(f".{os.getpid()}.part")
                pixels = render(upright, condition, transform, out_size)
                Image.fromarray(pixels).save(partial, "JPEG", quality=QUALITY)
                partial.replace(path)  # atomic: parallel test processes never read half a file
            faces = int(row["faces"])
            samples.append(Sample(condition, row["path"], row["identity"], faces, path, transform))
    return samples


def geometry(size: tuple[int, int], condition: str, name: str) -> tuple[np.ndarray, tuple[int, int]]:
    """The 2x3 map from the upright fixture's pixels (``size``: width, height) to the sample's; its size."""
    width, height = size
    if condition.startswith("tilt"):
        angle = float(condition[4:])  # positive: counter-clockwise, as OpenCV's
        return cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0), size
    if condition.startswith("turn"):
        turns = int(condition[4:]) // 90  # clockwise quarter turns
        maps = {
            1: [[0, -1.0, height - 1], [1.0, 0, 0]],
            2: [[-1.0, 0, width - 1], [0, -1.0, height - 1]],
            3: [[0, 1.0, 0], [-1.0, 0, width - 1]],
        }
        return np.array(maps[turns]), (size if turns == 2 else (height, width))
    if condition.startswith("small"):
        scale = CANVAS / int(condition[5:]) / max(width, height)
        small = (max(1, round(width * scale)), max(1, round(height * scale)))
        seed = int.from_bytes(hashlib.sha256(f"{condition}:{name}".encode()).digest()[:4], "big")
        rng = np.random.default_rng(seed)
        x0, y0 = (int(rng.integers(0, CANVAS - side + 1)) for side in small)
        return np.array([[small[0] / width, 0, x0], [0, small[1] / height, y0]]), (CANVAS, CANVAS)
    raise ValueError(f"Unknown condition {condition!r}")


def render(pixels: np.ndarray, condition: str, transform: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The sample's RGB pixels: ``pixels`` under ``transform`` (see ``geometry``)."""
    if condition.startswith("tilt"):
        reflect = cv2.BORDER_REFLECT_101
        return cv2.warpAffine(pixels, transform, size, flags=cv2.INTER_LINEAR, borderMode=reflect)
    if condition.startswith("turn"):
        return np.ascontiguousarray(np.rot90(pixels, -(int(condition[4:]) // 90)))
    height, width = pixels.shape[:2]
    small = (max(1, round(width * transform[0, 0])), max(1, round(height * transform[1, 1])))
    x0, y0 = int(transform[0, 2]), int(transform[1, 2])
    canvas = np.full((size[1], size[0], 3), 128, np.uint8)
    canvas[y0 : y0 + small[1], x0 : x0 + small[0]] = np.asarray(
        Image.fromarray(pixels).resize(small, Image.Resampling.LANCZOS)
    )
    return canvas


def transformed(pixels: np.ndarray, condition: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A sample made from ``pixels`` (RGB) now, without the cache: its pixels and 2x3 map."""
    transform, size = geometry((pixels.shape[1], pixels.shape[0]), condition, name)
    return render(pixels, condition, transform, size), transform


@dataclass
class Score:
    condition: str
    queries: int = 0  # faces of known people at least SEARCHABLE_PX in the sample
    found: int = 0  # ... found again
    correct: int = 0  # ... and matched to their own person first
    tiny: int = 0  # faces of known people under SEARCHABLE_PX: only their detection counts
    tiny_found: int = 0
    same_pass: int = 0  # searched faces whose best same-person match passes VERIFY_COSINE
    other_pass: int = 0  # ... whose best different-person match passes it (a false match at 80)
    group_faces: int = 0  # faces of groups/ photos in the clean run
    group_found: int = 0
    extra: int = 0  # faces found where the clean photo has none (noface/ and beyond)
    misses: tuple[str, ...] = ()

    @property
    def rank1(self) -> float:
        return self.correct / self.queries if self.queries else 0.0


def recall(samples: list[Sample], find: Callable[[bytes], list[Face]]) -> dict[str, Score]:
    """Rank-1 and detection counts per condition, against the clean samples' faces as ``find`` sees them."""
    sources = {sample.source: sample for sample in samples if sample.condition == "clean"}
    clean = {source: find(sample.data) for source, sample in sources.items()}
    library = [
        (source, sample.identity, clean[source][0].embedding)
        for source, sample in sources.items()
        if sample.identity and source.startswith("people/")
        and clean[source] and clean[source][0].embedding is not None
    ]
    matrix = np.stack([vector for _, _, vector in library])
    scores: dict[str, Score] = {}
    for sample in samples:
        score = scores.setdefault(sample.condition, Score(sample.condition))
        expected = queries_of(sample, clean[sample.source])
        found = clean[sample.source] if sample.condition == "clean" else find(sample.data)
        used: set[int] = set()
        if sample.source.startswith("people/") and not expected:
            score.queries += 1
            score.misses += (f"{sample.source}: no face in the clean photo",)
        for face, identity in expected:
            center = sample.map(np.array([face.center]))[0]
            match = _nearest(found, center, face.size * sample.scale, used)
            if sample.source.startswith("groups/"):
                score.group_faces += 1
                score.group_found += match is not None
            if identity is None:
                continue
            if face.size * sample.scale < SEARCHABLE_PX:
                score.tiny += 1
                score.tiny_found += match is not None
                continue
            score.queries += 1
            if match is None:
                score.misses += (f"{sample.source}: not found",)
                continue
            score.found += 1
            if match.embedding is None:
                score.misses += (f"{sample.source}: not searchable",)
                continue
            similarities = matrix @ match.embedding
            others = [i for i, (source, _, _) in enumerate(library) if source != sample.source]
            best = others[int(np.argmax(similarities[others]))]
            same = [similarities[i] for i in others if library[i][1] == identity]
            score.same_pass += bool(same) and max(same) >= VERIFY_COSINE
            other = max(similarities[i] for i in others if library[i][1] != identity)
            score.other_pass += other >= VERIFY_COSINE
            if library[best][1] == identity:
                score.correct += 1
            else:
                score.misses += (f"{sample.source}: matched {library[best][1]}",)
        score.extra += len(found) - len(used)
    return scores


def queries_of(sample: Sample, faces: list[Face]) -> list[tuple[Face, str | None]]:
    """The clean photo's faces with the person each shows (None: not enrolled or unknown)."""
    if sample.source.startswith("people/"):
        return [(faces[0], sample.identity)] if faces else []
    names = GROUP_IDENTITIES.get(sample.source, ())
    ordered = sorted(faces, key=lambda face: face.center[0])
    if len(ordered) != len(names):
        names = ()
    return [(face, names[i] if names else None) for i, face in enumerate(ordered)]


def _nearest(found: list[Face], center: np.ndarray, size: float, used: set[int]) -> Face | None:
    best, best_distance = None, size * 0.6
    for index, face in enumerate(found):
        distance = float(np.hypot(*(np.asarray(face.center) - center)))
        if index not in used and distance <= best_distance:
            best, best_distance = index, distance
    if best is None:
        return None
    used.add(best)
    return found[best]


def engine_finder(analyze: Callable) -> Callable[[bytes], list[Face]]:
    """``find`` for the local engine's ``analyze``: its faces in original-image pixels."""

    def find(data: bytes) -> list[Face]:
        analysis = analyze(data)
        faces = []
        for face in analysis.faces:
            box, width, height = face.box, analysis.width, analysis.height
            center = ((box.x + box.w / 2) * width, (box.y + box.h / 2) * height)
            faces.append(Face(center, min(box.w * width, box.h * height), face.embedding))
        return faces

    return find


def opencv_finder(detector_path: str, recognizer_path: str) -> Callable[[bytes], list[Face]]:
    """``find`` for OpenCV's own ``FaceDetectorYN`` and ``FaceRecognizerSF`` on the same model files.

    Run as OpenCV's ``samples/dnn/face_detect.py`` runs them: the whole image at
    its own size, score 0.9, NMS 0.3, then ``alignCrop`` and ``feature`` for every face.
    """
    detector = cv2.FaceDetectorYN.create(detector_path, "", (320, 320), 0.9, 0.3, 5000)
    recognizer = cv2.FaceRecognizerSF.create(recognizer_path, "")

    def find(data: bytes) -> list[Face]:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        detector.setInputSize((image.shape[1], image.shape[0]))
        rows = detector.detect(image)[1]
        faces = []
        for row in [] if rows is None else rows:
            vector = recognizer.feature(recognizer.alignCrop(image, row)).reshape(-1)
            center = (float(row[0] + row[2] / 2), float(row[1] + row[3] / 2))
            faces.append(Face(center, float(min(row[2], row[3])), vector / np.linalg.norm(vector)))
        return faces

    return find
