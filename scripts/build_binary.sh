#!/usr/bin/env bash
# Build the self-contained `ringside` executable (PyInstaller --onefile): dist/ringside.
#
# Usage: scripts/build_binary.sh
#
# By default the build runs in its own clean virtualenv (build/venv) holding only the
# runtime dependencies from pyproject.toml and PyInstaller, so nothing a developer has
# installed (test tools, SDKs, optional extras) ends up in the executable. Environment:
#   BASE_PYTHON  interpreter that creates build/venv (default: .venv/bin/python when there
#                is one, else python3; 3.11+ with a shared libpython, as distribution and
#                pyenv Pythons have)
#   PYTHON       use this interpreter as is instead of build/venv (PyInstaller is
#                installed into it when missing)
#   BUILD_DIR    work directory: venv, PyInstaller work files, the .spec (default: build)
#   DIST_DIR     where `ringside` is written (default: dist)
# Exit status 3: the dependencies or PyInstaller could not be installed (no package index).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=$(mkdir -p "${BUILD_DIR:-$ROOT/build}" && cd "${BUILD_DIR:-$ROOT/build}" && pwd)
DIST_DIR=$(mkdir -p "${DIST_DIR:-$ROOT/dist}" && cd "${DIST_DIR:-$ROOT/dist}" && pwd)
PYINSTALLER_REQ="pyinstaller>=6.10,<7"

if [[ -n "${PYTHON:-}" ]]; then
  PY=$PYTHON
  "$PY" -m PyInstaller --version >/dev/null 2>&1 || "$PY" -m pip install --quiet "$PYINSTALLER_REQ" ||
    { echo "build_binary: cannot install PyInstaller (offline?)" >&2; exit 3; }
else
  VENV=$BUILD_DIR/venv
  if [[ -z "${BASE_PYTHON:-}" ]]; then
    BASE_PYTHON=python3
    [[ -x $ROOT/.venv/bin/python ]] && BASE_PYTHON=$ROOT/.venv/bin/python
  fi
  [[ -x $VENV/bin/python ]] || "$BASE_PYTHON" -m venv "$VENV"
  PY=$VENV/bin/python
  # The project is installed for its dependencies, with the `otel` extra so that [tracing]
  # works in the executable; the analysis below reads gateway/ and ringside_tui/ from the
  # working tree (--paths), not from this copy.
  "$PY" -m pip install --quiet --disable-pip-version-check "$ROOT[otel]" "$PYINSTALLER_REQ" ||
    { echo "build_binary: cannot install the build dependencies (offline?)" >&2; exit 3; }
fi

# What is frozen, and why:
# - gateway.db.migrations is discovered with pkgutil.iter_modules at start-up, and the
#   dashboard's screens are imported lazily: collect both packages whole.
# - textual.widgets resolves its widgets lazily (module __getattr__); the dashboard's
#   stylesheet (app.tcss) is read from the package directory at run time.
# - genai_prices' price catalog is a module (genai_prices.data, found by the analysis),
#   but `import genai_prices` reads its own version from the package metadata: without
#   --copy-metadata it fails, and every model priced from the catalog is refused.
# - None of the server's libraries reads data files at run time (Litestar's HTML error
#   pages only in debug mode), so only Textual's are collected.
# - uvicorn picks uvloop / httptools by import string (the contrib hooks collect them);
#   OpenTelemetry finds its context and providers through entry points (its contrib hook
#   collects them with their metadata).
# Harmless warnings: psycopg_binary._uuid (named by an older contrib hook), ole32 and
# shell32 (Windows libraries that a ctypes lookup names).
# Excluded: what no code path of the gateway or the dashboard imports, but optional
# imports of the libraries would pull in (GUI toolkits, test runners, dev servers,
# websockets: Ringside serves none).
"$PY" -m PyInstaller --noconfirm --clean --onefile --name ringside \
  --log-level WARN \
  --strip \
  --distpath "$DIST_DIR" \
  --workpath "$BUILD_DIR/pyinstaller" \
  --specpath "$BUILD_DIR" \
  --paths "$ROOT" \
  --collect-submodules gateway \
  --collect-submodules ringside_tui \
  --collect-submodules textual.widgets \
  --collect-data textual \
  --add-data "$ROOT/ringside_tui/app.tcss:ringside_tui" \
  --copy-metadata genai_prices \
  --hidden-import uvicorn.loops.uvloop \
  --hidden-import uvicorn.protocols.http.httptools_impl \
  --hidden-import uvicorn.lifespan.on \
  --hidden-import psycopg_binary \
  --exclude-module tkinter \
  --exclude-module _tkinter \
  --exclude-module unittest \
  --exclude-module pytest \
  --exclude-module pydoc_data \
  --exclude-module lib2to3 \
  --exclude-module idlelib \
  --exclude-module ensurepip \
  --exclude-module watchfiles \
  --exclude-module websockets \
  --exclude-module wsproto \
  --exclude-module uvicorn.supervisors.watchfilesreload \
  --exclude-module polyfactory \
  --exclude-module faker \
  --exclude-module dotenv \
  "$ROOT/scripts/ringside_entry.py"

size=$(stat -c %s "$DIST_DIR/ringside" 2>/dev/null || stat -f %z "$DIST_DIR/ringside")
echo "built: $DIST_DIR/ringside ($(awk "BEGIN {printf \"%.1f\", $size / 1000000}") MB)"
