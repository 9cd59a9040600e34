#!/usr/bin/env bash
# Installs what the relay benchmark (scripts/bench-relay.sh) needs beyond scripts/install-deps.sh:
# rtpengine (Debian's rtpengine-daemon, 10.5 in bookworm), the peer it is compared with. Kept out
# of install-deps.sh so `make check` (CI) never needs it. Idempotent; runs apt-get only when the
# package is missing. Run as root (or with sudo available).
#
# The package's init script may start a system rtpengine where an init system runs services; the
# benchmark starts its own instance (private config, loopback, userspace only), so a packaged
# instance started by this install is stopped again, and only then.
set -euo pipefail

PKGS=(rtpengine-daemon iproute2 procps)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-bench-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

if printf '%s\n' "${missing[@]}" | grep -qx rtpengine-daemon; then
  if command -v service >/dev/null 2>&1; then $SUDO service rtpengine-daemon stop >/dev/null 2>&1 || true; fi
fi
