#!/usr/bin/env bash
# Fuzzes the API against its own OpenAPI document (functions/api/openapi.json) with schemathesis:
# builds and starts the dev server on a free port, seeds a little data, and runs every operation
# with generated valid and invalid input. Fails on any 5xx, on a status code, content type, header
# or body the document does not describe, on invalid input the server accepts, on a route that
# answers without an API key, and on an undocumented method that is not a 405 with `Allow`.
#
# Needs the local stack's environment:  . "$(infra/stack.sh env test)" && infra/fuzz.sh
# (infra/test.sh runs it as its last test step.)
#   FUZZ_MAX_EXAMPLES  test cases per operation and phase (default 30; about a minute)
#   FUZZ_SEED          replay a run: schemathesis prints the seed it used
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/infra/.venv"
KEY="${LOCAL_API_KEY:-sk_local_dev}"

die() { echo "fuzz.sh: error: $*" >&2; exit 1; }
say() { echo "fuzz.sh: $*" >&2; }

[[ -n "${TABLE_NAME:-}" && -n "${AWS_ENDPOINT_URL_DYNAMODB:-}" ]] ||
    die "load the local stack's environment first: . \"\$(infra/stack.sh env test)\""
[[ -x "$VENV/bin/schemathesis" ]] || die "schemathesis is missing: run infra/install.sh"

# Scratch space (ignored by git) for the server log, the request log, and the caches hypothesis
# and schemathesis write into their working directory.
WORK="$ROOT/infra/.local/fuzz"
mkdir -p "$WORK"
LOG="$WORK/dev-server.log"
HAR="$WORK/requests.har"
rm -f "$HAR"

# DEV_SERVER=path runs a dev server binary built elsewhere (make test's) instead of building.
if [[ -z "${DEV_SERVER:-}" ]]; then
    cargo build --locked -p dev-server
    DEV_SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/dev-server"
fi
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

# Payments as in `make dev`: the fake Stripe, payment links and a verified mail sender, so the
# Stripe-backed routes (customer links, setup intents, the payment pages) are fuzzed for real.
STACK="${STACK:-test}"
export PORT
# shellcheck source=infra/payments.sh
. "$ROOT/infra/payments.sh"

# No job control here, so the server stays in our process group; it is stopped by its pid.
LOCAL_API_KEY="$KEY" PORT="$PORT" "$DEV_SERVER" >"$LOG" 2>&1 &
SERVER_PID=$!

finish() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        echo "---- last lines of the dev server log ($LOG) ----" >&2
        tail -n 60 "$LOG" >&2 || true
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "---- (the dev server was still running) ----" >&2
        else
            local server_status=0
            wait "$SERVER_PID" || server_status=$?
            echo "---- the dev server had exited, status $server_status ----" >&2
        fi
        [[ -f "$HAR" ]] && echo "fuzz.sh: every request and response is in $HAR" >&2
    fi
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    stop_payments
    exit "$status"
}
trap finish EXIT

for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$BASE/v1/openapi.json" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "the dev server exited during startup"
    sleep 0.2
done
curl -fsS -o /dev/null "$BASE/v1/openapi.json" || die "the dev server does not answer on $BASE"
say "dev server on $BASE (log: $LOG)"

# --- Seed data ----------------------------------------------------------------------------
# So that lists return real objects (whose schemas then get checked: the usage events are
# matched by the dev server's queue poller meanwhile) and contract creation can
# succeed: schemathesis.toml pins POST /v1/contracts to this customer and flat-fee plan (a plan
# without usage prices bills no meter, so any number of its contracts may overlap). Unique
# values get a suffix, so a reused stack does not answer 409.
api() { # METHOD PATH [JSON]: prints the response body; fails unless 2xx
    local data=()
    [[ $# -ge 3 ]] && data=(--data "$3")
    curl -sS --fail-with-body -X "$1" "$BASE$2" -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' "${data[@]}"
}
id_of() { python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
run="$(date -u +%s)$$"
today="$(date -u +%Y-%m-%d)"
meter="$(api POST /v1/meters "{\"code\":\"FUZZ_CALLS_$run\",\"eventName\":\"fuzz_call\",\"aggregationType\":\"COUNT\"}" | id_of)"
flat_plan="$(api POST /v1/plans '{"name":"Fuzz flat","prices":[{"model":"FLAT","flatAmount":"10.00"}]}' | id_of)"
usage_plan="$(api POST /v1/plans "{\"name\":\"Fuzz usage\",\"currency\":\"JPY\",\"netTerms\":30,
    \"prices\":[{\"model\":\"FLAT\",\"flatAmount\":\"1000\"},
                {\"model\":\"USAGE\",\"meterId\":\"$meter\",\"tiering\":\"GRADUATED\",
                 \"tiers\":[{\"upTo\":\"100\",\"unitAmount\":\"0\",\"flatAmount\":\"5\"},{\"unitAmount\":\"0.35\"}]}]}" | id_of)"
customer="$(api POST /v1/customers "{\"name\":\"Fuzz Inc.\",\"externalCustomerId\":\"fuzz-$run\"}" | id_of)"
other="$(api POST /v1/customers '{"name":"Fuzz Other","contacts":[{"email":"ap@fuzz.example","roles":["billing"]}]}' | id_of)"
api POST /v1/contracts "{\"customerId\":\"$customer\",\"planId\":\"$flat_plan\",\"startDate\":\"$today\"}" >/dev/null
api POST /v1/contracts "{\"customerId\":\"$other\",\"planId\":\"$usage_plan\",\"startDate\":\"$today\"}" >/dev/null
api POST /v1/events "{\"eventName\":\"fuzz_call\",\"customerId\":\"$other\",\"idempotencyKey\":\"fuzz-$run-0\"}" >/dev/null
api POST /v1/events/batch "{\"events\":[{\"eventName\":\"fuzz_call\",\"customerId\":\"$other\"},
    {\"eventName\":\"fuzz_call\",\"externalCustomerId\":\"fuzz-$run\",\"properties\":{\"n\":1.5,\"ok\":true}},
    {\"eventName\":\"nobody_listens\",\"customerId\":\"$customer\"}]}" >/dev/null
export FUZZ_CUSTOMER_ID="$customer" FUZZ_PLAN_ID="$flat_plan" FUZZ_USAGE_CUSTOMER_ID="$other"

# --- Fuzz ---------------------------------------------------------------------------------
args=(
    --config-file "$ROOT/infra/schemathesis.toml"
    run "$BASE/v1/openapi.json"
    --header "Authorization: Bearer $KEY"
    # The checks (all but positive_data_acceptance) are chosen in schemathesis.toml: options on
    # the command line would override its per-operation exceptions.
    --max-examples "${FUZZ_MAX_EXAMPLES:-30}"
    --report har --report-har-path "$HAR"
    --no-color
)
[[ -n "${FUZZ_SEED:-}" ]] && args+=(--seed "$FUZZ_SEED")
say "schemathesis ${args[*]}"
(cd "$WORK" && "$VENV/bin/schemathesis" "${args[@]}") ||
    die "schemathesis found failures (see above; replay with FUZZ_SEED=<the seed it printed>)"
