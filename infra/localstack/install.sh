#!/usr/bin/env bash
# Installs LocalStack's community runtime for `STACK_ENGINE=localstack infra/stack.sh start`,
# without Docker and without any download beyond the package registries:
#   - infra/.cache/localstack/venv: Python 3.13 venv with localstack-core[runtime] and the pins of
#     infra/localstack/requirements.txt, plus two plugins: SES v2 (infra/localstack/sesv2_provider)
#     and CloudFormation and Lambda offline without Docker (infra/localstack/offline_plugins)
#   - infra/.cache/localstack/root/usr/lib/localstack: what LocalStack would otherwise download on
#     first use, placed where it looks for packages installed "at build time" (its static libs):
#     java/21 (a link to the system JDK), dynamodb-local/2 (links to the DynamoDB Local that
#     infra/install.sh fetched, and a no-op -javaagent jar built here) and the prebuilt service
#     catalog index (else every new stack builds it at start: ~400 MB and a few seconds)
#
# Run by infra/stack.sh (after infra/install.sh) on every start of a LocalStack stack, so a rerun
# with nothing to do must stay well under a second: each step is skipped when its stamp matches.
set -euo pipefail

LS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_DIR="$(dirname "$LS_SRC")"
CACHE="$INFRA_DIR/.cache"
LS_CACHE="$CACHE/localstack"
VENV="$LS_CACHE/venv"
ROOT_DIR="$LS_CACHE/root"              # a FILESYSTEM_ROOT used only to prebuild the catalog
LIBS="$ROOT_DIR/usr/lib/localstack"    # every stack's root links its usr/lib/localstack here
DDB_DIR="$CACHE/dynamodb-local"        # infra/install.sh's DynamoDB Local
REQUIREMENTS="$LS_SRC/requirements.txt"
PLUGINS=(sesv2_provider offline_plugins) # LocalStack plugin packages, folders of $LS_SRC
AGENT="$LS_SRC/agent"

die() { echo "localstack/install.sh: error: $*" >&2; exit 1; }
log() { echo "localstack/install.sh: $*" >&2; }

is_python313() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; }

# Python 3.13 exactly: localstack-core 2026.3.0 imports warnings.deprecated (new in 3.13), and
# newer Pythons are untested with its pinned dependencies. LOCALSTACK_PYTHON picks one explicitly.
find_python() {
    local candidate
    local pyenv_versions=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13)
    for candidate in "${LOCALSTACK_PYTHON:-}" "$(command -v python3.13 || true)" "${pyenv_versions[@]}"; do
        if [[ -n "$candidate" && -x "$candidate" ]] && is_python313 "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

[[ -f "$DDB_DIR/DynamoDBLocal.jar" ]] || die "no DynamoDB Local in $DDB_DIR: run infra/install.sh first"

mkdir -p "$LS_CACHE"
# Same lock as infra/install.sh: two stacks starting at once must not both build the venv.
exec 9>"$CACHE/install.lock"
flock 9

# --- Python venv with LocalStack and its plugins --------------------------------------------
# The stamp covers the pins and the plugins' sources, so pip (seconds even with nothing to do)
# only runs when one of them changed.
want_sha="$(cd "$LS_SRC" && find requirements.txt "${PLUGINS[@]}" -type f \
    ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -path '*/build/*' -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.install.sha256"

if [[ -x "$VENV/bin/python" ]] && ! is_python313 "$VENV/bin/python"; then
    # The Python it was made from was removed or replaced: a venv can't be repaired in place.
    log "venv at $VENV is broken; recreating it"
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    if [[ -n "${LOCALSTACK_PYTHON:-}" ]]; then
        is_python313 "$LOCALSTACK_PYTHON" || die "LOCALSTACK_PYTHON=$LOCALSTACK_PYTHON is not a Python 3.13"
    fi
    python="$(find_python)" || die "Python 3.13 not found; LocalStack's runtime needs it (looked at
  \$LOCALSTACK_PYTHON, python3.13 on PATH, and pyenv's versions in ${PYENV_ROOT:-$HOME/.pyenv}).
  Get it with pyenv (pyenv install 3.13), from https://www.python.org/downloads/ , on Debian 13
  with: apt-get install python3.13 python3.13-venv, or on Ubuntu from the deadsnakes PPA
  (add-apt-repository ppa:deadsnakes/ppa; apt-get install python3.13 python3.13-venv).
  Then rerun, or set LOCALSTACK_PYTHON=/path/to/python3.13"
    log "creating venv at $VENV with $python"
    "$python" -m venv "$VENV" || die "could not create a venv with $python (Debian: apt-get install python3.13-venv)"
