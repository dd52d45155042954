"""The face engine interface that the local engine and Rekognition both implement.

Similarities are on Rekognition's 0-100 scale for every engine, so views,
thresholds and people grouping never care which engine runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class EngineError(Exception):
    """A face engine could not do what was asked; the message is safe to show."""


class NoFaceError(EngineError):
    """The query image holds no face."""


class RetryableEngineError(EngineError):
    """A transient failure (throttling, timeouts): the job should be retried later."""


@dataclass(frozen=True)
class Box:
    """A face box relative to the image, like Rekognition's BoundingBox."""

    x: float
    y: float
    w: float
    h: float

    def as_list(self) -> list[float]:
        return [round(self.x, 5), round(self.y, 5), round(self.w, 5), round(self.h, 5)]

    @property
    def area(self) -> float:
        return self.w * self.h


@dataclass
class IndexedFace:
    """One face an engine found and (if ``searchable``) added to the owner's collection."""

    face_id: str
    box: Box
    confidence: float  # detection confidence, 0-100
    quality: float = 0.0  # 0-100
    landmarks: list[list[float]] = field(default_factory=list)  # relative (x, y) points
    embedding: bytes | None = None  # local engine only: normalized float32
    searchable: bool = True


@dataclass
class UnindexedFaceInfo:
    box: Box
    reasons: list[str]


@dataclass
class IndexResult:
    faces: list[IndexedFace]
    width: int
    height: int
    unindexed: list[UnindexedFaceInfo] = field(default_factory=list)
    # The upright decoded image the engine worked on, when it has one, so the
    # pipeline can cut thumbnails without decoding the photo a second time.
    image: Any = None


@dataclass(frozen=True)
class Match:
    face_id: str
    similarity: float  # 0-100, Rekognition's scale


@dataclass
class QueryFace:
    box: Box
    confidence: float


@dataclass
class ImageSearch:
    """Search by image: the faces seen in the query and the matches of the chosen one."""

    query_faces: list[QueryFace]
    searched_face: int | None
    matches: list[Match]

    @property
    def faces_in_query(self) -> int:
        return len(self.query_faces)


@runtime_checkable
class FaceEngine(Protocol):
    name: str

    def ensure_collection(self, owner) -> None: ...

    def index_image(self, owner, image: bytes, external_id: str) -> IndexResult: ...

    def search_by_face(self, owner, face_id: str, limit: int, threshold: float) -> list[Match]: ...

    def search_by_image(
        self, owner, image: bytes, limit: int, threshold: float, face_index: int | None = None
    ) -> ImageSearch: ...

    def delete_faces(self, owner, face_ids: list[str]) -> None: ...

    def delete_collection(self, owner) -> None: ...
