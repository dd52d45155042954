"""A loopback Amazon Rekognition for tests and benchmarks.

It speaks the real wire protocol (AWS JSON 1.1: ``POST /`` with
``X-Amz-Target: RekognitionService.<Operation>``, errors as
``{"__type": ..., "message": ...}``), so the engine under test goes through
real boto3 HTTP calls: signing, retries, error parsing and all. Faces are real:
detection and embeddings come from the local engine's face math
(``indexing.engines.local.analyze``) and similarities from its
``similarity_from_cosine``, held in in-memory collections.

Every answer is checked against Rekognition's output shapes from botocore's
service model, so the fake cannot drift into fields the real service lacks.

Use the ``fake_rekognition`` fixture (registered in tests/conftest.py)::

    def test_something(fake_rekognition, user):
        engine = RekognitionEngine()
        engine.index_image(user, data, "p1")
        fake_rekognition.fail_next("IndexFaces", times=5)  # throttle the next five
        fake_rekognition.faces(engine.collection_id(user))

For worker processes, pass ``fake_rekognition.env()`` to ``start_worker``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

MODEL_VERSION = "7.0"
ACCOUNT = "123456789012"
MAX_BYTES = 5 * 1024 * 1024
MAX_S3_BYTES = 15 * 1024 * 1024
MIN_SIDE = 80
NO_FACE = "There are no faces in the image. Should be at least 1."


class RekognitionError(Exception):
    def __init__(self, code: str, message: str = "", status: int = 400):
        super().__init__(message or code)
        self.code, self.message, self.status = code, message or code, status


@dataclass
class FaceInfo:
    """One face the analyzer found: relative box, 0-100 scores, normalized embedding."""

    box: tuple[float, float, float, float]  # left, top, width, height
    confidence: float
    landmarks: list[list[float]]
    quality: float
    searchable: bool
    embedding: np.ndarray | None


@dataclass
class Analyzed:
    width: int
    height: int
    faces: list[FaceInfo]  # largest first


@dataclass
class StoredFace:
    face_id: str
    image_id: str
    external_image_id: str
    face: FaceInfo
    user_id: str = ""


@dataclass
class Collection:
    collection_id: str
    created: float
    faces: dict[str, StoredFace] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)  # user id -> face ids


def local_analyzer(data: bytes) -> Analyzed:
    """The local engine's real detector and embedder, reduced to what the fake needs."""
    from indexing.engines import local

    analysis = local.analyze(data)
    faces = []
    for index, face in enumerate(analysis.faces):
        embedding = face.embedding
        if embedding is None and hasattr(analysis, "embedding"):
            embedding = analysis.embedding(index)  # small faces: embed anyway (QualityFilter NONE)
        box = face.box
        faces.append(
            FaceInfo(
                box=(box.x, box.y, box.w, box.h),
                confidence=float(face.confidence),
                landmarks=[list(map(float, point)) for point in face.landmarks],
                quality=float(face.quality),
                searchable=bool(face.searchable),
                embedding=None if embedding is None else np.asarray(embedding, dtype=np.float32),
            )
        )
    faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
    return Analyzed(width=analysis.width, height=analysis.height, faces=faces)


def local_similarity(cosine: float) -> float:
    from indexing.engines.local import similarity_from_cosine

    return float(similarity_from_cosine(cosine))


# Analyses are pure functions of the bytes: share them across fakes and tests.
_analyses: dict[tuple[int, str], Analyzed] = {}
_analyses_lock = threading.Lock()


