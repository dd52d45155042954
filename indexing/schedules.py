"""The periodic jobs, made sure of at every cluster start.

Migrations create them once; a worker start puts back any that were deleted
(by hand, or by a test database flush) and brings changed intervals up to date,
so recovery never depends on rows nobody looks at.
"""

from __future__ import annotations

from .instagram.tokens import ensure_schedules as ensure_token_schedule

SCHEDULES = {
    "Resume interrupted indexing runs": {
        "func": "indexing.pipeline.resume_interrupted_runs",
        "schedule_type": "I",
        "minutes": 1,
    },
    "Sync Instagram accounts": {"func": "indexing.pipeline.sync_instagram_sources", "schedule_type": "D"},
    "Delete face data of inactive accounts": {
        "func": "indexing.deletion.delete_inactive_face_data",
        "schedule_type": "D",
    },
}


def ensure_schedules() -> None:
    """Create missing schedules and correct drifted ones; next runs are left alone."""
    from django_q.models import Schedule

    for name, fields in SCHEDULES.items():
        schedule, created = Schedule.objects.get_or_create(name=name, defaults={**fields, "repeats": -1})
        if not created and any(getattr(schedule, key) != value for key, value in fields.items()):
            Schedule.objects.filter(pk=schedule.pk).update(**fields, repeats=-1)
    ensure_token_schedule()
