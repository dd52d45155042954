"""Crawling a source: enumerate its items, upsert them, queue their indexing.

``crawl_source(run_id)`` enumerates a source's posts (Instagram Graph API,
export ZIP, or uploaded photos), upserts Post and Photo rows through
``imports.upsert_post`` and enqueues one ``index_post(post_id)`` per post that
is not indexed yet. Starting, resuming and the Instagram link life cycle live
here too: they run crawls, and this module sits above ``indexer`` and ``runs``.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import has_face_consent

from .. import people
from ..crawlers import instagram_media_ids, iter_source_posts
from ..deletion import delete_posts, inactive_users
from ..engines import get_engine
from ..imports import upsert_post
from ..models import IndexRun, Post, Source
from ..sources import RateLimited, SourceError, TokenExpired
from .indexer import index_post
from .queue import CRAWL_SOURCE, DB_OUTAGE_ERRORS, INDEX_POST, enqueue, survives_db_outage
from .runs import _cancelled, _fail_run, _maybe_finish, _wait, active_run, cancel_run

logger = logging.getLogger(__name__)

# Instagram lists at most this many newest media: past it, absence proves nothing.
INSTAGRAM_LISTING_LIMIT = 10_000


def start_run(source: Source, *, sync: bool = False) -> IndexRun:
    """Create an IndexRun for ``source`` and crawl it (queued, or here when ``sync``)."""
    if not has_face_consent(source.owner):
        raise PermissionError("Face-processing consent is required before importing photos.")
    run = IndexRun.objects.create(owner=source.owner, source=source)
    if sync:
        crawl_source(run.pk, sync=True)
    else:
        transaction.on_commit(lambda: enqueue(CRAWL_SOURCE, run.pk))
    return run


@survives_db_outage
def crawl_source(run_id: int, sync: bool = False) -> None:
    """Enumerate the run's source, upsert posts and photos, enqueue their indexing."""
    run = IndexRun.objects.select_related("source", "owner").filter(pk=run_id).first()
    if run is None or run.status in (IndexRun.Status.DONE, IndexRun.Status.CANCELLED, IndexRun.Status.FAILED):
        return
    source = run.source
    if not has_face_consent(run.owner):
        _fail_run(run, "Face-processing consent was withdrawn.")
        return
    IndexRun.objects.filter(pk=run.pk).update(
        status=IndexRun.Status.CRAWLING, started_at=run.started_at or timezone.now(), resume_at=None
    )
    newest = source.newest_post_at
    try:
        for remote in iter_source_posts(source, since=source.newest_post_at):
            upserted = upsert_post(source, remote)
            if upserted.skipped:
                run.add(posts_skipped=1)
            post = upserted.post
            if post is not None and remote.timestamp and (newest is None or remote.timestamp > newest):
                newest = remote.timestamp
            if post is not None:
                _assign_and_enqueue(run, post, enqueue_job=not sync)
            if _cancelled(run.pk):
                return
    except RateLimited as exc:
        _wait(run, exc, CRAWL_SOURCE, run.pk)
        return
    except TokenExpired as exc:
        Source.objects.filter(pk=source.pk).update(needs_reconnect=True)
        _fail_run(run, f"Instagram needs to be reconnected: {exc}")
        return
    except SourceError as exc:
        _fail_run(run, str(exc))
        return
    except DB_OUTAGE_ERRORS:
        raise  # not the run's fault: survives_db_outage runs the crawl again
    except Exception as exc:
        _fail_run(run, f"Unexpected error while finding posts ({exc.__class__.__name__}); support has been notified.")
        raise

    # Uploaded photos are posts already, and earlier failures get another try:
    # take every unfinished post of the source that is not in this run yet.
    unfinished = source.posts.filter(status__in=[Post.Status.PENDING, Post.Status.FAILED]).exclude(run=run)
    for post in list(unfinished.order_by("pk")):
        _assign_and_enqueue(run, post, enqueue_job=not sync)
    if source.kind == Source.Kind.INSTAGRAM:
        try:
            notice_deleted_posts(source, instagram_media_ids(source))
        except SourceError as exc:  # not worth failing a finished crawl for
            logger.info("Could not check run %s for deleted posts: %s", run.pk, exc)
    Source.objects.filter(pk=source.pk).update(newest_post_at=newest, needs_reconnect=False)
    IndexRun.objects.filter(pk=run.pk).update(crawled_at=timezone.now())
    IndexRun.objects.filter(pk=run.pk, status=IndexRun.Status.CRAWLING).update(status=IndexRun.Status.INDEXING)
    if sync:
        for post_id in run.posts.filter(status=Post.Status.PENDING).values_list("pk", flat=True):
            index_post(post_id, sync=True)
    finished = _maybe_finish(run.pk)
    if get_engine().groups_faces:
        if sync:
            try:
                people.group_new_faces(run.owner_id)
            except Exception:  # the import itself succeeded; the next grouping catches up
                logger.exception("Grouping the faces of run %s failed", run.pk)
        elif finished:
            people.run_finished(run.owner_id)


