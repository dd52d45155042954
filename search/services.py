"""Search a user's library by image or by face, returning photos best first."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from indexing.engines import get_engine
from indexing.engines.base import ImageSearch, Match
from indexing.models import Face

MAX_LIMIT = 1000
SAME_PHOTO_IOU = 0.9  # face boxes of a photo and its re-encoded copy overlap this much at least
SAME_PHOTO_SIMILARITY_GAP = 2.0  # and match the query this equally (points of 0-100)


@dataclass
class PhotoMatch:
    """One photo in the results, through its best-matching face."""

    face: Face
    similarity: float
    duplicates: list[Face] = field(default_factory=list)  # the same photo imported again

    @property
    def photo(self):
        return self.face.photo


def _photo_matches(owner, matches: list[Match], limit: int, exclude_face: Face | None = None) -> list[PhotoMatch]:
    """Map engine matches to the owner's faces; each photo once, best first."""
    engine = get_engine()
    ids = [m.face_id for m in matches]
    faces = {
        f.engine_face_id: f
        for f in Face.objects.filter(owner=owner, engine=engine.name, engine_face_id__in=ids).select_related(
            "photo__post", "person"
        )
    }
    results: list[PhotoMatch] = []
    seen_photos: set[int] = set()
    for match in sorted(matches, key=lambda m: -m.similarity):
        face = faces.get(match.face_id)
        if face is None or face.photo_id in seen_photos:
            continue
        if exclude_face is not None and face.photo_id == exclude_face.photo_id:
            continue
        seen_photos.add(face.photo_id)
        twin = next((r for r in results if same_photo(r.face, face, r.similarity - match.similarity)), None)
        if twin is not None:
            twin.duplicates.append(face)
            continue
        if exclude_face is not None and same_photo(exclude_face, face, 0.0):
            continue  # the searched face's own photo, imported a second time
        results.append(PhotoMatch(face=face, similarity=round(match.similarity, 2)))
        if len(results) >= limit:
            break
    return results


def _iou(a: list[float], b: list[float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - w * h
    return w * h / union if union > 0 else 0.0


def same_photo(a: Face, b: Face, similarity_gap: float) -> bool:
    """Whether two matched faces are one photo imported twice (e.g. from Instagram and the export).

    Identical bytes, or the same shape with the face in the same place and an
    equally good match: a re-encoded or resized copy keeps all three, while
    two different photos of a person almost never do.
    """
    pa, pb = a.photo, b.photo
    if pa.sha256 and pa.sha256 == pb.sha256:
        return True
    if not (pa.width and pa.height and pb.width and pb.height):
        return False
    if abs(pa.width / pa.height - pb.width / pb.height) > 0.01 * (pa.width / pa.height):
        return False
    return abs(similarity_gap) <= SAME_PHOTO_SIMILARITY_GAP and _iou(a.box, b.box) >= SAME_PHOTO_IOU


def _clamp(limit: int | None, threshold: float | None) -> tuple[int, float]:
    limit = max(1, min(MAX_LIMIT, limit or 100))
    threshold = settings.FACES_DEFAULT_THRESHOLD if threshold is None else max(0.0, min(100.0, threshold))
    return limit, threshold


def search_by_image(
    owner, image: bytes, limit: int | None = None, threshold: float | None = None, face_index: int | None = None
) -> tuple[ImageSearch, list[PhotoMatch]]:
    """Faces in the query image, and the photos matching the chosen (or largest) one.

    Raises ImageError for unreadable images and NoFaceError when there is no face.
    """
    limit, threshold = _clamp(limit, threshold)
    result = get_engine().search_by_image(owner, image, limit * 2 + 10, threshold, face_index=face_index)
    return result, _photo_matches(owner, result.matches, limit)


def search_by_face(owner, face: Face, limit: int | None = None, threshold: float | None = None) -> list[PhotoMatch]:
    """Photos with faces similar to one of the owner's faces (its own photo left out)."""
    limit, threshold = _clamp(limit, threshold)
    matches = get_engine().search_by_face(owner, face.engine_face_id, limit * 2 + 10, threshold)
    return _photo_matches(owner, matches, limit, exclude_face=face)
