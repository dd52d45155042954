"""The periodic jobs, all defined here and made sure of at every cluster start.

Migrations create them once; a worker start puts back any that were deleted
(by hand, or by a test database flush) and brings changed intervals up to date,
so recovery never depends on rows nobody looks at.
"""

from __future__ import annotations

from django_q.models import Schedule

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
    # Created by accounts/migrations/0002 first, at 04:00 UTC; accounts does not import indexing.
    "Refresh Instagram tokens": {
        "func": "indexing.instagram.tokens.refresh_expiring_tokens",
        "schedule_type": "D",
    },
}


def ensure_schedules() -> None:
    """Create missing schedules and correct drifted ones; next runs are left alone."""
    for name, fields in SCHEDULES.items():
        schedule, created = Schedule.objects.get_or_create(name=name, defaults={**fields, "repeats": -1})
        if not created and any(getattr(schedule, key) != value for key, value in fields.items()):
            Schedule.objects.filter(pk=schedule.pk).update(**fields, repeats=-1)
