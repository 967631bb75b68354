# Shared by bin/run and bin/test: the virtualenv, installed from pyproject.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="${PAYSYNC_VENV:-$ROOT/.venv}"

ensure_venv() {
  local extras="$1"
  if ! command -v "$PY" >/dev/null 2>&1; then
    echo "Python 3.11+ is needed (looked for '$PY')." >&2; exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv in $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$extras"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing dependencies ($extras)"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
    if [ "$extras" = "base" ]; then
      "$VENV/bin/pip" install -q -e . 2>&1 | grep -v -E "^WARNING: Location|ignored: it is neither" || true
    else
      "$VENV/bin/pip" install -q -e ".[$extras]" 2>&1 | grep -v -E "^WARNING: Location|ignored: it is neither" || true
    fi
    "$VENV/bin/python" -c "import django, celery, rest_framework" || { echo "install failed" >&2; exit 1; }
    touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# --- system packages (bin/test and .ci/run) ---------------------------------------------------
# bin/test needs the PostgreSQL server binaries, redis-server and, for the browser tests,
# Chromium. Run as root on a machine with apt-get (a fresh Debian/Ubuntu, CI), it installs the
# missing ones itself; otherwise it prints the one command that does.
CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"  # the browser tests' default too

pg_bin_dir() {  # the newest PostgreSQL server binaries' directory, or nothing
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  if [ -z "$dir" ] && command -v pg_config >/dev/null 2>&1; then dir="$(pg_config --bindir)"; fi
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; fi
}

missing_system_packages() {  # missing_system_packages NAME...: the Debian packages not found
  local name
  for name in "$@"; do
    case "$name" in
      postgresql) [ -n "$(pg_bin_dir)" ] || echo postgresql ;;
      redis-server) command -v redis-server >/dev/null 2>&1 || echo redis-server ;;
      chromium) [ -x "$CHROMIUM_PATH" ] || echo chromium ;;
      *) echo "missing_system_packages: unknown package $name" >&2; return 2 ;;
    esac
  done
}

can_install_system_packages() {
  [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1
}

install_command() {  # the one command a person runs to install packages NAME...
  if command -v apt-get >/dev/null 2>&1; then
    echo "sudo sh -c 'apt-get update && apt-get install -y $*'"
  else
    echo "install $* with your system's package manager (Debian/Ubuntu: apt-get install -y $*)"
  fi
}

ensure_system_packages() {  # ensure_system_packages NAME...: install what is missing, or fail
  local need
  need="$(missing_system_packages "$@" | xargs)"
  [ -z "$need" ] && return 0
  if ! can_install_system_packages; then
    echo "Missing system packages: $need. Run:" >&2
    echo "  $(install_command $need)" >&2
    return 1
  fi
  echo "==> installing $need (apt-get update && apt-get install -y $need)"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086  # one word per package
  if ! { apt-get update -qq && apt-get install -y -qq $need >/dev/null; }; then
    echo "apt-get could not install $need" >&2
    return 1
  fi
  need="$(missing_system_packages "$@" | xargs)"
  if [ -n "$need" ]; then
    echo "Still missing after apt-get: $need" >&2
    return 1
  fi
}
