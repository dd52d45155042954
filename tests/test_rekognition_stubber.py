"""RekognitionEngine against botocore's Stubber.

The Stubber checks every request the engine builds against Rekognition's real
service model (operation names, parameter names, types, patterns and limits)
and every canned answer against the output shape, so these tests prove the
engine speaks the real API. Behaviour end to end is in test_rekognition_http.
"""

from __future__ import annotations

import io
import uuid

import pytest
from botocore.stub import ANY, Stubber
from PIL import Image

from indexing.engines.base import Box, EngineError, NoFaceError, RetryableEngineError
from indexing.engines.rekognition import (
    MAX_BYTES,
    RekognitionEngine,
    sanitize_external_id,
    storage_s3_key,
)
from indexing.models import FaceCollection
from tests.conftest import FIXTURES

pytestmark = pytest.mark.django_db

OBAMA = (FIXTURES / "people" / "barack_obama" / "1.jpg").read_bytes()
TWO_PEOPLE = (FIXTURES / "groups" / "two_people.jpg").read_bytes()
HEIC = (FIXTURES / "special" / "face.heic").read_bytes()


class JpegBytes:
    """Matches image bytes Rekognition accepts: a JPEG of at most 5 MB, optionally smaller than a bound."""

    def __init__(self, smaller_than: int | None = None):
        self.smaller_than = smaller_than

    def __eq__(self, other) -> bool:
        if not isinstance(other, bytes) or other[:3] != b"\xff\xd8\xff" or len(other) > MAX_BYTES:
            return False
        return self.smaller_than is None or len(other) < self.smaller_than

    def __repr__(self) -> str:
        return f"<JPEG bytes <= 5 MB{'' if self.smaller_than is None else f' and < {self.smaller_than}'}>"


def face_id() -> str:
    return str(uuid.uuid4())


def bbox(left=0.1, top=0.1, width=0.3, height=0.4) -> dict:
    return {"Width": width, "Height": height, "Left": left, "Top": top}


def face_detail(box: dict | None = None, confidence: float = 99.9, sharpness: float = 80.0) -> dict:
    return {
        "BoundingBox": box or bbox(),
        "Confidence": confidence,
        "Landmarks": [{"Type": "eyeLeft", "X": 0.2, "Y": 0.25}, {"Type": "eyeRight", "X": 0.3, "Y": 0.25}],
        "Pose": {"Roll": 1.0, "Yaw": -2.0, "Pitch": 3.0},
        "Quality": {"Brightness": 70.0, "Sharpness": sharpness},
    }


def face_match(similarity: float, fid: str | None = None) -> dict:
    return {
        "Similarity": similarity,
        "Face": {"FaceId": fid or face_id(), "BoundingBox": bbox(), "ImageId": str(uuid.uuid4()), "Confidence": 99.0},
    }


@pytest.fixture
def engine(settings, monkeypatch) -> RekognitionEngine:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.AWS_REGION = "us-east-1"
    settings.AWS_ENDPOINT_URL = None
    settings.AWS_STORAGE_BUCKET_NAME = ""
    settings.FACES_REKOGNITION_PREFIX = "faces"
    return RekognitionEngine()


