"""The permissions of the roles in DESIGN.md, granted to the role groups.

managers see everything current; operators may also run actions and download backups;
auditors may also see the audit trail and full history, export it, and download backups.
"""

from django.db import migrations

PERMISSIONS = {
    "run_actions": "Can rebuild, verify, archive backups and clean temp files",
    "download_backups": "Can download backups",
    "view_audit": "Can see the audit trail and the full history, and export them",
}
ROLE_PERMISSIONS = {
    "managers": [],
    "operators": ["run_actions", "download_backups"],
    "auditors": ["view_audit", "download_backups"],
}


def grant(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    ct, _ = ContentType.objects.get_or_create(app_label="opsdash", model="modulestate")
    for group_name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for codename in codenames:
            perm, _ = Permission.objects.get_or_create(
                content_type=ct, codename=codename, defaults={"name": PERMISSIONS[codename]}
            )
            group.permissions.add(perm)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(content_type__app_label="opsdash", codename__in=PERMISSIONS)
    for group in Group.objects.filter(name__in=ROLE_PERMISSIONS):
        group.permissions.remove(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("opsdash", "0002_groups"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="modulestate",
            options={
                "ordering": ["branch", "module", "host"],
                "permissions": list(PERMISSIONS.items()),
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
