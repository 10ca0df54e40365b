#!/usr/bin/env bash
# Debian/Ubuntu packages the GUI tests need: a virtual X server with Mesa OpenGL
# and the xcb libraries Qt 6 loads. Installs only what is missing (needs root or sudo).
set -euo pipefail
packages=(
    xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libfontconfig1 libdbus-1-3
    libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0
    libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0
    libxcb-xkb1 libxcb-xfixes0 libxcb-sync1 libxcb-shm0
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "missing system packages for the GUI tests: ${missing[*]} (install them with your package manager)" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
