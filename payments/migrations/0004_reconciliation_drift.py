"""ReconciliationDrift (payments/services/reconcile.py), the "paid in Autotask" park reason,
and the support group's view permission on the new model (partners/0002_support_group)."""

import importlib

import django.db.models.deletion
from django.db import migrations, models


def grant_support_view(apps, schema_editor):
    support = importlib.import_module("partners.migrations.0002_support_group")
    support.create_support_group(apps, schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('invoices', '0001_initial'),
        ('partners', '0003_idempotencykey'),
        ('payments', '0003_idempotencykey_moved'),
    ]

    operations = [
        migrations.AlterField(
            model_name='webhookevent',
            name='reason',
            field=models.CharField(blank=True, choices=[('', '—'), ('malformed', 'Malformed JSON or fields'), ('unknown_type', 'Unknown event type'), ('unknown_invoice', 'Unknown invoice'), ('foreign_invoice', "Another partner's invoice"), ('ambiguous_invoice', 'Several invoices with that number'), ('archived_invoice', 'Archived invoice'), ('void_invoice', 'Voided invoice'), ('amount_exceeds_outstanding', 'Amount exceeds the outstanding balance'), ('currency_mismatch', 'Currency differs from the invoice'), ('paid_in_autotask', 'Invoice already paid in Autotask')], default='', max_length=40),
        ),
        migrations.CreateModel(
            name='ReconciliationDrift',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason', models.CharField(choices=[('paid_date_cleared_in_autotask', 'paidDate cleared in Autotask while payments here cover the invoice'), ('paid_date_changed_in_autotask', 'paidDate in Autotask differs from the one we wrote'), ('paid_date_not_cleared', 'paidDate we cleared is still (or again) set in Autotask')], max_length=40)),
                ('detail', models.CharField(blank=True, max_length=500)),
                ('autotask_value', models.CharField(blank=True, help_text='paidDate as Autotask showed it (empty: none).', max_length=40)),
                ('ledger_value', models.CharField(blank=True, help_text='paidDate our ledger says Autotask has (empty: none).', max_length=40)),
                ('run_id', models.BigIntegerField(blank=True, help_text='The sync run that read it.', null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('last_seen_at', models.DateTimeField()),
                ('resolved_at', models.DateTimeField(blank=True, null=True)),
                ('invoice', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='drifts', to='invoices.invoice')),
                ('partner', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='partners.partner')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['partner', 'resolved_at'], name='payments_re_partner_1c8455_idx')],
                'constraints': [models.UniqueConstraint(condition=models.Q(('resolved_at__isnull', True)), fields=('invoice', 'reason'), name='drift_one_open_per_invoice_reason')],
            },
        ),
        migrations.RunPython(grant_support_view, migrations.RunPython.noop),
    ]
