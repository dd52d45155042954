"""An export ZIP whose photos are all in the library already: each post says so, and the
captions and dates it brings land on the photos the library has."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login
from tests.conftest import FIXTURES, make_user
from tests.test_import_dates_and_duplicates import export_zip, upload_undated

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_duplicate_export_reports_each_post_and_merges_captions(page, live_server, tmp_path, start_worker, shoot):
    user = make_user("dup-export@example.com")
    data = upload_undated(user, tmp_path)
    archive = export_zip(tmp_path / "instagram-export.zip", {
        "17900000000000001": (data[0], 1672531200, "New year at the lake"),
        "17900000000000002": (data[1], 1675209600, "February"),
    })
    start_worker()
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/import/")
    page.set_input_files("#id_archive", archive)
    page.click("#export-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("#run-done")).to_be_visible(timeout=120_000)
    expect(page.locator("#done-text")).to_contain_text("nothing new to index: 2 posts skipped")
    rows = page.locator("#skipped-posts tr")
    expect(rows).to_have_count(2)
    for i in range(2):
        expect(rows.nth(i)).to_contain_text("Already in your library")
    expect(page.locator("#run-summary")).to_contain_text("2 skipped")
    shoot(page, "24-duplicate-export")

    page.goto(f"{live_server.url}/search/")
    page.set_input_files("#search-file", str(FIXTURES / "people" / "joe_biden" / "1.jpg"))
    page.click("#upload-search-submit")
    results = page.locator("#results .result")
    expect(results).to_have_count(2)
    expect(page.locator("#results")).to_contain_text("New year at the lake")
    expect(page.locator("#results")).to_contain_text("1 Jan 2023")
