#!/bin/sh
# GNU time (Debian's `time` package), which benchmarks/whole_process.py reads each process's peak memory
# from, as `/usr/bin/time -v` reports it; its test runs it under `make test`.
[ -x /usr/bin/time ] && exit 0
. "$(dirname "$0")/apt-install.sh"
apt_install "time for the whole-process benchmark" time
echo "no /usr/bin/time: the whole-process benchmark and its test fail"
