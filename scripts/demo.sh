#!/usr/bin/env bash
# Set up .venv if needed, then run napari-gfn's main job on the built-in sample data.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAPARI_GFN_EXTRAS=testing source "$ROOT/scripts/setup-env.sh"
# With a display the demo opens napari's window, which needs the X/Qt libraries a desktop may lack.
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [[ " $* " != *" --headless "* ]]; then
  source "$ROOT/scripts/system-packages.sh"
  install_missing "${QT_PACKAGES[@]}"
fi
exec "$ROOT/.venv/bin/napari-gfn" demo "$@"
