#!/usr/bin/env bash
# Installs the local AWS stack tooling, without Docker:
#   - infra/.venv: moto (SQS, SES, Scheduler, ... emulator), cfn-lint, cargo-lambda, boto3, PyYAML,
#     schemathesis, localstripe (the fake Stripe), Playwright and standardwebhooks (the webhook
#     receiver of the integration tests)
#   - infra/.cache/dynamodb-local: the official DynamoDB Local engine (a Java program)
#   - Debian's chromium, when missing (the payment portal's browser test)
#
# Called by infra/stack.sh on every start, so a rerun with nothing to do must stay well under a
# second: each step is skipped when its result is already in place.
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQUIREMENTS="$INFRA_DIR/requirements.txt"
VENV="$INFRA_DIR/.venv"
CACHE="$INFRA_DIR/.cache"
DDB_DIR="$CACHE/dynamodb-local"

# DynamoDB Local is only published as a download from S3, which this project's machines cannot
# reach; the npm package below ships that same engine (DynamoDB Local 1.25.1) in its emulator/
# folder. `npm pack` fetches just the package tarball, whose integrity npm checks against the
# registry; `npm install` would pull 283 dependencies we do not need.
DDB_NPM_PACKAGE="amplify-dynamodb-simulator@2.9.30"
# sha256 of emulator/DynamoDBLocal.jar in that package version: catches a truncated extraction
# or a changed package. Update both lines together.
DDB_JAR_SHA256="454305e9bc3e6ebcca5b62569869e31563b8d7e346474e94557b2600702146c7"

die() { echo "install.sh: error: $*" >&2; exit 1; }
log() { echo "install.sh: $*" >&2; }

command -v python3 >/dev/null 2>&1 ||
    die "python3 not found: install Python 3.9+ (Debian: apt-get install python3 python3-venv)"
command -v java >/dev/null 2>&1 ||
    die "java not found: DynamoDB Local needs a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"

mkdir -p "$CACHE"
# Two stacks (e.g. `test` and `dev`) may be started at the same time; serialise installs so they
# don't both build the venv or extract the jar into the same place.
exec 9>"$CACHE/install.lock"
flock 9

# --- Python venv --------------------------------------------------------------------------
# The stamp records which requirements.txt the venv was last installed from, so pip (which costs
# seconds even when everything is already installed) only runs when the pins change.
STAMP="$VENV/.requirements.sha256"
want_sha="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"

# A venv whose interpreter no longer runs (e.g. the Python it was made from was removed or
# upgraded) can't be repaired in place: make a new one.
if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    log "venv at $VENV is broken; recreating it"
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
        die "python3 is $(python3 -V 2>&1); moto needs Python 3.9 or newer"
    log "creating venv at $VENV"
    python3 -m venv "$VENV" || die "could not create a venv (Debian: apt-get install python3-venv)"
fi

if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$want_sha" ]]; then
    log "installing Python packages from $REQUIREMENTS (about a minute the first time)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQUIREMENTS"
    # Written only after pip succeeded, so an interrupted install is retried next time.
    echo "$want_sha" >"$STAMP"
fi

# --- DynamoDB Local -----------------------------------------------------------------------
# The jar is moved into place last (see below), so its presence means a complete install.
if [[ ! -f "$DDB_DIR/DynamoDBLocal.jar" ]]; then
    command -v npm >/dev/null 2>&1 || die "npm not found: it is needed once to fetch DynamoDB Local (Debian: apt-get install npm)"
    log "fetching DynamoDB Local from npm package $DDB_NPM_PACKAGE"
    tmp="$(mktemp -d "$CACHE/ddb-download.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    if ! tarball="$(cd "$tmp" && npm pack --silent "$DDB_NPM_PACKAGE" 2>"$tmp/npm.err" | tail -n1)" ||
        [[ -z "$tarball" || ! -f "$tmp/$tarball" ]]; then
        cat "$tmp/npm.err" >&2
        die "npm pack $DDB_NPM_PACKAGE failed"
    fi
    tar -xzf "$tmp/$tarball" -C "$tmp" package/emulator/
    got_sha="$(sha256sum "$tmp/package/emulator/DynamoDBLocal.jar" | cut -d' ' -f1)"
    [[ "$got_sha" == "$DDB_JAR_SHA256" ]] ||
        die "DynamoDBLocal.jar from $DDB_NPM_PACKAGE has sha256 $got_sha, expected $DDB_JAR_SHA256"
    rm -rf "$DDB_DIR"
    # Same filesystem (both under infra/.cache), so the rename is atomic.
    mv "$tmp/package/emulator" "$DDB_DIR"
fi

# --- Chromium (the payment portal's browser test) --------------------------------------------
# Debian's package, driven by Playwright (in the venv) through executable_path: Playwright's
# own browser download needs a CDN this machine may not reach. Only the browser test needs it.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
        die "chromium not found: install it (the browser test of the payment portal drives it)"
    apt=(apt-get)
    [[ "$(id -u)" == 0 ]] || apt=(sudo apt-get)
    log "installing chromium with apt-get (about a minute)"
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends chromium >/dev/null ||
        { "${apt[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends chromium >/dev/null; } ||
        die "apt-get could not install chromium"
fi

# --- axe-core (the dashboard's browser test injects it into each screen) ----------------------
# Pinned in tests/browser/package-lock.json (npm checks its integrity hash), installed with
# `npm ci` into an ignored folder; never served to users. Reinstalled when the lock changes.
BROWSER_NPM="$CACHE/browser-npm"
LOCK="$INFRA_DIR/../tests/browser/package-lock.json"
lock_sha="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [[ "$(cat "$BROWSER_NPM/.lock.sha256" 2>/dev/null || true)" != "$lock_sha" ]]; then
    command -v npm >/dev/null 2>&1 || die "npm not found: the browser tests need it once to fetch axe-core (Debian: apt-get install npm)"
    log "installing axe-core from tests/browser/package-lock.json"
    rm -rf "$BROWSER_NPM" && mkdir -p "$BROWSER_NPM"
    cp "$INFRA_DIR/../tests/browser/package.json" "$LOCK" "$BROWSER_NPM/"
    (cd "$BROWSER_NPM" && npm ci --silent --ignore-scripts --no-audit --no-fund) ||
        die "npm ci of axe-core failed"
    echo "$lock_sha" >"$BROWSER_NPM/.lock.sha256"
fi