fi

if [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$want_sha" ]]; then
    log "installing LocalStack from $REQUIREMENTS (about a minute the first time)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQUIREMENTS"
    # Built from a copy: pip builds a local project in place, which would leave build/ and
    # *.egg-info/ in the repo. --force-reinstall: the version stays 0.1.0 when the code changes.
    for plugin in "${PLUGINS[@]}"; do
        build="$(mktemp -d "$LS_CACHE/plugin-build.XXXXXX")"
        trap 'rm -rf "$build"' EXIT
        cp -r "$LS_SRC/$plugin/." "$build/"
        rm -rf "$build"/*.egg-info "$build/build"
        "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --no-deps --force-reinstall "$build"
        rm -rf "$build"
        trap - EXIT
    done
    # Written only after pip succeeded, so an interrupted install is retried next time.
    echo "$want_sha" >"$STAMP"
fi

# --- What LocalStack would download: Java and DynamoDB Local ---------------------------------
# LocalStack only checks that <libs>/java/21/bin/java exists (it ignores JAVA_HOME), and runs
# DynamoDB Local with that bin/ first on PATH. The system JDK 17 is enough for DynamoDB Local.
java_bin="$(readlink -f "$(command -v java || true)")"
[[ -x "$java_bin" ]] || die "java not found: DynamoDB Local needs a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"
java_home="$(dirname "$(dirname "$java_bin")")"
mkdir -p "$LIBS/java" "$LIBS/dynamodb-local/2"
[[ "$(readlink "$LIBS/java/21" 2>/dev/null || true)" == "$java_home" ]] || ln -sfn "$java_home" "$LIBS/java/21"

# The marker LocalStack checks is <libs>/dynamodb-local/2/DynamoDBLocal.jar (its version is not
# checked): link the same engine the moto stack runs instead of keeping a second copy.
ddb2="$LIBS/dynamodb-local/2"
for name in DynamoDBLocal.jar DynamoDBLocal_lib; do
    [[ -e "$ddb2/$name" ]] || ln -sfnr "$DDB_DIR/$name" "$ddb2/$name"
done

# The -javaagent jar LocalStack always passes (see agent/NoopAgent.java), built once per change
# of its source; the jar is renamed into place last, so its presence means a complete build.
agent_sha="$(cat "$AGENT/NoopAgent.java" "$AGENT/MANIFEST.MF" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$ddb2/ddb-local-loader-0.1.jar" || "$(cat "$ddb2/.agent.sha256" 2>/dev/null || true)" != "$agent_sha" ]]; then
    { command -v javac && command -v jar; } >/dev/null 2>&1 ||
        die "javac and jar not found: they build a tiny agent jar once (Debian: apt-get install openjdk-17-jdk-headless)"
    log "building the no-op DynamoDB Local agent jar"
    classes="$(mktemp -d "$LS_CACHE/agent-build.XXXXXX")"
    javac --release 17 -d "$classes" "$AGENT/NoopAgent.java"
    jar --create --file "$classes/agent.jar" --manifest "$AGENT/MANIFEST.MF" -C "$classes" NoopAgent.class
    mv "$classes/agent.jar" "$ddb2/ddb-local-loader-0.1.jar"
    rm -rf "$classes"
    echo "$agent_sha" >"$ddb2/.agent.sha256"
fi

# --- The service catalog index ---------------------------------------------------------------
# LocalStack loads it from its static libs when there; built by its own module, once per change
# of the pins (its file name carries LocalStack's and botocore's versions).
catalog_sha="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [[ "$(cat "$LIBS/.catalog.sha256" 2>/dev/null || true)" != "$catalog_sha" ]]; then
    log "building LocalStack's service catalog index (once, a few seconds)"
    rm -f "$LIBS"/service-catalog-*.dill
    # OVERRIDE_IN_DOCKER=0: this machine carries Docker's marker file, and LocalStack would
    # otherwise write to /usr/lib/localstack instead of under FILESYSTEM_ROOT.
    OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$ROOT_DIR" XDG_CACHE_HOME="$LS_CACHE/xdg-cache" \
        "$VENV/bin/python" -m localstack.aws.spec >/dev/null
    ls "$LIBS"/service-catalog-*.dill >/dev/null 2>&1 || die "LocalStack built no service catalog in $LIBS"
    echo "$catalog_sha" >"$LIBS/.catalog.sha256"
fi
