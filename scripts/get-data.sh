#!/bin/sh
# Make Fashion-MNIST available without a download where the system can provide it.
# Where it cannot, lenet downloads the files itself on first use (into ~/.cache/lenet).
SYSTEM_DIR=/usr/share/datasets/fashion-mnist
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/lenet/fashion-mnist"
for dir in "${LENET_DATA_DIR:-}" "$CACHE_DIR" "$SYSTEM_DIR"; do
    [ -n "$dir" ] && [ -f "$dir/t10k-labels-idx1-ubyte.gz" ] && [ -f "$dir/train-images-idx3-ubyte.gz" ] && exit 0
done
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's dataset-fashion-mnist package into $SYSTEM_DIR"
    if (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }); then
        exit 0
    fi
    echo "apt-get could not install dataset-fashion-mnist"
fi
echo "Fashion-MNIST is not on this machine; lenet will download it on first use into $CACHE_DIR"
