"""``LocalEngine`` and ``analyze``: one image in, its faces and embeddings out.

Per image: ``decode_image`` at most ``ALIGN_SIDE`` (1600) pixels long (EXIF
upright, HEIC, big JPEGs decoded at 1/2 or 1/4 scale); then detection,
verification and alignment (``detection``); then SFace: 128 floats,
L2-normalized, stored as float32 bytes. Every face found is returned and
counted; those whose shorter box side is under ``MIN_FACE_PX`` (20) pixels of
the original are ``searchable=False`` and get no embedding. A search by image
uses the largest face unless told otherwise.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from ...images import decode_image
from ...models import Face, FaceCollection
from ..base import (
    Box,
    EngineError,
    FaceEngine,
    ImageSearch,
    IndexedFace,
    IndexResult,
    Match,
    NoFaceError,
    QueryFace,
)
from .alignment import aligned_face, face_quality
from .detection import DetectOptions, clip, find_faces, relative_box, shrink
from .runtime import ensure_threads, face_models
from .vectors import EMBEDDING_BYTES, ENGINE, MatrixCache, search_matrix
from .video import index_tracks

# Video frames are upright (the container says how to turn them): no quarter-turn
# passes, but tilted heads are still looked for.
VIDEO_OPTIONS = DetectOptions(turns=(45, -45))
ALIGN_SIDE = 1600  # decode size: the pixels faces are aligned from
MIN_FACE_PX = 20  # shorter box side in original pixels to be searchable


@dataclass
class AnalyzedFace:
    box: Box  # relative to the upright image, clipped to [0, 1]
    confidence: float  # 0-100
    landmarks: list[list[float]]  # relative (x, y), in detection.LANDMARKS order
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

    def embedding(self, index: int) -> np.ndarray:
        """The face's embedding, computed now if ``analyze`` did not (e.g. small faces)."""
        face = self.faces[index]
        if face.embedding is None:
            models = face_models()
            with models.lock:
                face.embedding = models.embed(aligned_face(self.pixels, face.row))
        return face.embedding


def analyze(data: bytes, embed: bool = True) -> Analysis:
    """Find every face in the image; embed the searchable ones unless ``embed`` is False.

    Raises ``indexing.images.ImageError`` for anything that is not a readable image.
    """
    decoded = decode_image(data, max_side=ALIGN_SIDE)
    return analyze_pixels(np.asarray(decoded.image), decoded.width, decoded.height, embed)


def analyze_pixels(
    pixels: np.ndarray, width: int, height: int, embed: bool = True, options: DetectOptions | None = None
) -> Analysis:
    """``analyze`` for pixels already decoded (a video frame): upright RGB; ``width`` x
    ``height`` is the original's size."""
    if max(pixels.shape[:2]) > ALIGN_SIDE:
        factor = ALIGN_SIDE / max(pixels.shape[:2])
        pixels, _, _ = shrink(pixels, max(1, round(pixels.shape[1] * factor)), max(1, round(pixels.shape[0] * factor)))
    rows_px, cols_px = pixels.shape[:2]
    scale = width / cols_px  # decoded -> original pixels
    faces = []
    models = face_models()
    with models.lock:
        for row in find_faces(models, pixels, options):
            aligned = aligned_face(pixels, row)
            side = float(min(row[2], row[3])) * scale
            face = AnalyzedFace(
                box=relative_box(row, pixels.shape),
                confidence=round(float(row[14]) * 100, 2),
                landmarks=[
                    [clip(row[4 + 2 * i] / cols_px), clip(row[5 + 2 * i] / rows_px)] for i in range(5)
                ],
                quality=face_quality(aligned, side),
                searchable=side >= MIN_FACE_PX,
                row=row,
            )
            if embed and face.searchable:
                face.embedding = models.embed(aligned)
            faces.append(face)
    return Analysis(width=width, height=height, faces=faces, pixels=pixels)


def _owner_id(owner) -> int:
    return int(getattr(owner, "pk", owner))


class LocalEngine(FaceEngine):
    """The embedded default engine: no service, embeddings in the database.

    Its faces carry embeddings, so people are grouped from them; it keeps no
    notion of people itself, so the people hooks keep their do-nothing defaults.
    """

    name = ENGINE
    groups_faces = True
    indexes_video = True

    def __init__(self) -> None:
        megabytes = int(getattr(settings, "FACES_LOCAL_CACHE_MB", 1024))
        self.cache = MatrixCache(max_bytes=megabytes * 1024 * 1024)
        ensure_threads()

    def warm_up(self) -> None:
        """Load YuNet and SFace now, so the first index job does not pay for it."""
        face_models()

    def ensure_collection(self, owner) -> None:
        FaceCollection.objects.get_or_create(
            owner_id=_owner_id(owner), engine=ENGINE, defaults={"version": FaceCollection.fresh_version()}
        )

    def index_image(self, owner, image: bytes, external_id: str, *, storage_key: str | None = None) -> IndexResult:
        """Faces with their embeddings; the caller writes the rows and bumps the collection.

        The bytes are always at hand, so ``storage_key`` is not needed.
        """
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
        return IndexResult(faces=faces, width=analysis.width, height=analysis.height, image=analysis.pixels)

    def index_video(self, owner, video, external_id: str, *, poster: bytes | None = None) -> IndexResult:
        """Tracks of the video's sampled frames; the caller writes the rows, as for photos."""
        cover = np.asarray(decode_image(poster, max_side=ALIGN_SIDE).image) if poster else None
        return index_tracks(video, functools.partial(analyze_pixels, options=VIDEO_OPTIONS), poster=cover)

    def search_by_face(self, owner, face_id: str, limit: int, threshold: float) -> list[Match]:
        """Faces like one of the owner's faces, without that face itself."""
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
