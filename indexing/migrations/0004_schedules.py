"""Periodic jobs: resume work lost with a killed worker."""

from django.db import migrations


def create_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="Resume interrupted indexing runs",
        defaults={
            "func": "indexing.pipeline.resume_interrupted_runs",
            "schedule_type": "I",
            "minutes": 5,
            "repeats": -1,
        },
    )


def remove_schedules(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(
        func="indexing.pipeline.resume_interrupted_runs"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("indexing", "0003_run_crawled_at_source_archive"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedules, remove_schedules)]
