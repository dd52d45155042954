"""A loopback S3 (moto in server mode) and Django's S3 storage configured as in production.

``s3_storage_options`` runs faces_site/settings.py itself with
AWS_STORAGE_BUCKET_NAME set, so tests check the storage configuration the
product really ships, not a copy of it.

Fixture ``moto_s3`` (registered in tests/conftest.py): a fresh private bucket
on a shared moto server, ``settings.STORAGES["default"]`` switched to it, and
``AWS_STORAGE_BUCKET_NAME`` set. For worker processes pass ``moto_s3.env()``.
"""

from __future__ import annotations

import os
import runpy
import uuid
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def s3_storage_options(bucket: str, endpoint: str, data_dir: Path, **env: str) -> dict:
    """``STORAGES["default"]`` exactly as settings.py builds it for ``bucket`` at ``endpoint``."""
    environ = {
        **os.environ,
        "FACES_DATA_DIR": str(data_dir),
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_REGION": REGION,
        "AWS_S3_ENDPOINT_URL": endpoint,
        **env,
    }
    with mock.patch.dict(os.environ, environ, clear=True):
        namespace = runpy.run_path(str(ROOT / "faces_site" / "settings.py"))
    return namespace["STORAGES"]["default"]


@dataclass
class MotoS3:
    url: str
    bucket: str

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.url, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def env(self) -> dict[str, str]:
        """Environment for a worker process that should store photos in this bucket."""
        return {
            "AWS_STORAGE_BUCKET_NAME": self.bucket,
            "AWS_S3_ENDPOINT_URL": self.url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **CREDENTIALS,
        }


@pytest.fixture(scope="session")
def moto_server():
    """One moto server (all AWS services moto knows) for the whole test session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_s3(moto_server, settings, monkeypatch, data_dir) -> MotoS3:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    s3 = MotoS3(url=moto_server, bucket=f"faces-test-{uuid.uuid4().hex[:12]}")
    s3.client().create_bucket(Bucket=s3.bucket)
    settings.AWS_STORAGE_BUCKET_NAME = s3.bucket
    settings.STORAGES = {
        **settings.STORAGES,
        "default": s3_storage_options(s3.bucket, s3.url, data_dir),
    }
    return s3