@pytest.fixture
def stub(engine):
    with Stubber(engine.client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def cid(user) -> str:
    return f"faces-{user.pk}"


def expect_create(stub, user, exists: bool = False) -> None:
    if exists:
        stub.add_client_error(
            "create_collection",
            service_error_code="ResourceAlreadyExistsException",
            service_message=f"The collection id: {cid(user)} already exists",
            http_status_code=400,
            expected_params={"CollectionId": cid(user)},
        )
    else:
        stub.add_response(
            "create_collection",
            {
                "StatusCode": 200,
                "CollectionArn": f"aws:rekognition:us-east-1:123456789012:collection/{cid(user)}",
                "FaceModelVersion": "7.0",
            },
            {"CollectionId": cid(user)},
        )


def index_params(user, image: dict, external_id: str) -> dict:
    return {
        "CollectionId": cid(user),
        "Image": image,
        "ExternalImageId": external_id,
        "MaxFaces": 100,
        "QualityFilter": "AUTO",
        "DetectionAttributes": ["DEFAULT"],
    }


def index_response(*face_ids: str, unindexed: int = 0) -> dict:
    return {
        "FaceRecords": [
            {
                "Face": {
                    "FaceId": fid,
                    "BoundingBox": bbox(left=0.1 + 0.4 * i),
                    "ImageId": str(uuid.uuid4()),
                    "ExternalImageId": "x",
                    "Confidence": 99.5 - i,
                    "IndexFacesModelVersion": "7.0",
                },
                "FaceDetail": face_detail(bbox(left=0.1 + 0.4 * i), sharpness=60.0 + i),
            }
            for i, fid in enumerate(face_ids)
        ],
        "FaceModelVersion": "7.0",
        "UnindexedFaces": [
            {"Reasons": ["LOW_SHARPNESS", "SMALL_BOUNDING_BOX"], "FaceDetail": face_detail(bbox(0.9, 0.9, 0.2, 0.2))}
        ]
        * unindexed,
    }


# -- collections --------------------------------------------------------------


def test_collection_is_created_once_and_remembered(engine, stub, user):
    expect_create(stub, user)
    engine.ensure_collection(user)
    engine.ensure_collection(user)  # no second CreateCollection (the stubber would refuse it)
    assert FaceCollection.objects.get(owner=user, engine="rekognition").external_id == cid(user)

    # A fresh process knows the id from the database and does not ask again.
    RekognitionEngine().ensure_collection(user)


def test_existing_collection_is_fine(engine, stub, user):
    expect_create(stub, user, exists=True)
    engine.ensure_collection(user)
    assert FaceCollection.objects.get(owner=user, engine="rekognition").external_id == cid(user)


def test_collection_id_uses_the_prefix(engine, settings, user):
    settings.FACES_REKOGNITION_PREFIX = "faces-staging"
    assert engine.collection_id(user) == f"faces-staging-{user.pk}"


# -- IndexFaces ---------------------------------------------------------------


def test_external_image_id_is_sanitized_deterministically():
    assert sanitize_external_id("17841400000/photo 1.jpg") == "17841400000_photo_1.jpg"
    assert sanitize_external_id("a:b-c_d.e") == "a:b-c_d.e"
    assert sanitize_external_id("ünï©ode") == "_n__ode"
    assert sanitize_external_id("") == "_"
    long = "x" * 300
    assert len(sanitize_external_id(long)) == 255
    assert sanitize_external_id(long) == sanitize_external_id(long)
    assert sanitize_external_id(long) != sanitize_external_id(long + "y")


def test_index_from_bytes(engine, stub, user):
    first, second = face_id(), face_id()
    expect_create(stub, user)
    stub.add_response(
        "index_faces",
        index_response(first, second, unindexed=1),
        index_params(user, {"Bytes": OBAMA}, "holiday_2019_beach_1.jpg"),
    )
    result = engine.index_image(user, OBAMA, "holiday/2019/beach 1.jpg")

    with Image.open(io.BytesIO(OBAMA)) as img:
        assert (result.width, result.height) == img.size
    assert [face.face_id for face in result.faces] == [first, second]
    face = result.faces[0]
    assert face.box == Box(0.1, 0.1, 0.3, 0.4)
    assert face.confidence == 99.5
    assert face.quality == 60.0  # FaceDetail.Quality.Sharpness
    assert face.landmarks == [[0.2, 0.25], [0.3, 0.25]]
    assert face.embedding is None and face.searchable
    assert len(result.unindexed) == 1
    assert result.unindexed[0].reasons == ["LOW_SHARPNESS", "SMALL_BOUNDING_BOX"]
    # Rekognition's box ran past the right and bottom edges; ours stays inside the image.
    assert result.unindexed[0].box == Box(0.9, 0.9, pytest.approx(0.1), pytest.approx(0.1))


@pytest.fixture
def s3_storage(settings):
    """Photos stored in S3 (no request is made: only the storage's key naming is used)."""
    settings.AWS_STORAGE_BUCKET_NAME = "faces-photos"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": "faces-photos"}},
    }


def test_index_from_s3_object(engine, stub, user, s3_storage):
    fid = face_id()
    expect_create(stub, user)
    stub.add_response(
        "index_faces",
        index_response(fid),
        index_params(user, {"S3Object": {"Bucket": "faces-photos", "Name": "photos/1/a.jpg"}}, "media_42"),
    )
    result = engine.index_image(user, OBAMA, "media/42", storage_key="photos/1/a.jpg")
    assert [face.face_id for face in result.faces] == [fid]


