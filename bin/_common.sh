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
