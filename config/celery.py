"""The Celery app. Configuration lives in Django settings under the CELERY_ namespace
(config/settings/base.py), following ../shared/RELIABILITY.md §2."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.development")

app = Celery("paysync")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _mirror_visibility_timeout(sender, **kwargs):
    # The visibility timeout must be set in the broker *and* result-backend transport options
    # (celery#7651); settings hold it once and we mirror it here.
    from django.conf import settings

    timeout = settings.CELERY_VISIBILITY_TIMEOUT
    opts = dict(sender.conf.broker_transport_options or {})
    if not str(sender.conf.broker_url or "").startswith("filesystem"):
        opts.setdefault("visibility_timeout", timeout)
        sender.conf.broker_transport_options = opts
        sender.conf.result_backend_transport_options = {"visibility_timeout": timeout}


@task_prerun.connect
def _task_request_id(task_id=None, **kwargs):
    # Log lines written inside a task carry the task id where a request would carry its id.
    from config.logging import request_id_var

    request_id_var.set(f"task-{task_id}")


@task_prerun.connect
@task_postrun.connect
def _database_connections(task=None, **kwargs):
    """Tasks treat database connections as requests do: `close_old_connections()` before and
    after each task, so CONN_MAX_AGE and the health check apply. Celery's Django fixup would
    otherwise close (and the next task reopen, a new PostgreSQL backend each time) every
    connection around every task: ~10 % of a payments worker's time went to connecting.
    CELERY_DB_REUSE_MAX (settings) keeps the fixup from doing so. Eager tasks run inside the
    caller's transaction and are left alone, as the fixup does. On the sync queue's threads
    pool (issue 19) these signals run on the task's own thread and Django's connections are
    per thread, so each thread checks and keeps only its own connection."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
