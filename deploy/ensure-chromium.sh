#!/usr/bin/env bash
# The browser tests (tests/integration/test_page.py) drive Debian's chromium at
# /usr/bin/chromium through Playwright's executable_path; Playwright's own browser
# download (`playwright install`) is never used. Without recommends, chromium brings
# no font: Liberation for text, Noto's emoji for the names and replies that carry
# them (the screenshots show both).
exec bash "$(dirname "${BASH_SOURCE[0]}")/ensure-debian-packages.sh" /usr/bin/chromium \
    "for the browser tests" chromium fonts-liberation fonts-noto-color-emoji
