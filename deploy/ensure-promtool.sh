#!/usr/bin/env bash
# The alert-rule tests (tests/unit/deploy/test_alerts.py) run `promtool check rules`
# and `promtool test rules` on deploy/prometheus/alerts.yml. promtool comes with
# Debian's `prometheus` package; this installs it when promtool is missing: with
# apt-get as root (CI runs `make test` as root on a fresh Debian 12 machine), with
# `sudo -n` otherwise, and fails with one line saying what to install when neither
# can. Silent when promtool is there.
set -euo pipefail

PACKAGE=prometheus

command -v promtool >/dev/null && exit 0

fail() {
    echo "ensure-promtool: promtool is missing: install Debian's '$PACKAGE' package" \
         "(as root: apt-get install -y --no-install-recommends $PACKAGE)${1:+; $1}" >&2
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

echo "ensure-promtool: installing Debian's $PACKAGE (for the alert-rule tests)" >&2
# A fresh machine (or image) may have no package lists yet: update first then,
# and also when the lists are there but no longer name a downloadable version.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    apt -q update >/dev/null || fail "apt-get update failed"
fi
if ! apt -q install -y --no-install-recommends "$PACKAGE" >/dev/null; then
    apt -q update >/dev/null || fail "apt-get update failed"
    apt -q install -y --no-install-recommends "$PACKAGE" >/dev/null \
        || fail "apt-get install $PACKAGE failed"
fi
command -v promtool >/dev/null || fail "the package was installed but promtool is still missing"
echo "ensure-promtool: $(promtool --version 2>&1 | head -n 1)" >&2
