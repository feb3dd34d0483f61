#!/usr/bin/env bash
# Usage pipeline benchmark (issue 12): WCU per event all-in at the deployed batching (one
# customer, 1,000 customers), four concurrent matchers on one customer (conflicts and retries per
# 1,000 events), freshness (202 → invoice total) through the dev server, matcher CPU per event
# (criterion), and USD per million events; each beside today's design (commit eeade17, the
# transactional matcher) measured in the same run on the same local stack.
#
#   bench/usage.sh                  everything: about 70 minutes from a fresh clone on the shared
#                                   2-core machine (release builds: usage-bench 23 min, its
#                                   criterion bench 13 min, eeade17's 21 min), about 10 minutes
#                                   once built
#   SKIP_BUILD=1 bench/usage.sh     reuse the last release builds (both designs)
#   WRITES_SCALE=F                  scale the number of batches of the WCU rounds (default 1)
#   CONCURRENT_EVENTS=N             events of the concurrent-matcher runs (default 40000)
#   FRESH_SECONDS=S FRESH_RATE=R FRESH_PER_REQUEST=N
#                                   freshness load (default 30 s of 5 requests/s of 100 events)
#   USAGE_STACK=NAME                the local stack's name (default bench)
#
# Today's design is built from a git worktree of eeade17 in bench/.work/baseline (ignored), with
# bench/baseline/baseline.rs copied in as an extra binary of its usage-bench crate, in release,
# with its own target dir (bench/.work/target). Its tables and queues come from eeade17's
# template.yaml, bootstrapped by eeade17's infra/bootstrap.py into the same emulators under
# other names (BaselineBillingTable, BaselineUsageQueue). If it cannot be built, the report says
# so and quotes eeade17's committed results with their date instead, never as measured now.
#
# Builds need disk: the script refuses to start a build with less than 15 GB free.
set -euo pipefail

# The command as called: the variables the caller set (before the defaults below).
command="bench/usage.sh"
for v in SKIP_BUILD WRITES_SCALE CONCURRENT_EVENTS FRESH_SECONDS FRESH_RATE FRESH_PER_REQUEST USAGE_STACK; do
    if [[ -n "${!v:-}" ]]; then command="$v=${!v} $command"; fi
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${USAGE_STACK:-bench}"
RESULTS="$ROOT/bench/results"
BIN="$ROOT/target/release/usage-bench"
CRITERION="$ROOT/target/criterion"
BASELINE_COMMIT=eeade17
BASELINE_DIR="$ROOT/bench/.work/baseline"
BASELINE_TARGET="$ROOT/bench/.work/target"
BASELINE_BIN="$BASELINE_TARGET/release"
WRITES_SCALE="${WRITES_SCALE:-1}"
CONCURRENT_EVENTS="${CONCURRENT_EVENTS:-40000}"
FRESH_SECONDS="${FRESH_SECONDS:-30}"
FRESH_RATE="${FRESH_RATE:-5}"
FRESH_PER_REQUEST="${FRESH_PER_REQUEST:-100}"
WORK="$(mktemp -d)"
TIMINGS="$WORK/timings"
: >"$TIMINGS"

say() { echo "usage.sh: $*" >&2; }

