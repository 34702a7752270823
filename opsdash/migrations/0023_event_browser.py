"""The event browser and the story of an incident: the live log's sparse offset index, who sees
whole events (``view_payloads``) and who writes incident notes (``add_notes``): operators and
auditors; managers see the envelope and read the notes."""

import django.db.models.deletion
from django.db import migrations, models

PERMISSIONS = {
    "view_payloads": "Can see whole events, payloads included, and search them",
    "add_notes": "Can add notes to incidents",
}
GROUPS = ("operators", "auditors")


def grant(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    ct, _ = ContentType.objects.get_or_create(app_label="opsdash", model="modulestate")
    for codename, name in PERMISSIONS.items():
        perm, _ = Permission.objects.get_or_create(content_type=ct, codename=codename, defaults={"name": name})
        for group_name in GROUPS:
            group, _ = Group.objects.get_or_create(name=group_name)
            group.permissions.add(perm)


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(content_type__app_label="opsdash", codename__in=PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("opsdash", "0022_module_verified_at"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="modulestate",
            options={
                "ordering": ["branch", "module", "host"],
                "permissions": [
                    ("run_actions", "Can rebuild, verify, archive backups and clean temp files"),
                    ("download_backups", "Can download backups"),
                    ("view_audit", "Can see the audit trail and the full history, and export them"),
                    *PERMISSIONS.items(),
                ],
            },
        ),
        migrations.AddField(
            model_name="modulestate",
            name="event_index",
            field=models.JSONField(blank=True, editable=False, null=True),
        ),
        migrations.CreateModel(
            name="IncidentNote",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("author", models.CharField(max_length=150)),
                ("at", models.DateTimeField(auto_now_add=True)),
                ("text", models.TextField(max_length=5000)),
                (
                    "incident",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="notes", to="opsdash.incident"
                    ),
                ),
            ],
            options={"ordering": ["at", "id"]},
        ),
        migrations.RunPython(grant, revoke),
    ]
