"""The daily retention job: face data of accounts inactive for FACES_RETENTION_DAYS."""

from django.db import migrations

FUNC = "indexing.deletion.delete_inactive_face_data"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="Delete face data of inactive accounts",
        defaults={"func": FUNC, "schedule_type": "D", "repeats": -1},
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=FUNC).delete()


class Migration(migrations.Migration):
    dependencies = [("indexing", "0006_people_grouped_at")]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
