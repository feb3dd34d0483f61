#!/usr/bin/env bash
# `make test` (and CI): every check and every test, against a fresh in-memory local stack.
#   1. formatting, clippy (warnings are errors), the domain crate's dependencies (no AWS, Stripe,
#      HTTP or Lambda crate: infra/check-domain.sh), cfn-lint on template.yaml
#   2. unit and integration tests (the real handlers against DynamoDB Local, moto and the fake
#      Stripe; with STRIPE_SECRET_KEY=sk_test_... the payments tests use Stripe's test mode
#      instead, otherwise infra/test-stripe.sh runs them once more against a stand-in
#      external Stripe), schemathesis fuzzing of the API against functions/api/openapi.json
#      (infra/fuzz.sh), the payment portal and the dashboard in headless Chromium
#      (tests/browser/portal.py, tests/browser/dashboard.py)
#   3. the deployable build: `cargo lambda build --release` for x86_64 (without fat LTO), and no
#      bootstrap carries the dev server's /_local/ routes (infra/check-deployed.sh)
#   4. LocalStack: the integration tests (the binaries built above, not rebuilt) and the guide
#      example once more on LocalStack's community runtime, each on a stack of its own; then
#      template.yaml built with `sam build` and deployed to LocalStack's CloudFormation, and
#      what was deployed read back and compared with what infra/bootstrap.py creates
#      (infra/deploy-localstack.sh)
# Set SKIP_LAMBDA_BUILD=1 to skip step 3 (and the deploy, which builds the same) and
# SKIP_LOCALSTACK=1 to skip step 4 while iterating. STACK_ENGINE=localstack runs steps 1-2 on
# LocalStack instead of moto + DynamoDB Local (see infra/stack.sh); step 4 then only deploys.
# Every step's duration is printed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STACK="${STACK:-test}"
ENGINE="${STACK_ENGINE:-moto}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# Each step's title and duration, printed at the end (the README's timings come from these).
TIMINGS=()
step_title=""
step_start=$SECONDS
end_step() {
    [[ -n "$step_title" ]] && TIMINGS+=("$(printf '%5d s  %s' $((SECONDS - step_start)) "$step_title")")
    step_title=""
}
step() {
    end_step
    step_title="$*"
    step_start=$SECONDS
    printf '\n==> %s\n' "$*" >&2
}
print_timings() {
    end_step
    printf '\n==> durations (total %d s)\n' "$SECONDS" >&2
    printf '%s\n' "${TIMINGS[@]}" >&2
}

step "install local tooling"
infra/install.sh
VENV="$ROOT/infra/.venv"

step "cargo fmt --check"
cargo fmt --all -- --check

step "the domain crate stays free of infrastructure (infra/check-domain.sh)"
infra/check-domain.sh

step "cfn-lint template.yaml"
"$VENV/bin/cfn-lint" template.yaml

step "cargo clippy --all-targets -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "start the local stack '$STACK' ($ENGINE)"
# A fresh in-memory stack each run: tests never see a previous run's data.
infra/stack.sh stop "$STACK" >/dev/null 2>&1 || true
infra/stack.sh start "$STACK"
LS_STACK=ls-ci # step 4's LocalStack stack, for the integration tests
finish() {
    local status=$?
    infra/stack.sh stop "$STACK"
    infra/stack.sh stop "$LS_STACK"
    print_timings
    exit "$status"
}
trap finish EXIT
# shellcheck disable=SC1090
. "$(infra/stack.sh env "$STACK")"

step "unit and integration tests"
# The integration tests set process-wide environment variables, so each needs a process of its
# own: nextest gives that; without it (or with TEST_RUNNER=cargo-test) infra/cargo-test-isolated.sh
# runs each integration test in its own process under plain `cargo test`.
if [[ "${TEST_RUNNER:-}" != cargo-test ]] && cargo nextest --version >/dev/null 2>&1; then
    NEXTEST=1
    cargo nextest run --locked --workspace --no-fail-fast
else
    NEXTEST=0
    infra/cargo-test-isolated.sh
