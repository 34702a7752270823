"""Incident.ended_how holds slugs only: two values used to be sentences."""

from django.db import migrations

RENAMED = {"recovered by the store server": "store_server", "module disappeared": "gone"}


def to_slugs(apps, schema_editor):
    Incident = apps.get_model("opsdash", "Incident")
    for sentence, slug in RENAMED.items():
        Incident.objects.filter(ended_how=sentence).update(ended_how=slug)


def to_sentences(apps, schema_editor):
    Incident = apps.get_model("opsdash", "Incident")
    for sentence, slug in RENAMED.items():
        Incident.objects.filter(ended_how=slug).update(ended_how=sentence)


class Migration(migrations.Migration):
    dependencies = [("opsdash", "0017_job_kind_from_the_registry")]

    operations = [migrations.RunPython(to_slugs, to_sentences)]