class FakeRekognition:
    """In-memory Rekognition behind a threaded HTTP server on 127.0.0.1."""

    def __init__(
        self,
        *,
        analyzer: Callable[[bytes], Analyzed] = local_analyzer,
        similarity: Callable[[float], float] = local_similarity,
        region: str = "us-east-1",
        s3_objects: dict[tuple[str, str], bytes] | None = None,
        s3_endpoint: str | None = None,
        latency_ms: float = 0.0,
        strict: bool = True,
        cache_analyses: bool = True,
    ):
        self.analyzer = analyzer
        self.similarity = similarity
        self.region = region
        self.s3_objects = s3_objects if s3_objects is not None else {}
        self.s3_endpoint = s3_endpoint
        self.latency_ms = latency_ms
        self.strict = strict
        self.cache_analyses = cache_analyses  # False: run the face math on every request (benchmarks)
        self.collections: dict[str, Collection] = {}
        self.calls: list[tuple[str, dict]] = []  # (operation, params with images summarized)
        self._faults: list[list] = []  # [operation or "*", code, status, remaining]
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> FakeRekognition:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 128
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-rekognition", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeRekognition:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """Environment for a worker process that should use this fake."""
        return {
            "FACES_ENGINE": "rekognition",
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "FACES_REKOGNITION_TPS": "1000",
        }

    # -- test helpers -------------------------------------------------------------

    def fail_next(
        self,
        operation: str = "*",
        code: str = "ProvisionedThroughputExceededException",
        times: int = 1,
        status: int = 400,
    ) -> None:
        """Answer the next ``times`` calls of ``operation`` ("*" = any) with an error."""
        with self._lock:
            self._faults.append([operation, code, status, times])

    def faces(self, collection_id: str) -> dict[str, StoredFace]:
        with self._lock:
            return dict(self.collections[collection_id].faces)

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.calls if name == operation)

    def analyze(self, data: bytes) -> Analyzed:
        """Analyze (once per distinct image) with the configured analyzer."""
        if not self.cache_analyses:
            return self.analyzer(data)
        key = (id(self.analyzer), hashlib.sha256(data).hexdigest())
        found = _analyses.get(key)
        if found is None:
            found = self.analyzer(data)
            with _analyses_lock:
                _analyses[key] = found
        return found

    # -- dispatch -----------------------------------------------------------------

    def handle(self, operation: str, params: dict) -> tuple[int, dict]:
        started = time.monotonic()
        with self._lock:
            self.calls.append((operation, _summarize(params)))
            fault = next((f for f in self._faults if f[0] in ("*", operation) and f[3] > 0), None)
            if fault:
                fault[3] -= 1
                self._faults = [f for f in self._faults if f[3] > 0]
        try:
            if fault:
                raise RekognitionError(fault[1], "Fault injected by the test", fault[2])
            method = getattr(self, f"op_{operation}", None)
            if method is None:
                raise RekognitionError("UnknownOperationException", f"{operation} is not implemented by the fake")
            answer = method(params)
            if self.strict:
                _check_output(operation, answer)
            status = 200
        except RekognitionError as exc:
            status, answer = exc.status, {"__type": exc.code, "message": exc.message}
        if self.latency_ms:  # a simulated service time, independent of our CPU
            time.sleep(max(0.0, self.latency_ms / 1000 - (time.monotonic() - started)))
        return status, answer

    # -- helpers --------------------------------------------------------------------

    def _collection(self, params: dict) -> Collection:
        collection_id = params.get("CollectionId", "")
        collection = self.collections.get(collection_id)
        if collection is None:
            raise RekognitionError(
                "ResourceNotFoundException", f"The collection id: {collection_id} does not exist"
            )
        return collection

    def _image(self, params: dict) -> Analyzed:
        image = params.get("Image") or {}
        if "Bytes" in image:
            data = base64.b64decode(image["Bytes"])
            if len(data) > MAX_BYTES:
                raise RekognitionError("ImageTooLargeException", "Image size is too large.")
        elif "S3Object" in image:
            data = self._s3_read(image["S3Object"])
            if len(data) > MAX_S3_BYTES:
                raise RekognitionError("ImageTooLargeException", "Image size is too large.")
        else:
            raise RekognitionError("InvalidParameterException", "Image must have Bytes or S3Object")
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt, size = probe.format, probe.size
        except Exception:
            fmt, size = None, (0, 0)
        if fmt not in ("JPEG", "MPO", "PNG"):
            raise RekognitionError("InvalidImageFormatException", "Request has invalid image format")
        if min(size) < MIN_SIDE:
            raise RekognitionError("InvalidParameterException", "Image dimensions are too small.")
        try:
            return self.analyze(data)
        except ValueError as exc:  # ImageError: damaged or truncated
            raise RekognitionError("InvalidImageFormatException", f"Request has invalid image format ({exc})")

    def _s3_read(self, s3_object: dict) -> bytes:
        bucket, name = s3_object.get("Bucket", ""), s3_object.get("Name", "")
        if (bucket, name) in self.s3_objects:
            return self.s3_objects[(bucket, name)]
        if self.s3_endpoint:
            import boto3

            client = boto3.client(
                "s3", endpoint_url=self.s3_endpoint, region_name=self.region,
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )
            try:
                return client.get_object(Bucket=bucket, Key=name)["Body"].read()
            except Exception:
                pass
        raise RekognitionError(
            "InvalidS3ObjectException",
            "Unable to get object metadata from S3. Check object key, region and/or access permissions.",
        )

    def _cosines(self, query: np.ndarray, faces: list[StoredFace]) -> np.ndarray:
        if not faces:
            return np.zeros(0, dtype=np.float32)
        matrix = np.stack([face.face.embedding for face in faces])
        return matrix @ query

    def _matches(self, query: np.ndarray, collection: Collection, params: dict, exclude: str = "") -> list[dict]:
        faces = [f for f in collection.faces.values() if f.face_id != exclude and f.face.embedding is not None]
        threshold = float(params.get("FaceMatchThreshold", 80.0))
        scored = [
            (self.similarity(float(cos)), face) for cos, face in zip(self._cosines(query, faces), faces)
        ]
        scored = [(s, f) for s, f in scored if s >= threshold]
        scored.sort(key=lambda item: item[0], reverse=True)
        return [
            {"Similarity": round(s, 5), "Face": _face_json(f)}
            for s, f in scored[: int(params.get("MaxFaces", 4096))]
        ]

    def _user_vector(self, collection: Collection, user_id: str) -> np.ndarray | None:
        vectors = [
            collection.faces[face_id].face.embedding
            for face_id in collection.users.get(user_id, ())
            if face_id in collection.faces
        ]
        if not vectors:
            return None
        mean = np.mean(np.stack(vectors), axis=0)
        return mean / (np.linalg.norm(mean) or 1.0)

    def _user_status(self, collection: Collection, user_id: str) -> str:
        return "ACTIVE" if collection.users.get(user_id) else "CREATED"

    # -- collections ------------------------------------------------------------------

    def op_CreateCollection(self, params: dict) -> dict:
        collection_id = params["CollectionId"]
        with self._lock:
            if collection_id in self.collections:
                raise RekognitionError(
                    "ResourceAlreadyExistsException", f"The collection id: {collection_id} already exists"
                )
            self.collections[collection_id] = Collection(collection_id, time.time())
        return {"StatusCode": 200, "CollectionArn": self._arn(collection_id), "FaceModelVersion": MODEL_VERSION}

    def op_DeleteCollection(self, params: dict) -> dict:
        with self._lock:
            self._collection(params)
            del self.collections[params["CollectionId"]]
        return {"StatusCode": 200}

    def op_DescribeCollection(self, params: dict) -> dict:
        with self._lock:
            collection = self._collection(params)
            return {
                "FaceCount": len(collection.faces),
                "FaceModelVersion": MODEL_VERSION,
                "CollectionARN": self._arn(collection.collection_id),
                "CreationTimestamp": collection.created,
                "UserCount": len(collection.users),
            }

    def op_ListCollections(self, params: dict) -> dict:
        with self._lock:
            ids = sorted(self.collections)
        page, token = _page(ids, params, default=1000)
        answer = {"CollectionIds": page, "FaceModelVersions": [MODEL_VERSION] * len(page)}
        if token:
            answer["NextToken"] = token
        return answer

    def _arn(self, collection_id: str) -> str:
        return f"aws:rekognition:{self.region}:{ACCOUNT}:collection/{collection_id}"

    # -- faces ------------------------------------------------------------------------

    def op_IndexFaces(self, params: dict) -> dict:
        with self._lock:
            self._collection(params)
        analyzed = self._image(params)
        max_faces = int(params.get("MaxFaces", 100))
        quality_filter = params.get("QualityFilter", "AUTO")
        image_id = str(uuid.uuid4())
        records, unindexed = [], []
        with self._lock:
            collection = self._collection(params)
            for face in analyzed.faces:
                reasons = []
                if len(records) >= max_faces:
                    reasons.append("EXCEEDS_MAX_FACES")
                if quality_filter != "NONE" and not face.searchable:
                    reasons.append("SMALL_BOUNDING_BOX")
                if face.embedding is None and "SMALL_BOUNDING_BOX" not in reasons:
                    reasons.append("LOW_FACE_QUALITY")
                if reasons:
                    unindexed.append({"Reasons": reasons, "FaceDetail": _detail(face)})
                    continue
                stored = StoredFace(str(uuid.uuid4()), image_id, params.get("ExternalImageId", ""), face)
                collection.faces[stored.face_id] = stored
                records.append({"Face": _face_json(stored, model=True), "FaceDetail": _detail(face)})
        return {"FaceRecords": records, "FaceModelVersion": MODEL_VERSION, "UnindexedFaces": unindexed}

    def op_ListFaces(self, params: dict) -> dict:
        with self._lock:
            collection = self._collection(params)
            faces = list(collection.faces.values())
        if params.get("FaceIds"):
            wanted = set(params["FaceIds"])
            faces = [f for f in faces if f.face_id in wanted]
        if params.get("UserId"):
            faces = [f for f in faces if f.user_id == params["UserId"]]
        page, token = _page(faces, params, default=1000)
        answer = {"Faces": [_face_json(f, model=True) for f in page], "FaceModelVersion": MODEL_VERSION}
        if token:
            answer["NextToken"] = token
        return answer

    def op_SearchFaces(self, params: dict) -> dict:
        with self._lock:
            collection = self._collection(params)
            stored = collection.faces.get(params["FaceId"])
            if stored is None:
                raise RekognitionError("InvalidParameterException", "faceId was not found in the collection.")
            matches = self._matches(stored.face.embedding, collection, params, exclude=stored.face_id)
        return {"SearchedFaceId": stored.face_id, "FaceMatches": matches, "FaceModelVersion": MODEL_VERSION}

    def op_SearchFacesByImage(self, params: dict) -> dict:
        with self._lock:
            self._collection(params)
        analyzed = self._image(params)
        faces = analyzed.faces
        if params.get("QualityFilter", "NONE") != "NONE":
            faces = [f for f in faces if f.searchable]
        if not faces or faces[0].embedding is None:
            raise RekognitionError("InvalidParameterException", NO_FACE)
        query = faces[0]
        with self._lock:
            matches = self._matches(query.embedding, self._collection(params), params)
        return {
            "SearchedFaceBoundingBox": _bbox(query.box),
            "SearchedFaceConfidence": query.confidence,
            "FaceMatches": matches,
            "FaceModelVersion": MODEL_VERSION,
        }

    def op_DetectFaces(self, params: dict) -> dict:
        analyzed = self._image(params)
        return {"FaceDetails": [_detail(face) for face in analyzed.faces]}

    def op_DeleteFaces(self, params: dict) -> dict:
        deleted, failed = [], []
        with self._lock:
            collection = self._collection(params)
            for face_id in params["FaceIds"]:
                stored = collection.faces.get(face_id)
                if stored is None:
                    failed.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
                elif stored.user_id:
                    failed.append(
                        {"FaceId": face_id, "UserId": stored.user_id, "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]}
                    )
                else:
                    del collection.faces[face_id]
                    deleted.append(face_id)
        return {"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": failed}

    # -- users ------------------------------------------------------------------------

    def op_CreateUser(self, params: dict) -> dict:
        with self._lock:
            collection = self._collection(params)
            if params["UserId"] in collection.users:
                raise RekognitionError("ConflictException", "A User with the same Id already exists.")
            collection.users[params["UserId"]] = set()
        return {}

    def op_DeleteUser(self, params: dict) -> dict:
        with self._lock:
            collection = self._collection(params)
            face_ids = collection.users.pop(params["UserId"], None)
            if face_ids is None:
                raise RekognitionError("ResourceNotFoundException", "The user does not exist.")
            for face_id in face_ids:
                if face_id in collection.faces:
                    collection.faces[face_id].user_id = ""
        return {}

    def op_AssociateFaces(self, params: dict) -> dict:
        user_id = params["UserId"]
        threshold = float(params.get("UserMatchThreshold", 75.0))
        associated, failed = [], []
        with self._lock:
            collection = self._collection(params)
            if user_id not in collection.users:
                raise RekognitionError("ResourceNotFoundException", "The user does not exist.")
            user_vector = self._user_vector(collection, user_id)
            for face_id in params["FaceIds"]:
                stored = collection.faces.get(face_id)
                if stored is None:
                    failed.append({"FaceId": face_id, "UserId": user_id, "Reasons": ["FACE_NOT_FOUND"]})
                    continue
                if stored.user_id and stored.user_id != user_id:
                    failed.append(
                        {"FaceId": face_id, "UserId": stored.user_id, "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]}
                    )
                    continue
                if user_vector is not None:
                    confidence = self.similarity(float(user_vector @ stored.face.embedding))
                    if confidence < threshold:
                        failed.append({"FaceId": face_id, "UserId": user_id, "Confidence": round(confidence, 3),
                                       "Reasons": ["LOW_MATCH_CONFIDENCE"]})
                        continue
                stored.user_id = user_id
                collection.users[user_id].add(face_id)
                associated.append({"FaceId": face_id})
            status = self._user_status(collection, user_id)
        return {"AssociatedFaces": associated, "UnsuccessfulFaceAssociations": failed, "UserStatus": status}

    def op_DisassociateFaces(self, params: dict) -> dict:
        user_id = params["UserId"]
        done, failed = [], []
        with self._lock:
            collection = self._collection(params)
            if user_id not in collection.users:
                raise RekognitionError("ResourceNotFoundException", "The user does not exist.")
            for face_id in params["FaceIds"]:
                stored = collection.faces.get(face_id)
                if stored is None:
                    failed.append({"FaceId": face_id, "UserId": user_id, "Reasons": ["FACE_NOT_FOUND"]})
                elif stored.user_id != user_id:
                    failed.append({"FaceId": face_id, "UserId": stored.user_id or user_id,
                                   "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]})
                else:
                    stored.user_id = ""
                    collection.users[user_id].discard(face_id)
                    done.append({"FaceId": face_id})
            status = self._user_status(collection, user_id)
        return {"DisassociatedFaces": done, "UnsuccessfulFaceDisassociations": failed, "UserStatus": status}

    def op_ListUsers(self, params: dict) -> dict:
        with self._lock:
            collection = self._collection(params)
            users = [{"UserId": u, "UserStatus": self._user_status(collection, u)} for u in sorted(collection.users)]
        page, token = _page(users, params, default=500)
        answer = {"Users": page}
        if token:
            answer["NextToken"] = token
        return answer

    def op_SearchUsersByImage(self, params: dict) -> dict:
        with self._lock:
            self._collection(params)
        analyzed = self._image(params)
        if not analyzed.faces or analyzed.faces[0].embedding is None:
            raise RekognitionError("InvalidParameterException", NO_FACE)
        query, others = analyzed.faces[0], analyzed.faces[1:]
        threshold = float(params.get("UserMatchThreshold", 80.0))
        matches = []
        with self._lock:
            collection = self._collection(params)
            for user_id in collection.users:
                vector = self._user_vector(collection, user_id)
                if vector is None:
                    continue
                similarity = self.similarity(float(vector @ query.embedding))
                if similarity >= threshold:
                    matches.append({"Similarity": round(similarity, 5),
                                    "User": {"UserId": user_id, "UserStatus": "ACTIVE"}})
        matches.sort(key=lambda m: m["Similarity"], reverse=True)
        return {
            "UserMatches": matches[: int(params.get("MaxUsers", 500))],
            "FaceModelVersion": MODEL_VERSION,
            "SearchedFace": {"FaceDetail": _detail(query)},
            "UnsearchedFaces": [{"FaceDetails": _detail(f), "Reasons": ["FACE_NOT_LARGEST"]} for f in others],
        }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeRekognition
    protocol_version = "HTTP/1.1"
    server_version = "FakeRekognition/1.0"
    # Headers and body go out as two writes; with Nagle on, the client's
    # delayed ACK would add 40 ms to every call.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential="):
            status, answer = 400, {"__type": "MissingAuthenticationTokenException",
                                   "message": "Missing Authentication Token"}
        elif not target.startswith("RekognitionService.") or "x-amz-json-1.1" not in self.headers.get(
            "Content-Type", ""
        ):
            status, answer = 400, {"__type": "UnknownOperationException", "message": f"Bad target {target!r}"}
        else:
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                status, answer = 400, {"__type": "SerializationException", "message": "Bad JSON"}
            else:
                status, answer = self.fake.handle(target.split(".", 1)[1], params)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # quiet
        pass


def _bbox(box: tuple[float, float, float, float]) -> dict:
    left, top, width, height = box
    return {"Width": float(width), "Height": float(height), "Left": float(left), "Top": float(top)}


def _face_json(stored: StoredFace, model: bool = False) -> dict:
    answer = {
        "FaceId": stored.face_id,
        "BoundingBox": _bbox(stored.face.box),
        "ImageId": stored.image_id,
        "Confidence": stored.face.confidence,
    }
    if stored.external_image_id:
        answer["ExternalImageId"] = stored.external_image_id
    if model:
        answer["IndexFacesModelVersion"] = MODEL_VERSION
    if stored.user_id:
        answer["UserId"] = stored.user_id
    return answer


def _detail(face: FaceInfo) -> dict:
    """A FaceDetail: box, confidence, the five landmarks named as Rekognition names them, quality."""
    points = [list(p) for p in face.landmarks[:5]]
    landmarks = []
    if len(points) == 5:
        eyes = sorted(points[:2])  # by x: the eye on the image's left first
        mouth = sorted(points[3:5])
        named = [("eyeLeft", eyes[0]), ("eyeRight", eyes[1]), ("nose", points[2]),
                 ("mouthLeft", mouth[0]), ("mouthRight", mouth[1])]
        landmarks = [{"Type": name, "X": float(x), "Y": float(y)} for name, (x, y) in named]
    return {
        "BoundingBox": _bbox(face.box),
        "Landmarks": landmarks,
        "Pose": {"Roll": 0.0, "Yaw": 0.0, "Pitch": 0.0},
        "Quality": {"Brightness": 50.0, "Sharpness": float(face.quality)},
        "Confidence": float(face.confidence),
    }


def _page(items: list, params: dict, default: int) -> tuple[list, str | None]:
    start = 0
    if params.get("NextToken"):
        try:
            start = int(base64.urlsafe_b64decode(params["NextToken"].encode()).decode())
        except ValueError:
            raise RekognitionError("InvalidPaginationTokenException", "Invalid pagination token") from None
    size = int(params.get("MaxResults") or default)
    end = start + size
    token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], token


def _summarize(params: dict) -> dict:
    """Params as logged by the fake: image bytes replaced by their size."""
    summary = dict(params)
    image = summary.get("Image")
    if isinstance(image, dict) and "Bytes" in image:
        summary["Image"] = {"Bytes": f"<{math.ceil(len(image['Bytes']) * 3 / 4)} bytes>"}
    return summary


_service_model = None


def _check_output(operation: str, answer: dict) -> None:
    """Fail loudly if an answer has a field or type Rekognition's output shape lacks."""
    global _service_model
    if _service_model is None:
        import botocore.session

        _service_model = botocore.session.get_session().get_service_model("rekognition")
    problems: list[str] = []
    _check_shape(_service_model.operation_model(operation).output_shape, answer, operation, problems)
    if problems:
        raise RekognitionError("InternalServerError", "Fake answer off the model: " + "; ".join(problems), 500)


