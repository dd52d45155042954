"""The support admin in a real browser: the runs list fits a 1280 px screen."""

from __future__ import annotations

import pytest
from django.utils import timezone

from indexing.models import IndexRun, Source
from tests.conftest import PASSWORD, make_staff, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_runs_list_fits_1280_px_with_progress_and_failures(page, live_server):
    staff = make_staff("support.person@example.com", support=True)
    owner = make_user("a.rather.long.address.for.a.customer@example-photos.com")
    source = Source.objects.create(owner=owner, kind=Source.Kind.EXPORT,
                                   name="Instagram export instagram-someone-2026-11-30-AbCdEfGh.zip")
    for n in range(5):
        IndexRun.objects.create(owner=owner, source=source, status=IndexRun.Status.INDEXING, posts_total=1200,
                                posts_done=400 + n, posts_failed=n * 7, photos_done=900, faces_found=1400,
                                started_at=timezone.now())
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/indexing/indexrun/")
    page.fill("input[name=username]", staff.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/indexing/indexrun/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.locator("#result_list progress").count() == 5
    assert page.locator("#result_list a[href*='status__exact=failed']").first.is_visible()
    assert page.get_by_role("link", name="Has failures").is_visible()
