"""Create the "Support" staff group with view-only permissions.

Support can look at users, sources, runs, posts, photos, face metadata and
failed jobs. It cannot change them, and it never gets permissions on OAuth
tokens (their admin is unregistered too).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWABLE = [
    ("auth", "user"),
    ("accounts", "faceconsent"),
    ("accounts", "staffaccesslog"),
    ("indexing", "source"),
    ("indexing", "indexrun"),
    ("indexing", "post"),
    ("indexing", "photo"),
    ("indexing", "face"),
    ("indexing", "person"),
    ("indexing", "facecollection"),
    ("django_q", "failure"),
    ("django_q", "success"),
    ("django_q", "schedule"),
    ("django_q", "ormq"),
    ("socialaccount", "socialaccount"),
]


def create_support_group(apps, schema_editor):
    # Permissions are normally created after migrate; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Support")
    codenames = [f"view_{model}" for _, model in VIEWABLE]
    permissions = Permission.objects.filter(
        content_type__app_label__in={app for app, _ in VIEWABLE}, codename__in=codenames
    )
    wanted = {(app, f"view_{model}") for app, model in VIEWABLE}
    group.permissions.set(
        [p for p in permissions.select_related("content_type") if (p.content_type.app_label, p.codename) in wanted]
    )


def remove_support_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Support").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("indexing", "0001_initial"),
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
        ("socialaccount", "0006_alter_socialaccount_extra_data"),
    ]

    operations = [migrations.RunPython(create_support_group, remove_support_group)]
