"""An IndexRun's state: progress, cancel, retry, finish, fail, wait, resume.

Crawl and indexer move a run through these states; nothing here runs a crawl
or an index job itself (``crawl.py`` starts and resumes them), so both can
import this module and the imports stay one-way.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Iterator

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..models import IndexRun, Photo, Post, Source
from ..sources import RateLimited
from .queue import (
    CRAWL_SOURCE,
    INDEX_POSTS,
    RESUME_JOB,
    broker_lost_its_queue,
    enqueue,
    enqueue_later,
    short_name,
)

logger = logging.getLogger(__name__)

# A pending post enqueued longer ago than this is assumed lost (e.g. its worker
# was killed while the Redis broker held the task) and is enqueued again.
STALE_AFTER = dt.timedelta(minutes=10)


def active_run(source: Source) -> IndexRun | None:
    return source.runs.filter(status__in=IndexRun.ACTIVE).first()


def _maybe_finish(run_id: int) -> bool:
    """Mark the run done once crawling is over and every post is indexed or failed."""
    return bool(
        IndexRun.objects.filter(
            pk=run_id,
            status=IndexRun.Status.INDEXING,
            crawled_at__isnull=False,
            posts_total__lte=F("posts_done") + F("posts_failed"),
        ).update(status=IndexRun.Status.DONE, finished_at=timezone.now())
    )


def _cancelled(run_id: int) -> bool:
    return IndexRun.objects.filter(pk=run_id, status=IndexRun.Status.CANCELLED).exists()


def _fail_run(run: IndexRun, message: str) -> None:
    IndexRun.objects.filter(pk=run.pk, status__in=IndexRun.ACTIVE).update(
        status=IndexRun.Status.FAILED, last_error=message, finished_at=timezone.now()
    )


def queue_posts(post_ids: list[int]) -> int:
    """Enqueue index jobs of ``FACES_INDEX_BATCH`` posts each; returns how many jobs.

    ``enqueued_at`` is set once a job is on the broker, so a crawl or resume
    that finds pending posts without it knows they still need queueing.
    """
    jobs = 0
    for batch in post_batches(post_ids):
        enqueue(INDEX_POSTS, batch)
        Post.objects.filter(pk__in=batch).update(enqueued_at=timezone.now())
        jobs += 1
    return jobs


def post_batches(post_ids: list[int]) -> Iterator[list[int]]:
    """``post_ids`` in index jobs' batches of ``FACES_INDEX_BATCH``, in order."""
    size = max(1, settings.FACES_INDEX_BATCH)
    for start in range(0, len(post_ids), size):
        yield list(post_ids[start:start + size])


def _wait(run: IndexRun, exc: RateLimited, task: str, arg: int | list[int]) -> None:
    """Back off: say so on the run and schedule the job (``task``) again."""
    resume_at = timezone.now() + dt.timedelta(seconds=max(1.0, exc.retry_after))
    IndexRun.objects.filter(pk=run.pk, status__in=IndexRun.ACTIVE).update(
        status=IndexRun.Status.WAITING, resume_at=resume_at, last_error=str(exc)
    )
    # The schedule stores the job's short name, as ``resume_job`` has always read it.
    enqueue_later(RESUME_JOB, resume_at, run.pk, short_name(task), arg)
    logger.info("Run %s waits until %s: %s", run.pk, resume_at, exc)


