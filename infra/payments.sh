#!/usr/bin/env bash
# Sourced by dev.sh, example.sh and browser.sh (after the stack's env file): sets up payments
# for a local server on port $PORT.
#   - Stripe: the fake (infra/stripe/launcher.py on 127.0.0.1, state in infra/.local/$STACK/stripe)
#     unless STRIPE_SECRET_KEY is already set (then Stripe itself is used: set
#     STRIPE_WEBHOOK_SECRET too, and forward webhooks with `stripe listen`).
#   - Payment links: PORTAL_SIGNING_KEY (kept in infra/.local/$STACK/portal.key) and
#     PUBLIC_BASE_URL=http://127.0.0.1:$PORT.
#   - The dashboard's session key: DASHBOARD_SESSION_KEY (kept in infra/.local/$STACK/dashboard.key,
#     so sessions survive a restart of `make dev`).
#   - Mail: MAIL_FROM, verified in the stack's SES (moto's, or LocalStack's with its SES v2
#     plugin), which, like SES, refuses unverified senders.
# Defines stop_payments, to call on exit. Needs STACK, PORT, ROOT and the stack's environment.

STATE_DIR="$ROOT/infra/.local/$STACK"
mkdir -p "$STATE_DIR"
FAKE_STRIPE_PID=""

if [[ -z "${STRIPE_SECRET_KEY:-}" ]]; then
    mkdir -p "$STATE_DIR/stripe"
    exec {stripe_out}< <("$ROOT/infra/.venv/bin/python" "$ROOT/infra/stripe/launcher.py" \
        --port 0 --state-dir "$STATE_DIR/stripe" 2>"$STATE_DIR/stripe.log"; echo "EXITED")
    FAKE_STRIPE_PID=$!
    read -r -t 60 first <&"$stripe_out" || first=""
    [[ "$first" == LISTENING* ]] || { echo "payments.sh: the fake Stripe did not start; see $STATE_DIR/stripe.log" >&2; exit 1; }
    export STRIPE_API_BASE="http://127.0.0.1:${first#LISTENING }"
    export STRIPE_SECRET_KEY="sk_test_local"
    export STRIPE_WEBHOOK_SECRET="whsec_local_${STACK}"
    curl -fsS -o /dev/null -X POST "$STRIPE_API_BASE/_config/webhooks/local" \
        -H "Authorization: Bearer $STRIPE_SECRET_KEY" \
        --data-urlencode "url=http://127.0.0.1:$PORT/webhooks/stripe" \
        --data-urlencode "secret=$STRIPE_WEBHOOK_SECRET" ||
        { echo "payments.sh: could not register the webhook with the fake Stripe" >&2; exit 1; }
fi

if [[ -z "${PORTAL_SIGNING_KEY:-}" ]]; then
    [[ -s "$STATE_DIR/portal.key" ]] ||
        (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' >"$STATE_DIR/portal.key")
    PORTAL_SIGNING_KEY="$(cat "$STATE_DIR/portal.key")"
    export PORTAL_SIGNING_KEY
fi
if [[ -z "${DASHBOARD_SESSION_KEY:-}" ]]; then
    [[ -s "$STATE_DIR/dashboard.key" ]] ||
        (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' >"$STATE_DIR/dashboard.key")
    DASHBOARD_SESSION_KEY="$(cat "$STATE_DIR/dashboard.key")"
    export DASHBOARD_SESSION_KEY
fi
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:$PORT}"
export MAIL_FROM="${MAIL_FROM:-billing@example.com}"
"$ROOT/infra/.venv/bin/python" - "$MAIL_FROM" <<'PY'
import os, sys, boto3
boto3.client("ses", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).verify_email_identity(EmailAddress=sys.argv[1])
PY

stop_payments() {
    if [[ -n "$FAKE_STRIPE_PID" ]]; then
        pkill -TERM -P "$FAKE_STRIPE_PID" 2>/dev/null || true
        kill -TERM "$FAKE_STRIPE_PID" 2>/dev/null || true
    fi
}
