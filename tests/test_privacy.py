"""Biometric privacy: consent first, deletion that leaves nothing, retention, staff accountability."""

from __future__ import annotations

import datetime as dt
import pydoc
from io import StringIO
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.apps import apps
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import models
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import FaceConsent, StaffAccessLog
from indexing import pipeline
from indexing.deletion import delete_face_data, delete_inactive_face_data
from indexing.engines import get_engine
from indexing.imports import import_photos
from indexing.models import Face, FaceCollection, IndexRun, Person, Photo, Post, Source, UnindexedFace
from tests.conftest import make_staff, make_user
from tests.test_limits import export_zip

pytestmark = pytest.mark.django_db

User = get_user_model()


def import_sync(user, *paths: Path) -> IndexRun:
    call_command("faces_import", "--user", user.email, "--sync", *map(str, paths), stdout=StringIO())
    return IndexRun.objects.filter(owner=user).first()


def media_files(media_root: Path) -> list[str]:
    return sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file())


def files_of(media_root: Path, user_pk: int) -> list[str]:
    prefixes = tuple(f"{kind}/{user_pk}/" for kind in ("photos", "faces", "imports"))
    return [name for name in media_files(media_root) if name.startswith(prefixes)]


def rows_referencing(user_pk: int) -> dict[str, int]:
    """Every row of every model that points at the user through a foreign key."""
    found = {}
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.get_fields():
            if (
                isinstance(field, (models.ForeignKey, models.OneToOneField))
                and field.related_model is User
                and field.concrete
            ):
                count = model._default_manager.filter(**{field.attname: user_pk}).count()
                if count:
                    found[f"{model._meta.label}.{field.name}"] = count
    return found


# -- consent ----------------------------------------------------------------------


@pytest.fixture
def unconsented(db):
    user = make_user("carol@example.com", consent=False)
    client = Client()
    client.force_login(user)
    return user, client


def test_import_and_search_refuse_without_consent(unconsented, fixtures_dir):
    user, client = unconsented
    photo = (fixtures_dir / "people/joe_biden/1.jpg").read_bytes()
    consent_url = reverse("consent")
    attempts = [
        client.post(reverse("upload_photos"), {"photos": [SimpleUploadedFile("a.jpg", photo)]}),
        client.post(reverse("upload_export"), {"archive": SimpleUploadedFile("e.zip", export_zip())}),
        client.post(reverse("search"), {"image": SimpleUploadedFile("q.jpg", photo)}),
        client.get(reverse("search")),
        client.get(reverse("import")),
        client.get(reverse("gallery")),
    ]
    for response in attempts:
        assert response.status_code == 302 and response["Location"].startswith(consent_url), response
    as_json = client.post(reverse("search"), {"image": SimpleUploadedFile("q.jpg", photo)},
                          HTTP_ACCEPT="application/json")
    assert as_json.status_code == 403 and "consent" in as_json.json()["error"]
    assert not Source.objects.filter(owner=user).exists() and not Face.objects.filter(owner=user).exists()
    assert not default_storage.exists(f"photos/{user.pk}")
    # The command line and the pipeline refuse too.
    summary = import_photos(user, [("a.jpg", photo)], name="u")
    with pytest.raises(PermissionError):
        pipeline.start_run(summary.source)


def test_consent_records_the_text_version(unconsented):
    user, client = unconsented
    client.post(reverse("consent"), {"agree": "on"})
    consent = FaceConsent.objects.get(user=user)
    assert consent.accepted and consent.version == django_settings.FACES_CONSENT_VERSION


