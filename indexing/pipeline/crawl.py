"""Crawling a source: enumerate its items page by page, upsert them, queue their indexing.

``crawl_source(run_id)`` lists a source's posts (Instagram Graph API pages,
export ZIP or uploaded photos), upserts Post and Photo rows through
``imports.upsert_posts`` and enqueues ``index_posts`` batches as each page is
committed, so indexing starts before the listing ends. An Instagram page, its
posts and the run's cursor commit together: a crawl that runs again (after a
rate-limit wait, a killed worker or a restart) resumes after the last page it
committed and never lists a page twice. Starting, resuming and the Instagram
link life cycle live here too: they run crawls, and this module sits above
``indexer`` and ``runs``.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import has_face_consent

from .. import people
from ..crawlers import instagram_media_ids, iter_source_pages
from ..deletion import delete_posts, inactive_users
from ..engines import get_engine
from ..imports import upsert_posts
from ..models import IndexRun, Photo, Post, Source
from ..sources import RateLimited, SourceError, TokenExpired
from .indexer import index_post, index_posts
from .queue import CRAWL_SOURCE, DB_OUTAGE_ERRORS, RESUME_JOB, enqueue, enqueue_later, survives_db_outage
from .runs import _cancelled, _fail_run, _maybe_finish, _wait, active_run, cancel_run, post_batches, queue_posts

logger = logging.getLogger(__name__)

# How long a crawl may take to fetch and commit one page before another may take over.
LISTING_LEASE = dt.timedelta(seconds=60)
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
    """List the run's source from where it stopped, upsert posts and photos, enqueue their indexing."""
    run = IndexRun.objects.select_related("source", "owner").filter(pk=run_id).first()
    if run is None or run.status in (IndexRun.Status.DONE, IndexRun.Status.CANCELLED, IndexRun.Status.FAILED):
        return
    if run.crawled_at is not None:
        # A second delivery after the crawl ended: only index jobs are left, and closing the run.
        IndexRun.objects.filter(pk=run.pk, status=IndexRun.Status.CRAWLING).update(status=IndexRun.Status.INDEXING)
        _maybe_finish(run.pk)
        return
    source = run.source
    if not has_face_consent(run.owner):
        _fail_run(run, "Face-processing consent was withdrawn.")
        return
    IndexRun.objects.filter(pk=run.pk).update(
        status=IndexRun.Status.CRAWLING, started_at=run.started_at or timezone.now(), resume_at=None
    )
    first_crawl = source.newest_post_at is None
    try:
        if run.listed_at is None and not _list(run, sync):
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

    # Posts committed by an earlier try whose jobs never reached the broker (not
    # before the listing ends: a page's own crawl queues its jobs after the next page's listing).
    unqueued = run.posts.filter(status=Post.Status.PENDING, enqueued_at__isnull=True).order_by("pk")
    _queue(run, list(unqueued.values_list("pk", flat=True)), sync)
    # Uploaded photos are posts already, and earlier failures get another try:
    # take every unfinished post of the source that is not in this run yet.
    unfinished = source.posts.filter(status__in=[Post.Status.PENDING, Post.Status.FAILED]).exclude(run=run)
    _queue(run, _assign(run, list(unfinished.order_by("pk").values_list("pk", flat=True))), sync)
    if source.kind == Source.Kind.INSTAGRAM and not first_crawl:
        # A first crawl has nothing to compare with; later ones notice deletions.
        try:
            notice_deleted_posts(source, instagram_media_ids(source))
        except SourceError as exc:  # not worth failing a finished crawl for
            logger.info("Could not check run %s for deleted posts: %s", run.pk, exc)
    newest = run.posts.exclude(timestamp=None).order_by("-timestamp").values_list("timestamp", flat=True).first()
    if newest is not None and (source.newest_post_at is None or newest > source.newest_post_at):
        Source.objects.filter(pk=source.pk).update(newest_post_at=newest)
    Source.objects.filter(pk=source.pk).update(needs_reconnect=False)
    IndexRun.objects.filter(pk=run.pk).update(crawled_at=timezone.now())
    IndexRun.objects.filter(pk=run.pk, status=IndexRun.Status.CRAWLING).update(status=IndexRun.Status.INDEXING)
    if sync:
        pending = list(run.posts.filter(status=Post.Status.PENDING).order_by("pk").values_list("pk", flat=True))
        for batch in post_batches(pending):
            index_posts(batch, sync=True)
    finished = _maybe_finish(run.pk)
    if get_engine().groups_faces:
        if sync:
            try:
                people.group_new_faces(run.owner_id)
            except Exception:  # the import itself succeeded; the next grouping catches up
                logger.exception("Grouping the faces of run %s failed", run.pk)
        elif finished:
            people.run_finished(run.owner_id)


