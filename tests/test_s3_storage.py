"""Photos in S3 stay private: stored as settings.py configures it, linked with short-lived URLs.

Runs against moto in server mode over real HTTP, with the storage options
settings.py builds when AWS_STORAGE_BUCKET_NAME is set.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from indexing.engines.rekognition import storage_s3_key
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

PHOTO = (FIXTURES / "people" / "joe_biden" / "1.jpg").read_bytes()


def test_settings_build_a_private_presigning_s3_storage(moto_s3, settings):
    storage = settings.STORAGES["default"]
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    options = storage["OPTIONS"]
    assert options["bucket_name"] == moto_s3.bucket
    assert options["default_acl"] == "private"
    assert options["querystring_auth"] is True
    assert options["querystring_expire"] <= 300


def test_saved_photo_is_private_and_served_by_a_short_presigned_url(moto_s3):
    name = default_storage.save("photos/1/biden.jpg", ContentFile(PHOTO))
    key = storage_s3_key(name)
    assert key == name

    stored = moto_s3.client().get_object(Bucket=moto_s3.bucket, Key=key)
    assert stored["Body"].read() == PHOTO
    assert stored["CacheControl"] == "private, max-age=300"
    grants = moto_s3.client().get_object_acl(Bucket=moto_s3.bucket, Key=key)["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    assert all(g["Grantee"].get("Type") == "CanonicalUser" for g in grants)  # no AllUsers grant

    plain = f"{moto_s3.url}/{moto_s3.bucket}/{key}"
    assert requests.get(plain, timeout=10).status_code == 403  # anonymous: refused

    url = default_storage.url(name)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]  # SigV4: the only kind new buckets accept
    assert 0 < int(query["X-Amz-Expires"][0]) <= 300
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == PHOTO

    default_storage.delete(name)
    assert not default_storage.exists(name)
    assert requests.get(url, timeout=10).status_code == 404