def test_withdrawing_consent_stops_a_running_import(alice_client, user, fixtures_dir):
    files = [(p.name, p.read_bytes()) for p in sorted((fixtures_dir / "people/john_simm").glob("*.jpg"))]
    summary = import_photos(user, files, name="upload")
    run = IndexRun.objects.create(owner=user, source=summary.source)
    pipeline.crawl_source(run.pk)  # queues one index_post per photo
    first, *rest = Post.objects.filter(run=run).order_by("pk")
    pipeline.index_post(first.pk)
    assert Face.objects.filter(owner=user).count() == 1

    assert alice_client.post(reverse("consent_withdraw")).status_code == 302
    for post in rest:  # the queued jobs run after the withdrawal
        pipeline.index_post(post.pk)
    run.refresh_from_db()
    assert run.status == IndexRun.Status.FAILED and "consent was withdrawn" in run.last_error
    assert Face.objects.filter(owner=user).count() == 1
    assert Post.objects.filter(run=run, status=Post.Status.PENDING).count() == len(rest)


# -- deletion ---------------------------------------------------------------------


@pytest.fixture
def rich_alice(alice_client, user, other_user, fixtures_dir, data_dir):
    """Alice with everything a user can have; Bob with a library that must survive."""
    people = fixtures_dir / "people"
    run = import_sync(user, people / "barack_obama", fixtures_dir / "groups" / "two_people.jpg")
    assert run.status == IndexRun.Status.DONE and run.faces_found >= 5
    face = Face.objects.filter(owner=user).first()
    # A rendition made by viewing a photo, a search (caches Alice's matrix), an export upload.
    assert alice_client.get(reverse("photo_image", args=[face.photo_id])).status_code == 200
    with (people / "barack_obama" / "2.jpg").open("rb") as image:
        results = alice_client.post(reverse("search"), {"image": image}, follow=True)
    assert results.status_code == 200 and results.context["matches"]
    person = Person.objects.create(owner=user, name="Mom", cover_face=face)
    Face.objects.filter(pk__in=Face.objects.filter(owner=user).values_list("pk", flat=True)[:2]).update(person=person)
    upload = alice_client.post(reverse("upload_export"), {"archive": SimpleUploadedFile("e.zip", export_zip())})
    assert upload.status_code == 302
    # Linked Instagram with a token, and an email address record.
    app = SocialApp.objects.create(provider="instagram_login", name="Instagram", client_id="c", secret="s")
    account = SocialAccount.objects.create(user=user, provider="instagram_login", uid="1789", extra_data={})
    SocialToken.objects.create(app=app, account=account, token="IGQV-secret")
    EmailAddress.objects.update_or_create(user=user, email=user.email, defaults={"verified": True, "primary": True})
    # Bob's library.
    import_sync(other_user, people / "joe_biden" / "1.jpg")
    media = django_settings.MEDIA_ROOT
    kinds = {name.split("/")[0] for name in files_of(media, user.pk)}
    assert kinds == {"photos", "faces", "imports"}, files_of(media, user.pk)
    assert user.pk in get_engine("local").cache._items
    return user


def assert_bob_untouched(bob, media_root: Path) -> None:
    assert Face.objects.filter(owner=bob).count() == 1 and Photo.objects.filter(owner=bob).count() == 1
    assert any(name.startswith(f"faces/{bob.pk}/") for name in media_files(media_root))
    assert any(name.startswith(f"photos/{bob.pk}/") for name in media_files(media_root))


def test_deleting_the_account_leaves_nothing_of_the_user(rich_alice, alice_client, other_user):
    user_pk = rich_alice.pk
    assert rows_referencing(user_pk)  # the check sees rows while they exist
    page = alice_client.get(reverse("delete_account"))
    assert page.status_code == 200
    response = alice_client.post(reverse("delete_account"), {"confirm": "delete my account"})
    assert response.status_code == 302

    assert not User.objects.filter(pk=user_pk).exists()
    assert rows_referencing(user_pk) == {}
    assert files_of(django_settings.MEDIA_ROOT, user_pk) == []
    assert user_pk not in get_engine("local").cache._items
    assert not SocialToken.objects.filter(token="IGQV-secret").exists()
    assert_bob_untouched(other_user, django_settings.MEDIA_ROOT)
    # Logged out: the next page asks to log in.
    assert alice_client.get(reverse("gallery"))["Location"].startswith("/accounts/login/")


