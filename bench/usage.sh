#!/usr/bin/env bash
# Usage pipeline benchmark: DynamoDB write actions and WCU per event, end-to-end events/s through
# API → SQS → matcher → DynamoDB Local beside the emulator's raw conditional-put rate, matcher CPU
# per event (criterion, no network), and SQS requests per event on ingestion. Builds
# bench/usage-bench in release, starts a local stack of its own ("bench", DynamoDB in memory),
# stops it on exit, and writes bench/results/usage.md and usage.json (bench/usage_report.py).
#
#   bench/usage.sh                  everything (about 3 minutes after the build, which takes minutes)
#   SKIP_BUILD=1 bench/usage.sh     reuse the last release build
#   E2E_EVENTS=N                    end-to-end events (default 20000)
#   WRITES_SCALE=F                  scale the event counts of the write-action rows (default 1)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK=bench
RESULTS="$ROOT/bench/results"
BIN="$ROOT/target/release/usage-bench"
CRITERION="$ROOT/target/criterion"
E2E_EVENTS="${E2E_EVENTS:-20000}"
WRITES_SCALE="${WRITES_SCALE:-1}"
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
    local name="$1" start=$SECONDS
    shift
    "$@"
    echo "$name $((SECONDS - start))" >>"$TIMINGS"
}

command="bench/usage.sh"
if [[ "${SKIP_BUILD:-}" == 1 ]]; then command="SKIP_BUILD=1 $command"; fi
if [[ "$E2E_EVENTS" != 20000 ]]; then command="E2E_EVENTS=$E2E_EVENTS $command"; fi
if [[ "$WRITES_SCALE" != 1 ]]; then command="WRITES_SCALE=$WRITES_SCALE $command"; fi
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

cd "$ROOT"
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    say "building usage-bench and its criterion benchmark (release; minutes)"
    timed build cargo build --release --locked -p usage-bench
    timed build_criterion cargo bench --locked -p usage-bench --bench matcher --no-run
fi
[[ -x "$BIN" ]] || { say "error: $BIN is missing (run without SKIP_BUILD=1)"; exit 1; }

# First, while no emulator runs (it needs none), so they take no CPU from it; right after the
# build, so it measures the code just built.
say "3/4 matcher CPU per event (criterion)"
rm -rf "$CRITERION/matcher_process" "$CRITERION/aggregate_add" "$CRITERION/record_encode" \
    "$CRITERION/matcher_parts"
timed criterion cargo bench --locked -p usage-bench --bench matcher -- --noplot

say "starting local stack '$STACK' (DynamoDB Local in memory, moto)"
stack_started=1
timed stack_start env DDB_IN_MEMORY=1 "$ROOT/infra/stack.sh" start "$STACK"
# shellcheck disable=SC1090
. "$("$ROOT/infra/stack.sh" env "$STACK")"
export RUST_LOG=warn

say "1/4 write actions per event"
timed writes "$BIN" writes --out "$WORK/writes.json" --scale "$WRITES_SCALE"
say "2/4 end to end ($E2E_EVENTS events) and the raw conditional-put rate"
timed e2e "$BIN" e2e --out "$WORK/e2e.json" --events "$E2E_EVENTS"
say "4/4 SQS requests per event"
timed sqs "$BIN" sqs --out "$WORK/sqs.json"

DDB_IN_MEMORY=1 "$ROOT/infra/stack.sh" stop "$STACK"
stack_started=0

mkdir -p "$RESULTS"
python3 "$ROOT/bench/usage_report.py" \
    --writes "$WORK/writes.json" --e2e "$WORK/e2e.json" --sqs "$WORK/sqs.json" \
    --criterion "$CRITERION" --timings "$TIMINGS" --command "$command" \
    --load-start "$load_start" \
    --md "$RESULTS/usage.md" --json "$RESULTS/usage.json"
say "results: bench/results/usage.md, bench/results/usage.json"
