"""Instagram: Business Login provider, Graph API client, token refresh and export ZIPs.

Everything runs against the loopback fake in ``tests/fakes/instagram.py``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import zipfile
from urllib.parse import parse_qsl, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from indexing.instagram.client import InstagramClient, MediaDeleted, Unavailable, refresh_long_lived_token
from indexing.instagram.export import ExportError, ExportStats, iter_export_posts, open_export, repair_text
from indexing.instagram.tokens import (
    REFRESH_TASK,
    clear_needs_reconnect,
    ensure_schedules,
    refresh_expiring_tokens,
)
from indexing.models import Source
from indexing.sources import MediaExpired, RateLimited, SourceError, TokenExpired
from tests.fakes.instagram import FAKE_MP4, FakeInstagram, connect_instagram, fake_instagram  # noqa: F401

DAY = dt.timedelta(days=1)


# Login and linking ------------------------------------------------------------------


def oauth_dance(client, fake: FakeInstagram, data: dict | None = None, *, allow: bool = True):
    """POST to the provider, press Allow in the fake dialog, return the callback response."""
    start = client.post(reverse("instagram_login_login"), data or {})
    assert start.status_code == 302, start.content
    authorize = start["Location"]
    assert authorize.startswith(f"{fake.url}/oauth/authorize?")
    callback = urlsplit(fake.authorize(authorize, allow=allow))  # the "#_" fragment stays in the browser
    assert callback.path == reverse("instagram_login_callback")
    return client.get(callback.path, dict(parse_qsl(callback.query)))


def test_authorize_redirect_asks_for_business_basic(client, db, fake_instagram):
    start = client.post(reverse("instagram_login_login"))
    query = dict(parse_qsl(urlsplit(start["Location"]).query))
    assert query["client_id"] == fake_instagram.client_id
    assert query["scope"] == "instagram_business_basic"
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == "http://testserver/accounts/instagram_login/login/callback/"
    assert query["state"]


def test_signup_with_instagram_asks_for_email_and_keeps_a_long_lived_token(client, db, fake_instagram):
    response = oauth_dance(client, fake_instagram)
    # Instagram gives no email address: allauth's signup form asks for one.
    assert response.status_code == 302 and response["Location"] == reverse("socialaccount_signup")
    form = client.get(reverse("socialaccount_signup"))
    assert form.status_code == 200 and b'name="email"' in form.content
    done = client.post(reverse("socialaccount_signup"), {"email": "insta@example.com"})
    assert done.status_code == 302

    user = get_user_model().objects.get(email="insta@example.com")
    assert client.session["_auth_user_id"] == str(user.pk)
    account = SocialAccount.objects.get(user=user, provider="instagram_login")
    assert account.uid == "27182818284590452"  # all 17 digits, never through a float
    assert account.extra_data["username"] == "alice.faces"
    assert account.extra_data["user_id"] == "17841405822304914"
    token = SocialToken.objects.get(account=account)
    assert fake_instagram.tokens[token.token].kind == "long"
    assert dt.timedelta(days=59) < token.expires_at - timezone.now() < dt.timedelta(days=61)
    exchanges = fake_instagram.requests_to("/access_token")
    assert len(exchanges) == 1 and exchanges[0].query["grant_type"] == "ig_exchange_token"
    assert fake_instagram.requests_to("/me")[0].query["fields"] == "user_id,username"


def test_signup_email_of_an_existing_account_is_refused(client, user, fake_instagram):
    oauth_dance(client, fake_instagram)
    response = client.post(reverse("socialaccount_signup"), {"email": user.email})
    assert response.status_code == 200
    assert not SocialAccount.objects.exists()


def test_connect_instagram_to_the_logged_in_account_then_log_in_with_it(alice_client, user, fake_instagram):
    response = oauth_dance(alice_client, fake_instagram, {"process": "connect"})
    assert response.status_code == 302
    assert response["Location"] == reverse("socialaccount_connections")
    account = SocialAccount.objects.get(provider="instagram_login")
    assert account.user == user and account.uid == fake_instagram.app_user_id
    first_token = SocialToken.objects.get(account=account).token

    alice_client.post(reverse("account_logout"))
    again = oauth_dance(alice_client, fake_instagram)
    assert again.status_code == 302 and again["Location"] == "/"
    assert alice_client.session["_auth_user_id"] == str(user.pk)
    tokens = SocialToken.objects.filter(account=account)
    assert tokens.count() == 1 and tokens.get().token != first_token  # the new login's token is kept


def test_an_instagram_account_linked_elsewhere_is_not_taken_over(
    alice_client, user, other_user, fake_instagram
):
    connect_instagram(other_user, fake_instagram)
    response = oauth_dance(alice_client, fake_instagram, {"process": "connect"})
    assert response.status_code == 302
    assert SocialAccount.objects.get(provider="instagram_login").user == other_user


def test_cancelling_the_dialog_links_nothing(client, db, fake_instagram):
    response = oauth_dance(client, fake_instagram, allow=False)
    assert response.status_code == 302 and response["Location"] == reverse("socialaccount_login_cancelled")
    assert not SocialAccount.objects.exists()


def test_refused_code_exchange_shows_an_error_and_links_nothing(client, db, fake_instagram, settings):
    providers = dict(settings.SOCIALACCOUNT_PROVIDERS)
    providers["instagram_login"] = {**providers["instagram_login"],
                                    "APPS": [{"client_id": fake_instagram.client_id, "secret": "wrong"}]}
    settings.SOCIALACCOUNT_PROVIDERS = providers
    response = oauth_dance(client, fake_instagram)
    assert response.status_code == 401
    assert not SocialAccount.objects.exists() and not SocialToken.objects.exists()


# Graph API client --------------------------------------------------------------------


def client_for(fake: FakeInstagram, **kwargs) -> InstagramClient:
    return InstagramClient(fake.issue_token(), **kwargs)


def test_iter_media_pages_through_carousels_videos_and_flagged_media(fake_instagram, fixtures_dir):
    ids = fake_instagram.add_sample_library()
    for n in range(3):
        fake_instagram.add_post("IMAGE", [f"people/john_shimkus/{n + 1}.jpg"], caption=f"extra {n}")
    with client_for(fake_instagram, page_size=2) as ig:
        posts = list(ig.iter_media())

    assert len(posts) == 7
    pages = [r for r in fake_instagram.requests if r.path.endswith("/media")]
    assert len(pages) == math.ceil(7 / 2)  # followed paging.next to the end
    timestamps = [p.timestamp for p in posts]
    assert timestamps == sorted(timestamps, reverse=True) and all(t.tzinfo for t in timestamps)
    by_id = {p.external_id: p for p in posts}

    image = by_id[ids["image"]]
    assert image.media_type == "IMAGE" and image.caption == "Obama" and image.permalink.startswith("https://")
    assert [(ph.external_id, ph.position) for ph in image.photos] == [(ids["image"], 0)]

    carousel = by_id[ids["carousel"]]
    children = [c.id for c in fake_instagram.find(ids["carousel"]).children]
    assert carousel.media_type == "CAROUSEL_ALBUM"
    assert [ph.external_id for ph in carousel.photos] == children  # not the parent too
    assert [ph.position for ph in carousel.photos] == [0, 1, 2]

    video = by_id[ids["video"]]
    assert video.media_type == "VIDEO" and len(video.photos) == 1
    assert video.photos[0].external_id == ids["video"]
    cover = (fixtures_dir / "people/john_salley/1.jpg").read_bytes()
    assert ig_bytes(fake_instagram, video.photos[0].media_url) == cover

    flagged = by_id[ids["flagged"]]
    assert flagged.photos == [] and "copyright" in flagged.skip_reason
    assert all(not p.skip_reason for p in posts if p is not flagged)


def ig_bytes(fake: FakeInstagram, url: str) -> bytes:
    with client_for(fake) as ig:
        return ig.download(url)


def test_incremental_sync_stops_at_the_last_known_post(fake_instagram):
    for n in range(5):
        fake_instagram.add_post("IMAGE", caption=f"post {n}")
    with client_for(fake_instagram, page_size=2) as ig:
        everything = list(ig.iter_media())
        fake_instagram.requests.clear()
        newer = list(ig.iter_media(since=everything[2].timestamp))
        assert [p.external_id for p in newer] == [p.external_id for p in everything[:2]]
        assert len(fake_instagram.requests) == 2  # stopped inside page two, no third page
        fake_instagram.requests.clear()
        assert list(ig.iter_media(since=everything[0].timestamp)) == []
        assert len(fake_instagram.requests) == 1  # nothing new costs one call


def test_iter_media_ids_lists_everything_cheaply(fake_instagram):
    ids = fake_instagram.add_sample_library()
    with client_for(fake_instagram, page_size=3) as ig:
        listed = list(ig.iter_media_ids())
    assert sorted(listed) == sorted(ids.values())
    assert all(r.query.get("fields", "id") == "id" for r in fake_instagram.requests if "media" in r.path)


def test_expired_media_url_raises_media_expired_and_a_fresh_url_works(fake_instagram, fixtures_dir):
    ids = fake_instagram.add_sample_library()
    with client_for(fake_instagram) as ig:
        posts = {p.external_id: p for p in ig.iter_media()}
        child = posts[ids["carousel"]].photos[1]
        assert ig.download(child.media_url) == (fixtures_dir / "groups/two_people.jpg").read_bytes()

        fake_instagram.expire_media_urls()
        with pytest.raises(MediaExpired):
            ig.download(child.media_url)
        for photo in (child, posts[ids["image"]].photos[0], posts[ids["video"]].photos[0]):
            fresh = ig.media_url(photo.external_id)
            assert fresh != photo.media_url
            assert Image.open(io.BytesIO(ig.download(fresh))).format == "JPEG"


def test_expired_url_is_a_plain_text_403(fake_instagram):
    fake_instagram.add_post("IMAGE")
    with client_for(fake_instagram) as ig:
        url = next(ig.iter_media()).photos[0].media_url
    fake_instagram.expire_media_urls()
    import requests

    answer = requests.get(url, timeout=5)
    assert answer.status_code == 403 and answer.text == "URL signature expired"


def test_media_url_of_a_deleted_post(fake_instagram):
    media_id = fake_instagram.add_post("IMAGE")
    fake_instagram.delete_post(media_id)
    with client_for(fake_instagram) as ig, pytest.raises(MediaDeleted):
        ig.media_url(media_id)


def test_download_is_size_capped(fake_instagram):
    fake_instagram.add_post("IMAGE")
    with client_for(fake_instagram, max_download_bytes=10_000) as ig:
        url = next(ig.iter_media()).photos[0].media_url
        with pytest.raises(SourceError, match="larger than"):
            ig.download(url)


@pytest.mark.parametrize("code", [4, 17, 32, 613])
def test_graph_rate_limit_codes_raise_rate_limited(fake_instagram, code):
    fake_instagram.add_post("IMAGE")
    fake_instagram.fail_next(code=code)
    with client_for(fake_instagram) as ig:
        with pytest.raises(RateLimited) as caught:
            list(ig.iter_media())
    assert not isinstance(caught.value, Unavailable)
    assert 60 <= caught.value.retry_after <= 3600


def test_http_429_honours_retry_after(fake_instagram):
    fake_instagram.fail_next(status=429, headers={"Retry-After": "120"})
    with client_for(fake_instagram) as ig, pytest.raises(RateLimited) as caught:
        ig.media_url(fake_instagram.add_post("IMAGE"))
    assert caught.value.retry_after == 120


def test_business_use_case_header_gives_the_wait(fake_instagram):
    fake_instagram.buc_usage = {"call_count": 100, "total_cputime": 20, "total_time": 30,
                                "estimated_time_to_regain_access": 7}
    fake_instagram.fail_next(code=32)
    with client_for(fake_instagram) as ig, pytest.raises(RateLimited) as caught:
        list(ig.iter_media())
    assert caught.value.retry_after == 7 * 60


def test_usage_header_at_100_percent_stops_before_the_next_call(fake_instagram):
    for _ in range(4):
        fake_instagram.add_post("IMAGE")
    fake_instagram.app_usage = {"call_count": 100, "total_time": 12, "total_cputime": 9}
    got = []
    with client_for(fake_instagram, page_size=2) as ig:
        with pytest.raises(RateLimited) as caught:
            for post in ig.iter_media():
                got.append(post)
        assert len(got) == 2  # the first page's posts were kept
        assert len(fake_instagram.requests) == 1  # the refused call was never sent
        assert caught.value.retry_after > 0
        with pytest.raises(RateLimited):
            ig.media_url(got[0].external_id)


def test_usage_below_100_percent_is_fine(fake_instagram):
    fake_instagram.add_post("IMAGE")
    fake_instagram.app_usage = {"call_count": 99, "total_time": 50, "total_cputime": 50}
    with client_for(fake_instagram) as ig:
        assert len(list(ig.iter_media())) == 1


def test_revoked_token_raises_token_expired(fake_instagram):
    media_id = fake_instagram.add_post("IMAGE")
    with client_for(fake_instagram) as ig:
        fake_instagram.revoke_token()
        with pytest.raises(TokenExpired):
            list(ig.iter_media())
        with pytest.raises(TokenExpired):
            ig.media_url(media_id)


def test_server_errors_are_transient(fake_instagram):
    fake_instagram.fail_next(status=503, code=2, message="Service temporarily unavailable")
    with client_for(fake_instagram) as ig, pytest.raises(Unavailable) as caught:
        list(ig.iter_media())
    assert isinstance(caught.value, RateLimited) and caught.value.retry_after > 0


def test_tokens_never_reach_the_logs(client, db, fake_instagram, caplog):
    caplog.set_level(logging.DEBUG)
    for n in range(5):
        fake_instagram.add_post("IMAGE", caption=f"post {n}")
    oauth_dance(client, fake_instagram)
    client.post(reverse("socialaccount_signup"), {"email": "insta@example.com"})
    token = SocialToken.objects.get().token
    with InstagramClient(token, page_size=2) as ig:
        assert len(list(ig.iter_media())) == 5
        fake_instagram.fail_next(code=4, path="/17841405822304914/media")
        with pytest.raises(RateLimited):
            list(ig.iter_media())
    assert "access_token=[redacted]" in caplog.text  # paging URLs were logged, sanitized
    for secret in [*fake_instagram.tokens, fake_instagram.client_secret]:
        assert secret not in caplog.text
    assert token not in repr(InstagramClient(token))


def test_refresh_long_lived_token(fake_instagram):
    old = fake_instagram.issue_token(age=3 * 86400)
    new, expires_in = refresh_long_lived_token(old)
    assert new != old and fake_instagram.tokens[new].kind == "long"
    assert expires_in == 5_184_000
    fake_instagram.revoke_token(new)
    with pytest.raises(TokenExpired):
        refresh_long_lived_token(new)


# Token refresh task -------------------------------------------------------------------


def instagram_source(owner, account) -> Source:
    return Source.objects.create(owner=owner, kind=Source.Kind.INSTAGRAM, name="@alice.faces",
                                 social_account=account)


def test_refresh_task_renews_tokens_that_expire_soon(user, fake_instagram):
    account, token = connect_instagram(user, fake_instagram, expires_in=10 * 86400, age=50 * 86400)
    source = instagram_source(user, account)
    old = token.token

    counts = refresh_expiring_tokens()
    assert counts == {"refreshed": 1, "revoked": 0, "expired": 0, "failed": 0, "skipped": 0}
    token.refresh_from_db()
    account.refresh_from_db()
    assert token.token != old and fake_instagram.tokens[token.token].kind == "long"
    assert dt.timedelta(days=59) < token.expires_at - timezone.now() <= dt.timedelta(days=60)
    issued = dt.datetime.fromisoformat(account.extra_data["token_issued_at"])
    assert timezone.now() - issued < dt.timedelta(minutes=1)
    source.refresh_from_db()
    assert not source.needs_reconnect
    # Refreshed today: tomorrow's run leaves it alone.
    assert refresh_expiring_tokens()["refreshed"] == 0


def test_refresh_task_leaves_fresh_and_young_tokens_alone(user, other_user, fake_instagram):
    connect_instagram(user, fake_instagram)  # 60 days left
    connect_instagram(other_user, fake_instagram, expires_in=5 * 86400, age=3600, uid="27182818284590453")
    counts = refresh_expiring_tokens()
    assert counts == {"refreshed": 0, "revoked": 0, "expired": 0, "failed": 0, "skipped": 1}
    assert not fake_instagram.requests_to("/refresh_access_token")


def test_revoked_token_marks_the_sources_for_reconnecting(user, other_user, fake_instagram):
    account, token = connect_instagram(user, fake_instagram, expires_in=5 * 86400, age=55 * 86400)
    mine, upload = instagram_source(user, account), Source.objects.create(owner=user, kind="upload", name="u")
    other_account, _ = connect_instagram(other_user, fake_instagram, uid="27182818284590453")
    theirs = instagram_source(other_user, other_account)
    fake_instagram.revoke_token(token.token)

    assert refresh_expiring_tokens()["revoked"] == 1
    for source, expected in ((mine, True), (upload, False), (theirs, False)):
        source.refresh_from_db()
        assert source.needs_reconnect is expected

    class Login:  # what allauth's social_account_updated signal passes
        pass

    login = Login()
    login.account = account
    clear_needs_reconnect(sociallogin=login)
    mine.refresh_from_db()
    assert not mine.needs_reconnect


def test_an_expired_token_flags_its_sources_without_calling_instagram(user, fake_instagram):
    account, token = connect_instagram(user, fake_instagram, expires_in=-3600, age=61 * 86400)
    source = instagram_source(user, account)
    assert refresh_expiring_tokens()["expired"] == 1
    source.refresh_from_db()
    assert source.needs_reconnect and not fake_instagram.requests


def test_refresh_task_survives_rate_limits(user, fake_instagram):
    account, token = connect_instagram(user, fake_instagram, expires_in=5 * 86400, age=55 * 86400)
    source = instagram_source(user, account)
    fake_instagram.fail_next(code=4, path="/refresh_access_token")
    assert refresh_expiring_tokens()["failed"] == 1
    source.refresh_from_db()
    assert not source.needs_reconnect
    assert SocialToken.objects.get(pk=token.pk).token == token.token


def test_daily_refresh_schedule_exists_once(db):
    from django_q.models import Schedule

    assert Schedule.objects.filter(func=REFRESH_TASK, schedule_type=Schedule.DAILY).count() == 1
    ensure_schedules()
    ensure_schedules()
    assert Schedule.objects.filter(func=REFRESH_TASK).count() == 1


# Export ZIPs ----------------------------------------------------------------------------


def mojibake(text: str) -> str:
    """How Instagram's JSON spells UTF-8 text."""
    return text.encode("utf-8").decode("latin-1")


