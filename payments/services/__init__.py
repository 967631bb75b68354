"""Writes of the payments app, one module per sub-domain (import from the module that owns the
name; nothing is re-exported here):

- `payment_settings`: a partner's payment settings, webhook secrets and their rotation, the keys
  a delivery is verified with.
- `webhook_events`: webhook receipt (verify, store raw, deduplicate, enqueue) and processing
  (apply an event to its payment and invoice), re-match of parked events, requeue of lost ones.
- `ledger`: payments recorded and deleted by hand, and the invoice recompute every change to an
  invoice's payments ends in (the locking order is in its docstring).
- `writeback`: the paidDate write-back to Autotask: outbox, relay, ops retry/cancel, sweep.

The Celery tasks over these services are in payments/tasks.py.
"""
