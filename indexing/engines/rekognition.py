"""Amazon Rekognition behind the FaceEngine interface.

One collection per user (``{FACES_REKOGNITION_PREFIX}-{user pk}``), so a search
can never reach another tenant's faces. Face rows in our database mirror the
FaceIds Rekognition returns; ``faces_reconcile`` compares the two.

Failure policy, so jobs know what to do:

* throttling, 5xx, timeouts and connection errors -> ``RetryableEngineError``
  (after botocore's adaptive retries gave up): the job retries later;
* a collection that disappeared -> recreated on the spot (searches then find
  nothing, IndexFaces is sent again);
* no face in a query image -> ``NoFaceError``;
* anything else -> ``EngineError`` with a message safe to show.

A process-shared rate limiter (``ratelimit.RateLimiter`` on the Django cache)
keeps every worker together under ``FACES_REKOGNITION_TPS``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError, ParamValidationError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings
from django.db import IntegrityError
from PIL import Image

from ..images import DecodedImage, ImageError, decode_image, encode_jpeg
from .base import (
    Box,
    EngineError,
    FaceEngine,
    ImageSearch,
    IndexedFace,
    IndexResult,
    Match,
    NoFaceError,
    QueryFace,
    RetryableEngineError,
    UnindexedFaceInfo,
)
from .ratelimit import RateLimiter

logger = logging.getLogger(__name__)

# Set quotas (docs.aws.amazon.com/rekognition/latest/dg/limits.html).
MAX_BYTES = 5 * 1024 * 1024  # image passed as bytes
MAX_S3_BYTES = 15 * 1024 * 1024  # image read from S3
MIN_SIDE = 80  # smallest width/height Rekognition accepts
MAX_SIDE = 4096  # what we downscale oversized images to before re-encoding
NATIVE_FORMATS = {"JPEG", "MPO", "PNG"}  # the only formats Rekognition reads

MAX_FACES = 100  # IndexFaces MaxFaces
DELETE_BATCH = 4096  # DeleteFaces FaceIds max
ASSOCIATE_BATCH = 100  # AssociateFaces / DisassociateFaces FaceIds max
LIST_PAGE = 1000  # ListFaces MaxResults (max 4096)
MAX_MATCHES = 4096  # SearchFaces* MaxFaces max
QUERY_CROP_MARGIN = 0.6  # of the face size, on each side, when cropping one query face

THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "LimitExceededException",
}
TRANSIENT_CODES = {"InternalServerError", "ServiceUnavailableException", "ServiceUnavailable"}

# Operations share a rate bucket per class; AWS quotas are per API and these
# classes hold the APIs that matter for a bulk import.
OPERATION_CLASSES = {
    "IndexFaces": "index",
    "SearchFaces": "search",
    "SearchFacesByImage": "search",
    "SearchUsersByImage": "search",
    "DetectFaces": "detect",
}

_FACE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_UNSAFE_EXTERNAL_ID = re.compile(r"[^a-zA-Z0-9_.\-:]")
_UNSAFE_COLLECTION_ID = re.compile(r"[^a-zA-Z0-9_.\-]")


class ResourceMissing(EngineError):
    """Rekognition answered ResourceNotFoundException (collection, face or user)."""


class InvalidParameter(EngineError):
    """Rekognition refused a parameter; for image calls this mostly means no face."""


class InvalidS3Object(EngineError):
    """Rekognition could not read the S3 object (permissions, region, missing)."""


@dataclass(frozen=True)
class CollectionFace:
    """One face stored in a Rekognition collection, as ListFaces returns it."""

    face_id: str
    image_id: str = ""
    external_image_id: str = ""
    user_id: str = ""
    box: Box | None = None
    confidence: float = 0.0


@dataclass
class Association:
    """Result of AssociateFaces / DisassociateFaces across batches."""

    face_ids: list[str] = field(default_factory=list)  # associated or disassociated
    failed: dict[str, list[str]] = field(default_factory=dict)  # face id -> reasons
    user_status: str = ""


@dataclass(frozen=True)
class UserMatch:
    user_id: str
    similarity: float  # 0-100


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


def user_id_for(person) -> str:
    """The Rekognition UserId standing for a Person (stable across renames)."""
    return f"person-{person.pk}"


def storage_s3_key(name: str) -> str | None:
    """The S3 key of a file saved through ``default_storage``; None unless storage is S3.

    The pipeline passes it to ``index_image(..., s3_key=...)`` so Rekognition
    reads the original from the bucket instead of receiving its bytes.
    """
    if not name or not settings.AWS_STORAGE_BUCKET_NAME:
        return None
    from django.core.files.storage import default_storage

    try:
        from storages.backends.s3 import S3Storage
        from storages.utils import clean_name
    except ImportError:  # pragma: no cover - django-storages is pinned
        return None
    if not isinstance(default_storage, S3Storage):
        return None
    if default_storage.bucket_name != settings.AWS_STORAGE_BUCKET_NAME:
        return None
    return default_storage._normalize_name(clean_name(name))


def _box(bounding_box: dict | None) -> Box:
    """Rekognition's BoundingBox, clipped to the image (it can reach past the edges)."""
    bb = bounding_box or {}
    left, top = float(bb.get("Left", 0.0)), float(bb.get("Top", 0.0))
    width, height = float(bb.get("Width", 0.0)), float(bb.get("Height", 0.0))
    return _clipped(left, top, width, height)


