"""`bin/test` on a bare machine (issue 17 item 11): it installs the system packages it lacks
with apt-get when run as root (as .ci/run does; both use bin/_common.sh), else it prints the
one command to run. Checked with `bin/test --check-system` on a PATH without redis-server, a
fake `apt-get` that records its arguments (nothing is really installed) and a fake `id`."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HIDDEN = {"redis-server", "apt-get", "id"}


def _script(path: Path, text: str) -> None:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def bare(tmp_path):
    """A PATH with every system command but redis-server, apt-get and id; a missing Chromium."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name not in HIDDEN and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(os.path.join(folder, name))
    chromium = tmp_path / "chromium"
    log = tmp_path / "apt-get.log"
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "CHROMIUM_PATH": str(chromium),
        "PAYSYNC_VENV": str(ROOT / ".venv"),
        "FAKE_UID": "0",
        # PostgreSQL is left out (a server URL replaces the throwaway one), so the outcome does
        # not depend on whether this machine has its binaries.
        "DATABASE_URL": "postgres://unused@127.0.0.1:1/unused",
    }
    _script(bin_dir / "id", 'if [ "$1" = "-u" ]; then echo "$FAKE_UID"; else echo fake; fi\n')

    def with_apt_get(installs=True):
        # Records its arguments; "install" makes the packages appear, as apt-get would.
        made = {"redis-server": bin_dir / "redis-server", "chromium": chromium}
        body = f'echo "$*" >> {log}\n[ "$1" = install ] || exit 0\nfor p in "$@"; do case $p in\n'
        if installs:
            for package, path in made.items():
                body += f'  {package}) echo "#!/bin/sh" > {path}; chmod +x {path} ;;\n'
        body += "esac; done\n"
        _script(bin_dir / "apt-get", body)

    def run(*args, **extra_env):
        return subprocess.run(
            [str(ROOT / "bin" / "test"), "--check-system", *args],
            env={**env, **extra_env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def calls():
        return log.read_text().splitlines() if log.exists() else []

    return run, with_apt_get, calls, chromium


def test_root_with_apt_get_installs_what_is_missing(bare):
    run, with_apt_get, calls, chromium = bare
    with_apt_get()
    result = run()
    assert result.returncode == 0, result.stderr
    assert calls() == ["update -qq", "install -y -qq redis-server chromium"]
    assert "==> installing redis-server chromium" in result.stdout
    assert chromium.exists()
    # A second run finds everything: apt-get is not called again.
    assert run().returncode == 0
    assert len(calls()) == 2


def test_fast_lane_does_not_install_chromium(bare):
    run, with_apt_get, calls, chromium = bare
    with_apt_get()
    assert run("--fast").returncode == 0
    assert calls() == ["update -qq", "install -y -qq redis-server"]
    assert not chromium.exists()


def test_nothing_is_installed_for_what_an_url_replaces(bare):
    run, with_apt_get, calls, _ = bare
    with_apt_get()
    result = run("--fast", REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 0, result.stderr
    assert calls() == []


def test_not_root_prints_the_one_command_and_installs_nothing(bare):
    run, with_apt_get, calls, _ = bare
    with_apt_get()
    result = run(FAKE_UID="1000")
    assert result.returncode == 1
    assert calls() == []
    assert "sudo sh -c 'apt-get update && apt-get install -y redis-server'" in result.stderr
    # Chromium is only needed by the browser tests: named, not fatal on its own.
    assert "chromium not found" in result.stderr


def test_root_without_apt_get_says_what_to_install(bare):
    run, _, calls, _ = bare
    result = run("--fast")
    assert result.returncode == 1
    assert "Missing system packages: redis-server" in result.stderr
    assert "apt-get install -y redis-server" in result.stderr
    assert calls() == []


def test_an_apt_get_that_installs_nothing_fails_loudly(bare):
    run, with_apt_get, calls, _ = bare
    with_apt_get(installs=False)
    result = run("--fast")
    assert result.returncode == 1
    assert calls() == ["update -qq", "install -y -qq redis-server"]
    assert "Still missing after apt-get: redis-server" in result.stderr


def test_ci_uses_the_same_install_step():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "source bin/_common.sh" in ci
    assert "ensure_system_packages postgresql redis-server chromium" in ci
    assert "apt-get" not in ci.replace("# ", "")  # no second copy of the install commands


def test_bin_run_keeps_the_sandbox_state_and_resets_it_on_request():
    run = (ROOT / "bin" / "run").read_text()
    assert "--state var/sandbox/state.json" in run  # sandbox/persist.py, tests/sandbox
    assert "--reset-sandbox) SANDBOX_RESET=(--reset)" in run
    refused = subprocess.run(
        [str(ROOT / "bin" / "run"), "--no-such-flag"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2 and "usage: bin/run [--reset-sandbox]" in refused.stderr