def test_a_storage_key_without_s3_storage_sends_bytes(engine, stub, user, settings):
    settings.AWS_STORAGE_BUCKET_NAME = "faces-photos"  # a bucket, but photos are stored on disk
    fid = face_id()
    expect_create(stub, user)
    stub.add_response("index_faces", index_response(fid), index_params(user, {"Bytes": OBAMA}, "p"))
    assert [face.face_id for face in engine.index_image(user, OBAMA, "p", storage_key="k.jpg").faces] == [fid]


def test_unreadable_s3_object_falls_back_to_bytes(engine, stub, user, s3_storage):
    fid = face_id()
    expect_create(stub, user)
    stub.add_client_error(
        "index_faces",
        service_error_code="InvalidS3ObjectException",
        service_message="Unable to get object metadata from S3. Check object key, region and/or access permissions.",
        http_status_code=400,
        expected_params=index_params(user, {"S3Object": {"Bucket": "faces-photos", "Name": "k.jpg"}}, "p"),
    )
    stub.add_response("index_faces", index_response(fid), index_params(user, {"Bytes": OBAMA}, "p"))
    assert [face.face_id for face in engine.index_image(user, OBAMA, "p", storage_key="k.jpg").faces] == [fid]


def test_formats_rekognition_cannot_read_go_as_jpeg_bytes_even_from_s3(engine, stub, user, s3_storage):
    expect_create(stub, user)
    stub.add_response("index_faces", index_response(), index_params(user, {"Bytes": JpegBytes()}, "heic"))
    result = engine.index_image(user, HEIC, "heic", storage_key="photos/1/face.heic")
    assert result.faces == [] and result.width > 0


def test_images_over_5_mb_are_downscaled_to_fit(engine, stub, user):
    noise = Image.effect_noise((2600, 2600), 120).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    big = buffer.getvalue()
    assert len(big) > MAX_BYTES
    expect_create(stub, user)
    stub.add_response("index_faces", index_response(), index_params(user, {"Bytes": JpegBytes()}, "big"))
    result = engine.index_image(user, big, "big")
    assert (result.width, result.height) == (2600, 2600)  # the original's size, not the upload's


def test_unreadable_image_is_an_engine_error_without_any_call(engine, stub, user):
    with pytest.raises(EngineError, match="not an image"):
        engine.index_image(user, b"definitely not a photo", "x")


# -- ListFaces ----------------------------------------------------------------


def test_list_faces_pages_with_next_token(engine, stub, user):
    ids = [face_id() for _ in range(3)]

    def page(face_ids, token=None):
        response = {
            "Faces": [
                {"FaceId": fid, "BoundingBox": bbox(), "ImageId": str(uuid.uuid4()), "ExternalImageId": "p1",
                 "Confidence": 99.0, "IndexFacesModelVersion": "7.0"}
                for fid in face_ids
            ],
            "FaceModelVersion": "7.0",
        }
        if token:
            response["NextToken"] = token
        return response

    expect_create(stub, user)
    stub.add_response("list_faces", page(ids[:2], "page-2"), {"CollectionId": cid(user), "MaxResults": 1000})
    stub.add_response(
        "list_faces", page(ids[2:]), {"CollectionId": cid(user), "MaxResults": 1000, "NextToken": "page-2"}
    )
    faces = list(engine.list_faces(user))
    assert [face.face_id for face in faces] == ids
    assert faces[0].external_image_id == "p1"


# -- searches -----------------------------------------------------------------


def test_search_by_face_id(engine, stub, user):
    query, best, other = face_id(), face_id(), face_id()
    expect_create(stub, user)
    stub.add_response(
        "search_faces",
        {"SearchedFaceId": query, "FaceMatches": [face_match(91.0, other), face_match(99.2, best)],
         "FaceModelVersion": "7.0"},
        {"CollectionId": cid(user), "FaceId": query, "MaxFaces": 5, "FaceMatchThreshold": 80.0},
    )
    matches = engine.search_by_face(user, query, limit=5, threshold=80)
    assert [(m.face_id, m.similarity) for m in matches] == [(best, 99.2), (other, 91.0)]


def test_search_by_face_rejects_ids_that_are_not_rekognition_face_ids(engine, stub, user):
    with pytest.raises(EngineError):
        engine.search_by_face(user, "local-17", limit=5, threshold=80)