stack_started=0
cleanup() {
    local status=$?
    if ((stack_started)); then
        DDB_IN_MEMORY=1 "$ROOT/infra/stack.sh" stop "$STACK" || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs "$@", recording its wall time under NAME.
timed() {
    local name="$1" start=$SECONDS status=0
    shift
    "$@" || status=$?
    echo "$name $((SECONDS - start))" >>"$TIMINGS"
    return "$status"
}

# Refuses to build with less than 15 GB free (the machine is shared; builds need several GB).
check_disk() {
    local free_kb
    free_kb="$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')"
    if ((free_kb < 15 * 1024 * 1024)); then
        say "error: only $((free_kb / 1024 / 1024)) GB free on $(df -P "$ROOT" | awk 'NR == 2 { print $6 }'); 15 GB are needed (clean target/debug/incremental?)"
        exit 1
    fi
}

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
started=$SECONDS

cd "$ROOT"
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    check_disk
    say "building usage-bench and its criterion benchmark (release; minutes)"
    timed build cargo build --release --locked -p usage-bench
    timed build_criterion cargo bench --locked -p usage-bench --bench matcher --no-run
fi
[[ -x "$BIN" ]] || { say "error: $BIN is missing (run without SKIP_BUILD=1)"; exit 1; }

# Today's design: a worktree of eeade17 with our baseline program as an extra binary.
baseline_status="$WORK/baseline-status"
build_baseline() {
    if [[ ! -e "$BASELINE_DIR/.git" ]]; then
        git -C "$ROOT" cat-file -e "$BASELINE_COMMIT^{commit}" 2>/dev/null ||
            { echo "commit $BASELINE_COMMIT is not in this clone's history (a shallow clone?)"; return 1; }
        mkdir -p "$(dirname "$BASELINE_DIR")"
        git -C "$ROOT" worktree prune
        git -C "$ROOT" worktree add --detach "$BASELINE_DIR" "$BASELINE_COMMIT" >&2 ||
            { echo "git worktree add of $BASELINE_COMMIT failed"; return 1; }
    fi
    [[ "$(git -C "$BASELINE_DIR" rev-parse --short=7 HEAD)" == "$BASELINE_COMMIT" ]] ||
        { echo "$BASELINE_DIR is not at $BASELINE_COMMIT"; return 1; }
    cp "$ROOT/bench/baseline/baseline.rs" "$BASELINE_DIR/bench/usage-bench/src/bin/baseline.rs" 2>/dev/null ||
        { mkdir -p "$BASELINE_DIR/bench/usage-bench/src/bin" &&
            cp "$ROOT/bench/baseline/baseline.rs" "$BASELINE_DIR/bench/usage-bench/src/bin/baseline.rs"; }
    if [[ "${SKIP_BUILD:-}" != 1 ]]; then
        check_disk
        if ! (cd "$BASELINE_DIR" && CARGO_TARGET_DIR="$BASELINE_TARGET" \
            cargo build --release --locked -p usage-bench --bins) >"$WORK/baseline-build.log" 2>&1; then
            echo "cargo build of eeade17's usage-bench with bench/baseline/baseline.rs failed: $(grep -m1 -E '^error' "$WORK/baseline-build.log" || tail -1 "$WORK/baseline-build.log")"
            return 1
        fi
    fi
    [[ -x "$BASELINE_BIN/usage-bench" && -x "$BASELINE_BIN/baseline" ]] ||
        { echo "the baseline binaries are missing in $BASELINE_BIN (run without SKIP_BUILD=1)"; return 1; }
}
say "today's design: worktree of $BASELINE_COMMIT and its release build (minutes the first time)"
start=$SECONDS
if reason="$(build_baseline)"; then
    echo ok >"$baseline_status"
else
    say "warning: today's design cannot be measured: $reason"
    echo "$reason" >"$baseline_status"
    [[ -f "$WORK/baseline-build.log" ]] && tail -20 "$WORK/baseline-build.log" >&2
fi
echo "build_baseline $((SECONDS - start))" >>"$TIMINGS"

# First, while no emulator runs (it needs none), so they take no CPU from it; right after the
# build, so it measures the code just built.
say "matcher CPU per event (criterion)"
rm -rf "$CRITERION/matcher_process" "$CRITERION/aggregate_add" "$CRITERION/record_encode" \
    "$CRITERION/matcher_parts"
timed criterion cargo bench --locked -p usage-bench --bench matcher -- --noplot

say "starting local stack '$STACK' (DynamoDB Local in memory, moto)"
stack_started=1
timed stack_start env DDB_IN_MEMORY=1 "$ROOT/infra/stack.sh" start "$STACK"
STACK_ENV="$("$ROOT/infra/stack.sh" env "$STACK")"
# shellcheck disable=SC1090
. "$STACK_ENV"
export RUST_LOG=warn

say "1/3 WCU per event all-in at the deployed batching (new design)"
timed writes "$BIN" writes --out "$WORK/writes.json" --scale "$WRITES_SCALE"
say "2/3 four concurrent matchers on one customer (new design)"
timed concurrent "$BIN" concurrent --out "$WORK/concurrent.json" --events "$CONCURRENT_EVENTS" --matchers 4
say "3/3 freshness through the dev server (new design)"
timed fresh "$BIN" fresh --out "$WORK/fresh.json" --seconds "$FRESH_SECONDS" --rate "$FRESH_RATE" \
    --per-request "$FRESH_PER_REQUEST"

baseline_args=()
if [[ "$(cat "$baseline_status")" == ok ]]; then
    say "today's design: its tables and queues from eeade17's template, under other names"
    python3 "$ROOT/bench/baseline/rename_template.py" "$BASELINE_DIR/template.yaml" >"$WORK/old-template.yaml"
    "$ROOT/infra/.venv/bin/python" "$BASELINE_DIR/infra/bootstrap.py" --template "$WORK/old-template.yaml" \
        --dynamodb-endpoint "$AWS_ENDPOINT_URL_DYNAMODB" --moto-endpoint "$AWS_ENDPOINT_URL" \
        --env-file "$WORK/old.env"
    # Each in a subshell with eeade17's environment (its TABLE_NAME and queue).
    run_old() { (set +u; . "$STACK_ENV"; . "$WORK/old.env"; export RUST_LOG=warn; "$@"); }
    if timed baseline_writes run_old "$BASELINE_BIN/usage-bench" writes --out "$WORK/baseline-writes.json" &&
        timed baseline_sqs run_old "$BASELINE_BIN/usage-bench" sqs --out "$WORK/baseline-sqs.json" &&
        timed baseline_concurrent run_old "$BASELINE_BIN/baseline" concurrent --out "$WORK/baseline-concurrent.json" \
            --events "$CONCURRENT_EVENTS" --matchers 4 --batch 1000; then
        baseline_args=(--baseline-writes "$WORK/baseline-writes.json" --baseline-sqs "$WORK/baseline-sqs.json"
            --baseline-concurrent "$WORK/baseline-concurrent.json")
    else
        echo "a run of today's design failed (see the script's output)" >"$baseline_status"
    fi
fi

DDB_IN_MEMORY=1 "$ROOT/infra/stack.sh" stop "$STACK"
stack_started=0
echo "total $((SECONDS - started))" >>"$TIMINGS"

mkdir -p "$RESULTS"
python3 "$ROOT/bench/usage_report.py" \
    --writes "$WORK/writes.json" --concurrent "$WORK/concurrent.json" --fresh "$WORK/fresh.json" \
    "${baseline_args[@]}" --baseline-status "$baseline_status" --baseline-commit "$BASELINE_COMMIT" \
    --criterion "$CRITERION" --timings "$TIMINGS" --command "$command" \
    --load-start "$load_start" \
    --md "$RESULTS/usage.md" --json "$RESULTS/usage.json"
say "results: bench/results/usage.md, bench/results/usage.json"
