#!/usr/bin/env bash
# Create .venv at the repository root when missing and install napari-gfn into it.
# Sourced by demo.sh and test.sh; safe to run again (it skips work already done).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
EXTRAS="${NAPARI_GFN_EXTRAS:-testing}"

if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip
fi

# torch first, pinned to the releases on this machine's disk: a looser request
# makes pip download a multi-gigabyte build.
if ! "$PY" -c 'import torch, torchvision, sys; sys.exit(torch.__version__.split("+")[0] != "2.14.1" or torchvision.__version__.split("+")[0] != "0.29.1")' 2>/dev/null; then
  "$PY" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
fi

stamp="$VENV/.napari-gfn-installed"
wanted="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup-env.sh" | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  "$PY" -m pip install --quiet -e "$ROOT[$EXTRAS]"
  echo "$wanted" > "$stamp"
fi
