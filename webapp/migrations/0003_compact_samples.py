"""Samples keep their heatmap data packed (token text + lengths, float32 surprisal) instead of two JSON arrays."""

from django.db import migrations, models


def pack_existing(apps, schema_editor):
    from webapp.models import pack_floats, pack_pieces

    Sample = apps.get_model("webapp", "Sample")
    batch = []
    for sample in Sample.objects.only("id", "response", "tokens", "surprisal").iterator(chunk_size=1000):
        pieces = [str(t) for t in sample.tokens or []]
        sample.token_text, sample.token_lengths = pack_pieces(pieces, sample.response)
        sample.surprisal_f32 = pack_floats([float(x) for x in sample.surprisal or []])
        batch.append(sample)
        if len(batch) >= 1000:
            Sample.objects.bulk_update(batch, ["token_text", "token_lengths", "surprisal_f32"])
            batch = []
    if batch:
        Sample.objects.bulk_update(batch, ["token_text", "token_lengths", "surprisal_f32"])


class Migration(migrations.Migration):
    dependencies = [
        ("webapp", "0002_metric_rollups"),
    ]

    operations = [
        migrations.AddField(
            model_name="sample", name="token_text", field=models.TextField(blank=True, default="")
        ),
        migrations.AddField(
            model_name="sample", name="token_lengths", field=models.BinaryField(blank=True, default=b"")
        ),
        migrations.AddField(
            model_name="sample", name="surprisal_f32", field=models.BinaryField(blank=True, default=b"")
        ),
        migrations.RunPython(pack_existing, migrations.RunPython.noop),
        migrations.RemoveField(model_name="sample", name="surprisal"),
        migrations.RemoveField(model_name="sample", name="tokens"),
    ]
