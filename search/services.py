"""Search a user's library by image or by face, returning photos best first."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from indexing.engines import get_engine
from indexing.engines.base import ImageSearch, Match
from indexing.models import Face

MAX_LIMIT = 1000


@dataclass
class PhotoMatch:
    """One photo in the results, through its best-matching face."""

    face: Face
    similarity: float

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
        results.append(PhotoMatch(face=face, similarity=round(match.similarity, 2)))
        if len(results) >= limit:
            break
    return results


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
