#!/bin/sh
# Make Debian's chromium available for the browser tests (Playwright drives it; no browser download).
# Idempotent: does nothing when /usr/bin/chromium is there. Installs only as root with apt-get;
# otherwise the browser tests skip locally and fail under CI, saying why.
[ -x /usr/bin/chromium ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser tests"
    if (apt-get install -y -qq chromium >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }); then
        exit 0
    fi
    echo "apt-get could not install chromium"
fi
echo "no /usr/bin/chromium: the browser tests will skip (and fail where CI is set)"