def progress(run: IndexRun) -> dict:
    """The numbers the progress page shows, computed from the run's counters."""
    end = run.finished_at or timezone.now()
    elapsed = (end - run.started_at).total_seconds() if run.started_at else 0.0
    finished = run.posts_finished
    remaining = max(0, run.posts_total - finished)
    rate = finished / elapsed if elapsed > 0 else 0.0
    failed = Post.objects.filter(run=run, status=Post.Status.FAILED).order_by("pk")[:50]
    skipped = Post.objects.filter(run=run, status=Post.Status.SKIPPED).order_by("pk")[:50]

    def per_second(count: int) -> float:
        return round(count / elapsed, 2) if elapsed > 0 else 0.0

    return {
        "id": run.pk,
        "status": run.status,
        "status_display": run.get_status_display(),
        "active": run.is_active,
        "posts_total": run.posts_total,
        "posts_done": run.posts_done,
        "posts_failed": run.posts_failed,
        "posts_skipped": run.posts_skipped,
        "photos_fetched": run.photos_fetched,
        "photos_done": run.photos_done,
        "faces_found": run.faces_found,
        "percent": run.percent,
        "photos_fetched_per_second": per_second(run.photos_fetched),
        "photos_per_second": per_second(run.photos_done),
        "faces_per_second": per_second(run.faces_found),
        "eta_seconds": round(remaining / rate) if rate > 0 and run.is_active and run.crawled_at else None,
        "resume_at": run.resume_at.isoformat() if run.resume_at else None,
        "last_error": run.last_error if run.status in (IndexRun.Status.FAILED, IndexRun.Status.WAITING) else "",
        "failed_posts": [{"id": p.pk, "external_id": p.external_id, "error": p.error} for p in failed],
        "skipped_posts": [{"external_id": p.external_id, "error": p.error} for p in skipped],
    }


def cancel_run(run: IndexRun) -> bool:
    return bool(
        IndexRun.objects.filter(pk=run.pk, status__in=IndexRun.ACTIVE).update(
            status=IndexRun.Status.CANCELLED, finished_at=timezone.now()
        )
    )


def retry_failed(run: IndexRun, post_ids: list[int] | None = None) -> int:
    """Queue the run's failed posts again; counters move back by the same amount."""
    posts = run.posts.filter(status=Post.Status.FAILED)
    if post_ids is not None:
        posts = posts.filter(pk__in=post_ids)
    retried: list[int] = []
    for post in posts:
        with transaction.atomic():
            if not Post.objects.filter(pk=post.pk, status=Post.Status.FAILED).update(status=Post.Status.PENDING, error=""):
                continue
            Photo.objects.filter(post=post, status=Photo.Status.FAILED).update(status=Photo.Status.PENDING, error="")
            IndexRun.objects.filter(pk=run.pk).update(
                posts_failed=F("posts_failed") - 1,
                status=IndexRun.Status.INDEXING,
                finished_at=None,
            )
        retried.append(post.pk)
    queue_posts(retried)
    return len(retried)


def resume_interrupted_runs(stale_after: dt.timedelta | None = None) -> int:
    """Re-enqueue work lost with a killed worker. Safe to run at any time.

    The ORM broker redelivers unacknowledged tasks by itself; the Redis broker
    does not, so each worker start and a periodic schedule call this.
    """
    stale_after = STALE_AFTER if stale_after is None else stale_after
    if broker_lost_its_queue():
        stale_after = dt.timedelta(0)  # every queued task is gone: resume everything now
    cutoff = timezone.now() - stale_after
    resumed = 0
    for run in IndexRun.objects.filter(status__in=[IndexRun.Status.QUEUED, IndexRun.Status.CRAWLING]):
        if run.created_at <= cutoff or stale_after.total_seconds() == 0:
            enqueue(CRAWL_SOURCE, run.pk)
            resumed += 1
    # Runs still listing count too: their first pages' jobs run while later pages are listed.
    stale = Post.objects.filter(
        status=Post.Status.PENDING, run__status__in=[IndexRun.Status.INDEXING, IndexRun.Status.CRAWLING]
    ).filter(Q(enqueued_at__lte=cutoff) | Q(enqueued_at__isnull=True))
    by_run: dict[int, list[int]] = {}
    for post_id, run_id in stale.order_by("pk").values_list("pk", "run_id"):
        by_run.setdefault(run_id, []).append(post_id)
    for post_ids in by_run.values():
        resumed += queue_posts(post_ids)
    for run_id in IndexRun.objects.filter(status=IndexRun.Status.INDEXING).values_list("pk", flat=True):
        _maybe_finish(run_id)
    if resumed:
        logger.info("Resumed %s interrupted jobs", resumed)
    return resumed


def first_start_of_cluster() -> bool:
    """True for the first worker process of this cluster to ask (same host and sentinel).

    Every worker process of a cluster gets django-q's ``post_spawn``; start-up
    work should run once per cluster.
    """
    key = f"faces:cluster-start:{socket.gethostname()}:{os.getppid()}"
    return bool(cache.add(key, uuid.uuid4().hex, timeout=300))