def _check_shape(shape, value, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path} is not an object")
            return
        for key, item in value.items():
            if key not in shape.members:
                problems.append(f"{path}.{key} is not in the model")
            else:
                _check_shape(shape.members[key], item, f"{path}.{key}", problems)
    elif kind == "list":
        if not isinstance(value, list):
            problems.append(f"{path} is not a list")
            return
        for index, item in enumerate(value):
            _check_shape(shape.member, item, f"{path}[{index}]", problems)
    elif kind == "map":
        for key, item in (value or {}).items():
            _check_shape(shape.value, item, f"{path}[{key}]", problems)
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path} is not a string")
        elif shape.enum and value not in shape.enum:
            problems.append(f"{path}={value!r} is not one of {shape.enum}")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path} is not an integer")
    elif kind in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{path} is not a number")
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{path} is not a boolean")


@pytest.fixture
def fake_rekognition(settings, monkeypatch):
    """A running FakeRekognition with the engine's settings pointed at it.

    Dummy credentials and region come from the environment as they would in
    production; the rate limit is lifted so tests do not wait for it, and
    botocore gives up after 3 attempts so throttling tests stay quick.
    """
    fake = FakeRekognition().start()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_REKOGNITION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", fake.region)
    settings.AWS_REGION = fake.region
    settings.AWS_ENDPOINT_URL = fake.url
    settings.FACES_REKOGNITION_TPS = 1000
    settings.FACES_REKOGNITION_MAX_ATTEMPTS = 3
    yield fake
    fake.stop()
