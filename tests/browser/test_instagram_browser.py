"""Instagram end to end in the browser, against the loopback Instagram."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import confirm_email
from tests.conftest import FIXTURES, PASSWORD
from tests.fakes.instagram import fake_instagram  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_connect_instagram_crawl_and_search(page, live_server, fake_instagram, start_worker, shoot):
    kit = [fake_instagram.add_post("IMAGE", [f"people/kit_harington/{n}.jpg"], caption=f"Kit #{n}") for n in (1, 2)]
    fake_instagram.add_post("CAROUSEL_ALBUM", ["people/barack_obama/1.jpg", "people/kit_harington/3.jpg",
                                               "noface/eagle.jpg"], caption="Carousel day")
    fake_instagram.add_post("VIDEO", ["people/joe_biden/2.jpg"], caption="A video")
    fake_instagram.add_post("IMAGE", ["people/joe_biden/1.jpg"], copyright_flagged=True)
    start_worker(**fake_instagram.env())

    page.goto(f"{live_server.url}/accounts/signup/")
    page.fill("input[name=email]", "insta@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form button[type=submit]")
    confirm_email(page, live_server, "insta@example.com")
    page.goto(f"{live_server.url}/consent/")
    page.check("#id_agree")
    page.click("button:has-text('I agree')")

    page.goto(f"{live_server.url}/import/")
    page.click("text=Connect Instagram")
    shoot(page, "15-connect-instagram")
    page.click("#connect-instagram")
    expect(page.locator("#allow")).to_be_visible()  # the (fake) Instagram dialog
    page.click("#allow")

    expect(page).to_have_url(re.compile(r"/runs/\d+/(#_)?$"), timeout=30_000)
    expect(page.locator("#run-done")).to_be_visible(timeout=120_000)
    expect(page.locator("#posts-done")).to_have_text("4")
    expect(page.locator("#photos-done")).to_have_text("6")
    shoot(page, "16-instagram-progress")

    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "people" / "kit_harington" / "2.jpg"))
    page.click("#upload-search-submit")
    results = page.locator("#results .result")
    expect(results.first).to_be_visible()
    links = page.locator("#results .result .permalink")
    hrefs = links.evaluate_all("els => els.map(e => e.href)")
    assert len(hrefs) >= 3
    expected = {fake_instagram.find(media_id).permalink for media_id in kit}
    assert expected <= set(hrefs[:3]), hrefs
    expect(results.first.locator(".caption")).to_contain_text(re.compile(r"Kit|Carousel"))
    shoot(page, "17-instagram-search")
