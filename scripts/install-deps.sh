#!/usr/bin/env bash
# Installs every Debian 12 package voxd needs to build, run, test and benchmark.
# Idempotent: packages already present are skipped; apt-get update runs only when something
# is missing. Run as root (or with sudo available).
set -euo pipefail

PKGS=(
  build-essential pkg-config clang clang-format
  libuv1-dev libwebsockets-dev libwebsockets-evlib-uv libjansson-dev libssl-dev libpq-dev
  libsrtp2-dev libopus-dev
  postgresql-15 postgresql-client-15
  prometheus
  python3 python3-websocket
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0  # test_gst_srtp.py: GStreamer peer
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  curl ca-certificates procps iproute2
  chromium
)
# Node.js (browser tests): the machine's own (v20) when present, else Debian's
command -v node >/dev/null 2>&1 || PKGS+=(nodejs npm)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# The browser tests' npm packages (playwright-core, pinned by tests/browser/package-lock.json) into
# tests/browser/node_modules: `npm ci` when they are missing or the lock file changed since.
npm_deps() {
  local dir
  dir="$(dirname "$0")/../tests/browser"
  if [ ! -d "$dir/node_modules/playwright-core" ] ||
     [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "install-deps: npm ci in tests/browser" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  npm_deps
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The prometheus package starts a daemon on :9090 where an init system runs it; we only need
# promtool. Stop a packaged instance we did not start only if it was started by this install.
if printf '%s\n' "${missing[@]}" | grep -qx prometheus; then
  if command -v service >/dev/null 2>&1; then $SUDO service prometheus stop >/dev/null 2>&1 || true; fi
fi

npm_deps
