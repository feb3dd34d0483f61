#!/usr/bin/env bash
# `make dev`: install what is missing, start the local AWS stack "dev" (moto + DynamoDB Local, or
# LocalStack with STACK_ENGINE=localstack), create template.yaml's tables and queues, start the
# fake Stripe (unless STRIPE_SECRET_KEY is set; see infra/payments.sh), build, and serve the API
# on http://127.0.0.1:$PORT and the dashboard on http://127.0.0.1:$PORT/dashboard (the server
# prints both, and the key to sign in with).
# Ctrl-C stops the server and everything this command started (data stays in infra/.local/dev;
# LocalStack keeps nothing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STACK="${STACK:-dev}"
export PORT="${PORT:-3000}"
export LOCAL_API_KEY="${LOCAL_API_KEY:-sk_local_dev}"

infra/stack.sh start "$STACK"
trap 'infra/stack.sh stop "$STACK"' EXIT
# shellcheck disable=SC1090
. "$(infra/stack.sh env "$STACK")"
# shellcheck source=infra/payments.sh
. infra/payments.sh
trap 'stop_payments; infra/stack.sh stop "$STACK"' EXIT

cargo build --locked -p dev-server
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/dev-server"
