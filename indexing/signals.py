"""Receivers: account deletion, Instagram links, consent, worker start."""

from __future__ import annotations

import logging

from allauth.account.signals import user_logged_in, user_signed_up
from allauth.socialaccount.signals import (
    social_account_added,
    social_account_removed,
    social_account_updated,
)
from django.conf import settings
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django_q.signals import post_spawn

from accounts.signals import consent_given

from .deletion import delete_face_data
from .engines import get_engine
from .instagram.tokens import PROVIDER, clear_needs_reconnect

logger = logging.getLogger(__name__)

social_account_updated.connect(clear_needs_reconnect, dispatch_uid="faces_clear_needs_reconnect")


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="faces_delete_user_data")
def delete_user_data(sender, instance, **kwargs) -> None:
    delete_face_data(instance, photos=True)


@receiver(social_account_added, dispatch_uid="faces_instagram_linked")
def instagram_linked(sender, request, sociallogin, **kwargs) -> None:
    """Linking Instagram creates its source and starts the first crawl (consent first)."""
    if sociallogin.account.provider == PROVIDER:
        from .pipeline import link_instagram

        link_instagram(sociallogin.account)


@receiver(user_signed_up, dispatch_uid="faces_instagram_signed_up")
def instagram_signed_up(sender, request, user, sociallogin=None, **kwargs) -> None:
    if sociallogin is not None and sociallogin.account.provider == PROVIDER:
        from .pipeline import link_instagram

        link_instagram(sociallogin.account)


@receiver(user_logged_in, dispatch_uid="faces_instagram_logged_in")
def instagram_logged_in(sender, request, user, sociallogin=None, **kwargs) -> None:
    """Each login with Instagram fetches the posts that are new since the last crawl."""
    if sociallogin is not None and sociallogin.account.provider == PROVIDER and sociallogin.account.pk:
        from .pipeline import link_instagram

        link_instagram(sociallogin.account)


@receiver(social_account_removed, dispatch_uid="faces_instagram_unlinked")
def instagram_unlinked(sender, request, socialaccount, **kwargs) -> None:
    if socialaccount.provider == PROVIDER:
        from .pipeline import unlink_instagram

        unlink_instagram(socialaccount)


@receiver(consent_given, dispatch_uid="faces_consent_given")
def start_waiting_sources(sender, user, **kwargs) -> None:
    """Sources linked before consent start their first crawl once consent is given."""
    from .pipeline import start_uncrawled_sources

    start_uncrawled_sources(user)


@receiver(post_spawn, dispatch_uid="faces_resume_on_worker_start")
def on_worker_start(sender, proc_name, **kwargs) -> None:
    """Once per cluster start: make sure of the schedules, and on Redis resume lost work.

    A Redis broker loses the tasks a killed worker held; the ORM broker
    redelivers them itself (and the every-minute schedule backs up both).
    """
    from .pipeline import first_start_of_cluster, resume_interrupted_runs
    from .schedules import ensure_schedules

    if not first_start_of_cluster():
        return
    ensure_schedules()
    if settings.Q_CLUSTER.get("redis"):
        import datetime as dt

        resume_interrupted_runs(dt.timedelta(seconds=settings.FACES_RESUME_STALE_SECONDS))


@receiver(post_spawn, dispatch_uid="faces_load_engine_on_worker_start")
def load_engine_on_worker_start(sender, proc_name, **kwargs) -> None:
    """Each worker warms its engine up as it starts (the local engine loads its models),
    not in its first task, which would otherwise pay for it (see bench/README.md).

    A failure here is only logged: the first index job then reports it on its post.
    """
    try:
        get_engine().warm_up()
    except Exception:
        logger.exception("Could not warm up the face engine in %s", proc_name)

