#!/usr/bin/env bash
# Dashboard benchmark (`make bench-dashboard`): server time (p50, p90) and transfer size of every
# screen with 1,000 customers and 10,000 invoices in the table. Builds the dev server with the
# `server-bench` profile (release optimisation without fat LTO), starts a fresh in-memory local
# stack of its own, serves the API and the dashboard on a free port of 127.0.0.1 (no Stripe, so
# seeding is not a benchmark of the fake), seeds through the API and times the screens
# (bench/dashboard.py), then stops everything. Writes bench/results/dashboard.md and .json.
#
#   bench/dashboard.sh                   everything (seeding takes a few minutes)
#   SKIP_BUILD=1 bench/dashboard.sh      reuse the last build
#   STACK=name                           the local stack's name (default bench-dashboard)
#   extra arguments go to bench/dashboard.py (e.g. --runs 50, --customers 200)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STACK="${STACK:-bench-dashboard}"
BIN="$ROOT/target/server-bench/dev-server"
say() { echo "dashboard.sh: $*" >&2; }

infra/install.sh
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    say "building the dev server (profile server-bench)"
    cargo build --locked --profile server-bench -p dev-server
fi
[[ -x "$BIN" ]] || { say "error: $BIN is missing (run without SKIP_BUILD=1)"; exit 1; }

infra/stack.sh stop "$STACK" >/dev/null 2>&1 || true
DDB_IN_MEMORY=1 infra/stack.sh start "$STACK" >&2
SERVER_PID=""
cleanup() {
    local status=$?
    [[ -n "$SERVER_PID" ]] && { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    infra/stack.sh stop "$STACK" >/dev/null 2>&1 || true
    exit "$status"
}
trap cleanup EXIT
# shellcheck disable=SC1090
. "$(infra/stack.sh env "$STACK")"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export PORT LOCAL_API_KEY="sk_local_bench"
export STRIPE_SECRET_KEY="" PUBLIC_BASE_URL="http://127.0.0.1:$PORT"
PORTAL_SIGNING_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
DASHBOARD_SESSION_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export PORTAL_SIGNING_KEY DASHBOARD_SESSION_KEY
LOG="$ROOT/infra/.local/$STACK/dev-server.log"
RUST_LOG=warn "$BIN" >"$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v1/openapi.json" 2>/dev/null && break
    sleep 0.2
done
command="bench/dashboard.sh"
[[ "${SKIP_BUILD:-}" == 1 ]] && command="SKIP_BUILD=1 $command"
(($#)) && command+="$(printf ' %q' "$@")"
"$ROOT/infra/.venv/bin/python" bench/dashboard.py --url "http://127.0.0.1:$PORT" --key "$LOCAL_API_KEY" \
    --command "$command" "$@"
