#!/usr/bin/env bash
# Cold-start and package-size benchmark (`make bench`), before and after: builds today's Lambda
# functions in release, zipped as deployed, into target/lambda, and the functions of an earlier
# commit (BASELINE, default eeade17: the design before issue 10's restructuring) the same way
# from a git worktree of it, with its own Cargo.lock and target dir; then runs
# bench/coldstart.py, which measures both sets interleaved in one run and writes one table with
# before and after side by side to bench/results/coldstart.md and coldstart.json.
#
#   bench/coldstart.sh                 build both sets (the first baseline build takes tens of
#                                      minutes on the shared 2-core machine), then measure
#   SKIP_BUILD=1 bench/coldstart.sh    reuse the last builds (target/lambda and the baseline's)
#   BASELINE=<commit>                  the before (default eeade17); BASELINE=none: today's only
#
# Extra arguments go to coldstart.py (e.g. --runs 100). The baseline: a worktree in
# bench/.work/baseline (eeade17, shared with bench/usage.sh) or bench/.work/baseline-<commit>,
# built with CARGO_TARGET_DIR=bench/.work/target (never target/) into
# bench/.work/lambda-<commit>; all ignored by git. Builds run under `nice -n 10` (the machine is
# shared) and refuse to start with less than 15 GB free.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAMBDA_DIR="$ROOT/target/lambda"  # coldstart.py's default too
FUNCTIONS=(api usage-matcher billing-run stripe-webhook dashboard webhook-dispatcher)
baseline_given="${BASELINE:-}"
BASELINE="${BASELINE:-eeade17}"
WORK="$ROOT/bench/.work"
BASELINE_TARGET="$WORK/target"
export PATH="$ROOT/infra/.venv/bin:$PATH"  # the pinned cargo-lambda

say() { echo "coldstart.sh: $*" >&2; }

# The command as called, for the report.
command="bench/coldstart.sh"
[[ -n "$baseline_given" ]] && command="BASELINE=$baseline_given $command"
[[ "${SKIP_BUILD:-}" == 1 ]] && command="SKIP_BUILD=1 $command"
(($#)) && command+="$(printf ' %q' "$@")"

check_disk() {
    local free_kb
    free_kb="$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')"
    if ((free_kb < 15 * 1024 * 1024)); then
        say "error: only $((free_kb / 1024 / 1024)) GB free; 15 GB are needed for a release build"
        exit 1
    fi
}

# Builds packages "$@" (in the current directory's workspace) into lambda dir $1.
lambda_build() {
    local dir="$1" packages=()
    shift
    for f in "$@"; do packages+=(-p "$f"); done
    # --output-format zip leaves <name>/bootstrap.zip; coldstart.py measures that zip and runs
    # the bootstrap it extracts from it, so what is measured is what is deployed.
    nice -n 10 cargo lambda build --release --locked --x86-64 --output-format zip \
        --lambda-dir "$dir" "${packages[@]}"
}

# infra/.venv holds the pinned cargo-lambda (a no-op when already installed).
"$ROOT/infra/install.sh"

export COLDSTART_BUILD_AFTER="skipped (SKIP_BUILD=1)" COLDSTART_BUILD_BEFORE="skipped (SKIP_BUILD=1)"
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    check_disk
    say "building ${FUNCTIONS[*]} (release, x86_64, zip) into target/lambda"
    start=$SECONDS
    (cd "$ROOT" && lambda_build "$LAMBDA_DIR" "${FUNCTIONS[@]}")
    export COLDSTART_BUILD_AFTER_SECONDS=$((SECONDS - start))
    export COLDSTART_BUILD_AFTER="\`cargo lambda build --release --locked --x86-64 --output-format zip\`, $COLDSTART_BUILD_AFTER_SECONDS s"
    say "build took $COLDSTART_BUILD_AFTER_SECONDS s"
fi

before_args=()
build_failed=0
if [[ "$BASELINE" != none ]]; then
    commit="$(git -C "$ROOT" rev-parse --short=7 --verify --quiet "$BASELINE^{commit}")" ||
        { say "error: BASELINE=$BASELINE is not a commit of this clone (a shallow clone?)"; exit 1; }
    if [[ "$commit" == eeade17 ]]; then
        worktree="$WORK/baseline"  # the one bench/usage.sh uses
    else
        worktree="$WORK/baseline-$commit"
    fi
    before_dir="$WORK/lambda-$commit"
    if [[ ! -e "$worktree/.git" ]]; then
        mkdir -p "$WORK"
        git -C "$ROOT" worktree prune
        git -C "$ROOT" worktree add --detach "$worktree" "$commit" >&2
    fi
    [[ "$(git -C "$worktree" rev-parse --short=7 HEAD)" == "$commit" ]] ||
        { say "error: $worktree is not at $commit"; exit 1; }
    # The baseline's functions: its functions/ crates (eeade17: api usage-matcher billing-run
    # stripe-webhook).
    baseline_functions=()
    for manifest in "$worktree"/functions/*/Cargo.toml; do
        baseline_functions+=("$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -1)")
    done
    if [[ "${SKIP_BUILD:-}" != 1 ]]; then
        check_disk
        say "building $commit's ${baseline_functions[*]} (release, x86_64, zip, its Cargo.lock) into ${before_dir#"$ROOT/"}"
        start=$SECONDS
        if (cd "$worktree" && export CARGO_TARGET_DIR="$BASELINE_TARGET" &&
            lambda_build "$before_dir" "${baseline_functions[@]}"); then
            export COLDSTART_BUILD_BEFORE_SECONDS=$((SECONDS - start))
            export COLDSTART_BUILD_BEFORE="the same command in the worktree with CARGO_TARGET_DIR=\`${BASELINE_TARGET#"$ROOT/"}\`, $COLDSTART_BUILD_BEFORE_SECONDS s"
            say "baseline build took $COLDSTART_BUILD_BEFORE_SECONDS s"
        else
            # Measure today's anyway: the report lists the baseline's missing zips as failures.
            build_failed=1
            export COLDSTART_BUILD_BEFORE="FAILED after $((SECONDS - start)) s (see the build output)"
            say "error: the build of $commit failed; measuring what exists"
        fi
    fi
    export COLDSTART_BEFORE_WORKTREE="${worktree#"$ROOT/"}"
    before_args=(--before "$before_dir" --before-commit "$commit")
    for f in "${baseline_functions[@]}"; do before_args+=(--before-function "$f"); done
fi

status=0
COLDSTART_COMMAND="$command" python3 "$ROOT/bench/coldstart.py" \
    --target x86_64-unknown-linux-gnu "${before_args[@]}" "$@" || status=$?
((build_failed)) && ((status == 0)) && status=1
exit "$status"
