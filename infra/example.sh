#!/usr/bin/env bash
# `make example`: the product guide end to end (examples/guide.py) against a server of its own:
# a fresh in-memory local stack "example", the fake Stripe, and the dev server on a free port.
# Stops everything it started. EXAMPLE=path runs another script the same way (the browser test).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STACK="${STACK:-example}"
SCRIPT="${EXAMPLE:-examples/guide.py}"

infra/stack.sh stop "$STACK" >/dev/null 2>&1 || true
DDB_IN_MEMORY=1 infra/stack.sh start "$STACK"
# shellcheck disable=SC1090
. "$(infra/stack.sh env "$STACK")"
# DEV_SERVER=path runs a dev server binary built elsewhere instead of building one here.
if [[ -z "${DEV_SERVER:-}" ]]; then
    cargo build --locked -p dev-server
    DEV_SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/dev-server"
fi
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export PORT LOCAL_API_KEY="${LOCAL_API_KEY:-sk_local_example}"
rm -rf "$ROOT/infra/.local/$STACK/stripe"
# shellcheck source=infra/payments.sh
. infra/payments.sh
LOG="$ROOT/infra/.local/$STACK/dev-server.log"
"$DEV_SERVER" >"$LOG" 2>&1 &
SERVER_PID=$!
finish() {
    local status=$?
    [[ $status -ne 0 ]] && { echo "---- last lines of $LOG ----" >&2; tail -n 40 "$LOG" >&2 || true; }
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    stop_payments
    infra/stack.sh stop "$STACK" >/dev/null 2>&1 || true
    exit "$status"
}
trap finish EXIT
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v1/openapi.json" 2>/dev/null && break
    sleep 0.2
done
"$ROOT/infra/.venv/bin/python" "$SCRIPT" --url "http://127.0.0.1:$PORT" --key "$LOCAL_API_KEY"
