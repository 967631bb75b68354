"""The layers of README "Architecture", proved on the code itself.

bin/lint runs import-linter with the contracts in pyproject.toml; these tests add what its
contracts do not say: the contracts really catch an import against the rule (a mutant copy of
the tree), no import cycle spans two apps (imports inside functions included), no app imports
another inside a function, and the Autotask client stays free of the ORM.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = (
    "config",
    "partners",
    "integrations",
    "customers",
    "invoices",
    "sync",
    "payments",
    "notifications",
    "ops",
)
PACKAGES = (*APPS, "sandbox")


def production_files(*packages: str):
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield package, path


def _imported_module(node: ast.Import | ast.ImportFrom, package: str) -> str:
    if isinstance(node, ast.ImportFrom):
        return package if node.level else (node.module or "")
    return node.names[0].name


def test_no_app_imports_another_inside_a_function():
    found = []
    for package, path in production_files(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    top = _imported_module(inner, package).split(".")[0]
                    if top in PACKAGES and top != package:
                        found.append(f"{path.relative_to(ROOT)}:{inner.lineno} imports {top}")
    assert found == []


def test_no_import_cycle_spans_two_apps():
    """Strongly connected groups of modules (grimp's graph counts imports inside functions)
    must each lie inside one app."""
    graph = grimp.build_graph(*PACKAGES)
    modules = sorted(graph.modules)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    counter = [0]

    def visit(root: str) -> None:  # Tarjan, iterative (the graph is a few hundred modules)
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)

    for module in modules:
        if module not in index:
            visit(module)
    spanning = [sorted(g) for g in groups if len({m.split(".")[0] for m in g}) > 1]
    assert spanning == []


def test_autotask_client_uses_no_orm_and_no_app():
    found = []
    for package, path in production_files("integrations"):
        if "autotask" not in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                name = _imported_module(node, package)
                if isinstance(node, ast.ImportFrom) and node.level:
                    continue  # its own modules
                if name.startswith("django.db") or name.split(".")[0] in PACKAGES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert found == []


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # sync never imports payments (payments registers its after-sync hook instead)
        ("sync/engine.py", "from payments.models import Payment", "Layers"),
        # a lower layer reaching up: the tenant importing a record app
        ("partners/models.py", "from invoices.models import Invoice", "Layers"),
        # a domain module importing an interface
        ("invoices/services.py", "from customers import views", "Interfaces"),
        # the vendor client importing the connection layer
        ("integrations/autotask/query.py", "from integrations import models", "Autotask client"),
        # an app importing the sandbox
        ("config/env.py", "import sandbox.state", "No app imports the sandbox"),
    ],
)
def test_an_import_against_the_rule_fails_lint(tmp_path, module, line, contract):
    """The contracts in pyproject.toml pass on the tree and break on a copy of it with one
    import against the rule, inside a function, where only a full graph sees it."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    lint = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]

    clean = subprocess.run(lint, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stdout[-2000:]

    target = tmp_path / module
    target.write_text(target.read_text() + f"\n\ndef _mutant():\n    {line}  # noqa\n")
    broken = subprocess.run(lint, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert broken.returncode == 1
    report = broken.stdout.split("Broken contracts", 1)[1]
    assert contract in report, broken.stdout[-3000:]
    assert "Contracts: 4 kept, 1 broken." in broken.stdout
