#!/usr/bin/env bash
# `make test-stripe`: the payments integration tests (tests/integration/payments.rs,
# double_payments.rs and stripe_adapter.rs) against a Stripe outside the tests, the way Stripe's own test mode is used:
#
#   STRIPE_SECRET_KEY=sk_test_... make test-stripe    # Stripe's test mode at api.stripe.com
#
# Without STRIPE_SECRET_KEY it starts the fake Stripe as a separate process and points the same
# tests at it through STRIPE_API_BASE, as a stand-in: `make test` runs it that way, so the switch
# is exercised on every CI run. Steps that only the fake can do (paying on a hosted Checkout page,
# pushing webhooks to a loopback URL) are printed as "LEFT OUT" lines at the end.
# Live keys are refused. Uses the local stack of the environment it is given, else starts its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
infra/install.sh >/dev/null

cleanup=()
finish() {
    local status=$?
    for command in "${cleanup[@]}"; do eval "$command" || true; done
    exit "$status"
}
trap finish EXIT

if [[ -z "${TABLE_NAME:-}" ]]; then
    STACK=stripe
    infra/stack.sh stop "$STACK" >/dev/null 2>&1 || true
    DDB_IN_MEMORY=1 infra/stack.sh start "$STACK"
    cleanup+=("infra/stack.sh stop $STACK >/dev/null 2>&1")
    # shellcheck disable=SC1090
    . "$(infra/stack.sh env "$STACK")"
fi

if [[ -z "${STRIPE_SECRET_KEY:-}" ]]; then
    LOG="$(mktemp -t fake-stripe-XXXXXX.log)"
    exec {stripe_out}< <("$ROOT/infra/.venv/bin/python" "$ROOT/infra/stripe/launcher.py" \
        --port 0 2>"$LOG"; echo "EXITED")
    cleanup+=("pkill -TERM -P $! 2>/dev/null; kill -TERM $! 2>/dev/null")
    read -r -t 60 first <&"$stripe_out" || first=""
    [[ "$first" == LISTENING* ]] || { echo "test-stripe.sh: the fake Stripe did not start; see $LOG" >&2; exit 1; }
    export STRIPE_API_BASE="http://127.0.0.1:${first#LISTENING }"
    export STRIPE_SECRET_KEY="sk_test_standin"
    echo "test-stripe.sh: no STRIPE_SECRET_KEY; the fake at $STRIPE_API_BASE stands in for Stripe" >&2
fi
case "$STRIPE_SECRET_KEY" in
    sk_test_* | rk_test_*) ;;
    *) echo "test-stripe.sh: STRIPE_SECRET_KEY must be a test-mode key (sk_test_...)" >&2; exit 2 ;;
esac

OUT="$(mktemp -t test-stripe-XXXXXX.out)"
cleanup+=("rm -f $OUT")
status=0
PAYMENTS='^(payments|double_payments|stripe_adapter)::'
if [[ "${TEST_RUNNER:-}" != cargo-test ]] && cargo nextest --version >/dev/null 2>&1; then
    # --workspace: the same build as `make test`'s own run, so nothing is compiled again.
    cargo nextest run --locked --workspace --no-fail-fast --success-output final \
        -E "binary(integration) & test(/$PAYMENTS/)" >"$OUT" 2>&1 || status=$?
else
    # One process per test without nextest (the tests set process-wide environment variables).
    infra/cargo-test-isolated.sh --only "$PAYMENTS" >"$OUT" 2>&1 || status=$?
fi
grep -E '^ +(PASS|FAIL|SIGSEGV|SIGABRT|TIMEOUT) |^ +Summary|^integration: ' "$OUT" | awk '!seen[$0]++' >&2 || true
grep -o 'LEFT OUT.*' "$OUT" | sort | uniq -c >&2 || true
[[ $status -eq 0 ]] || { echo "---- the run's last lines ----" >&2; tail -n 80 "$OUT" >&2; }
exit "$status"
