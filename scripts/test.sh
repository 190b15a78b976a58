#!/usr/bin/env bash
# Set up .venv and the system packages for headless GUI tests, then run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Xvfb, Mesa and the X/Qt libraries napari's real viewer needs on a machine without a screen.
SYSTEM_PACKAGES=(xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglib2.0-0 libfontconfig1 libdbus-1-3
  libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
  libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0)
missing=()
for package in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "Installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# crf: the CAM seed's dense CRF (pydensecrf2 compiles with gcc), so its code path is tested too.
NAPARI_GFN_EXTRAS=testing,crf source "$ROOT/scripts/setup-env.sh"
cd "$ROOT"
exec xvfb-run --auto-servernum --server-args="-screen 0 1600x1200x24" \
  "$ROOT/.venv/bin/python" -m pytest "$@"
