# The two commands of the README. Everything they need is installed by the scripts they call.
.PHONY: dev test stop example bench bench-usage

## Run the service locally on http://127.0.0.1:3000 (emulators, tables, queues, API).
dev:
	infra/dev.sh

## Every check and test, as CI runs it.
test:
	infra/test.sh

## The product guide end to end against a fresh local stack and the fake Stripe.
example:
	infra/example.sh

## Stop the local stacks started by `make dev` / `make test`.
stop:
	infra/stack.sh stop dev
	infra/stack.sh stop test

## Cold-start and package-size benchmark; writes bench/results/coldstart.md.
bench:
	bench/coldstart.sh

## Usage pipeline benchmark (writes per event, end to end, matcher CPU, SQS requests);
## writes bench/results/usage.md.
bench-usage:
	bench/usage.sh
