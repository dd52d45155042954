"""Resume interrupted runs every minute (was five).

A Redis broker that restarts empty loses the queue; the resume job is what
puts that work back, so a shorter interval bounds how long a run stalls. The
job is one indexed query when nothing is interrupted.
"""

from django.db import migrations


def every_minute(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(
        func="indexing.pipeline.resume_interrupted_runs"
    ).update(minutes=1)


def every_five_minutes(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(
        func="indexing.pipeline.resume_interrupted_runs"
    ).update(minutes=5)


class Migration(migrations.Migration):
    dependencies = [("indexing", "0007_retention_schedule")]

    operations = [migrations.RunPython(every_minute, every_five_minutes)]
