#!/usr/bin/env bash
# Headless Chromium for the web-console tests (Debian's package; Playwright drives it),
# with a CJK font so Chinese text renders in the console's screenshots.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q .; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    chromium fonts-wqy-zenhei >/dev/null
else
  echo "chromium not found: the browser tests will be skipped (install Debian's 'chromium')" >&2
fi