def detect_two_faces(stub, image: bytes) -> None:
    stub.add_response(
        "detect_faces",
        {"FaceDetails": [face_detail(bbox(0.1, 0.2, 0.2, 0.3)), face_detail(bbox(0.55, 0.15, 0.3, 0.4))]},
        {"Image": {"Bytes": image}, "Attributes": ["DEFAULT"]},
    )


def search_image_params(user, image, limit=10, threshold=80.0) -> dict:
    return {
        "CollectionId": cid(user),
        "Image": {"Bytes": image},
        "MaxFaces": limit,
        "FaceMatchThreshold": threshold,
        "QualityFilter": "NONE",
    }


def test_search_by_image_searches_the_largest_face(engine, stub, user):
    match = face_id()
    detect_two_faces(stub, TWO_PEOPLE)
    expect_create(stub, user)
    stub.add_response(
        "search_faces_by_image",
        {"SearchedFaceBoundingBox": bbox(0.56, 0.16, 0.29, 0.39), "SearchedFaceConfidence": 99.9,
         "FaceMatches": [face_match(97.5, match)], "FaceModelVersion": "7.0"},
        search_image_params(user, TWO_PEOPLE),
    )
    search = engine.search_by_image(user, TWO_PEOPLE, limit=10, threshold=80)
    assert search.faces_in_query == 2
    assert search.query_faces[0].box == Box(0.55, 0.15, 0.3, 0.4)  # largest first
    assert search.searched_face == 0
    assert [(m.face_id, m.similarity) for m in search.matches] == [(match, 97.5)]


def test_search_by_image_crops_the_chosen_face(engine, stub, user):
    detect_two_faces(stub, TWO_PEOPLE)
    expect_create(stub, user)
    stub.add_response(
        "search_faces_by_image",
        {"SearchedFaceBoundingBox": bbox(0.2, 0.2, 0.6, 0.6), "SearchedFaceConfidence": 99.0,
         "FaceMatches": [], "FaceModelVersion": "7.0"},
        search_image_params(user, JpegBytes(smaller_than=len(TWO_PEOPLE)), limit=3, threshold=90.0),
    )
    search = engine.search_by_image(user, TWO_PEOPLE, limit=3, threshold=90, face_index=1)
    assert search.searched_face == 1 and search.matches == []


def test_search_by_image_without_a_face_is_no_face_error(engine, stub, user):
    stub.add_response("detect_faces", {"FaceDetails": []}, {"Image": {"Bytes": OBAMA}, "Attributes": ["DEFAULT"]})
    with pytest.raises(NoFaceError, match="No face found in this photo."):
        engine.search_by_image(user, OBAMA, limit=10, threshold=80)


def test_search_by_image_invalid_parameter_is_no_face_error(engine, stub, user):
    stub.add_response(
        "detect_faces", {"FaceDetails": [face_detail()]}, {"Image": {"Bytes": OBAMA}, "Attributes": ["DEFAULT"]}
    )
    expect_create(stub, user)
    stub.add_client_error(
        "search_faces_by_image",
        service_error_code="InvalidParameterException",
        service_message="There are no faces in the image. Should be at least 1.",
        http_status_code=400,
        expected_params=search_image_params(user, OBAMA),
    )
    with pytest.raises(NoFaceError, match="No face found in this photo."):
        engine.search_by_image(user, OBAMA, limit=10, threshold=80)


# -- deletion -----------------------------------------------------------------


def test_delete_faces_in_batches_of_4096(engine, stub, user):
    ids = sorted(face_id() for _ in range(5000))
    expect_create(stub, user)
    for batch in (ids[:4096], ids[4096:]):
        stub.add_response(
            "delete_faces",
            {"DeletedFaces": batch, "UnsuccessfulFaceDeletions": []},
            {"CollectionId": cid(user), "FaceIds": batch},
        )
    engine.delete_faces(user, list(reversed(ids)) + ids[:10])  # order and duplicates do not matter



