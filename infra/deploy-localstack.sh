#!/usr/bin/env bash
# template.yaml deployed on LocalStack, and read back (`make deploy-localstack`; `make test` runs it):
#   1. a LocalStack stack of its own ("ls-deploy") that also serves what CloudFormation needs
#      for the template (LOCALSTACK_EXTRA_SERVICES); infra/stack.sh's start runs infra/bootstrap.py
#      on it as on any stack, in us-east-1;
#   2. the template LocalStack can take (infra/localstack/deploy/samtemplate.py): template.yaml
#      less the SAM resources that become a resource type LocalStack's CloudFormation has no
#      provider for, each printed as LEFT OUT with the reason (the HTTP API, today);
#   3. `sam build` (x86_64; BuildMethod rust-cargolambda, i.e. `cargo lambda build --release`)
#      and `sam deploy` of it to LocalStack's CloudFormation, in us-west-2 (so it does not collide
#      with what bootstrap.py made); the stack must reach CREATE_COMPLETE;
#   4. infra/localstack/deploy/check_deploy.py reads back every deployed resource and compares
#      it with the template and with what bootstrap.py created; it exits 1 on any difference.
# Functions are created, never invoked (that needs Docker; see infra/localstack/offline_plugins).
# The SAM CLI is installed by infra/localstack/deploy/install.sh into infra/.cache/sam/venv.
# DEPLOY_REPORT=path also writes the check's lines there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STACK="${STACK:-ls-deploy}"                 # the local stack (infra/stack.sh)
CFN_STACK="billing"                         # the CloudFormation stack
DEPLOY_REGION="us-west-2"                   # bootstrap.py uses us-east-1
ACCOUNT_ID="000000000000"                   # LocalStack's
PARAMETERS=(Architecture=x86_64)            # as `sam build` and `sam deploy` are given them
# What a CloudFormation deploy of the template needs beyond the local stack's own services (kms:
# LocalStack creates a key for a table with SSESpecification enabled).
EXTRA_SERVICES="cloudformation,lambda,iam,s3,sts,logs,events,kms"
WORK="$ROOT/infra/.local/$STACK"
SAM_VENV="$ROOT/infra/.cache/sam/venv"
LS_PY="$ROOT/infra/.cache/localstack/venv/bin/python"
export SAM_CLI_TELEMETRY=0

say() { echo "deploy-localstack.sh: $*" >&2; }
elapsed() { say "$1 ($((SECONDS - t0)) s)"; t0=$SECONDS; }
t0=$SECONDS

infra/localstack/deploy/install.sh
infra/stack.sh stop "$STACK" >/dev/null 2>&1 || true
LOCALSTACK_EXTRA_SERVICES="$EXTRA_SERVICES" STACK_ENGINE=localstack infra/stack.sh start "$STACK"
trap 'infra/stack.sh stop "$STACK"' EXIT
# shellcheck disable=SC1090
. "$(infra/stack.sh env "$STACK")"
ENDPOINT="$AWS_ENDPOINT_URL"
elapsed "LocalStack started, bootstrap.py done"

# 2. What LocalStack's CloudFormation has providers for, and the template it can take.
rm -rf "$WORK/build" "$WORK/deploy"
mkdir -p "$WORK/deploy"
"$LS_PY" -c 'import importlib.metadata as m
print("\n".join(e.name for e in m.entry_points(group="localstack.cloudformation.resource_providers")))' \
    >"$WORK/deploy/providers.txt"
params=()
for p in "${PARAMETERS[@]}"; do params+=(--parameter "$p"); done
"$SAM_VENV/bin/python" infra/localstack/deploy/samtemplate.py for-localstack --template template.yaml \
    --providers "$WORK/deploy/providers.txt" --out "$WORK/deploy/template.json" \
    --report "$WORK/deploy/left-out.json" "${params[@]}"

# 3. Build. cargo-lambda from infra/.venv; SAM runs `cargo lambda build --release --bin NAME`
# per function (no --locked: SAM passes no flags), so make sure the lock file stays as it is.
lock_before="$(sha256sum Cargo.lock)"
PATH="$ROOT/infra/.venv/bin:$PATH" "$SAM_VENV/bin/sam" build --beta-features \
    --template-file "$WORK/deploy/template.json" --base-dir "$ROOT" \
    --build-dir "$WORK/build" --cache-dir "$WORK/sam-cache" \
    --parameter-overrides "${PARAMETERS[@]}"
[[ "$(sha256sum Cargo.lock)" == "$lock_before" ]] || { say "error: sam build changed Cargo.lock"; exit 1; }
elapsed "sam build done"

# Deploy. Plain `sam` pointed at LocalStack by AWS_ENDPOINT_URL (from the stack's env file).
export AWS_REGION="$DEPLOY_REGION" AWS_DEFAULT_REGION="$DEPLOY_REGION"
unset AWS_ENDPOINT_URL_DYNAMODB # everything at LocalStack's one endpoint
BUCKET="sam-artifacts"
"$SAM_VENV/bin/python" - "$BUCKET" "$DEPLOY_REGION" <<'EOF'
import sys, boto3
bucket, region = sys.argv[1:]
boto3.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
EOF
status=0
"$SAM_VENV/bin/sam" deploy --template-file "$WORK/build/template.yaml" --stack-name "$CFN_STACK" \
    --s3-bucket "$BUCKET" --region "$DEPLOY_REGION" --capabilities CAPABILITY_IAM \
    --parameter-overrides "${PARAMETERS[@]}" --no-confirm-changeset --no-fail-on-empty-changeset \
    --no-progressbar ||
    status=$?
stack_status="$("$SAM_VENV/bin/python" -c 'import sys, boto3
print(boto3.client("cloudformation").describe_stacks(StackName=sys.argv[1])["Stacks"][0]["StackStatus"])' \
    "$CFN_STACK" 2>/dev/null || echo "unknown (no such stack)")"
say "CloudFormation stack $CFN_STACK: $stack_status"
if ((status != 0)) || [[ "$stack_status" != CREATE_COMPLETE ]]; then
    # What failed and why, from CloudFormation's own events.
    "$SAM_VENV/bin/python" - "$CFN_STACK" <<'EOF' >&2 || true
import sys, boto3
for e in boto3.client("cloudformation").describe_stack_events(StackName=sys.argv[1])["StackEvents"]:
    if e["ResourceStatus"].endswith("FAILED"):
        print(f'{e["LogicalResourceId"]} ({e["ResourceType"]}): {e["ResourceStatus"]}: {e.get("ResourceStatusReason")}')
EOF
    say "error: the deploy did not reach CREATE_COMPLETE"
    exit 1
fi
elapsed "sam deploy done"

# 4. Read back and compare.
report=()
[[ -n "${DEPLOY_REPORT:-}" ]] && report=(--report "$DEPLOY_REPORT")
"$SAM_VENV/bin/python" infra/localstack/deploy/check_deploy.py --template "$WORK/deploy/template.json" \
    --original template.yaml --left-out "$WORK/deploy/left-out.json" --stack-name "$CFN_STACK" \
    --deploy-region "$DEPLOY_REGION" --endpoint "$ENDPOINT" --env-file "$(infra/stack.sh env "$STACK")" \
    --account-id "$ACCOUNT_ID" "${params[@]}" "${report[@]}"
elapsed "read back and compared"
