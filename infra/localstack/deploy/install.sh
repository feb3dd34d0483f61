#!/usr/bin/env bash
# Installs the SAM CLI for infra/deploy-localstack.sh into infra/.cache/sam/venv, from
# infra/localstack/deploy/requirements.txt. A rerun with nothing to do takes milliseconds: pip
# only runs when the pins changed (stamp). Needs Python >= 3.10 (aws-sam-cli's floor): python3,
# else the Python 3.13 that LocalStack's venv was made with.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_DIR="$(dirname "$(dirname "$HERE")")"
CACHE="$INFRA_DIR/.cache"
VENV="$CACHE/sam/venv"
REQUIREMENTS="$HERE/requirements.txt"
STAMP="$VENV/.requirements.sha256"

die() { echo "localstack/deploy/install.sh: error: $*" >&2; exit 1; }
log() { echo "localstack/deploy/install.sh: $*" >&2; }

new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }

mkdir -p "$CACHE/sam"
# The same lock as the other installers: two runs must not build one venv at once.
exec 9>"$CACHE/install.lock"
flock 9

if [[ -x "$VENV/bin/python" ]] && ! new_enough "$VENV/bin/python"; then
    log "venv at $VENV is broken; recreating it"
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    python=""
    for candidate in "$(command -v python3 || true)" "$CACHE/localstack/venv/bin/python"; do
        if [[ -n "$candidate" && -x "$candidate" ]] && new_enough "$candidate"; then
            python="$candidate"
            break
        fi
    done
    [[ -n "$python" ]] || die "no Python 3.10 or newer found (aws-sam-cli needs one); get one with
  pyenv, from https://www.python.org/downloads/ , or Debian's python3 (bookworm has 3.11)"
    log "creating venv at $VENV with $python"
    "$python" -m venv "$VENV" || die "could not create a venv with $python (Debian: apt-get install python3-venv)"
fi

want_sha="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$want_sha" ]]; then
    log "installing the SAM CLI from $REQUIREMENTS (a minute or two the first time)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQUIREMENTS"
    # Written only after pip succeeded, so an interrupted install is retried next time.
    echo "$want_sha" >"$STAMP"
fi
