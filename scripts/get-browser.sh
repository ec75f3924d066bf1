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
. "$(dirname "$0")/apt-install.sh"
# shellcheck disable=SC2086  # $need is a list of package names
apt_install "${need# } for the browser tests" $need
[ -x "$CHROMIUM" ] || echo "no chromium at $CHROMIUM: the browser tests fail under CI and are skipped elsewhere"
fc-list :lang=zh 2>/dev/null | grep -q . || echo "no CJK font: the page's Chinese text renders as boxes in the browser tests"
