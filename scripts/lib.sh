# Shared by scripts/run and scripts/test (sourced, never run): install only what is missing,
# so a second run on the same machine costs a few dpkg and hash look-ups and nothing else.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Root runs apt-get directly; anyone else goes through sudo if there is one.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_apt_packages PKG...: install the named Debian packages that are not installed yet.
# --no-install-recommends keeps docker-compose from pulling in the Docker engine and podman
# from pulling in the rootless helpers; root-mode pull/push needs neither.
ensure_apt_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    # Output goes to stderr: find_python's caller reads stdout.
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# A Python >= 3.11 that can create a venv with pip; Debian's python3 needs python3-venv for that.
find_python() {
    local py="${PYTHON:-python3}"
    if ! "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
        2>/dev/null; then
        ensure_apt_packages python3 python3-venv
        py=/usr/bin/python3
        "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "need Python >= 3.11; set PYTHON=/path/to/python3.11"
    fi
    printf '%s\n' "$py"
}

# ensure_venv [EXTRA]: create .venv if missing or broken, then `pip install -e .[EXTRA]` only
# when pyproject.toml changed since the last install with at least those extras. Code changes
# need no reinstall: the install is editable.
ensure_venv() {
    local extra="${1:-}" want stamp py
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    stamp="$VENV/.gatekeeper-installed${extra:+-$extra}"
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
        log "creating virtualenv $VENV"
        rm -rf "$VENV"
        py="$(find_python)"
        "$py" -m venv "$VENV"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    log "installing registry-gatekeeper${extra:+[$extra]} into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
        -e "$ROOT${extra:+[$extra]}"
    printf '%s\n' "$want" >"$stamp"
    # An install with extras also satisfies the plain install.
    [ -z "$extra" ] || printf '%s\n' "$want" >"$VENV/.gatekeeper-installed"
}
