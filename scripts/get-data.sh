#!/bin/sh
# Make Fashion-MNIST available without a download where the system can provide it.
# Where it cannot, lenet downloads the files itself on first use (into ~/.cache/lenet).
SYSTEM_DIR=/usr/share/datasets/fashion-mnist
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/lenet/fashion-mnist"
for dir in "${LENET_DATA_DIR:-}" "$CACHE_DIR" "$SYSTEM_DIR"; do
    [ -n "$dir" ] && [ -f "$dir/t10k-labels-idx1-ubyte.gz" ] && [ -f "$dir/train-images-idx3-ubyte.gz" ] && exit 0
done
. "$(dirname "$0")/apt-install.sh"
apt_install "Debian's dataset-fashion-mnist package into $SYSTEM_DIR" dataset-fashion-mnist
echo "Fashion-MNIST is not on this machine; lenet will download it on first use into $CACHE_DIR"