def _clip(start: float, size: float) -> tuple[float, float]:
    """One axis of a box kept inside [0, 1]; untouched (no float noise) when already inside."""
    if 0.0 <= start and start + size <= 1.0:
        return start, size
    low = min(max(start, 0.0), 1.0)
    return low, max(0.0, min(start + size, 1.0) - low)


def _clipped(left: float, top: float, width: float, height: float) -> Box:
    x, w = _clip(left, width)
    y, h = _clip(top, height)
    return Box(x=x, y=y, w=w, h=h)


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _quality(detail: dict, fallback: float) -> float:
    """Sharpness is what decides whether a face is worth showing; fall back to confidence."""
    quality = detail.get("Quality") or {}
    for key in ("Sharpness", "Brightness"):
        if key in quality:
            return float(quality[key])
    return float(fallback)


def _landmarks(detail: dict) -> list[list[float]]:
    return [
        [round(float(point.get("X", 0.0)), 5), round(float(point.get("Y", 0.0)), 5)]
        for point in detail.get("Landmarks") or []
    ]


_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()
_limiter = RateLimiter(prefix="faces:rekognition:tps")


def _throttle(event_name: str = "", **kwargs) -> None:
    """botocore ``before-send`` hook: take a slot of the shared rate limit per HTTP attempt."""
    operation = event_name.rsplit(".", 1)[-1]
    rate = float(getattr(settings, "FACES_REKOGNITION_TPS", 5))
    waited = _limiter.acquire(OPERATION_CLASSES.get(operation, "manage"), rate)
    if waited > 1:
        logger.info("Rekognition %s waited %.1fs for the rate limit", operation, waited)


def _client_for(region: str, endpoint: str | None, max_attempts: int):
    """One boto3 client per process and configuration (clients are thread-safe).

    The pid is part of the key: a client created before django-q forks its
    workers must not be shared with them (its connection pool would be).
    """
    key = (os.getpid(), region, endpoint, max_attempts)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                import boto3

                config = Config(
                    region_name=region,
                    retries={"mode": "adaptive", "total_max_attempts": max_attempts},
                    connect_timeout=5,
                    read_timeout=30,
                    max_pool_connections=32,
                    user_agent_extra="faces",
                )
                # A Session per client: boto3's default session is not thread-safe.
                client = boto3.session.Session().client(
                    "rekognition", region_name=region, endpoint_url=endpoint or None, config=config
                )
                # before-send fires once per HTTP attempt, retries included.
                client.meta.events.register("before-send.rekognition", _throttle)
                _clients[key] = client
    return client


