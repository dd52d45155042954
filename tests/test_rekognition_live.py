"""RekognitionEngine against the real Amazon Rekognition (opt-in; costs a few cents at most).

Runs only with FACES_LIVE_AWS=1 and credentials boto3 can find (environment,
~/.aws, instance role). It works in a temporary collection
``faces-livetest-<random>-<user pk>`` (covered by the README's IAM policy on
``collection/faces-*``) and deletes it whatever happens. Region: AWS_REGION.

    FACES_LIVE_AWS=1 AWS_REGION=eu-west-1 .venv/bin/python -m pytest tests/test_rekognition_live.py -rs
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from indexing.engines.base import NoFaceError
from indexing.engines.rekognition import RekognitionEngine
from tests.conftest import FIXTURES

pytestmark = pytest.mark.django_db

SKIP = "live AWS test skipped: set FACES_LIVE_AWS=1 with AWS credentials to run it"


@pytest.fixture
def live_engine(settings):
    if os.environ.get("FACES_LIVE_AWS") != "1":
        pytest.skip(SKIP)
    import boto3

    if boto3.session.Session().get_credentials() is None:
        pytest.skip(SKIP)
    settings.AWS_ENDPOINT_URL = os.environ.get("AWS_ENDPOINT_URL") or None
    settings.AWS_REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    settings.FACES_REKOGNITION_PREFIX = f"faces-livetest-{uuid.uuid4().hex[:8]}"
    settings.FACES_REKOGNITION_TPS = 5
    return RekognitionEngine()


def eventually(call, done, timeout: float = 15.0):
    """Rekognition may need a moment before a just-indexed face is searchable."""
    deadline = time.monotonic() + timeout
    while True:
        value = call()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(1)


def test_live_index_search_delete(live_engine, user):
    engine = live_engine
    try:
        indexed = engine.index_image(user, (FIXTURES / "people/barack_obama/1.jpg").read_bytes(), "live/obama 1")
        other = engine.index_image(user, (FIXTURES / "people/joe_biden/1.jpg").read_bytes(), "live/biden 1")
        assert len(indexed.faces) == 1 and len(other.faces) == 1
        obama, biden = indexed.faces[0].face_id, other.faces[0].face_id

        listed = {face.face_id: face.external_image_id for face in engine.list_faces(user)}
        assert listed == {obama: "live_obama_1", biden: "live_biden_1"}

        query = (FIXTURES / "people/barack_obama/4.jpg").read_bytes()
        search = eventually(lambda: engine.search_by_image(user, query, 5, 80), lambda s: s.matches)
        assert search.faces_in_query == 1
        assert [m.face_id for m in search.matches] == [obama]
        assert engine.search_by_face(user, obama, 5, 80) == []  # Biden is not Obama

        with pytest.raises(NoFaceError):
            engine.search_by_image(user, (FIXTURES / "noface/dogs.jpg").read_bytes(), 5, 80)

        engine.delete_faces(user, [obama])
        assert {face.face_id for face in engine.list_faces(user)} == {biden}
    finally:
        engine.delete_collection(user)
    assert not engine._collection_exists(engine.collection_id(user))
