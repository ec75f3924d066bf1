#!/bin/sh
# GNU time (Debian's `time` package), which benchmarks/whole_process.py reads each process's peak memory
# from, as `/usr/bin/time -v` reports it; its test runs it under `make test`.
[ -x /usr/bin/time ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing time for the whole-process benchmark"
    if (apt-get install -y -qq time >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq time >/dev/null 2>&1; }); then
        exit 0
    fi
    echo "apt-get could not install time"
fi
echo "no /usr/bin/time: the whole-process benchmark and its test fail"