class RekognitionEngine(FaceEngine):
    """Faces indexed and searched by Amazon Rekognition, one collection per user."""

    name = "rekognition"
    supports_s3_input = True  # index_image accepts s3_key=

    def __init__(self) -> None:
        self._known: dict[int, str] = {}  # owner pk -> collection id known to exist

    # -- plumbing ---------------------------------------------------------------

    @property
    def client(self):
        """The boto3 client for the current settings, created on first use."""
        return _client_for(
            settings.AWS_REGION,
            settings.AWS_ENDPOINT_URL,
            int(getattr(settings, "FACES_REKOGNITION_MAX_ATTEMPTS", 5)),
        )

    def _call(self, operation: str, *, ok: tuple[str, ...] = (), **params) -> dict:
        """Call one Rekognition API and translate its errors into engine errors.

        Error codes listed in ``ok`` are expected outcomes and return ``{}``.
        """
        method = getattr(self.client, xform_name(operation))
        try:
            return method(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ok:
                return {}
            if code in THROTTLING_CODES:
                raise RetryableEngineError(
                    "Amazon Rekognition is throttling requests; the job will be retried."
                ) from exc
            if code in TRANSIENT_CODES or status >= 500:
                raise RetryableEngineError(f"Amazon Rekognition is unavailable ({code or status}).") from exc
            if code == "ResourceNotFoundException":
                raise ResourceMissing(message or "Not found in Amazon Rekognition.") from exc
            if code == "InvalidParameterException":
                raise InvalidParameter(message or "Amazon Rekognition refused the request.") from exc
            if code == "InvalidS3ObjectException":
                raise InvalidS3Object(message or "Amazon Rekognition could not read the S3 object.") from exc
            if code == "ImageTooLargeException":
                raise EngineError("The image is too large for Amazon Rekognition.") from exc
            if code == "InvalidImageFormatException":
                raise EngineError("Amazon Rekognition cannot read this image format.") from exc
            if code == "AccessDeniedException":
                raise EngineError(
                    f"Access to Amazon Rekognition {operation} was denied; check the IAM policy."
                ) from exc
            raise EngineError(f"Amazon Rekognition {operation} failed ({code or status}).") from exc
        except NoCredentialsError as exc:
            raise EngineError("No AWS credentials are configured for Amazon Rekognition.") from exc
        except ParamValidationError as exc:
            raise EngineError(f"Invalid request to Amazon Rekognition {operation}: {exc}") from exc
        except (BotoConnectionError, HTTPClientError) as exc:  # refused, reset, timeouts
            raise RetryableEngineError(f"Amazon Rekognition could not be reached ({exc}).") from exc
        except TimeoutError as exc:  # our shared rate limiter stayed full
            raise RetryableEngineError(str(exc)) from exc
        except BotoCoreError as exc:
            raise EngineError(f"Amazon Rekognition {operation} failed ({exc}).") from exc

    # -- collections ------------------------------------------------------------

    def collection_id(self, owner) -> str:
        prefix = _UNSAFE_COLLECTION_ID.sub("-", settings.FACES_REKOGNITION_PREFIX) or "faces"
        return f"{prefix}-{owner.pk}"

    def ensure_collection(self, owner) -> None:
        """Create the owner's collection on first use and remember its id."""
        collection_id = self.collection_id(owner)
        if self._known.get(owner.pk) == collection_id:
            return
        from ..models import FaceCollection

        stored = (
            FaceCollection.objects.filter(owner=owner, engine=self.name)
            .values_list("external_id", flat=True)
            .first()
        )
        if stored != collection_id:
            self._create_collection(owner, collection_id)
        self._known[owner.pk] = collection_id

    def _create_collection(self, owner, collection_id: str) -> None:
        from ..models import FaceCollection

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
        from ..models import FaceCollection

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
                    box=_box(face.get("BoundingBox")),
                    confidence=float(face.get("Confidence", 0.0)),
                )
            token = response.get("NextToken")
            if not token:
                return

    # -- images -----------------------------------------------------------------

    def _decode(self, data: bytes, max_side: int | None = 1024) -> DecodedImage:
        try:
            return decode_image(data, max_side=max_side)
        except ImageError as exc:
            raise EngineError(str(exc)) from None

    def _fits_as_is(self, data: bytes, decoded: DecodedImage, limit: int) -> bool:
        return (
            decoded.format in NATIVE_FORMATS
            and len(data) <= limit
            and min(decoded.width, decoded.height) >= MIN_SIDE
        )

    def _api_bytes(self, data: bytes, decoded: DecodedImage) -> bytes:
        """The image as Rekognition accepts it: JPEG or PNG, at most 5 MB, at least 80 px.

        The original goes as is when it qualifies (EXIF orientation included:
        Rekognition applies it, so boxes come back upright like ours).
        Otherwise an upright JPEG re-encode, downscaled until it fits.
        """
        if self._fits_as_is(data, decoded, MAX_BYTES):
            return data
        image = self._decode(data, max_side=MAX_SIDE).image
        return _fit_jpeg(image)

    def _image_param(self, data: bytes, decoded: DecodedImage, s3_key: str | None) -> dict:
        bucket = settings.AWS_STORAGE_BUCKET_NAME
        if s3_key and bucket and self._fits_as_is(data, decoded, MAX_S3_BYTES):
            return {"S3Object": {"Bucket": bucket, "Name": s3_key}}
        return {"Bytes": self._api_bytes(data, decoded)}

    # -- FaceEngine -------------------------------------------------------------

    def index_image(self, owner, image: bytes, external_id: str, *, s3_key: str | None = None) -> IndexResult:
        """Index every face of ``image`` into the owner's collection.

        With ``s3_key`` (the stored original's key in AWS_STORAGE_BUCKET_NAME)
        Rekognition reads the photo from S3, which saves sending up to 15 MB
        per call; it falls back to bytes if S3 cannot be read.
        """
        decoded = self._decode(image)
        params = {
            "Image": self._image_param(image, decoded, s3_key),
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
            params["Image"] = {"Bytes": self._api_bytes(image, decoded)}
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
                    box=_box(face.get("BoundingBox") or detail.get("BoundingBox")),
                    confidence=confidence,
                    quality=_quality(detail, confidence),
                    landmarks=_landmarks(detail),
                    embedding=None,
                    searchable=True,
                )
            )
        unindexed = [
            UnindexedFaceInfo(
                box=_box((item.get("FaceDetail") or {}).get("BoundingBox")),
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
        decoded = self._decode(image, max_side=2048)
        payload = self._api_bytes(image, decoded)
        detected = self._call("DetectFaces", Image={"Bytes": payload}, Attributes=["DEFAULT"])
        query_faces = sorted(
            (
                QueryFace(box=_box(detail.get("BoundingBox")), confidence=float(detail.get("Confidence", 0.0)))
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
            query = _crop_face(decoded.image, query_faces[face_index].box)
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
                box = _box(response["SearchedFaceBoundingBox"])
                searched = max(range(len(query_faces)), key=lambda i: _iou(query_faces[i].box, box))
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

    # -- Users API (people) -----------------------------------------------------

    def create_user(self, owner, user_id: str) -> None:
        """Create a Rekognition user (a person) in the owner's collection; idempotent."""
        self._in_collection(owner, "CreateUser", on_missing="retry", ok=("ConflictException",), UserId=user_id)

    def delete_user(self, owner, user_id: str) -> None:
        """Delete a user; its faces stay in the collection. A missing user is fine."""
        try:
            self._in_collection(owner, "DeleteUser", on_missing="empty", UserId=user_id)
        except ResourceMissing:
            pass

    def associate_faces(
        self, owner, user_id: str, face_ids: list[str], threshold: float | None = None
    ) -> Association:
        """Attach faces to a user, 100 per call. Faces Rekognition refuses are in ``failed``."""
        return self._associate("AssociateFaces", owner, user_id, face_ids, threshold)

    def disassociate_faces(self, owner, user_id: str, face_ids: list[str]) -> Association:
        """Detach faces from a user, 100 per call."""
        return self._associate("DisassociateFaces", owner, user_id, face_ids, None)

    def _associate(
        self, operation: str, owner, user_id: str, face_ids: list[str], threshold: float | None
    ) -> Association:
        result = Association()
        ids = list(dict.fromkeys(face_ids))
        done_key = "AssociatedFaces" if operation == "AssociateFaces" else "DisassociatedFaces"
        failed_key = (
            "UnsuccessfulFaceAssociations" if operation == "AssociateFaces" else "UnsuccessfulFaceDisassociations"
        )
        for start in range(0, len(ids), ASSOCIATE_BATCH):
            params = {"UserId": user_id, "FaceIds": ids[start : start + ASSOCIATE_BATCH]}
            if threshold is not None:
                params["UserMatchThreshold"] = float(threshold)
            try:
                response = self._in_collection(owner, operation, on_missing="empty", **params)
            except ResourceMissing as exc:
                raise EngineError(f"Rekognition user {user_id} does not exist.") from exc
            if response is None:
                raise EngineError("The face collection was missing and has been recreated; index the photos again.")
            result.face_ids += [item["FaceId"] for item in response.get(done_key, [])]
            for item in response.get(failed_key, []):
                result.failed[item.get("FaceId", "")] = list(item.get("Reasons", []))
            result.user_status = response.get("UserStatus", result.user_status)
        return result

    def search_users_by_image(self, owner, image: bytes, threshold: float, limit: int = 10) -> list[UserMatch]:
        """People (Rekognition users) whose faces look like the largest face of ``image``."""
        decoded = self._decode(image)
        try:
            response = self._in_collection(
                owner,
                "SearchUsersByImage",
                on_missing="empty",
                Image={"Bytes": self._api_bytes(image, decoded)},
                UserMatchThreshold=float(min(max(threshold, 0.0), 100.0)),
                MaxUsers=_clamp(limit, 1, 500),
            )
        except InvalidParameter:
            raise NoFaceError("No face found in this photo.") from None
        if not response:
            return []
        return [
            UserMatch(user_id=item["User"]["UserId"], similarity=float(item.get("Similarity", 0.0)))
            for item in response.get("UserMatches", [])
        ]


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


def _fit_jpeg(image: Image.Image) -> bytes:
    """Encode ``image`` as a JPEG Rekognition takes as bytes (<= 5 MB, >= 80 px)."""
    if min(image.size) < MIN_SIDE:
        scale = MIN_SIDE / min(image.size)
        image = image.resize(
            (max(MIN_SIDE, round(image.width * scale)), max(MIN_SIDE, round(image.height * scale))),
            Image.Resampling.BICUBIC,
        )
    quality = 90
    while True:
        data = encode_jpeg(image, quality=quality)
        if len(data) <= MAX_BYTES:
            return data
        if quality > 70:
            quality -= 10
        else:
            image = image.resize((int(image.width * 0.75), int(image.height * 0.75)), Image.Resampling.BILINEAR)


def _crop_face(image: Image.Image, box: Box) -> bytes:
    """One face of the query with a margin, so SearchFacesByImage sees only it."""
    width, height = image.size
    margin_x, margin_y = box.w * QUERY_CROP_MARGIN, box.h * QUERY_CROP_MARGIN
    left = max(0, int((box.x - margin_x) * width))
    top = max(0, int((box.y - margin_y) * height))
    right = min(width, int((box.x + box.w + margin_x) * width) + 1)
    bottom = min(height, int((box.y + box.h + margin_y) * height) + 1)
    return _fit_jpeg(image.crop((left, top, max(right, left + 1), max(bottom, top + 1))))
