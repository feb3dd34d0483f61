#!/usr/bin/env bash
# The workspace's tests without cargo-nextest, as safely as with it.
#
# The integration tests set process-wide environment variables (a payments test points
# TABLE_NAME, STRIPE_* and PORTAL_SIGNING_KEY at its own table and fake Stripe) and so assume a
# process per test, which nextest gives and `cargo test` does not (it runs a binary's tests as
# threads of one process). Here every integration test runs in a process of its own, JOBS at a
# time (default 4; they mostly wait on the emulators), and every other test binary runs as
# `cargo test` runs it (none of them touches the environment).
#
#   infra/cargo-test-isolated.sh                 # everything, like `cargo nextest run --workspace`
#   infra/cargo-test-isolated.sh --only REGEX    # only the integration tests whose name matches
#
# Prints `PASS name` / `FAIL name` per integration test, a failed test's output, and ends with
# `N passed, M failed`. Needs the local stack's environment, as the integration tests do.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="${JOBS:-4}"
only=""
if [[ "${1:-}" == "--only" ]]; then
    only="${2:?--only needs a regular expression}"
fi

status=0
if [[ -z "$only" ]]; then
    cargo test --locked --workspace --exclude integration-tests --no-fail-fast || status=$?
fi

# The integration binary, built like `cargo test` builds it; its path from cargo's own report.
bin="$(cargo test --locked -p integration-tests --test integration --no-run --message-format=json |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "integration" and m.get("executable"):
        print(m["executable"])
')"
[[ -x "$bin" ]] || { echo "cargo-test-isolated.sh: no integration test binary" >&2; exit 1; }

names="$(mktemp)"
out="$(mktemp -d)"
trap 'rm -rf "$names" "$out"' EXIT
"$bin" --list --format terse | sed -n 's/: test$//p' | { grep -E -- "${only:-.}" || true; } >"$names"

# One process per test; cargo runs test binaries from the package's folder, so do the same.
export BIN="$bin" OUT="$out"
# shellcheck disable=SC2016
xargs -a "$names" -d '\n' -P "$JOBS" -I{} bash -c '
    name="$1"; log="$OUT/$(printf %s "$name" | tr -c "A-Za-z0-9_" _)"
    if (cd tests && "$BIN" --exact "$name" --nocapture) >"$log" 2>&1; then
        echo "        PASS $name"; touch "$log.pass"
    else
        echo "        FAIL $name"; { echo "---- $name ----"; cat "$log"; } >"$log.fail"
    fi' _ {} || true

passed="$(find "$out" -name '*.pass' | wc -l)"
failed="$(find "$out" -name '*.fail' | wc -l)"
total="$(wc -l <"$names")"
# Steps a test leaves out against a real Stripe say so (infra/test-stripe.sh counts them).
cat "$out"/* 2>/dev/null | grep -o 'LEFT OUT.*' || true
if ((failed > 0)); then
    cat "$out"/*.fail >&2
    status=1
fi
if ((passed + failed != total)); then
    echo "cargo-test-isolated.sh: $total tests listed, $((passed + failed)) ran" >&2
    status=1
fi
echo "integration: $passed passed, $failed failed"
exit "$status"
