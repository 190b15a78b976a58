#!/usr/bin/env bash
# Set up .venv and the system packages for headless GUI tests, then run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Xvfb, and the X/Qt libraries napari's real viewer needs on a machine without a screen.
source "$ROOT/scripts/system-packages.sh"
install_missing xvfb xauth "${QT_PACKAGES[@]}"

# crf: the CAM seed's dense CRF (pydensecrf2 compiles with gcc), so its code path is tested too.
NAPARI_GFN_EXTRAS=testing,crf source "$ROOT/scripts/setup-env.sh"
cd "$ROOT"
exec xvfb-run --auto-servernum --server-args="-screen 0 1600x1200x24" \
  "$ROOT/.venv/bin/python" -m pytest "$@"
