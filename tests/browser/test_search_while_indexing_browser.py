"""Linking Instagram behind a slow loopback CDN: the first faces are searchable before the run is done."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from indexing.models import IndexRun
from tests.browser.conftest import login
from tests.conftest import FIXTURES, make_user
from tests.fakes.instagram import fake_instagram  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_first_search_result_arrives_before_the_run_is_done(page, live_server, fake_instagram, start_worker, shoot):
    # The oldest post is listed last and its photo is held by the CDN until the
    # test lets it go: the run cannot be done before then, whatever the machine's speed.
    held = fake_instagram.add_post("IMAGE", ["people/john_simm/1.jpg"], caption="Held back")
    fake_instagram.slow_cdn(held, "hold", seconds=240)
    for n in range(24):
        fake_instagram.add_post("IMAGE", ["people/kit_harington/2.jpg"], caption=f"Post {n}")
    fake_instagram.cdn_delay, fake_instagram.graph_delay = 0.15, 0.1
    start_worker(
        **fake_instagram.env(),
        FACES_FETCH_TIMEOUT="300",
        FACES_INDEX_BATCH="8",
    )
    try:
        login(page, live_server, make_user("fast@example.com", consent=False).email)
        page.goto(f"{live_server.url}/consent/")
        page.check("#id_agree")
        page.click("button:has-text('I agree')")
        page.goto(f"{live_server.url}/instagram/connect/")
        page.click("#connect-instagram")
        page.click("#allow")

        expect(page).to_have_url(re.compile(r"/runs/\d+/(#_)?$"), timeout=30_000)
        run_id = int(re.search(r"/runs/(\d+)/", page.url).group(1))
        expect(page.locator("#faces-found")).not_to_have_text("0", timeout=120_000)
        expect(page.locator("#photos-fetched")).not_to_have_text("0")
        expect(page.locator("#search-now")).to_be_visible()
        shoot(page, "18-indexing-in-progress")

        page.click("#search-now")
        page.set_input_files("#search-file", str(FIXTURES / "people" / "kit_harington" / "3.jpg"))
        page.click("#upload-search-submit")
        expect(page.locator("#results .result").first).to_be_visible(timeout=60_000)
        expect(page.locator("#results .result .caption").first).to_contain_text("Post")
        assert IndexRun.objects.get(pk=run_id).status != IndexRun.Status.DONE
    finally:
        fake_instagram.release_cdn()
    page.goto(f"{live_server.url}/runs/{run_id}/")
    expect(page.locator("#run-done")).to_be_visible(timeout=180_000)
    run = IndexRun.objects.get(pk=run_id)
    failed = list(run.posts.filter(status="failed").values_list("external_id", "error"))
    assert (run.posts_done, failed) == (25, []), failed
    expect(page.locator("#posts-done")).to_have_text("25")
