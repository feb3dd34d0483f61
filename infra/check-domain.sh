#!/usr/bin/env bash
# The domain crate `billing` stays free of infrastructure: no AWS SDK, no Stripe client, no
# HTTP stack and no Lambda runtime among its normal dependencies (direct or transitive), and no
# read of the environment in its source. Run by `make test`; fails naming what crept in.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Crate names, one per line, of everything `billing` links in normal builds.
deps="$(cargo tree --locked -p billing -e normal --prefix none | sed -E 's/ v[0-9].*//' | sort -u)"
forbidden='^(aws-.*|aws_.*|async-stripe.*|axum.*|http|http-body.*|hyper.*|tower.*|lambda_.*|reqwest|serde_dynamo)$'
if offenders="$(grep -E "$forbidden" <<<"$deps")"; then
    echo "check-domain.sh: the domain crate billing depends on infrastructure crates:" >&2
    sed 's/^/  /' <<<"$offenders" >&2
    echo "check-domain.sh: move that code to shared/aws, shared/stripe or shared/http" >&2
    exit 1
fi
if reads="$(grep -rnE 'std::env::(var|vars|var_os)\b|env!\(' shared/billing/src)"; then
    echo "check-domain.sh: the domain crate billing reads the environment:" >&2
    sed 's/^/  /' <<<"$reads" >&2
    echo "check-domain.sh: add the setting to billing_startup::Config instead" >&2
    exit 1
fi
echo "check-domain.sh: billing links $(wc -l <<<"$deps") crates, none of them infrastructure" >&2