def _assign_and_enqueue(run: IndexRun, post: Post, enqueue_job: bool = True) -> None:
    """Count the post into this run and queue its indexing, exactly once.

    A crawl that runs again (after a crash or a rate-limit wait) finds its posts
    already assigned and queues nothing twice; lost tasks are the business of
    ``resume_interrupted_runs``.
    """
    moved = Post.objects.filter(pk=post.pk).filter(~Q(run_id=run.pk) | Q(run__isnull=True)).update(
        run=run, status=Post.Status.PENDING, error="", enqueued_at=timezone.now()
    )
    if not moved:
        return
    run.add(posts_total=1)
    if enqueue_job:
        enqueue(INDEX_POST, post.pk)


@survives_db_outage
def resume_job(run_id: int, func: str, arg: int) -> None:
    """After a rate-limit wait, put the run back to work and re-run the job.

    ``func`` is the job's short name (``crawl_source`` or ``index_post``), as
    stored in the schedule's arguments.
    """
    run = IndexRun.objects.filter(pk=run_id).first()
    if run is None or not run.is_active:
        return
    IndexRun.objects.filter(pk=run_id, status=IndexRun.Status.WAITING).update(
        status=IndexRun.Status.INDEXING if run.crawled_at else IndexRun.Status.CRAWLING, resume_at=None
    )
    if func == "crawl_source":
        crawl_source(run_id)
    else:
        index_post(arg)


def notice_deleted_posts(source: Source, media_ids: set[str]) -> int:
    """Delete our copy of posts the user deleted on Instagram (photos and faces)."""
    if not media_ids or len(media_ids) >= INSTAGRAM_LISTING_LIMIT:
        return 0
    gone = source.posts.exclude(external_id__in=media_ids)
    count = gone.count()
    if count:
        delete_posts(source.owner, gone)
    return count


# --------------------------------------------------------------------------
# Instagram links


def link_instagram(account) -> Source:
    """The source of a linked Instagram account, crawled now when consent allows.

    Called on linking, on sign-up and on every login with Instagram: an active
    run is left alone, otherwise a crawl fetches what is new since the last one.
    """
    username = (account.extra_data or {}).get("username") or account.uid
    source, created = Source.objects.get_or_create(
        owner=account.user,
        kind=Source.Kind.INSTAGRAM,
        social_account=account,
        defaults={"name": f"@{username}"},
    )
    if not created:
        Source.objects.filter(pk=source.pk).update(active=True, needs_reconnect=False, name=f"@{username}")
        source.refresh_from_db()
    if has_face_consent(account.user) and active_run(source) is None:
        start_run(source)
    return source


def unlink_instagram(account) -> None:
    """Stop crawling an unlinked account; its photos stay until the user deletes them."""
    for source in Source.objects.filter(social_account=account):
        for run in source.runs.filter(status__in=IndexRun.ACTIVE):
            cancel_run(run)
    Source.objects.filter(social_account=account).update(active=False)


def start_uncrawled_sources(user) -> list[IndexRun]:
    """Start the first crawl of sources linked before the user consented."""
    return [
        start_run(source)
        for source in Source.objects.filter(owner=user, active=True, runs__isnull=True)
        if source.kind == Source.Kind.INSTAGRAM or source.posts.exists() or source.archive
    ]


def sync_instagram_sources() -> int:
    """The daily schedule: an incremental crawl of every linked, healthy account."""
    started = 0
    sources = Source.objects.filter(kind=Source.Kind.INSTAGRAM, active=True, needs_reconnect=False)
    if settings.FACES_RETENTION_DAYS > 0:
        # Retention deletes inactive accounts' face data: do not make new.
        sources = sources.exclude(owner__in=inactive_users(settings.FACES_RETENTION_DAYS))
    for source in sources.select_related("owner"):
        if active_run(source) is None and has_face_consent(source.owner):
            start_run(source)
            started += 1
    return started
