"""Every queued task's dotted path, in one registry.

Queued django-q tasks and Schedule rows store these strings, so they never
change once released: ``indexing.pipeline`` re-exports the jobs that moved into
its submodules. This module imports nothing, so any module (people grouping,
token refresh, schedules) can name a task without importing the pipeline.
"""

CRAWL_SOURCE = "indexing.pipeline.crawl_source"
INDEX_POST = "indexing.pipeline.index_post"  # one post: tasks queued before batches existed
INDEX_POSTS = "indexing.pipeline.index_posts"
RESUME_JOB = "indexing.pipeline.resume_job"
RESUME_INTERRUPTED_RUNS = "indexing.pipeline.resume_interrupted_runs"
SYNC_INSTAGRAM_SOURCES = "indexing.pipeline.sync_instagram_sources"
GROUP_NEW_FACES = "indexing.people.group_new_faces"
REFRESH_INSTAGRAM_TOKENS = "indexing.instagram.tokens.refresh_expiring_tokens"
DELETE_INACTIVE_FACE_DATA = "indexing.deletion.delete_inactive_face_data"
TASKS = frozenset(
    {
        CRAWL_SOURCE,
        INDEX_POST,
        INDEX_POSTS,
        RESUME_JOB,
        RESUME_INTERRUPTED_RUNS,
        SYNC_INSTAGRAM_SOURCES,
        GROUP_NEW_FACES,
        REFRESH_INSTAGRAM_TOKENS,
        DELETE_INACTIVE_FACE_DATA,
    }
)
