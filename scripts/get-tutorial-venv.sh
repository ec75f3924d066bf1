#!/bin/sh
# The tutorial's own stack for make bench's reference pipeline (benchmarks/tutorial.py): PyTorch and
# torchvision in a venv of the benchmark's own, .venv-tutorial. torchvision from PyPI does not run beside
# the project's pinned CPU build of PyTorch, so this venv takes a release pair that installs together:
# on x86_64 a CUDA build of several GB (about 5.5 GB installed), which also runs on the CPU; on aarch64 a
# CPU build. Where neither installs, make bench measures against benchmarks/reference.py instead and says so.
PYTHON=${PYTHON:-python3}
VENV=${TUTORIAL_VENV:-.venv-tutorial}
"$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1 && exit 0
case "$(uname -m)" in
    aarch64|arm64) PAIR="torch==2.9.1 torchvision==0.24.1" ;;
    *) PAIR="torch==2.14.1 torchvision==0.29.1" ;;
esac
echo "making $VENV ($PAIR) for the tutorial's own pipeline: several GB, once"
if "$PYTHON" -m venv "$VENV" && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PAIR \
        && "$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1; then
    exit 0
fi
rm -rf "$VENV"
echo "could not install torchvision in $VENV: make bench measures against benchmarks/reference.py instead"