fi
# Fuzzing and the browser tests run the dev server this build made (the dev-server package has
# an integration test, so its binary is built, with the workspace's features unified).
# `cargo build -p dev-server` would resolve features for that package alone (no tokio
# `test-util`, no `billing/testing`) and rebuild tokio and every crate above it: about four
# minutes from a fresh clone. Same code either way; features only add.
export DEV_SERVER="$TARGET_DIR/debug/dev-server"
[[ -x "$DEV_SERVER" ]] || { echo "test.sh: the test build made no $DEV_SERVER" >&2; exit 1; }

if [[ -z "${STRIPE_SECRET_KEY:-}" ]]; then
    step "payments tests against a Stripe outside the tests (the fake standing in for test mode)"
    infra/test-stripe.sh
fi
# Fuzzing and the browser test always use the fake: they would fill a Stripe account with
# customers, and the browser test pays on the fake's Checkout page.
unset STRIPE_SECRET_KEY STRIPE_API_BASE STRIPE_WEBHOOK_SECRET

step "API fuzzing: schemathesis against functions/api/openapi.json"
# Starts its own dev server on a free port against this stack; FUZZ_MAX_EXAMPLES sets the budget.
infra/fuzz.sh

step "payment portal in headless Chromium (tests/browser/portal.py)"
# Its own stack, fake Stripe and server (infra/example.sh), so its billing runs close nothing
# of the stack above.
EXAMPLE=tests/browser/portal.py STACK=browser infra/example.sh

step "dashboard in headless Chromium with axe-core (tests/browser/dashboard.py)"
# The guide through the dashboard, its security checks, a screenshot and an axe run per screen
# (tests/browser/results/).
EXAMPLE=tests/browser/dashboard.py STACK=dashboard infra/example.sh

# The deployable build here skips what only shrinks the zips: fat LTO and one codegen unit take
# most of a release build (14 minutes from a fresh clone on 2 cores). Same code, same features
# and target, so the /_local/ check and the deploy below hold for the real build (without LTO a
# binary keeps more code and strings, not fewer); `make bench` builds and measures the real
# profile.
# `sam build` in infra/deploy-localstack.sh inherits this and reuses the build.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
if [[ "${SKIP_LAMBDA_BUILD:-0}" != 1 ]]; then
    step "cargo lambda build --release (x86_64; no fat LTO, 16 codegen units)"
    # The functions only (template.yaml's), not the dev server or the benchmarks' binaries.
    packages=()
    for manifest in functions/*/Cargo.toml; do packages+=(-p "$(basename "$(dirname "$manifest")")"); done
    PATH="$VENV/bin:$PATH" cargo lambda build --release --locked --x86-64 "${packages[@]}"
    ls -la "$TARGET_DIR"/lambda/*/bootstrap >&2
fi
step "no deployed function carries the dev server's /_local/ routes (infra/check-deployed.sh)"
infra/check-deployed.sh

if [[ "${SKIP_LOCALSTACK:-0}" != 1 ]]; then
    # The same tests on the other engine. Its own stack names, so nothing above is touched; each
    # stack is stopped by the trap of the command that started it.
    infra/stack.sh stop "$STACK"
    if [[ "$ENGINE" != localstack ]]; then
        step "LocalStack: start the local stack '$LS_STACK'"
        infra/stack.sh stop "$LS_STACK" >/dev/null 2>&1 || true
        STACK_ENGINE=localstack infra/stack.sh start "$LS_STACK"
        # shellcheck disable=SC1090
        . "$(infra/stack.sh env "$LS_STACK")"

        step "LocalStack: integration tests"
        # The binaries of the default-engine run above, not rebuilt: the same --workspace build
        # (-p integration-tests alone could unify features differently), filtered to the package.
        if ((NEXTEST)); then
            cargo nextest run --locked --workspace --no-fail-fast -E 'package(integration-tests)'
        else
            infra/cargo-test-isolated.sh --only .
        fi
        infra/stack.sh stop "$LS_STACK"

        step "LocalStack: the guide example (infra/example.sh)"
        STACK_ENGINE=localstack STACK=ls-example infra/example.sh
    fi
    if [[ "${SKIP_LAMBDA_BUILD:-0}" != 1 ]]; then
        step "LocalStack: template.yaml built with sam build, deployed, read back (infra/deploy-localstack.sh)"
        infra/deploy-localstack.sh
    fi
fi
step "all checks passed"
