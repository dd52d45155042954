"""The indexing pipeline: crawl a source, then index each post, on django-q2.

``queue`` puts jobs on the broker and names every task; ``runs`` keeps an
IndexRun's state; ``indexer`` indexes batches of posts (``fetch`` downloads their
photos, ``commit`` writes what they found); ``crawl`` enumerates a source and
starts and resumes runs. Queued tasks and Schedule rows store
``indexing.pipeline.<job>`` paths (``queue.TASKS``): the names below keep them,
and every caller, importable from the package itself.
"""

from .crawl import (
    crawl_source,
    link_instagram,
    notice_deleted_posts,
    resume_job,
    start_run,
    start_uncrawled_sources,
    sync_instagram_sources,
    unlink_instagram,
)
from .commit import commit_posts, face_rows
from .indexer import _index_photo, index_post, index_posts, reindex_photo
from .queue import broker_lost_its_queue, enqueue, enqueue_later, survives_db_outage
from .runs import (
    active_run,
    cancel_run,
    first_start_of_cluster,
    progress,
    queue_posts,
    resume_interrupted_runs,
    retry_failed,
)

__all__ = [
    "_index_photo",
    "active_run",
    "broker_lost_its_queue",
    "cancel_run",
    "commit_posts",
    "crawl_source",
    "enqueue",
    "enqueue_later",
    "face_rows",
    "first_start_of_cluster",
    "index_post",
    "index_posts",
    "link_instagram",
    "notice_deleted_posts",
    "progress",
    "queue_posts",
    "reindex_photo",
    "resume_interrupted_runs",
    "resume_job",
    "retry_failed",
    "start_run",
    "start_uncrawled_sources",
    "survives_db_outage",
    "sync_instagram_sources",
    "unlink_instagram",
]
