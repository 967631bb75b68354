"""The Celery configuration of ../shared/RELIABILITY.md §2 (CQ-1, the configuration half)."""

import pytest

from config.celery import app


def test_reliability_settings():
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.enable_utc is True and conf.timezone == "UTC"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 300
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_always_eager is False


def test_visibility_timeout_in_broker_and_result_backend_options():
    app.finalize()
    conf = app.conf
    assert conf.broker_transport_options["visibility_timeout"] == 20  # test profile
    assert conf.result_backend_transport_options["visibility_timeout"] == 20


def test_workers_poll_redis_every_tenth_of_a_second_not_every_second():
    # kombu's BRPOP timeout: at its 1 s default a worker with a full prefetch took its next
    # webhook task ~1 s late (bench/webhook_latency.py).
    app.finalize()
    with app.connection_for_read() as conn:
        assert conn.transport_options["polling_interval"] == 0.1
        assert conn.transport.brpop_timeout == 0.1


def test_separate_queues_for_sync_writeback_webhooks():
    names = {q.name for q in app.conf.task_queues}
    assert {"sync", "writeback", "webhooks", "default"} <= names
    routes = app.conf.task_routes
    assert routes["sync.*"]["queue"] == "sync"
    assert routes["payments.writeback.*"]["queue"] == "writeback"
    assert routes["payments.webhooks.*"]["queue"] == "webhooks"


def test_beat_uses_the_database_scheduler():
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"


@pytest.mark.django_db(transaction=True)
def test_tasks_keep_their_database_connection_like_requests_do():
    """Celery's Django fixup would close every connection around every task (a new PostgreSQL
    backend per task); we keep it while CONN_MAX_AGE allows, and close an obsolete one."""
    import time
    from types import SimpleNamespace

    from celery.signals import task_postrun, task_prerun
    from django.db import connection

    assert app.conf.get("CELERY_DB_REUSE_MAX") >= 1_000  # the fixup leaves connections alone

    class Task:  # what the signals pass: a task whose request is not eager
        request = SimpleNamespace(is_eager=False)

    task = Task()
    # A connection of its own, fresh: one left by an earlier test may be past CONN_MAX_AGE or
    # marked as errored, and the first signal would rightly close it.
    connection.close()
    connection.ensure_connection()
    raw = connection.connection
    for signal in (task_prerun, task_postrun, task_prerun):
        signal.send(sender=task, task_id="t", task=task)
    assert connection.connection is raw
    connection.close_at = time.monotonic() - 1  # past CONN_MAX_AGE
    task_postrun.send(sender=task, task_id="t", task=task)
    assert connection.connection is None  # closed; the next query opens a fresh one
