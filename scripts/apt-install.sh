# Sourced by the get-*.sh scripts. apt_install WHAT PACKAGE...: where apt-get runs as root, says it is
# installing WHAT and installs the Debian packages (updating the index only when the plain install fails),
# then exits 0 from the calling script; otherwise returns 1, for the caller to say what is missing.
apt_install() {
    what=$1
    shift
    command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] || return 1
    echo "installing $what"
    if (apt-get install -y -qq "$@" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$@" >/dev/null 2>&1; }); then
        exit 0
    fi
    echo "apt-get could not install $*"
    return 1
}
