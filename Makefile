# The two commands of the README. Everything they need is installed by the scripts they call.
.PHONY: dev test test-stripe stop example deploy-localstack bench bench-usage bench-dashboard bench-webhooks

## Run the service locally on http://127.0.0.1:3000 (emulators, tables, queues, API).
dev:
	infra/dev.sh

## Every check and test, as CI runs it.
test:
	infra/test.sh

## The payments tests against Stripe's test mode (STRIPE_SECRET_KEY=sk_test_...), or without a
## key against the fake run as a separate Stripe.
test-stripe:
	infra/test-stripe.sh

## The product guide end to end against a fresh local stack and the fake Stripe.
example:
	infra/example.sh

## template.yaml built with sam build, deployed to LocalStack's CloudFormation and read back:
## what was deployed must be what infra/bootstrap.py creates locally (make test runs it too).
deploy-localstack:
	infra/deploy-localstack.sh

## Stop the local stacks started by `make dev` / `make test`.
stop:
	infra/stack.sh stop dev
	infra/stack.sh stop test

## Cold-start and package-size benchmark; writes bench/results/coldstart.md.
bench:
	bench/coldstart.sh

## Usage pipeline benchmark (issue 12: WCU per event all-in, concurrent matchers, freshness,
## matcher CPU, USD per million events; beside today's design, eeade17);
## writes bench/results/usage.md and usage.json (tens of minutes from a fresh clone).
bench-usage:
	bench/usage.sh

## Dashboard benchmark (server time and transfer size per screen, 1,000 customers and 10,000
## invoices); writes bench/results/dashboard.md.
bench-dashboard:
	bench/dashboard.sh

## Outgoing webhooks benchmark (deliveries per second through the dispatcher, write units each
## webhook adds to its change); writes bench/results/webhooks.md and webhooks.json.
bench-webhooks:
	bench/webhooks.sh
