"""``RekognitionEngine``: one collection per user, faces indexed and searched by Amazon Rekognition.

One collection per user (``{FACES_REKOGNITION_PREFIX}-{user pk}``), so a search
can never reach another tenant's faces. Face rows in our database mirror the
FaceIds Rekognition returns; ``faces_reconcile`` compares the two. A
collection that disappeared is recreated on the spot (searches then find
nothing, IndexFaces is sent again). Errors are translated in ``client``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError

from ...models import FaceCollection
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
    UnindexedFaceInfo,
)
from . import images
from .client import MAX_IN_FLIGHT, InvalidParameter, InvalidS3Object, ResourceMissing, call, configured_client
from .users import UsersMixin

logger = logging.getLogger(__name__)

MAX_FACES = 100  # IndexFaces MaxFaces
DELETE_BATCH = 4096  # DeleteFaces FaceIds max
LIST_PAGE = 1000  # ListFaces MaxResults (max 4096)
MAX_MATCHES = 4096  # SearchFaces* MaxFaces max

_FACE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_UNSAFE_EXTERNAL_ID = re.compile(r"[^a-zA-Z0-9_.\-:]")
_UNSAFE_COLLECTION_ID = re.compile(r"[^a-zA-Z0-9_.\-]")


@dataclass(frozen=True)
class CollectionFace:
    """One face stored in a Rekognition collection, as ListFaces returns it."""

    face_id: str
    image_id: str = ""
    external_image_id: str = ""
    user_id: str = ""
    box: Box | None = None
    confidence: float = 0.0


def sanitize_external_id(value: str) -> str:
    """``value`` as an ExternalImageId: ``[a-zA-Z0-9_.\\-:]+``, at most 255 chars.

    Deterministic, so re-indexing a photo tags it the same way. Long ids keep
    their head and end in a hash of the whole, so they stay distinct.
    """
    clean = _UNSAFE_EXTERNAL_ID.sub("_", value or "") or "_"
    if len(clean) > 255:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
        clean = f"{clean[:238]}-{digest}"
    return clean


class RekognitionEngine(UsersMixin, FaceEngine):
    """Faces indexed and searched by Amazon Rekognition, one collection per user.

    It reads originals from S3 itself when storage is S3 (``reads_from_storage``)
    and keeps named people as Rekognition Users (``users``); it returns no
    embeddings, so people are not grouped automatically.
    """

    name = "rekognition"
    reads_from_storage = True

    @property
    def concurrent_calls(self) -> int:
        """As many requests in flight as the shared limit lets start per second.

        IndexFaces takes ~0.1-0.3 s, so this keeps a worker at
        ``FACES_REKOGNITION_TPS`` while the shared limiter keeps all workers
        together under it.
        """
        return max(1, min(MAX_IN_FLIGHT, math.ceil(settings.FACES_REKOGNITION_TPS)))

    def __init__(self) -> None:
        self._known: dict[int, str] = {}  # owner pk -> collection id known to exist

    # -- plumbing ---------------------------------------------------------------

    @property
    def client(self):
        """The boto3 client for the current settings, created on first use."""
        return configured_client()

    def _call(self, operation: str, *, ok: tuple[str, ...] = (), **params) -> dict:
        return call(self.client, operation, ok=ok, **params)

    # -- collections ------------------------------------------------------------

    def collection_id(self, owner) -> str:
        prefix = _UNSAFE_COLLECTION_ID.sub("-", settings.FACES_REKOGNITION_PREFIX) or "faces"
        return f"{prefix}-{owner.pk}"

    def ensure_collection(self, owner) -> None:
        """Create the owner's collection on first use and remember its id."""
        collection_id = self.collection_id(owner)
        if self._known.get(owner.pk) == collection_id:
            return
        stored = (
            FaceCollection.objects.filter(owner=owner, engine=self.name)
            .values_list("external_id", flat=True)
            .first()
        )
        if stored != collection_id:
            self._create_collection(owner, collection_id)
        self._known[owner.pk] = collection_id

    def _create_collection(self, owner, collection_id: str) -> None:
        self._call("CreateCollection", ok=("ResourceAlreadyExistsException",), CollectionId=collection_id)
        try:
            FaceCollection.objects.update_or_create(
                owner=owner, engine=self.name, defaults={"external_id": collection_id}
            )
        except IntegrityError:  # another worker created the row at the same moment
            FaceCollection.objects.filter(owner=owner, engine=self.name).update(external_id=collection_id)
        logger.info("Rekognition collection %s ready", collection_id)

    def _recreate_collection(self, owner) -> None:
        collection_id = self.collection_id(owner)
        logger.warning("Rekognition collection %s was missing; recreating it", collection_id)
        self._known.pop(owner.pk, None)
        self._create_collection(owner, collection_id)
        self._known[owner.pk] = collection_id

    def _in_collection(self, owner, operation: str, *, on_missing: str, **params) -> dict | None:
        """Call ``operation`` on the owner's collection, recreating it if it vanished.

        ``on_missing="retry"`` sends the call again into the new collection;
        ``"empty"`` returns None (a new collection holds nothing to find).
        """
        self.ensure_collection(owner)
        collection_id = self.collection_id(owner)
        try:
            return self._call(operation, CollectionId=collection_id, **params)
        except ResourceMissing:
            if self._collection_exists(collection_id):
                raise  # the collection is there: a face or user is what is missing
            self._recreate_collection(owner)
            if on_missing == "retry":
                return self._call(operation, CollectionId=collection_id, **params)
            return None

    def _collection_exists(self, collection_id: str) -> bool:
        try:
            self._call("DescribeCollection", CollectionId=collection_id)
        except ResourceMissing:
            return False
        return True

    def delete_collection(self, owner) -> None:
        """Delete the owner's collection (and a differently named one we stored earlier)."""
        ids = {self.collection_id(owner)}
        ids.update(
            FaceCollection.objects.filter(owner=owner, engine=self.name)
            .exclude(external_id="")
            .values_list("external_id", flat=True)
        )
        for collection_id in sorted(ids):
            self._call("DeleteCollection", ok=("ResourceNotFoundException",), CollectionId=collection_id)
        self._known.pop(owner.pk, None)
        FaceCollection.objects.filter(owner=owner, engine=self.name).update(external_id="")

    def list_faces(self, owner) -> Iterator[CollectionFace]:
        """Every face in the owner's collection, page by page (for browse and reconcile)."""
        token: str | None = None
        while True:
            params = {"MaxResults": LIST_PAGE}
            if token:
                params["NextToken"] = token
            response = self._in_collection(owner, "ListFaces", on_missing="empty", **params)
            if response is None:
                return
            for face in response.get("Faces", []):
                yield CollectionFace(
                    face_id=face["FaceId"],
                    image_id=face.get("ImageId", ""),
                    external_image_id=face.get("ExternalImageId", ""),
                    user_id=face.get("UserId", ""),
                    box=images.box(face.get("BoundingBox")),
                    confidence=float(face.get("Confidence", 0.0)),
                )
            token = response.get("NextToken")
            if not token:
                return

    # -- faces ------------------------------------------------------------------

    def index_image(self, owner, image: bytes, external_id: str, *, storage_key: str | None = None) -> IndexResult:
        """Index every face of ``image`` into the owner's collection.

        With ``storage_key`` (the stored original's name in ``default_storage``)
        and S3 storage on AWS_STORAGE_BUCKET_NAME, Rekognition reads the photo
        from S3, which saves sending up to 15 MB per call; it falls back to
        bytes when storage is not S3 or S3 cannot be read.
        """
        decoded = images.decode(image)
        s3_key = images.storage_s3_key(storage_key) if storage_key else None
        params = {
            "Image": images.image_param(image, decoded, s3_key),
            "ExternalImageId": sanitize_external_id(external_id),
            "MaxFaces": MAX_FACES,
            "QualityFilter": "AUTO",
            "DetectionAttributes": ["DEFAULT"],
        }
        try:
            response = self._in_collection(owner, "IndexFaces", on_missing="retry", **params)
        except InvalidS3Object as exc:
            if "S3Object" not in params["Image"]:
                raise
            logger.warning("Rekognition could not read s3://%s: %s; sending bytes", s3_key, exc)
            params["Image"] = {"Bytes": images.api_bytes(image, decoded)}
            response = self._in_collection(owner, "IndexFaces", on_missing="retry", **params)
        except InvalidParameter as exc:
            raise EngineError(f"Amazon Rekognition could not index this photo ({exc}).") from None
        faces = []
        for record in response.get("FaceRecords", []):
            face, detail = record.get("Face", {}), record.get("FaceDetail", {})
            confidence = float(face.get("Confidence", detail.get("Confidence", 0.0)))
            faces.append(
                IndexedFace(
                    face_id=face["FaceId"],
                    box=images.box(face.get("BoundingBox") or detail.get("BoundingBox")),
                    confidence=confidence,
                    quality=images.quality(detail, confidence),
                    landmarks=images.landmarks(detail),
                    embedding=None,
                    searchable=True,
                )
            )
        unindexed = [
            UnindexedFaceInfo(
                box=images.box((item.get("FaceDetail") or {}).get("BoundingBox")),
                reasons=list(item.get("Reasons", [])),
            )
            for item in response.get("UnindexedFaces", [])
        ]
        return IndexResult(faces=faces, width=decoded.width, height=decoded.height, unindexed=unindexed)

    def search_by_face(self, owner, face_id: str, limit: int, threshold: float) -> list[Match]:
        """Faces of the owner's collection like an already indexed face, best first."""
        if not _FACE_ID.match(face_id or ""):
            raise EngineError("This face does not belong to Amazon Rekognition.")
        try:
            response = self._in_collection(
                owner,
                "SearchFaces",
                on_missing="empty",
                FaceId=face_id,
                MaxFaces=_clamp(limit, 1, MAX_MATCHES),
                FaceMatchThreshold=float(min(max(threshold, 0.0), 100.0)),
            )
        except (ResourceMissing, InvalidParameter):  # "faceId was not found in the collection."
            return []
        return _matches(response, limit)

    def search_by_image(
        self, owner, image: bytes, limit: int, threshold: float, face_index: int | None = None
    ) -> ImageSearch:
        """Find the owner's faces like one face of ``image``.

        DetectFaces lists the faces of the query first, so the caller learns how
        many there are (``faces_in_query``) and can pick one; a picked face that
        is not the only one is cropped out with a margin and searched alone.
        Without a pick Rekognition searches the largest face itself.
        """
        decoded = images.decode(image, max_side=2048)
        payload = images.api_bytes(image, decoded)
        detected = self._call("DetectFaces", Image={"Bytes": payload}, Attributes=["DEFAULT"])
        query_faces = sorted(
            (
                QueryFace(box=images.box(detail.get("BoundingBox")), confidence=float(detail.get("Confidence", 0.0)))
                for detail in detected.get("FaceDetails", [])
            ),
            key=lambda face: face.box.area,
            reverse=True,
        )
        if not query_faces:
            raise NoFaceError("No face found in this photo.")
        if face_index is not None and not 0 <= face_index < len(query_faces):
            raise EngineError(f"This photo has {len(query_faces)} face(s); there is no face {face_index + 1}.")
        query = payload
        if face_index is not None and len(query_faces) > 1:
            query = images.crop_face(decoded.image, query_faces[face_index].box)
        try:
            response = self._in_collection(
                owner,
                "SearchFacesByImage",
                on_missing="empty",
                Image={"Bytes": query},
                MaxFaces=_clamp(limit, 1, MAX_MATCHES),
                FaceMatchThreshold=float(min(max(threshold, 0.0), 100.0)),
                QualityFilter="NONE",
            )
        except InvalidParameter:  # Rekognition's way of saying "no face in this image"
            raise NoFaceError("No face found in this photo.") from None
        searched = face_index
        if searched is None:
            searched = 0
            if response and response.get("SearchedFaceBoundingBox"):
                box = images.box(response["SearchedFaceBoundingBox"])
                searched = max(range(len(query_faces)), key=lambda i: query_faces[i].box.iou(box))
        return ImageSearch(query_faces=query_faces, searched_face=searched, matches=_matches(response, limit))

    def delete_faces(self, owner, face_ids: list[str]) -> None:
        """Remove faces from the owner's collection, 4096 per call."""
        valid = sorted({face_id for face_id in face_ids if _FACE_ID.match(face_id or "")})
        if len(valid) < len(set(face_ids)):
            logger.warning("Skipping %d face ids that are not Rekognition FaceIds", len(set(face_ids)) - len(valid))
        for start in range(0, len(valid), DELETE_BATCH):
            batch = valid[start : start + DELETE_BATCH]
            response = self._in_collection(owner, "DeleteFaces", on_missing="empty", FaceIds=batch)
            if response is None:
                return  # the collection was gone: nothing left to delete
            # Rekognition refuses to delete a face that belongs to a user: detach, then delete.
            held: dict[str, list[str]] = {}
            for failure in response.get("UnsuccessfulFaceDeletions", []):
                reasons = failure.get("Reasons", [])
                if "ASSOCIATED_TO_AN_EXISTING_USER" in reasons and failure.get("UserId"):
                    held.setdefault(failure["UserId"], []).append(failure["FaceId"])
                elif "FACE_NOT_FOUND" not in reasons:
                    logger.warning("Rekognition did not delete face %s: %s", failure.get("FaceId"), reasons)
            for user_id, ids in held.items():
                self.disassociate_faces(owner, user_id, ids)
                retry = self._in_collection(owner, "DeleteFaces", on_missing="empty", FaceIds=ids) or {}
                for failure in retry.get("UnsuccessfulFaceDeletions", []):
                    logger.warning(
                        "Rekognition did not delete face %s: %s", failure.get("FaceId"), failure.get("Reasons")
                    )


def _matches(response: dict | None, limit: int) -> list[Match]:
    if not response:
        return []
    matches = [
        Match(face_id=item["Face"]["FaceId"], similarity=float(item.get("Similarity", 0.0)))
        for item in response.get("FaceMatches", [])
    ]
    matches.sort(key=lambda match: match.similarity, reverse=True)
    return matches[: max(limit, 0)]


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(int(value), high))
