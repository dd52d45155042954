"""Schedule the daily refresh of Instagram long-lived tokens (django-q2).

The task lives in ``indexing.instagram.tokens`` (it flags indexing sources);
this migration only stores its dotted path, so accounts still imports nothing
from indexing. ``indexing.schedules.ensure_schedules()`` does the same at
run time.
"""

import datetime as dt

from django.db import migrations
from django.utils import timezone

NAME = "Refresh Instagram tokens"
FUNC = "indexing.instagram.tokens.refresh_expiring_tokens"


def first_run() -> dt.datetime:
    """04:00 UTC next: a quiet hour, and never in the middle of a test run's setup."""
    now = timezone.now()
    run = now.replace(hour=4, minute=0, second=0, microsecond=0)
    return run if run > now else run + dt.timedelta(days=1)


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    if not Schedule.objects.filter(name=NAME).exists():
        Schedule.objects.create(name=NAME, func=FUNC, schedule_type="D", repeats=-1, next_run=first_run())


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