def webp_bytes(path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, "WEBP")
    return buffer.getvalue()


def build_export(path, posts_json: dict[str, object], files: dict[str, bytes],
                 compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in posts_json.items():
            archive.writestr(name, json.dumps(data), compress_type=zipfile.ZIP_DEFLATED)
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def sample_export(tmp_path, fixtures_dir):
    """A current-layout export: single photo, 3-photo carousel (jpg/webp/heic), video, media/other."""
    obama = (fixtures_dir / "people/barack_obama/1.jpg").read_bytes()
    files = {
        "media/posts/202301/17912345678901234.jpg": obama,
        "media/posts/202302/AQMkc0ffee.jpg": (fixtures_dir / "groups/two_people.jpg").read_bytes(),
        "media/posts/202302/AQMkc0ffee2.webp": webp_bytes(fixtures_dir / "people/kit_harington/1.jpg"),
        "media/posts/202302/AQMkc0ffee3.heic": (fixtures_dir / "special/face.heic").read_bytes(),
        "media/posts/202303/17999999999999999": FAKE_MP4 + b"\x00" * 5000,  # a video, no extension
        "media/other/17800000000000001.jpg": (fixtures_dir / "people/john_salley/1.jpg").read_bytes(),
        "your_instagram_activity/messages/inbox/x/message_1.json": b"{}",
    }
    posts = [
        {"media": [{"uri": "media/posts/202301/17912345678901234.jpg", "creation_timestamp": 1672531200,
                    "title": mojibake("Café in Zürich 😀")}]},
        {"media": [{"uri": "media/posts/202303/17999999999999999", "creation_timestamp": 1677628800,
                    "title": ""}]},
        {"title": mojibake("Carousel — três fotos"), "creation_timestamp": 1675209600,
         "media": [{"uri": f"media/posts/202302/{name}", "creation_timestamp": 1675209600, "title": ""}
                   for name in ("AQMkc0ffee.jpg", "AQMkc0ffee2.webp", "AQMkc0ffee3.heic")]},
        {"media": [{"uri": "media/other/17800000000000001.jpg", "creation_timestamp": 1680307200,
                    "title": "plain"}]},
    ]
    return build_export(tmp_path / "instagram-alice.zip",
                        {"your_instagram_activity/media/posts_1.json": posts}, files)


def test_export_posts_newest_first_with_repaired_captions(sample_export, fixtures_dir):
    stats = ExportStats()
    posts = list(iter_export_posts(sample_export, stats))

    assert [p.timestamp.year * 100 + p.timestamp.month for p in posts] == [202304, 202303, 202302, 202301]
    other, video, carousel, single = posts
    assert single.external_id == "17912345678901234"  # numeric file name = media id
    assert single.caption == "Café in Zürich 😀"
    assert [ph.external_id for ph in single.photos] == ["media/posts/202301/17912345678901234.jpg"]
    assert single.photos[0].load() == (fixtures_dir / "people/barack_obama/1.jpg").read_bytes()

    assert carousel.external_id.startswith("export:") and len(carousel.external_id) == 47
    assert carousel.media_type == "CAROUSEL_ALBUM" and carousel.caption == "Carousel — três fotos"
    assert [ph.position for ph in carousel.photos] == [0, 1, 2]
    formats = [Image.open(io.BytesIO(ph.load())).format for ph in carousel.photos]
    assert formats == ["JPEG", "WEBP", "HEIF"]

    assert video.media_type == "VIDEO" and video.photos == [] and "video" in video.skip_reason
    assert other.external_id == "17800000000000001" and len(other.photos) == 1
    assert (stats.posts, stats.images, stats.non_images, stats.missing) == (4, 5, 1, 0)
    assert stats.posts_files == ["your_instagram_activity/media/posts_1.json"]


def test_export_ids_are_stable_across_reads(sample_export):
    first = [p.external_id for p in iter_export_posts(sample_export)]
    with open(sample_export, "rb") as handle:
        second = [p.external_id for p in iter_export_posts(handle)]
    assert first == second and len(set(first)) == 4


@pytest.mark.parametrize("layout", [
    "your_instagram_activity/content/posts_{n}.json",
    "content/posts_{n}.json",
    "instagram-alice-2023-05-01/your_instagram_activity/media/posts_{n}.json",
])
def test_export_older_layouts_and_several_posts_files(tmp_path, fixtures_dir, layout):
    root = layout.split("your_instagram_activity/")[0] if layout.startswith("instagram-") else ""
    photo = (fixtures_dir / "people/alex_lacamoire/1.jpg").read_bytes()
    files = {f"{root}media/posts/2019{m:02d}/pic{m}.jpg": photo for m in (1, 2, 3)}
    posts = {
        layout.format(n=1): [
            {"media": [{"uri": f"media/posts/2019{m:02d}/pic{m}.jpg",
                        "creation_timestamp": 1546300800 + m * 86400 * 31, "title": f"p{m}"}]}
            for m in (1, 2)
        ],
        layout.format(n=2): {"ig_posts": [{"media": [{"uri": "media/posts/201903/pic3.jpg",
                                                      "creation_timestamp": 1556668800, "title": "p3"}]}]},
    }
    stats = ExportStats()
    posts_out = list(iter_export_posts(build_export(tmp_path / "old.zip", posts, files), stats))
    assert [p.caption for p in posts_out] == ["p3", "p2", "p1"]
    assert stats.images == 3 and len(stats.posts_files) == 2
    assert posts_out[0].photos[0].load() == photo


def test_mojibake_repair_leaves_good_text_alone():
    assert repair_text(mojibake("Ünïcødé ❤️")) == "Ünïcødé ❤️"
    assert repair_text("café") == "café"  # real Latin-1 text does not round-trip: kept
    assert repair_text("plain") == "plain"


@pytest.mark.parametrize("name", ["../evil.jpg", "media/../../evil.jpg", "/etc/passwd", "C:/Windows/x.jpg"])
def test_export_with_escaping_member_paths_is_refused(tmp_path, name):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("your_instagram_activity/media/posts_1.json", "[]")
        archive.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(ExportError, match="unsafe path"):
        list(iter_export_posts(path))


def test_export_uri_escaping_the_archive_is_skipped(tmp_path, fixtures_dir):
    posts = [{"media": [{"uri": "../../etc/passwd", "creation_timestamp": 1672531200, "title": "x"}]}]
    stats = ExportStats()
    path = build_export(tmp_path / "e.zip", {"content/posts_1.json": posts}, {})
    out = list(iter_export_posts(path, stats))
    assert out[0].photos == [] and out[0].skip_reason and stats.unsafe == 1


def test_export_total_size_and_member_count_caps(sample_export, settings):
    settings.FACES_MAX_EXPORT_BYTES = 200_000
    with pytest.raises(ExportError, match="add up to"):
        open_export(sample_export)
    settings.FACES_MAX_EXPORT_BYTES = 4 * 1024**3
    settings.FACES_MAX_EXPORT_MEMBERS = 5
    with pytest.raises(ExportError, match="at most 5"):
        open_export(sample_export)


def test_export_per_photo_cap_and_compression_bombs(tmp_path, fixtures_dir, settings):
    photo = (fixtures_dir / "people/barack_obama/2.jpg").read_bytes()
    files = {"media/posts/1/big.jpg": photo, "media/posts/1/bomb.jpg": b"\xff\xd8" + b"\x00" * (20 * 1024**2)}
    posts = [{"media": [{"uri": f"media/posts/1/{n}.jpg", "creation_timestamp": 1672531200 + i, "title": n}]}
             for i, n in enumerate(["big", "bomb"])]
    zip_path = build_export(tmp_path / "b.zip", {"content/posts_1.json": posts}, files, zipfile.ZIP_DEFLATED)
    settings.FACES_MAX_UPLOAD_BYTES = len(photo) - 1
    stats = ExportStats()
    out = list(iter_export_posts(zip_path, stats))
    assert all(not p.photos for p in out) and stats.too_large == 2 and stats.images == 0


def test_export_posts_json_bomb_is_refused(tmp_path):
    bomb = "[" + " " * (8 * 1024**2) + "]"
    path = tmp_path / "j.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("content/posts_1.json", bomb)
    with pytest.raises(ExportError, match="suspiciously compressed"):
        open_export(path)


def test_not_a_zip_and_zip_without_posts(tmp_path):
    junk = tmp_path / "photo.zip"
    junk.write_bytes(b"this is not a zip")
    with pytest.raises(ExportError, match="not a ZIP"):
        list(iter_export_posts(junk))
    with pytest.raises(ExportError, match="not a ZIP"):
        open_export(b"")
    empty = build_export(tmp_path / "empty.zip", {}, {"media/posts/1/a.jpg": b"x"})
    with pytest.raises(ExportError, match="No posts"):
        open_export(empty)
    html_export = build_export(tmp_path / "html.zip", {},
                               {"your_instagram_activity/media/posts_1.html": b"<html>"})
    with pytest.raises(ExportError, match="JSON format"):
        open_export(html_export)


def test_export_error_is_a_source_error():
    assert issubclass(ExportError, SourceError)
