"""Foundation: accounts and consent, settings from the environment, admin, the queue."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts.models import FaceConsent, has_face_consent
from indexing.models import Face, IndexRun, Photo, Post, Source
from tests.conftest import PASSWORD, ROOT, make_user, wait_for

pytestmark = pytest.mark.django_db


def confirm_email(client, address: str):
    """Follow the confirmation link of the last mail to ``address``, as a user would."""
    from django.core import mail

    body = next(message.body for message in reversed(mail.outbox) if address in message.to)
    link = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^/\s]+/)", body).group(1)
    assert client.get(link).status_code == 200
    return client.post(link)


def test_signup_consent_logout_login(client):
    response = client.post(
        reverse("account_signup"),
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302 and response["Location"] == reverse("account_email_verification_sent")
    user = get_user_model().objects.get(email="new@example.com")
    assert not has_face_consent(user)
    confirmed = confirm_email(client, "new@example.com")
    assert confirmed.status_code == 302

    home = client.get("/")
    assert b"Review and give consent" in home.content

    page = client.get(reverse("consent"))
    assert page.status_code == 200 and b"I agree" in page.content
    refused = client.post(reverse("consent"), {})
    assert refused.status_code == 200
    assert not FaceConsent.objects.filter(user=user).exists()

    accepted = client.post(reverse("consent"), {"agree": "on", "next": "/settings/"})
    assert accepted.status_code == 302 and accepted["Location"] == "/settings/"
    consent = FaceConsent.objects.get(user=user)
    assert consent.accepted and consent.version == "2026-12-01" and consent.created_at
    assert has_face_consent(user)

    client.post(reverse("account_logout"))
    assert client.get(reverse("privacy")).status_code == 302
    login = client.post(reverse("account_login"), {"login": "new@example.com", "password": PASSWORD})
    assert login.status_code == 302
    assert client.get(reverse("privacy")).status_code == 200


def test_consent_next_cannot_leave_the_site(alice_client, user):
    FaceConsent.objects.all().delete()
    response = alice_client.post(reverse("consent"), {"agree": "on", "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_withdrawing_consent_stops_face_processing(alice_client, user):
    assert has_face_consent(user)
    alice_client.post(reverse("consent_withdraw"))
    assert not has_face_consent(user)
    assert FaceConsent.objects.filter(user=user).count() == 2


def test_consent_of_an_older_text_version_is_not_enough(user, settings):
    settings.FACES_CONSENT_VERSION = "2099-01-01"
    assert not has_face_consent(user)


def test_password_reset_sends_mail(client, user, mailoutbox):
    client.post(reverse("account_reset_password"), {"email": user.email})
    assert len(mailoutbox) == 1 and user.email in mailoutbox[0].to


def _photo(owner, source=None, external_id="p1"):
    source = source or Source.objects.create(owner=owner, kind=Source.Kind.UPLOAD, name="u")
    post = Post.objects.create(owner=owner, source=source, external_id=external_id)
    return Photo.objects.create(owner=owner, post=post, external_id=external_id)


def test_uniqueness_constraints(user, other_user):
    photo = _photo(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Post.objects.create(owner=user, source=photo.post.source, external_id="p1")
    face = dict(engine="local", engine_face_id="abc", box_x=0, box_y=0, box_w=0.1, box_h=0.1, confidence=99)
    Face.objects.create(owner=user, photo=photo, **face)
    with pytest.raises(IntegrityError), transaction.atomic():
        Face.objects.create(owner=user, photo=photo, **face)
    # The same engine id under another tenant is a different face.
    Face.objects.create(owner=other_user, photo=_photo(other_user), **face)
    assert Face.objects.count() == 2


def test_run_counters_use_database_increments(user):
    source = Source.objects.create(owner=user, kind=Source.Kind.UPLOAD, name="u")
    run = IndexRun.objects.create(owner=user, source=source, posts_total=4)
    stale = IndexRun.objects.get(pk=run.pk)
    run.add(posts_done=1, faces_found=3)
    stale.add(posts_done=1, photos_done=2)  # a stale copy must not overwrite
    run.refresh_from_db()
    assert (run.posts_done, run.faces_found, run.photos_done, run.percent) == (2, 3, 2, 50)


@pytest.fixture
def support_user(db):
    staff = make_user("support@example.com", consent=False)
    staff.is_staff = True
    staff.save()
    staff.groups.add(Group.objects.get(name="Support"))
    return staff


def test_support_group_views_but_never_sees_embeddings_or_tokens(client, support_user, user):
    photo = _photo(user)
    face = Face.objects.create(
        owner=user, photo=photo, engine="local", engine_face_id="f1", box_x=0.1, box_y=0.1,
        box_w=0.2, box_h=0.2, confidence=99, embedding=b"\x01\x02secret-embedding",
    )
    client.force_login(support_user)
    for name in ["auth_user", "indexing_source", "indexing_indexrun", "indexing_post", "indexing_photo",
                 "indexing_face", "django_q_failure"]:
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    page = client.get(reverse("admin:indexing_face_change", args=[face.pk]))
    assert page.status_code == 200
    assert b"embedding" not in page.content.lower() and b"secret-embedding" not in page.content
    assert b"thumbnail" not in page.content.lower()
    # View-only: a change is refused.
    response = client.post(reverse("admin:indexing_source_change", args=[photo.post.source_id]), {"name": "x"})
    assert response.status_code == 403
    index = client.get(reverse("admin:index")).content.decode()
    assert "Social application tokens" not in index and "socialtoken" not in index.lower()


def test_staff_photo_preview_is_logged(client, support_user, user, fixtures_dir):
    from django.core.files.base import ContentFile

    from accounts.models import StaffAccessLog

    photo = _photo(user)
    photo.original.save("x.jpg", ContentFile((fixtures_dir / "people/barack_obama/1.jpg").read_bytes()))
    client.force_login(support_user)
    response = client.get(reverse("admin:indexing_photo_preview", args=[photo.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert StaffAccessLog.objects.filter(staff=support_user, action="view_photo_preview").count() == 1


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_is_clean_with_production_variables(tmp_path):
    env = {
        **os.environ,
        "FACES_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "x" * 64 + "-production-key-9f8e7d",
        "ALLOWED_HOSTS": "faces.example.com",
        "HTTPS": "1",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_HSTS_PRELOAD": "1",
    }
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for Playwright tests only
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_embedded_default_generates_the_secret_key_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"}}
    env["FACES_DATA_DIR"] = str(tmp_path)
    code = "from django.conf import settings as s; print(s.SECRET_KEY); print(s.DATABASES['default']['NAME']); print(s.Q_CLUSTER.get('orm'))"
    first = _manage("shell", "-c", code, env=env)
    second = _manage("shell", "-c", code, env=env)
    assert first.returncode == 0, first.stderr
    key, db_name, broker = first.stdout.strip().splitlines()[-3:]
    assert len(key) > 40 and key == second.stdout.strip().splitlines()[-3]
    assert db_name == str(tmp_path / "faces.sqlite3") and broker == "default"
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_a_secret_key_written_by_another_process_meanwhile_is_used(tmp_path, monkeypatch):
    """Web and worker start at once on a new data folder: the second one to write keeps the first's key."""
    from pathlib import Path

    from faces_site import settings as settings_module

    monkeypatch.setattr(settings_module, "FACES_DATA_DIR", tmp_path)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    (tmp_path / "secret_key").write_text("the-other-process-key")
    # The other process created the file after this one looked for it.
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert settings_module._secret_key() == "the-other-process-key"
    assert [path.name for path in tmp_path.iterdir()] == ["secret_key"]  # nothing left aside


