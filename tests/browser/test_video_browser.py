"""A video in the browser: a selfie finds the moment a person appears in it."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from tests.browser.conftest import login
from tests.conftest import FIXTURES, make_user
from tests.videos import Appearance, Clip, render

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_search_shows_the_video_frame_with_its_moment_and_plays_it_there(page, live_server, tmp_path, shoot):
    user = make_user("reels@example.com")
    clip = tmp_path / "beach-day.mp4"
    clip.write_bytes(render(Clip(16, [Appearance(FIXTURES / "people/barack_obama/1.jpg", 12, 16)])))
    call_command("faces_import", "--user", user.email, "--sync", str(clip), str(FIXTURES / "people/joe_biden/1.jpg"))
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "people/barack_obama/2.jpg"))
    page.click("#upload-search-submit")
    result = page.locator("#results .result").first
    expect(result).to_have_attribute("data-external-id", "beach-day.mp4")
    badge = result.locator(".play-badge")
    expect(badge).to_be_visible()
    moment = result.locator(".video-moment")
    expect(moment).to_contain_text("at 0:12")
    # The frame is what the card shows, with the face box on it and the badge inside the picture.
    image = result.locator(".pic img")
    assert "/frame.jpg" in image.get_attribute("src")
    pic, mark = result.locator(".pic").bounding_box(), badge.bounding_box()
    assert pic["x"] <= mark["x"] and mark["x"] + mark["width"] <= pic["x"] + pic["width"]
    assert pic["y"] <= mark["y"] and mark["y"] + mark["height"] <= pic["y"] + pic["height"]
    shoot(page, "25-video-result")
    # The link plays the private video from that moment; the browser can seek (byte ranges).
    link = moment.locator("a.play-link")
    assert link.get_attribute("href").endswith("/video#t=12")
    page.goto(live_server.url + link.get_attribute("href"))
    duration = page.evaluate(
        """() => new Promise(done => { const v = document.querySelector('video'); let tries = 0;
            const check = () => v && v.readyState >= 1 ? done(v.duration)
                : (++tries > 600 ? done(-1) : setTimeout(check, 100)); check(); })"""
    )
    assert 15 <= duration <= 17