def test_deleting_face_data_keeps_photos_only(rich_alice, alice_client, other_user, fixtures_dir):
    user = rich_alice
    photos_before = set(Photo.objects.filter(owner=user).values_list("original", flat=True))
    response = alice_client.post(reverse("privacy"), follow=True)
    assert "Deleted" in response.content.decode()

    for model in (Face, Person, FaceCollection, UnindexedFace):
        assert not model.objects.filter(owner=user).exists(), model.__name__
    left = files_of(django_settings.MEDIA_ROOT, user.pk)
    assert not [name for name in left if name.startswith(f"faces/{user.pk}/")]
    assert set(Photo.objects.filter(owner=user).values_list("original", flat=True)) == photos_before
    assert all(default_storage.exists(name) for name in photos_before)
    assert user.pk not in get_engine("local").cache._items
    # Nothing is searchable any more, and the import that was queued is stopped.
    with (fixtures_dir / "people/barack_obama/3.jpg").open("rb") as image:
        results = alice_client.post(reverse("search"), {"image": image}, follow=True)
    assert results.context["matches"] == []
    assert not IndexRun.objects.filter(owner=user, status__in=IndexRun.ACTIVE).exists()
    assert_bob_untouched(other_user, django_settings.MEDIA_ROOT)


def test_deleting_face_data_and_photos_keeps_only_the_account(rich_alice, alice_client):
    alice_client.post(reverse("privacy"), {"photos": "1"})
    left = rows_referencing(rich_alice.pk)
    assert set(left) <= {"accounts.FaceConsent.user", "socialaccount.SocialAccount.user",
                         "account.EmailAddress.user"}, left
    assert files_of(django_settings.MEDIA_ROOT, rich_alice.pk) == []


def test_deletion_during_an_import_does_not_bring_faces_back(user, fixtures_dir):
    files = [(p.name, p.read_bytes()) for p in sorted((fixtures_dir / "people/john_savage").glob("*.jpg"))]
    run = IndexRun.objects.create(owner=user, source=import_photos(user, files, name="u").source)
    pipeline.crawl_source(run.pk)
    first, in_flight, *queued = Post.objects.filter(run=run).order_by("pk")
    pipeline.index_post(first.pk)
    # A worker is inside index_post for the second post when the user deletes their face data.
    engine = get_engine()
    outcomes = [pipeline._index_photo(engine, in_flight, photo) for photo in in_flight.photos.all()]
    assert outcomes[0].result.faces and outcomes[0].thumbnails
    delete_face_data(user)
    pipeline.commit_posts(engine, [(in_flight, outcomes)])
    for post in queued:
        pipeline.index_post(post.pk)
    assert not Face.objects.filter(owner=user).exists()
    assert not any(default_storage.exists(name) for name in outcomes[0].thumbnails.values())
    assert IndexRun.objects.get(pk=run.pk).status == IndexRun.Status.CANCELLED


def test_a_recreated_collection_never_serves_deleted_faces_from_another_process(user, fixtures_dir):
    from indexing.engines.local import LocalEngine

    people = fixtures_dir / "people"
    other_process = LocalEngine()  # a second web process with its own matrix cache
    import_sync(user, people / "barack_obama" / "1.jpg", people / "barack_obama" / "2.jpg")
    query = (people / "barack_obama" / "3.jpg").read_bytes()
    old = {m.face_id for m in other_process.search_by_image(user, query, 10, 50).matches}
    assert old == set(Face.objects.filter(owner=user).values_list("engine_face_id", flat=True))

    delete_face_data(user)  # only this process's engine forgets the matrix
    import_sync(user, people / "joe_biden" / "1.jpg", people / "joe_biden" / "2.jpg")
    new = {m.face_id for m in other_process.search_by_image(user, (people / "joe_biden" / "3.jpg").read_bytes(), 10, 50).matches}
    assert new == set(Face.objects.filter(owner=user).values_list("engine_face_id", flat=True))
    assert not new & old


