"""Keep Instagram long-lived tokens alive.

A long-lived token lasts 60 days and can be refreshed once it is a day old.
A daily django-q2 schedule (created by ``accounts/migrations/0002_...``, kept by
``indexing.schedules``) runs ``refresh_expiring_tokens``; a token Instagram
refuses marks the account's sources "needs reconnect" so the user is asked to
link Instagram again.
"""

from __future__ import annotations

import datetime as dt
import logging

from allauth.socialaccount.models import SocialAccount, SocialToken
from django.db import transaction
from django.utils import timezone

from accounts.instagram.provider import InstagramLoginProvider
from indexing.models import Source
from indexing.sources import SourceError, TokenExpired

from .client import refresh_long_lived_token

logger = logging.getLogger(__name__)

PROVIDER = InstagramLoginProvider.id
REFRESH_WITHIN = dt.timedelta(days=20)  # refresh tokens expiring within this window
MIN_AGE = dt.timedelta(days=1)  # Instagram refuses to refresh younger tokens
LIFETIME = dt.timedelta(days=60)  # a long-lived token's life, to infer its issue time


def issued_at(token: SocialToken) -> dt.datetime | None:
    """When the token was issued: recorded at login/refresh, else inferred from expiry."""
    recorded = (token.account.extra_data or {}).get("token_issued_at")
    if recorded:
        try:
            value = dt.datetime.fromisoformat(recorded)
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        except (TypeError, ValueError):
            pass
    return token.expires_at - LIFETIME if token.expires_at else None


def mark_needs_reconnect(account: SocialAccount | int) -> int:
    """Flag every source of this Instagram link; returns how many were flagged."""
    account_id = account.pk if isinstance(account, SocialAccount) else account
    return Source.objects.filter(social_account_id=account_id).update(needs_reconnect=True)


def refresh_token(token: SocialToken, now: dt.datetime | None = None) -> None:
    """Refresh one token in place; raises TokenExpired / RateLimited / SourceError."""
    now = now or timezone.now()
    new_token, expires_in = refresh_long_lived_token(token.token)
    with transaction.atomic():
        token.token = new_token
        token.expires_at = now + (dt.timedelta(seconds=expires_in) if expires_in else LIFETIME)
        token.save(update_fields=["token", "expires_at"])
        account = SocialAccount.objects.select_for_update().get(pk=token.account_id)
        account.extra_data = {**(account.extra_data or {}), "token_issued_at": now.isoformat()}
        account.save(update_fields=["extra_data"])
        token.account = account


def refresh_expiring_tokens(now: dt.datetime | None = None) -> dict[str, int]:
    """The scheduled task: refresh every Instagram token that expires within 20 days.

    Tokens younger than a day are left alone (Instagram would refuse them);
    tokens already past their expiry cannot be refreshed: their sources are
    flagged without asking Instagram. Returns counts for the task result.
    """
    now = now or timezone.now()
    counts = {"refreshed": 0, "revoked": 0, "expired": 0, "failed": 0, "skipped": 0}
    tokens = (
        SocialToken.objects.select_related("account")
        .filter(account__provider=PROVIDER, expires_at__isnull=False, expires_at__lte=now + REFRESH_WITHIN)
        .order_by("expires_at")
    )
    for token in tokens:
        if token.expires_at <= now:
            mark_needs_reconnect(token.account_id)
            counts["expired"] += 1
            continue
        born = issued_at(token)
        if born is not None and now - born < MIN_AGE:
            counts["skipped"] += 1
            continue
        try:
            refresh_token(token, now)
        except TokenExpired:
            flagged = mark_needs_reconnect(token.account_id)
            logger.info(
                "Instagram token of social account %s was refused; %d source(s) need reconnecting",
                token.account_id, flagged,
            )
            counts["revoked"] += 1
        except SourceError as exc:  # rate limited or unavailable: tomorrow's run tries again
            logger.warning(
                "Could not refresh the Instagram token of social account %s: %s", token.account_id, exc
            )
            counts["failed"] += 1
        else:
            counts["refreshed"] += 1
    if any(counts.values()):
        logger.info("Instagram token refresh: %s", counts)
    return counts


def clear_needs_reconnect(sender=None, request=None, sociallogin=None, **kwargs) -> None:
    """Receiver for allauth's ``social_account_added`` / ``social_account_updated``.

    Linking Instagram again stores a fresh token, so its sources may crawl again.
    """
    account = getattr(sociallogin, "account", None)
    if account is not None and account.pk and account.provider == PROVIDER:
        Source.objects.filter(social_account=account, needs_reconnect=True).update(needs_reconnect=False)
