#!/bin/sh
# Make a headless browser available for the HTML report's test: Debian's chromium, which
# Playwright drives (its own browser download needs internet access that CI may not have).
CHROMIUM=${LENET_CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser test"
    if (apt-get install -y -qq chromium >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }); then
        exit 0
    fi
    echo "apt-get could not install chromium"
fi
echo "no chromium at $CHROMIUM: the browser test fails under CI and is skipped elsewhere"
