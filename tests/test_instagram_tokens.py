"""Keeping Instagram tokens alive (indexing/instagram/tokens.py) and its daily schedule."""

from __future__ import annotations

import datetime as dt

from allauth.socialaccount.models import SocialToken
from django.utils import timezone
from django_q.models import Schedule

from indexing.instagram.tokens import clear_needs_reconnect, refresh_expiring_tokens
from indexing.models import Source
from indexing.schedules import SCHEDULES, ensure_schedules
from tests.fakes.instagram import connect_instagram, fake_instagram  # noqa: F401

REFRESH_TASK = SCHEDULES["Refresh Instagram tokens"]["func"]


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
    assert refresh_expiring_tokens.__module__ + "." + refresh_expiring_tokens.__name__ == REFRESH_TASK
    assert Schedule.objects.filter(func=REFRESH_TASK, schedule_type=Schedule.DAILY).count() == 1
    ensure_schedules()
    ensure_schedules()
    assert Schedule.objects.filter(func=REFRESH_TASK).count() == 1