@pytest.fixture
def rekognition(settings, fake_rekognition):
    settings.FACES_ENGINE = "rekognition"
    return fake_rekognition


@pytest.mark.parametrize("scope", ["account", "face_data"])
def test_deletion_removes_the_rekognition_collection(rekognition, alice_client, user, other_user, fixtures_dir, scope):
    people = fixtures_dir / "people"
    import_sync(user, people / "kit_harington")
    import_sync(other_user, people / "john_salley" / "1.jpg")
    collection = f"faces-{user.pk}"
    assert len(rekognition.faces(collection)) == Face.objects.filter(owner=user).count() == 3
    if scope == "account":
        alice_client.post(reverse("delete_account"), {"confirm": "delete my account"})
        assert rows_referencing(user.pk) == {}
    else:
        alice_client.post(reverse("privacy"))
        assert not Face.objects.filter(owner=user).exists() and Photo.objects.filter(owner=user).count() == 3
    assert collection not in rekognition.collections
    if scope == "account":
        assert files_of(django_settings.MEDIA_ROOT, user.pk) == []
    assert len(rekognition.faces(f"faces-{other_user.pk}")) == 1


# -- retention --------------------------------------------------------------------


def test_retention_deletes_face_data_of_inactive_accounts(settings, fixtures_dir):
    people = fixtures_dir / "people"
    now = timezone.now()
    idle = make_user("idle@example.com")
    recent = make_user("recent@example.com")
    never = make_user("never@example.com")
    newcomer = make_user("new@example.com")
    for user in (idle, recent):
        import_sync(user, people / "alex_lacamoire" / "1.jpg")
    FaceCollection.objects.create(owner=never, engine="local", version=3)
    FaceCollection.objects.create(owner=newcomer, engine="local", version=1)
    User.objects.filter(pk=idle.pk).update(last_login=now - dt.timedelta(days=40))
    User.objects.filter(pk=recent.pk).update(last_login=now - dt.timedelta(days=5), date_joined=now - dt.timedelta(days=400))
    User.objects.filter(pk=never.pk).update(last_login=None, date_joined=now - dt.timedelta(days=31))
    User.objects.filter(pk=newcomer.pk).update(last_login=None, date_joined=now - dt.timedelta(days=1))

    settings.FACES_RETENTION_DAYS = 0
    assert delete_inactive_face_data() == 0
    assert Face.objects.filter(owner=idle).exists()

    settings.FACES_RETENTION_DAYS = 30
    # The daily schedule (data migration) names this function.
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="indexing.deletion.delete_inactive_face_data")
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1
    assert pydoc.locate(schedule.func)() == 2

    assert not Face.objects.filter(owner=idle).exists() and Photo.objects.filter(owner=idle).count() == 1
    assert not FaceCollection.objects.filter(owner__in=[idle, never]).exists()
    assert not [n for n in files_of(settings.MEDIA_ROOT, idle.pk) if n.startswith("faces/")]
    assert Face.objects.filter(owner=recent).count() == 1
    assert FaceCollection.objects.filter(owner=newcomer).exists()
    assert delete_inactive_face_data() == 0  # nothing left to delete


def test_daily_sync_leaves_inactive_accounts_alone(settings):
    settings.FACES_RETENTION_DAYS = 30
    idle, active = make_user("idle@example.com"), make_user("active@example.com")
    User.objects.filter(pk=idle.pk).update(last_login=timezone.now() - dt.timedelta(days=60))
    User.objects.filter(pk=active.pk).update(last_login=timezone.now())
    for user in (idle, active):
        Source.objects.create(owner=user, kind=Source.Kind.INSTAGRAM, name=f"@{user.username}")
    assert pipeline.sync_instagram_sources() == 1
    assert IndexRun.objects.filter(owner=active).count() == 1 and not IndexRun.objects.filter(owner=idle).exists()


