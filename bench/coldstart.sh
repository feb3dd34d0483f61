#!/usr/bin/env bash
# Cold-start and package-size benchmark (`make bench`): builds the five Lambda functions in
# release, zipped as deployed, then runs bench/coldstart.py, which writes
# bench/results/coldstart.md and coldstart.json. Extra arguments go to coldstart.py
# (e.g. --runs 100); SKIP_BUILD=1 reuses the last build in target/lambda.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAMBDA_DIR="$ROOT/target/lambda"  # coldstart.py's default too
FUNCTIONS=(api usage-matcher billing-run stripe-webhook dashboard)

# infra/.venv holds the pinned cargo-lambda (a no-op when already installed).
"$ROOT/infra/install.sh"

if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    packages=()
    for f in "${FUNCTIONS[@]}"; do packages+=(-p "$f"); done
    echo "coldstart.sh: building ${FUNCTIONS[*]} (release, x86_64, zip)" >&2
    start=$SECONDS
    # --output-format zip leaves only <name>/bootstrap.zip; coldstart.py measures that zip and
    # runs the bootstrap it extracts from it, so what is measured is what is deployed.
    (cd "$ROOT" && PATH="$ROOT/infra/.venv/bin:$PATH" cargo lambda build --release --locked \
        --x86-64 --output-format zip --lambda-dir "$LAMBDA_DIR" "${packages[@]}")
    echo "coldstart.sh: build took $((SECONDS - start)) s" >&2
fi

command="bench/coldstart.sh"
[[ "${SKIP_BUILD:-}" == 1 ]] && command="SKIP_BUILD=1 $command"
(($#)) && command+="$(printf ' %q' "$@")"
COLDSTART_COMMAND="$command" \
    exec python3 "$ROOT/bench/coldstart.py" --target x86_64-unknown-linux-gnu "$@"
