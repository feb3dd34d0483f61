#!/usr/bin/env bash
# The deployed Lambda functions never carry the dev server's `/_local/…` routes (the test
# clock, the on-demand billing run): no function links the dev-server crate, and no function's
# built bootstrap (target/lambda/<function>/bootstrap, from `cargo lambda build`) contains the
# path. The routers themselves are checked by infra/dev-server/tests/deployed_have_no_local_routes.rs.
# Run by `make test` after the deployable build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

functions=()
for manifest in functions/*/Cargo.toml; do
    functions+=("$(basename "$(dirname "$manifest")")")
done
for function in "${functions[@]}"; do
    if cargo tree --locked -p "$function" -e normal --prefix none | grep -qE '^dev-server '; then
        echo "check-deployed.sh: function $function links the dev server" >&2
        exit 1
    fi
done
checked=0
for function in "${functions[@]}"; do
    # Each function's own bootstrap (target/lambda also holds the dev server's and the
    # benchmarks' when a build without -p made them: they are never deployed).
    bootstrap="${CARGO_TARGET_DIR:-$ROOT/target}/lambda/$function/bootstrap"
    [[ -f "$bootstrap" ]] || continue
    if grep -aq '/_local/' "$bootstrap"; then
        echo "check-deployed.sh: $bootstrap contains a /_local/ route" >&2
        exit 1
    fi
    checked=$((checked + 1))
done
echo "check-deployed.sh: ${#functions[@]} functions link no dev server; $checked bootstraps carry no /_local/ path" >&2