# -- staff accountability ---------------------------------------------------------


@pytest.fixture
def superuser(db):
    return make_staff("root@example.com", superuser=True)


@pytest.fixture
def admin_client(superuser):
    client = Client()
    client.force_login(superuser)
    return client


def test_deleting_a_user_in_the_admin_is_logged_and_deletes_their_data(admin_client, superuser, user, fixtures_dir):
    import_sync(user, fixtures_dir / "people/joe_biden/2.jpg")
    user_pk = user.pk
    response = admin_client.post(reverse("admin:auth_user_delete", args=[user_pk]), {"post": "yes"})
    assert response.status_code == 302
    assert rows_referencing(user_pk) == {}
    assert files_of(django_settings.MEDIA_ROOT, user_pk) == []
    log = StaffAccessLog.objects.get(action="delete_user")
    assert log.staff == superuser and log.object_repr == f"auth.User {user_pk}"
    assert "alice" not in log.object_repr


def test_bulk_deleting_users_in_the_admin_is_logged(admin_client, superuser, user, other_user):
    response = admin_client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [user.pk, other_user.pk], "post": "yes"},
    )
    assert response.status_code == 302
    logged = set(StaffAccessLog.objects.filter(action="delete_user").values_list("object_repr", flat=True))
    assert logged == {f"auth.User {user.pk}", f"auth.User {other_user.pk}"}
    assert not User.objects.filter(pk__in=[user.pk, other_user.pk]).exists()


def test_staff_views_changes_and_actions_on_user_data_are_logged(admin_client, superuser, user, fixtures_dir):
    run = import_sync(user, fixtures_dir / "people/joe_biden/3.jpg")
    photo = Photo.objects.get(owner=user)
    person = Person.objects.create(owner=user, name="Dad")

    assert admin_client.get(reverse("admin:indexing_photo_change", args=[photo.pk])).status_code == 200
    assert admin_client.get(reverse("admin:indexing_photo_preview", args=[photo.pk])).status_code == 200
    change = admin_client.post(
        reverse("admin:indexing_person_change", args=[person.pk]),
        {"owner": user.pk, "name": "Father", "cover_face": "", "rekognition_user_id": ""},
    )
    assert change.status_code == 302 and Person.objects.get(pk=person.pk).name == "Father"
    Post.objects.filter(run=run).update(status=Post.Status.FAILED)
    IndexRun.objects.filter(pk=run.pk).update(posts_failed=1, posts_done=0)
    action = admin_client.post(
        reverse("admin:indexing_indexrun_changelist"),
        {"action": "retry_failed_posts", "_selected_action": [run.pk]},
    )
    assert action.status_code == 302

    logs = {(log.action, log.object_repr) for log in StaffAccessLog.objects.filter(staff=superuser)}
    assert ("view_photo", f"indexing.Photo {photo.pk} of user {user.pk}") in logs
    assert ("view_photo_preview", f"photo {photo.pk} of user {user.pk}") in logs
    assert ("change_person", f"indexing.Person {person.pk} of user {user.pk}") in logs
    assert ("retry_failed_posts", f"indexing.IndexRun [{run.pk}]") in logs
    assert not any(user.email in repr_ or "Father" in repr_ for _, repr_ in logs)


def test_query_photos_go_with_the_face_data(alice_client, user, fixtures_dir):
    from django.core.cache import cache
    from django.core.files.uploadedfile import SimpleUploadedFile

    from indexing.deletion import delete_face_data

    data = (fixtures_dir / "people" / "joe_biden" / "1.jpg").read_bytes()
    response = alice_client.post("/search/", {"image": SimpleUploadedFile("q.jpg", data, "image/jpeg")})
    query_url = response["Location"].split("?")[0]
    assert alice_client.get(query_url + "image.jpg").status_code == 200
    delete_face_data(user)
    assert alice_client.get(query_url + "image.jpg").status_code == 404
    assert cache.get(f"faces:queries:{user.pk}") is None
