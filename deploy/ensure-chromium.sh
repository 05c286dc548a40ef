#!/usr/bin/env bash
# The browser tests (tests/integration/test_page.py) drive Debian's chromium at
# /usr/bin/chromium through Playwright's executable_path; Playwright's own browser
# download (`playwright install`) is never used. This installs Debian's `chromium`
# package when that binary is missing: with apt-get as root (CI runs `make test` as
# root on a fresh Debian 12 machine), with `sudo -n` otherwise, and fails with one
# line saying what to install when neither can. Silent when chromium is there.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
PACKAGE=chromium
# Without recommends, chromium brings no font: Liberation for text, Noto's emoji
# for the names and replies that carry them (the screenshots show both).
FONTS=(fonts-liberation fonts-noto-color-emoji)

[[ -x "$CHROMIUM" ]] && exit 0

fail() {
    echo "ensure-chromium: $CHROMIUM is missing: install Debian's '$PACKAGE' package" \
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

echo "ensure-chromium: installing Debian's $PACKAGE (for the browser tests)" >&2
# A fresh machine (or image) may have no package lists yet: update first then,
# and also when the lists are there but no longer name a downloadable version.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    apt -q update >/dev/null || fail "apt-get update failed"
fi
if ! apt -q install -y --no-install-recommends "$PACKAGE" "${FONTS[@]}" >/dev/null; then
    apt -q update >/dev/null || fail "apt-get update failed"
    apt -q install -y --no-install-recommends "$PACKAGE" "${FONTS[@]}" >/dev/null \
        || fail "apt-get install $PACKAGE ${FONTS[*]} failed"
fi
[[ -x "$CHROMIUM" ]] || fail "the package was installed but $CHROMIUM is still missing"
echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM installed")" >&2
