"""Putting pipeline jobs on django-q2, and riding out database and broker outages.

``TASKS`` names every dotted path the product queues or schedules. Queued tasks
and Schedule rows store these strings, so they are the stable, public names:
``indexing.pipeline.*`` stays importable through the package's re-exports
whichever module of the package defines the function.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Schedule
from django_q.tasks import async_task
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..tasks import (  # noqa: F401 - the pipeline's callers import them from here
    CRAWL_SOURCE,
    DELETE_INACTIVE_FACE_DATA,
    GROUP_NEW_FACES,
    INDEX_POST,
    INDEX_POSTS,
    REFRESH_INSTAGRAM_TOKENS,
    RESUME_INTERRUPTED_RUNS,
    RESUME_JOB,
    SYNC_INSTAGRAM_SOURCES,
    TASKS,
)

logger = logging.getLogger(__name__)

# -- outages ---------------------------------------------------------------------
# A database restart or fail-over takes seconds: a job that meets one waits and
# runs again from the start (jobs are idempotent) instead of failing its post.
DB_OUTAGE_DELAYS = (0.5, 1, 2, 4, 8, 15)
# The same for the Redis broker while a job enqueues.
BROKER_OUTAGE_DELAYS = (0.5, 1, 2, 4, 8)
# Set in the Redis broker; gone after Redis restarted without its data.
BROKER_EPOCH_KEY = "faces:broker-epoch"
DB_OUTAGE_ERRORS = (OperationalError, InterfaceError)
BROKER_ERRORS = (RedisConnectionError, RedisTimeoutError)


def survives_db_outage(job: Callable) -> Callable:
    """Re-run ``job`` when the database goes away under it (restart, fail-over).

    Without this a job that meets a restart fails: django-q2 acknowledges the
    failure, the post stays pending and only the periodic resume, minutes
    later, would pick it up. Inside a transaction the caller owns the retry.
    """

    @wraps(job)
    def wrapper(*args, **kwargs):
        for delay in (*DB_OUTAGE_DELAYS, None):
            try:
                return job(*args, **kwargs)
            except DB_OUTAGE_ERRORS as exc:
                if delay is None or connections["default"].in_atomic_block:
                    raise
                logger.warning(
                    "%s%s met a database outage (%s); again in %ss", job.__name__, list(args), exc, delay
                )
                _drop_connections()
                time.sleep(delay)

    return wrapper


def _drop_connections() -> None:
    """Close broken connections so the next query connects afresh."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except DatabaseError:
            pass


def short_name(task: str) -> str:
    """``indexing.pipeline.index_post`` -> ``index_post`` (task and schedule labels)."""
    return task.rpartition(".")[2]


def enqueue(task: str, *args, **kwargs) -> None:
    """Enqueue ``task`` (one of ``TASKS``) on django-q2; wait out a short Redis restart."""
    # Results are not kept: the pipeline records its outcome in its own rows, and
    # thousands of Success rows per import would only slow the ORM broker down.
    # Failures are still saved for the admin.
    label = f"{short_name(task)}{list(args)}"
    options = {"task_name": label[:100], "save": False}
    for delay in (*BROKER_OUTAGE_DELAYS, None):
        try:
            async_task(task, *args, q_options=options, **kwargs)
            return
        except BROKER_ERRORS as exc:
            if delay is None:
                raise
            logger.warning("Could not enqueue %s (%s); again in %ss", label, exc, delay)
            time.sleep(delay)


def enqueue_later(task: str, at: dt.datetime, *args) -> None:
    """Run ``task`` once at ``at`` (rate-limit back-off) through a django-q2 schedule."""
    Schedule.objects.create(
        func=task,
        args=",".join(repr(a) for a in args),
        schedule_type=Schedule.ONCE,
        next_run=at,
        name=f"{short_name(task)}{list(args)} at {at:%H:%M:%S}"[:100],
        repeats=-1,
    )


def broker_lost_its_queue() -> bool:
    """True (once) when the Redis broker restarted empty, losing the queued tasks.

    A marker key lives in the broker's Redis; when it is missing, Redis lost
    its data since the last check and every pending job must be enqueued again.
    """
    if not settings.Q_CLUSTER.get("redis"):
        return False
    try:
        lost = get_broker().connection.set(BROKER_EPOCH_KEY, timezone.now().isoformat(), nx=True)
    except BROKER_ERRORS as exc:
        logger.warning("Could not check the broker for a restart: %s", exc)
        return False
    if lost:
        logger.warning("The Redis broker lost its queue (restart without persistence?): resuming all jobs")
    return bool(lost)
