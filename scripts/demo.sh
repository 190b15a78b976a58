#!/usr/bin/env bash
# Set up .venv if needed, then run napari-gfn's main job on the built-in sample data.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAPARI_GFN_EXTRAS=testing source "$ROOT/scripts/setup-env.sh"
exec "$ROOT/.venv/bin/napari-gfn" demo "$@"
