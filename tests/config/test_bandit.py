"""TL-1: bandit over our code (tests and benchmarks excluded): no Medium or High findings.
Low findings (e.g. `random` for retry jitter, not for secrets) are accepted; a Medium or High
one must be fixed or explained in place with `# nosec Bxxx: reason`."""

import json
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
# Our own apps, as installed (not the third-party ones).
APPS = [app for app in settings.INSTALLED_APPS if (ROOT / app).is_dir()]


def test_bandit_has_no_medium_or_high_findings():
    apps = [*APPS, "config"]
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-r", *apps, "-f", "json", "-ll"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    findings = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_severity']}: "
        f"{r['issue_text']}"
        for r in report["results"]
    ]
    assert findings == []
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really scanned our code
