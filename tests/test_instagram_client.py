"""The Graph API client (indexing/instagram/client.py, media.py) against the loopback fake."""

from __future__ import annotations

import io
import math

import pytest
import requests
from PIL import Image

from indexing.instagram.client import InstagramClient, MediaDeleted, Unavailable, refresh_long_lived_token
from indexing.instagram.media import COPYRIGHT_SKIP, to_post
from indexing.sources import MediaExpired, RateLimited, SourceError, TokenExpired
from tests.fakes.instagram import FakeInstagram, fake_instagram  # noqa: F401


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


def test_refresh_long_lived_token(fake_instagram):
    old = fake_instagram.issue_token(age=3 * 86400)
    new, expires_in = refresh_long_lived_token(old)
    assert new != old and fake_instagram.tokens[new].kind == "long"
    assert expires_in == 5_184_000
    fake_instagram.revoke_token(new)
    with pytest.raises(TokenExpired):
        refresh_long_lived_token(new)


def test_a_carousel_without_children_falls_back_to_its_own_image():
    post = to_post({"id": "17900000000000001", "media_type": "CAROUSEL_ALBUM", "media_url": "https://cdn/x.jpg",
                    "timestamp": "2024-05-01T12:00:00+0000"})
    assert [(p.external_id, p.media_url) for p in post.photos] == [("17900000000000001", "https://cdn/x.jpg")]
    assert post.timestamp.isoformat() == "2024-05-01T12:00:00+00:00"


def test_a_video_without_cover_and_an_unknown_type():
    video = to_post({"id": "1", "media_type": "VIDEO", "media_url": "https://cdn/v.mp4"})
    assert video.photos == [] and video.skip_reason == "video without a cover image"
    odd = to_post({"id": "2", "media_type": "REEL", "timestamp": "not a time"})
    assert odd.media_type == "IMAGE" and odd.timestamp is None and odd.skip_reason == COPYRIGHT_SKIP
