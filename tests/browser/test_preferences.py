"""Preferences → Fetch New Data in a real browser (R10): the click starts a run that really runs
(the Celery task, eagerly, against the sandbox), the page shows its progress and result without
reloading, and the button stays disabled with the time it becomes available."""

import threading
import zoneinfo
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from playwright.sync_api import expect

import sync.tasks
from invoices.models import Invoice
from sync.models import SyncRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class GatedWorker:
    """Replaces `run_sync.delay`. Manual runs are executed by the real task through Celery's
    eager path (`task.apply`) in a thread of their own, once the test opens the gate, so the
    page can first be seen showing the queued run. Eager mode inside the request would finish
    the run before the click's response, leaving no progress to see. Other runs (the connect's
    first run, PDF prefetches) are not this test's business and are not run."""

    def __init__(self, task):
        self.task = task
        self.gate = threading.Event()
        self.threads: list[threading.Thread] = []
        self.outcomes: list[str] = []

    def delay(self, partner_id, run_id):
        if SyncRun.objects.filter(pk=run_id, trigger=SyncRun.Trigger.MANUAL).exists():
            thread = threading.Thread(target=self._work, args=(partner_id, run_id))
            thread.start()
            self.threads.append(thread)

    def _work(self, partner_id, run_id):
        try:
            if self.gate.wait(timeout=60):
                result = self.task.apply(args=(partner_id, run_id))
                self.outcomes.append(result.get(propagate=False) if result.successful() else "")
        finally:
            db_connection.close()

    def join(self):
        self.gate.set()
        for thread in self.threads:
            thread.join(timeout=60)


@pytest.fixture
def worker(monkeypatch):
    gated = GatedWorker(sync.tasks.run_sync)
    monkeypatch.setattr("sync.tasks.run_sync", gated)
    yield gated
    gated.join()


def test_fetch_new_data_shows_progress_result_and_disabled_button(
    page, login, partner_a, user_a, connect, run_now, autotask_sandbox, worker
):
    partner_a.time_zone = "Europe/Berlin"
    partner_a.save()
    conn = connect(partner_a)
    assert run_now(conn.first_run).status == SyncRun.Status.SUCCEEDED
    db = autotask_sandbox.db
    company = db.create_company(companyName="Brand New Co")
    created_at = (timezone.now() - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    invoice = db.create_invoice(company["id"], create_date_time=created_at)
    db.set_switches(latency_ms=800)  # a run of several seconds: long enough to be seen running

    login(user_a.username)
    page.goto("/preferences/")
    assert "within the last hour" in page.inner_text("#action-new_data")
    assert "the last 30 days" in page.inner_text("#action-new_data")
    assert "due date, status" in page.inner_text("#action-unpaid")
    assert page.is_enabled("#fetch-new_data")
    page.evaluate(
        """() => {
        window.__noReload = true;
        window.__seen = [];
        const el = document.querySelector('#run-new_data .run-status');
        new MutationObserver(() => window.__seen.push(el.textContent))
          .observe(el, {childList: true, characterData: true, subtree: true});
    }"""
    )

    page.click("#fetch-new_data")
    # expect(), not wait_for_function("…"): the CSP refuses string evaluation in the page.
    expect(page.locator("#run-new_data .run-status")).to_have_text("Queued")
    assert "waiting for a worker" in page.inner_text("#run-new_data .run-phase")
    run = SyncRun.objects.get(partner=partner_a, trigger=SyncRun.Trigger.MANUAL)
    local = (run.created_at + timedelta(hours=1)).astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert page.is_disabled("#fetch-new_data")
    note = page.inner_text("#note-new_data")
    assert note.startswith("available ") and note.endswith(
        f" at {local:%H:%M} {local.tzname()} (in 60 min)"
    )

    worker.gate.set()
    expect(page.locator("#run-new_data .run-status")).to_have_text("Succeeded", timeout=45_000)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.created == 2  # the new invoice and its new customer
    seen = page.evaluate("window.__seen")
    assert "Running" in seen and seen.index("Running") < seen.index("Succeeded")
    assert page.evaluate("window.__noReload") is True  # progress came without a page reload

    counts = page.inner_text("#run-new_data .run-counts")
    assert "New 2" in counts and f"Fetched {run.fetched}" in counts
    link = page.locator("#run-new_data a.run-link")
    assert link.get_attribute("href") == f"/sync-history/{run.pk}/"
    assert f"run #{run.pk}: 2 new" in link.inner_text()
    assert page.is_hidden("#run-new_data .run-error")
    assert page.is_disabled("#fetch-new_data")
    note = page.inner_text("#note-new_data")
    assert note.startswith("available ") and note.endswith(
        f" at {local:%H:%M} {local.tzname()} (in 60 min)"
    )
    assert page.is_enabled("#fetch-unpaid")
    # The recent-runs table was refreshed in place and lists the run, finished.
    row = f"#recent-runs tr:has(a[href='/sync-history/{run.pk}/'])"
    expect(page.locator(row)).to_contain_text("Succeeded")
    assert "Manual" in page.inner_text(row)
    assert page.evaluate("window.__noReload") is True

    link.click()
    page.wait_for_selector("#run")
    assert f"#{run.pk}" in page.inner_text("h1")
    worker.join()
    assert worker.outcomes == [SyncRun.Status.SUCCEEDED]
    assert Invoice.objects.filter(partner=partner_a, autotask_id=invoice["id"]).exists()