def test_faces_held_by_a_user_are_detached_then_deleted(engine, stub, user):
    free, held = face_id(), face_id()
    expect_create(stub, user)
    stub.add_response(
        "delete_faces",
        {"DeletedFaces": [free], "UnsuccessfulFaceDeletions": [
            {"FaceId": held, "UserId": "person-3", "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]}]},
        {"CollectionId": cid(user), "FaceIds": sorted([free, held])},
    )
    stub.add_response(
        "disassociate_faces",
        {"DisassociatedFaces": [{"FaceId": held}], "UnsuccessfulFaceDisassociations": [], "UserStatus": "ACTIVE"},
        {"CollectionId": cid(user), "UserId": "person-3", "FaceIds": [held]},
    )
    stub.add_response(
        "delete_faces", {"DeletedFaces": [held], "UnsuccessfulFaceDeletions": []},
        {"CollectionId": cid(user), "FaceIds": [held]},
    )
    engine.delete_faces(user, [free, held])

def test_delete_collection_and_missing_collection_is_fine(engine, stub, user):
    expect_create(stub, user)
    engine.ensure_collection(user)
    stub.add_response("delete_collection", {"StatusCode": 200}, {"CollectionId": cid(user)})
    engine.delete_collection(user)
    assert FaceCollection.objects.get(owner=user, engine="rekognition").external_id == ""

    stub.add_client_error(
        "delete_collection", service_error_code="ResourceNotFoundException", http_status_code=400,
        expected_params={"CollectionId": cid(user)},
    )
    engine.delete_collection(user)

    # Next use creates it again.
    expect_create(stub, user)
    engine.ensure_collection(user)


# -- a collection deleted behind our back -------------------------------------


def not_found(stub, operation: str, params: dict) -> None:
    stub.add_client_error(
        operation, service_error_code="ResourceNotFoundException",
        service_message="The collection id does not exist", http_status_code=400, expected_params=params,
    )


def test_missing_collection_is_recreated_and_indexing_retried(engine, stub, user):
    fid = face_id()
    expect_create(stub, user)
    engine.ensure_collection(user)
    params = index_params(user, {"Bytes": OBAMA}, "p1")
    not_found(stub, "index_faces", params)
    not_found(stub, "describe_collection", {"CollectionId": cid(user)})
    expect_create(stub, user)
    stub.add_response("index_faces", index_response(fid), params)
    assert [face.face_id for face in engine.index_image(user, OBAMA, "p1").faces] == [fid]


def test_missing_collection_is_recreated_and_search_finds_nothing(engine, stub, user):
    query = face_id()
    expect_create(stub, user)
    engine.ensure_collection(user)
    not_found(stub, "search_faces", {"CollectionId": cid(user), "FaceId": query, "MaxFaces": 10,
                                     "FaceMatchThreshold": 80.0})
    not_found(stub, "describe_collection", {"CollectionId": cid(user)})
    expect_create(stub, user)
    assert engine.search_by_face(user, query, limit=10, threshold=80) == []


def test_face_missing_from_an_existing_collection_finds_nothing(engine, stub, user):
    query = face_id()
    expect_create(stub, user)
    engine.ensure_collection(user)
    not_found(stub, "search_faces", {"CollectionId": cid(user), "FaceId": query, "MaxFaces": 10,
                                     "FaceMatchThreshold": 80.0})
    stub.add_response(
        "describe_collection",
        {"FaceCount": 3, "FaceModelVersion": "7.0", "CollectionARN": "arn", "UserCount": 0},
        {"CollectionId": cid(user)},
    )
    assert engine.search_by_face(user, query, limit=10, threshold=80) == []



def test_search_by_a_face_id_the_collection_no_longer_has_finds_nothing(engine, stub, user):
    query = face_id()
    expect_create(stub, user)
    stub.add_client_error(
        "search_faces", service_error_code="InvalidParameterException",
        service_message="faceId was not found in the collection.", http_status_code=400,
        expected_params={"CollectionId": cid(user), "FaceId": query, "MaxFaces": 10, "FaceMatchThreshold": 80.0},
    )
    assert engine.search_by_face(user, query, limit=10, threshold=80) == []

# -- throttling ---------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException"]
)
def test_throttling_is_retryable(engine, stub, user, code):
    expect_create(stub, user)
    stub.add_client_error(
        "index_faces", service_error_code=code, service_message="Slow down", http_status_code=400,
        expected_params=index_params(user, {"Bytes": OBAMA}, "p1"),
    )
    with pytest.raises(RetryableEngineError):
        engine.index_image(user, OBAMA, "p1")


def test_server_errors_are_retryable_and_access_denied_is_not(engine, stub, user):
    expect_create(stub, user)
    stub.add_client_error(
        "search_faces", service_error_code="InternalServerError", http_status_code=500,
        expected_params={"CollectionId": cid(user), "FaceId": ANY, "MaxFaces": 1, "FaceMatchThreshold": 50.0},
    )
    with pytest.raises(RetryableEngineError):
        engine.search_by_face(user, face_id(), limit=1, threshold=50)
    stub.add_client_error(
        "search_faces", service_error_code="AccessDeniedException", http_status_code=400,
        expected_params={"CollectionId": cid(user), "FaceId": ANY, "MaxFaces": 1, "FaceMatchThreshold": 50.0},
    )
    with pytest.raises(EngineError, match="IAM policy") as denied:
        engine.search_by_face(user, face_id(), limit=1, threshold=50)
    assert not isinstance(denied.value, RetryableEngineError)


# -- Users API ----------------------------------------------------------------


def test_users_api(engine, stub, user):
    user_id = "person-7"
    faces = [face_id() for _ in range(150)]
    expect_create(stub, user)
    stub.add_response("create_user", {}, {"CollectionId": cid(user), "UserId": user_id})
    engine.create_user(user, user_id)
    stub.add_client_error(
        "create_user", service_error_code="ConflictException", http_status_code=400,
        expected_params={"CollectionId": cid(user), "UserId": user_id},
    )
    engine.create_user(user, user_id)  # already there: fine

    refused = faces[120]
    stub.add_response(
        "associate_faces",
        {"AssociatedFaces": [{"FaceId": f} for f in faces[:100]], "UnsuccessfulFaceAssociations": [],
         "UserStatus": "UPDATING"},
        {"CollectionId": cid(user), "UserId": user_id, "FaceIds": faces[:100], "UserMatchThreshold": 75.0},
    )
    stub.add_response(
        "associate_faces",
        {"AssociatedFaces": [{"FaceId": f} for f in faces[100:] if f != refused],
         "UnsuccessfulFaceAssociations": [{"FaceId": refused, "UserId": user_id, "Confidence": 41.0,
                                           "Reasons": ["LOW_MATCH_CONFIDENCE"]}],
         "UserStatus": "ACTIVE"},
        {"CollectionId": cid(user), "UserId": user_id, "FaceIds": faces[100:], "UserMatchThreshold": 75.0},
    )
    association = engine.associate_faces(user, user_id, faces, threshold=75)
    assert len(association.face_ids) == 149 and refused not in association.face_ids
    assert association.failed == {refused: ["LOW_MATCH_CONFIDENCE"]}
    assert association.user_status == "ACTIVE"

    stub.add_response(
        "disassociate_faces",
        {"DisassociatedFaces": [{"FaceId": faces[0]}], "UnsuccessfulFaceDisassociations": [],
         "UserStatus": "ACTIVE"},
        {"CollectionId": cid(user), "UserId": user_id, "FaceIds": faces[:1]},
    )
    assert engine.disassociate_faces(user, user_id, faces[:1]).face_ids == faces[:1]

    stub.add_response(
        "search_users_by_image",
        {"UserMatches": [{"Similarity": 98.1, "User": {"UserId": user_id, "UserStatus": "ACTIVE"}}],
         "FaceModelVersion": "7.0", "SearchedFace": {"FaceDetail": face_detail()}, "UnsearchedFaces": []},
        {"CollectionId": cid(user), "Image": {"Bytes": OBAMA}, "UserMatchThreshold": 80.0, "MaxUsers": 10},
    )
    found = engine.search_users_by_image(user, OBAMA, threshold=80)
    assert [(m.user_id, m.similarity) for m in found] == [(user_id, 98.1)]

    stub.add_client_error(
        "search_users_by_image", service_error_code="InvalidParameterException", http_status_code=400,
        expected_params={"CollectionId": cid(user), "Image": {"Bytes": OBAMA}, "UserMatchThreshold": 80.0,
                         "MaxUsers": 10},
    )
    with pytest.raises(NoFaceError):
        engine.search_users_by_image(user, OBAMA, threshold=80)

    stub.add_response("delete_user", {}, {"CollectionId": cid(user), "UserId": user_id})
    engine.delete_user(user, user_id)
    not_found(stub, "delete_user", {"CollectionId": cid(user), "UserId": user_id})
    stub.add_response(
        "describe_collection",
        {"FaceCount": 150, "FaceModelVersion": "7.0", "CollectionARN": "arn", "UserCount": 0},
        {"CollectionId": cid(user)},
    )
    engine.delete_user(user, user_id)  # already gone: fine


def test_storage_s3_key_is_none_without_s3_storage(settings):
    settings.AWS_STORAGE_BUCKET_NAME = ""
    assert storage_s3_key("photos/a.jpg") is None
