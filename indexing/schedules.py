"""The periodic jobs, all defined here and made sure of at every cluster start.

Migrations create them once; a worker start puts back any that were deleted
(by hand, or by a test database flush) and brings changed intervals up to date,
so recovery never depends on rows nobody looks at.
"""

from __future__ import annotations

from django_q.models import Schedule

from .tasks import (
    DELETE_INACTIVE_FACE_DATA,
    REFRESH_INSTAGRAM_TOKENS,
    RESUME_INTERRUPTED_RUNS,
    SYNC_INSTAGRAM_SOURCES,
)

SCHEDULES = {
    "Resume interrupted indexing runs": {
        "func": RESUME_INTERRUPTED_RUNS,
        "schedule_type": "I",
        "minutes": 1,
    },
    "Sync Instagram accounts": {"func": SYNC_INSTAGRAM_SOURCES, "schedule_type": "D"},
    "Delete face data of inactive accounts": {
        "func": DELETE_INACTIVE_FACE_DATA,
        "schedule_type": "D",
    },
    # Created by accounts/migrations/0002 first, at 04:00 UTC; accounts does not import indexing.
    "Refresh Instagram tokens": {
        "func": REFRESH_INSTAGRAM_TOKENS,
        "schedule_type": "D",
    },
}


def ensure_schedules() -> None:
    """Create missing schedules and correct drifted ones; next runs are left alone."""
    for name, fields in SCHEDULES.items():
        schedule, created = Schedule.objects.get_or_create(name=name, defaults={**fields, "repeats": -1})
        if not created and any(getattr(schedule, key) != value for key, value in fields.items()):
            Schedule.objects.filter(pk=schedule.pk).update(**fields, repeats=-1)
