"""The face engine interface that the local engine and Rekognition both implement.

Similarities are on Rekognition's 0-100 scale for every engine, so views,
thresholds and people grouping never care which engine runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


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

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other``: 1 for the same box, 0 when they do not touch."""
        ix = max(0.0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0.0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


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
    # Videos: when the face first appears (seconds) and the frame ``box`` is on.
    seen_at: float | None = None
    frame: Any = None


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
    # The upright decoded image the engine worked on (a picture or its RGB pixels),
    # when it has one, so the pipeline can cut thumbnails without decoding the photo
    # a second time.
    image: Any = None
    frames: int = 0  # videos: the frames sampled
    duration: float | None = None  # videos: seconds read


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


@dataclass(frozen=True)
class PersonMatch:
    """A person of the owner's whose faces look like a query face."""

    person_id: int
    similarity: float  # 0-100


class FaceEngine(ABC):
    """What every face engine does, in the style of Django's session backends.

    Subclasses implement the collection and face methods; the people hooks and
    ``warm_up`` default to doing nothing. Callers ask the capabilities below,
    never the engine's name, so a new engine is a new subclass and nothing else.
    ``owner`` is always a user (or its primary key); an engine keeps one
    collection per owner and never lets one owner's call reach another's faces.
    """

    #: Short name stored on ``Face.engine`` and ``FaceCollection.engine``.
    name: str = ""
    #: Its faces carry embeddings that the people grouping can cluster.
    groups_faces: bool = False
    #: ``index_image`` can read the photo from ``default_storage`` by key
    #: (``storage_key``) instead of being sent its bytes.
    reads_from_storage: bool = False
    #: ``index_video`` finds the faces of a whole video; engines without it
    #: index a video's cover image only.
    indexes_video: bool = False
    #: How many ``index_image`` calls one process should have in flight: 1 for
    #: an engine that keeps a core busy per call, more for one that waits on
    #: the network (the pipeline runs that many on threads).
    concurrent_calls: int = 1

    def warm_up(self) -> None:
        """Load whatever is slow to load (models), once per worker process.

        Called as a queue worker starts so the first job does not pay for it.
        """

    @abstractmethod
    def ensure_collection(self, owner) -> None:
        """Make sure the owner's collection exists; idempotent and cheap when it does."""

    @abstractmethod
    def index_image(self, owner, image: bytes, external_id: str, *, storage_key: str | None = None) -> IndexResult:
        """Find the faces in ``image`` and add the searchable ones to the owner's collection.

        ``external_id`` tags the faces with the photo they came from. Raises
        ``ImageError`` for bytes that are not a readable image,
        ``RetryableEngineError`` when the job should be tried again later and
        ``EngineError`` otherwise. Faces too small or poor to search are
        returned with ``searchable=False`` or in ``unindexed``.
        """

    def index_video(self, owner, video, external_id: str, *, poster: bytes | None = None) -> IndexResult:
        """Find the people of a video (bytes or a binary file) and add them to the owner's collection.

        One face per track (a person in one or more moments), each with
        ``seen_at`` (seconds) and the ``frame`` (an RGB image) its box is on;
        ``poster`` (the cover image) counts as the first frame. Raises
        ``indexing.video.VideoError`` for a video that cannot be read. Engines
        without ``indexes_video`` refuse: the pipeline indexes their covers instead.
        """
        raise EngineError(f"The {self.name or 'configured'} engine does not index videos.")

    @abstractmethod
    def search_by_face(self, owner, face_id: str, limit: int, threshold: float) -> list[Match]:
        """Faces of the owner similar to one of their faces, best first, the face itself left out.

        At most ``limit`` matches, each with ``similarity >= threshold`` (0-100).
        """

    @abstractmethod
    def search_by_image(
        self, owner, image: bytes, limit: int, threshold: float, face_index: int | None = None
    ) -> ImageSearch:
        """Faces of the owner similar to a face of ``image``, best first.

        ``face_index`` picks one of ``query_faces`` (as this same call reports
        them, largest first); without it the largest face is searched. Raises
        ``NoFaceError`` when the image holds no face.
        """

    @abstractmethod
    def delete_faces(self, owner, face_ids: list[str]) -> None:
        """Remove these faces from the owner's collection; unknown ids are ignored."""

    @abstractmethod
    def delete_collection(self, owner) -> None:
        """Remove the owner's whole collection (face data deletion); a missing one is fine."""

    # -- people hooks ------------------------------------------------------------
    # The database is the truth about people; an engine that keeps its own notion
    # of them (Rekognition Users) follows these. Failures are logged, never
    # raised, and ``sync_people`` repairs what they missed.

    def person_named(self, person) -> None:
        """``person`` was named or marked "me": the engine should know them with all their faces."""

    def faces_moved(self, owner, moves: list[tuple[str, int | None]], target) -> None:
        """The user moved faces to ``target`` (a Person, or None for nobody).

        ``moves`` holds ``(engine_face_id, previous person id or None)`` for each
        moved face of this engine.
        """

    def person_removed(self, person) -> None:
        """``person`` is no longer named (or is being deleted): forget them."""

    def sync_people(self, owner) -> int:
        """Make the engine's people match the database's named people; returns how many it checked."""
        return 0

    def search_people_by_image(self, owner, image: bytes, threshold: float, limit: int = 1) -> list[PersonMatch]:
        """Named people of the owner whose faces look like the largest face of ``image``, best first.

        Engines without a notion of people return ``[]``: callers then decide
        from the face matches alone.
        """
        return []
