#!/bin/sh
# Make a headless browser available for the HTML report's and the page's tests: Debian's chromium,
# which Playwright drives (its own browser download needs internet access that CI may not have),
# and CJK fonts, so that the Chinese page renders as a user's browser renders it, not as boxes.
CHROMIUM=${LENET_CHROMIUM:-/usr/bin/chromium}
need=""
[ -x "$CHROMIUM" ] || need=" chromium"
# fc-list is fontconfig's, which chromium brings; without it there is nothing to draw fonts with anyway.
if ! fc-list :lang=zh 2>/dev/null | grep -q .; then need="$need fonts-noto-cjk"; fi
[ -z "$need" ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing$need for the browser tests"
    # shellcheck disable=SC2086  # $need is a list of package names
    if (apt-get install -y -qq $need >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $need >/dev/null 2>&1; }); then
        exit 0
    fi
    echo "apt-get could not install $need"
fi
[ -x "$CHROMIUM" ] || echo "no chromium at $CHROMIUM: the browser tests fail under CI and are skipped elsewhere"
fc-list :lang=zh 2>/dev/null | grep -q . || echo "no CJK font: the page's Chinese text renders as boxes in the browser tests"
