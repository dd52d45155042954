"""Shared fixtures: isolated media, users with consent, fixture photos, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Playwright's sync API keeps an event loop in the main thread; Django's ORM
# would refuse to run beside it without this.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("FACES_FIXTURES", ROOT.parent / "shared" / "fixtures" / "faces"))
PASSWORD = "correct-horse-battery-9"


def pytest_configure(config):
    from django.conf import settings

    # Tests run without collectstatic: plain static storage, served by finders.
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path_factory) -> Path:
    """A fresh FACES_DATA_DIR-like folder per test for media and the cache."""
    path = tmp_path_factory.mktemp("data")
    media = path / "media"
    media.mkdir()
    if settings.STORAGES["default"]["BACKEND"].endswith("FileSystemStorage"):
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(media), "base_url": None},
            },
        }
    settings.MEDIA_ROOT = media
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(path / "cache"),
        }
    }
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"face fixtures missing at {FIXTURES}"
    return FIXTURES


def make_user(email: str, consent: bool = True):
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from accounts.models import FaceConsent

    user = get_user_model().objects.create_user(username=email.split("@")[0], email=email, password=PASSWORD)
    # A confirmed address, as every user who got past sign-up has (verification is mandatory).
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    if consent:
        FaceConsent.objects.record(user)
    return user


def make_staff(email: str, *, superuser: bool = False, support: bool = False):
    """A staff account without face consent: a superuser, or a member of the Support group."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    staff = make_user(email, consent=False)
    get_user_model().objects.filter(pk=staff.pk).update(is_staff=True, is_superuser=superuser)
    if support:
        staff.groups.add(Group.objects.get(name="Support"))
    staff.refresh_from_db()
    return staff


@pytest.fixture
def user(db):
    return make_user("alice@example.com")


@pytest.fixture
def other_user(db):
    return make_user("bob@example.com")


@pytest.fixture
def alice_client(client, user):
    client.force_login(user)
    return client


def database_url() -> str:
    """The URL of the test database, for worker processes started by a test."""
    from django.db import connection

    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf["PASSWORD"] else "")
    return f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}/{conf['NAME']}"


def worker_env(data_dir: Path, **extra: str) -> dict[str, str]:
    from django.conf import settings

    env = {
        **os.environ,
        "SECRET_KEY": settings.SECRET_KEY,  # django-q signs queued tasks with it
        "DATABASE_URL": database_url(),
        "FACES_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        "FACES_Q_TIMEOUT": "60",
        "FACES_Q_RETRY": "90",
        "FACES_WORKERS": "1",  # tests that need more say so
    }
    env.update(extra)
    return env


class Worker:
    """A real ``manage.py qcluster`` process."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        self.handle = open(log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole process group: the cluster and all its workers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(8)
            except subprocess.TimeoutExpired:
                self.kill()
        self.handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(data_dir, tmp_path):
    """Start qcluster processes on the test database; all are stopped at teardown."""
    workers: list[Worker] = []

    def start(**extra: str) -> Worker:
        worker = Worker(worker_env(data_dir, **extra), tmp_path / f"qcluster-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


# Loopback AWS fakes, usable by any test: fake_rekognition, moto_server, moto_s3.
from tests.fakes.rekognition import fake_rekognition  # noqa: E402,F401
from tests.fakes.s3 import moto_s3, moto_server  # noqa: E402,F401
