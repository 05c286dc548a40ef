#!/usr/bin/env bash
# Usage: ensure-debian-packages.sh COMMAND WHAT PACKAGE [PACKAGE...]
# Installs Debian's PACKAGEs when COMMAND (a name on PATH or an absolute path) is
# missing, for WHAT (shown in the messages): with apt-get as root (CI runs
# `make test` as root on a fresh Debian 12 machine), with `sudo -n` otherwise, and
# fails with one line saying what to install when neither can. Silent when COMMAND
# is there. The browser tests (chromium) and the alert-rule tests (promtool) use it.
set -euo pipefail

COMMAND=$1 WHAT=$2
shift 2
PACKAGES=("$@")
NAME=$(basename "$COMMAND")

present() { command -v "$COMMAND" >/dev/null 2>&1; }
present && exit 0

fail() {
    echo "ensure: $NAME is missing ($WHAT): install Debian's ${PACKAGES[*]}" \
         "(as root: apt-get install -y --no-install-recommends ${PACKAGES[*]})${1:+; $1}" >&2
    exit 1
}

command -v apt-get >/dev/null || fail "apt-get not found (not a Debian-like system)"

if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    fail "not root, and no password-less sudo (sudo -n)"
fi

apt() { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

echo "ensure: installing Debian's ${PACKAGES[*]} ($WHAT)" >&2
# A fresh machine (or image) may have no package lists yet: update first then,
# and also when the lists are there but no longer name a downloadable version.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    apt -q update >/dev/null || fail "apt-get update failed"
fi
if ! apt -q install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null; then
    apt -q update >/dev/null || fail "apt-get update failed"
    apt -q install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null \
        || fail "apt-get install ${PACKAGES[*]} failed"
fi
present || fail "the packages were installed but $NAME is still missing"
echo "ensure: $NAME installed" >&2