def test_environment_switches_to_postgres_redis_and_s3(tmp_path):
    env = {
        **os.environ,
        "FACES_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/faces",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "AWS_STORAGE_BUCKET_NAME": "faces-bucket",
    }
    code = ("from django.conf import settings as s; print(s.DATABASES['default']['ENGINE']); "
            "print(s.Q_CLUSTER.get('redis')); print(s.STORAGES['default']['BACKEND']); "
            "print(s.CACHES['default']['BACKEND'])")
    result = _manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-4:] == [
        "django.db.backends.postgresql",
        "redis://127.0.0.1:6379/3",
        "storages.backends.s3.S3Storage",
        "django.core.cache.backends.redis.RedisCache",
    ]


@pytest.mark.parametrize("cores, workers", [(1, 2), (2, 3), (4, 5), (16, 8)])
def test_queue_workers_default_to_one_per_core_plus_one(monkeypatch, cores, workers):
    from faces_site import environment

    monkeypatch.setattr(environment.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert environment.default_workers() == workers


def test_faces_workers_overrides_the_default(tmp_path):
    env = {**os.environ, "FACES_DATA_DIR": str(tmp_path), "FACES_WORKERS": "5"}
    env.pop("DATABASE_URL", None)
    result = _manage("shell", "-c", "from django.conf import settings as s; print(s.Q_CLUSTER['workers'])", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "5"


def test_security_headers(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "camera=(self)" in response["Permissions-Policy"]
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_tokens_are_redacted_from_logs(caplog):
    from faces_site.logging import RedactTokensFilter

    logger = logging.getLogger("faces.test")
    logger.addFilter(RedactTokensFilter())
    with caplog.at_level(logging.INFO, logger="faces.test"):
        logger.info("GET %s", "https://graph.instagram.com/me/media?access_token=IGQVJ123secret&after=x")
    logger.filters.clear()
    assert "IGQVJ123secret" not in caplog.text and "access_token=[redacted]" in caplog.text


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_executes_a_task_from_the_orm_broker(start_worker, settings):
    from django_q.models import Success
    from django_q.tasks import async_task

    assert settings.Q_CLUSTER.get("orm") == "default"
    task_id = async_task("math.hypot", 3, 4)
    worker = start_worker()
    success = wait_for(lambda: Success.objects.filter(id=task_id).first(), timeout=60, message="task result")
    assert success.result == 5.0, worker.output()