def _list(run: IndexRun, sync: bool) -> bool:
    """List the source's pages from the run's cursor; False when this task should stop here.

    Queued, a task lists one page, queues the next page's listing, then that
    page's index jobs: a single worker indexes the first photos before the
    whole account is listed, and the next page is listed while they run.
    """
    try:
        return _list_pages(run, sync)
    except BaseException:
        # Not killed, so the next try (after a wait, a redelivery) may fetch the page at once.
        IndexRun.objects.filter(pk=run.pk, cursor=run.cursor).update(listing_until=None)
        raise


def _list_pages(run: IndexRun, sync: bool) -> bool:
    source = run.source
    if source.kind == Source.Kind.INSTAGRAM and not _lease(run):
        return False
    for remotes, cursor in iter_source_pages(source, after=run.cursor, since=source.newest_post_at):
        with transaction.atomic():
            if cursor is not None:
                # Claim the page: a second delivery of this crawl that got here first wins.
                claimed = IndexRun.objects.filter(
                    pk=run.pk, cursor=run.cursor, pages_listed=run.pages_listed
                ).update(
                    cursor=cursor, pages_listed=F("pages_listed") + 1, listing_until=None,
                    listed_at=None if cursor else timezone.now(),
                )
                if not claimed:
                    logger.info("Run %s: page after %r was listed by another crawl", run.pk, run.cursor)
                    return False
                run.cursor, run.pages_listed = cursor, run.pages_listed + 1
            post_ids, skipped = [], 0
            for upserted in upsert_posts(source, remotes):
                skipped += upserted.skipped
                if upserted.skipped_post is not None:  # listed on the run with its reason
                    Post.objects.filter(pk=upserted.skipped_post.pk).update(run=run)
                if upserted.post is not None:
                    post_ids.append(upserted.post.pk)
            run.add(posts_skipped=skipped)
            assigned = _assign(run, post_ids)
        if cursor and not sync and not _cancelled(run.pk):
            # The next page's listing goes on the queue ahead of this page's index
            # jobs: the listing stays a page ahead and the workers never run dry.
            enqueue(CRAWL_SOURCE, run.pk)
            _queue(run, assigned, sync)
            return False
        _queue(run, assigned, sync)
        if _cancelled(run.pk):
            return False
        if cursor and not _lease(run):
            return False
    IndexRun.objects.filter(pk=run.pk, listed_at=None).update(listed_at=timezone.now())
    return True


def _lease(run: IndexRun) -> bool:
    """Take the right to fetch the page at the run's cursor, or leave it to the crawl that has it.

    Two deliveries of a crawl (a resume after a restart, a redelivered task)
    would otherwise both fetch the same page. A crawl that finds the lease
    taken runs again when it ends, in case its holder was killed.
    """
    now = timezone.now()
    until = now + LISTING_LEASE
    taken = IndexRun.objects.filter(pk=run.pk, cursor=run.cursor, pages_listed=run.pages_listed).filter(
        Q(listing_until__isnull=True) | Q(listing_until__lt=now)
    ).update(listing_until=until)
    if not taken:
        held = IndexRun.objects.filter(pk=run.pk).values_list("listing_until", flat=True).first()
        if held is not None and held > now:
            enqueue_later(RESUME_JOB, held + dt.timedelta(seconds=1), run.pk, "crawl_source", run.pk)
        logger.info("Run %s: another crawl is listing the page after %r", run.pk, run.cursor)
    return bool(taken)


def _assign(run: IndexRun, post_ids: list[int]) -> list[int]:
    """Count these posts into the run, exactly once; returns those that were not in it yet.

    Photos already stored (uploads, ZIPs, earlier runs) count as downloaded now.
    """
    with transaction.atomic():
        # Lock the run row first: two crawls of one run count each post once.
        IndexRun.objects.select_for_update().filter(pk=run.pk).first()
        outside = Post.objects.filter(pk__in=post_ids).filter(~Q(run_id=run.pk) | Q(run__isnull=True))
        moving = list(outside.values_list("pk", flat=True))
        if not moving:
            return []
        Post.objects.filter(pk__in=moving).update(run=run, status=Post.Status.PENDING, error="", enqueued_at=None)
        stored = Photo.objects.filter(post_id__in=moving).exclude(original="").count()
        run.add(posts_total=len(moving), photos_fetched=stored)
    return moving


def _queue(run: IndexRun, post_ids: list[int], sync: bool) -> None:
    if post_ids and not sync:
        queue_posts(post_ids)


@survives_db_outage
def resume_job(run_id: int, func: str, arg: int | list[int]) -> None:
    """After a rate-limit wait, put the run back to work and re-run the job.

    ``func`` is the job's short name (``crawl_source``, ``index_posts`` or,
    for schedules made before batches, ``index_post``), as stored in the
    schedule's arguments.
    """
    run = IndexRun.objects.filter(pk=run_id).first()
    if run is None or not run.is_active:
        return
    IndexRun.objects.filter(pk=run_id, status=IndexRun.Status.WAITING).update(
        status=IndexRun.Status.INDEXING if run.crawled_at else IndexRun.Status.CRAWLING, resume_at=None
    )
    if func == "crawl_source":
        crawl_source(run_id)
    elif func == "index_posts":
        index_posts(arg)
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
