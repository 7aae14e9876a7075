"""Metric rollups (the min/max envelope per bucket of steps), a covering point index, the runs-list index.

On PostgreSQL the (run, key, step) unique index becomes ``INCLUDE (value)`` so raw reads are
index-only scans, statement triggers keep the rollups equal to the points (webapp.worker.ingest), and the
rollups of the points already stored are built once.
"""

import django.db.models.deletion
from django.db import migrations, models

COVERING = (
    "ALTER TABLE webapp_metricpoint DROP CONSTRAINT unique_metric_point, "
    "ADD CONSTRAINT unique_metric_point UNIQUE (run_id, key, step) INCLUDE (value)"
)
PLAIN = (
    "ALTER TABLE webapp_metricpoint DROP CONSTRAINT unique_metric_point, "
    "ADD CONSTRAINT unique_metric_point UNIQUE (run_id, key, step)"
)


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


def build_rollups(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from webapp.worker.ingest import rollups_rebuild, rollups_triggers_sql

    for sql in rollups_triggers_sql():
        schema_editor.execute(sql)
    rollups_rebuild(run_id=None, using=schema_editor.connection.alias)


def drop_rollups(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for event in ("insert", "delete", "update"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS metric_rollups_{event} ON webapp_metricpoint")
    for name in ("insert", "recompute"):
        schema_editor.execute(f"DROP FUNCTION IF EXISTS psl_metric_rollups_{name}()")


class Migration(migrations.Migration):
    dependencies = [
        ("webapp", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="metricpoint",
            name="run",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="metrics", to="webapp.run"
            ),
        ),
        migrations.RunPython(_on_postgresql(COVERING), _on_postgresql(PLAIN)),
        migrations.RemoveIndex(model_name="run", name="run_project_created"),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["project", "-created_at", "-id"], name="run_project_created"),
        ),
        migrations.CreateModel(
            name="MetricRollup",
            fields=[
                ("pk", models.CompositePrimaryKey("run", "key", "level", "bucket", blank=True, editable=False, primary_key=True, serialize=False)),
                ("key", models.CharField(max_length=80)),
                ("level", models.PositiveSmallIntegerField()),
                ("bucket", models.IntegerField()),
                ("n", models.BigIntegerField()),
                ("min_step", models.IntegerField()),
                ("max_step", models.IntegerField()),
                ("lo_value", models.FloatField()),
                ("lo_step", models.IntegerField()),
                ("hi_value", models.FloatField()),
                ("hi_step", models.IntegerField()),
                (
                    "run",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="webapp.run",
                    ),
                ),
            ],
        ),
        migrations.RunPython(build_rollups, drop_rollups),
    ]
