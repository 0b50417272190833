#!/usr/bin/env bash
# Build the self-contained `ringside` executable (PyInstaller --onefile) into dist/ringside.
# Usage: scripts/build_binary.sh   (uses ./.venv; installs pyinstaller into it if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m pip install --quiet "pyinstaller>=6.5"
"$PY" -m PyInstaller --noconfirm --clean --onefile --name ringside \
  --collect-submodules textual.widgets \
  --collect-submodules uvicorn \
  --collect-submodules litestar \
  --collect-submodules gateway \
  --collect-submodules ringside_tui \
  --collect-data genai_prices \
  --collect-data textual \
  --collect-data litestar \
  --add-data "ringside_tui/app.tcss:ringside_tui" \
  --hidden-import psycopg_binary \
  --collect-all psycopg_binary \
  scripts/ringside_entry.py
echo "built: dist/ringside ($(du -h dist/ringside | cut -f1))"
