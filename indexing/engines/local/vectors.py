"""Embeddings as numbers: the similarity scale, per-owner matrices and top-k search.

Kept apart from the models so that people grouping, bench scripts and the
Rekognition fake can use the scale and the matrices without importing onnx,
onnxruntime or OpenCV (a test holds this module to that).

Similarity (Rekognition's 0-100 scale) is a logistic of SFace's cosine::

    similarity = 100 / (1 + exp(-15.30 * (cos - 0.2724)))

through two anchors: SFace's published verification threshold, cos 0.363, is
similarity 80 (the default threshold), and the median cosine of two different
people, 0.08, is 5. On the shared face fixtures 0.363 falls in the gap between
same-person and different-person pairs (figures in ``bench/README.md``).

Search: one query reads the owner's ``FaceCollection.version``; the owner's
matrix (N x 128 float32) is cached per process until that version moves and
searched with one matrix-vector product, which is memory bound. Tenants never
share a matrix.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ...models import Face, FaceCollection
from ..base import Match

ENGINE = "local"  # Face.engine and FaceCollection.engine of the local engine's rows
DIM = 128
EMBEDDING_BYTES = DIM * 4

# The similarity scale: two anchors on SFace's cosine (see the module docstring).
VERIFY_COSINE, VERIFY_SIMILARITY = 0.363, 80.0
DIFFERENT_COSINE, DIFFERENT_SIMILARITY = 0.08, 5.0
SLOPE = (
    math.log(VERIFY_SIMILARITY / (100 - VERIFY_SIMILARITY))
    - math.log(DIFFERENT_SIMILARITY / (100 - DIFFERENT_SIMILARITY))
) / (VERIFY_COSINE - DIFFERENT_COSINE)  # 15.30
CENTER = VERIFY_COSINE - math.log(VERIFY_SIMILARITY / (100 - VERIFY_SIMILARITY)) / SLOPE  # 0.2724


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
# is memory bound, and a second core adds bandwidth (see bench/README.md).
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
