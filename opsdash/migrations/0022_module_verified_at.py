"""The scrub: when each module's log was last read in full, when it became overdue, the
scanner's byte credit for reads in full, and the verify_overdue alert."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("opsdash", "0021_cache_table"),
    ]

    operations = [
        migrations.AddField(
            model_name="scanhost",
            name="scrub_credit",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="modulestate",
            name="overdue_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="modulestate",
            name="verified_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="alert",
            name="event",
            field=models.CharField(
                choices=[
                    ("problem", "turned warning or critical"),
                    ("recovered", "recovered"),
                    ("gone", "disappeared"),
                    ("host_stale", "host stopped reporting"),
                    ("host_back", "host reports again"),
                    ("verify_overdue", "not read in full in time"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddIndex(
            model_name="modulestate",
            index=models.Index(fields=["host", "verified_at"], name="module_verified"),
        ),
    ]
