//! Integration tests: the real `api`, `dashboard` and `stripe-webhook` handlers, reached over HTTP through the
//! dev server's API Gateway conversion, against DynamoDB Local and moto (`make test`).

mod auth;
mod catalog;
mod contracts;
mod customers;
mod dashboard;
mod double_payments;
mod errors;
mod local_stack;
mod outgoing_webhooks;
mod payments;
mod reliability;
mod stripe_adapter;
mod test_clock;
mod tiers;
mod usage;
