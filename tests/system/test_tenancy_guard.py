"""A cheap tenancy guard: services, selectors and views query partner-owned models only with a
partner scope.

Every partner-owned model has `objects.for_partner(partner)`. This test reads the source of the
modules where requests and tasks reach the database on a partner's behalf and fails on
`<PartnerOwnedModel>.objects.<method>(…)` unless the chain starts with `for_partner(…)` or its
first call names the partner (`partner=` / `partner_id=`). The few places that work across
partners on purpose (the reaper, sweeps, the webhook endpoint lookup, metrics, ops) are listed
below with the reason; a new one has to be added here, in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.apps import apps

ROOT = Path(__file__).resolve().parents[2]
# ops/ is left out on purpose: the ops console (staff only) works across partners.
APPS = ("partners", "integrations", "customers", "invoices", "sync", "payments", "notifications")
SCANNED = {
    "services",
    "selectors",
    "views",
    "api",
    "connect",
    "tasks",
    "engine",
    "dispatch",
    "timeline",
}
SCOPING_KWARGS = {"partner", "partner_id"}
# A row reached through the fencing token of a claim its owner took under a partner scope (a
# run's owner, the partner lease, an outbox claim) belongs to that owner alone.
FENCING_KWARGS = {"owner", "lease_owner", "claim_token"}

# (file, function, model): why this query is not scoped to one partner.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("sync/dispatch.py", "dispatch_due_runs", "AutotaskConnection"): (
        "the dispatcher walks every connected partner once a minute"
    ),
    ("sync/services/reaper.py", "reap_stuck_runs", "SyncRun"): (
        "the reaper finds the stuck runs of every partner"
    ),
    ("payments/services/webhook_events.py", "webhook_event_receive", "PaymentSettings"): (
        "the endpoint id in the URL is what names the partner of a delivery"
    ),
    ("payments/services/webhook_events.py", "_resolve_invoice", "Invoice"): (
        "existence only, to label a parked event 'foreign' rather than 'unknown' for ops"
    ),
    ("payments/services/webhook_events.py", "webhook_events_requeue_stale", "WebhookEvent"): (
        "the sweep re-enqueues events of every partner whose task the broker lost"
    ),
    ("payments/services/writeback.py", "writeback_sweep", "WritebackOutbox"): (
        "the sweep enqueues due write-backs of every partner"
    ),
    # The notification check reads the fleet in a few set-based queries (one per kind, then
    # the digests, owners and opt-outs of the partners it found), never a query per partner.
    ("notifications/services.py", "connection_rows", "AutotaskConnection"): (
        "the check finds every partner whose connection needs attention"
    ),
    ("notifications/services.py", "writeback_rows", "WritebackOutbox"): (
        "the check finds the parked or failed write-backs of every partner"
    ),
    ("notifications/services.py", "stale_sync_rows", "AutotaskConnection"): (
        "the check finds every connected partner without a recent successful sync"
    ),
    ("notifications/services.py", "notifications_send_due", "NotificationDigest"): (
        "the last digests of the partners the check found"
    ),
    ("notifications/services.py", "notifications_send_due", "User"): (
        "the owners of the partners the check found (each email goes to one partner's owners)"
    ),
    ("notifications/services.py", "notifications_send_due", "NotificationOptOut"): (
        "the opt-outs of the partners the check found"
    ),
}


def partner_owned_models() -> set[str]:
    names = set()
    for model in apps.get_models():
        if model._meta.app_label not in APPS:
            continue
        field = next((f for f in model._meta.concrete_fields if f.name == "partner"), None)
        if field is not None and field.related_model is not None:
            names.add(model.__name__)
    return names


def scanned_files():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            stem = path.stem
            parent = path.parent.name
            if stem in SCANNED or parent in SCANNED:
                yield path


def chain_keywords(call: ast.Call, parents: dict) -> list[ast.keyword]:
    """The keyword arguments of every call in `Model.objects.a(…).b(…).c(…)`, from `a` on."""
    keywords = list(call.keywords) if call.func.attr != "update" else []
    node = call
    while True:
        attribute = parents.get(node)
        if not (isinstance(attribute, ast.Attribute) and attribute.value is node):
            return keywords
        outer = parents.get(attribute)
        if not (isinstance(outer, ast.Call) and outer.func is attribute):
            return keywords
        if attribute.attr != "update":  # what an UPDATE sets does not scope what it matches
            keywords += outer.keywords
        node = outer


def unscoped_queries(path: Path, models: set[str]):
    tree = ast.parse(path.read_text())
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def function_of(node):
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node.name
        return "<module>"

    for node in ast.walk(tree):
        # Model.objects.<method>(...)
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "objects"
            and isinstance(node.func.value.value, ast.Name)
            and node.func.value.value.id in models
        ):
            continue
        method = node.func.attr
        if method in ("for_partner", "none"):
            continue
        if any(k.arg in SCOPING_KWARGS | FENCING_KWARGS for k in chain_keywords(node, parents)):
            continue
        yield (
            str(path.relative_to(ROOT)),
            function_of(node),
            node.func.value.value.id,
            f"{node.func.value.value.id}.objects.{method}(…) at line {node.lineno}",
        )


def test_partner_owned_models_have_for_partner():
    for model in apps.get_models():
        if model.__name__ in partner_owned_models():
            assert hasattr(model.objects, "for_partner"), model


def test_services_selectors_and_views_scope_every_query_to_a_partner():
    models = partner_owned_models()
    assert {"Invoice", "Payment", "SyncRun", "AutotaskConnection", "SyncState"} <= models
    found = []
    seen_allowed = set()
    for path in scanned_files():
        for file, function, model, where in unscoped_queries(path, models):
            if (file, function, model) in ALLOWED:
                seen_allowed.add((file, function, model))
                continue
            found.append(f"{file} {function}: {where}")
    assert found == []
    assert seen_allowed == set(ALLOWED), "allow-list entries that match nothing any more"


def test_the_guard_sees_an_unscoped_query(tmp_path):
    """The guard is not vacuous: an unscoped query in a services module is reported."""
    bad = tmp_path / "services.py"
    bad.write_text(
        "def invoice_total(invoice_id):\n"
        "    return Invoice.objects.filter(pk=invoice_id).first()\n"
        "def scoped(partner, invoice_id):\n"
        "    return Invoice.objects.for_partner(partner).filter(pk=invoice_id).first()\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = list(unscoped_queries(bad, {"Invoice"}))
    finally:
        ROOT = saved
    assert [(f, m) for _, f, m, _ in found] == [("invoice_total", "Invoice")]
