"""The daily incremental sync of linked Instagram accounts."""

from django.db import migrations


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="Sync Instagram accounts",
        defaults={"func": "indexing.pipeline.sync_instagram_sources", "schedule_type": "D", "repeats": -1},
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func="indexing.pipeline.sync_instagram_sources").delete()


class Migration(migrations.Migration):
    dependencies = [("indexing", "0004_schedules")]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
