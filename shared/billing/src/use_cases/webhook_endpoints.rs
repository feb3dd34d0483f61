//! Webhook endpoints: create (showing the secret once), read, list, change, delete, rotate
//! the secret; and an endpoint's deliveries: list, and retry one by hand.

use chrono::TimeDelta;

use crate::concurrency::{Attempt, retry_on_conflict};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::WebhookEndpointId;
use crate::pagination::{Page, PageRequest};
use crate::ports::Versioned;
use crate::webhooks::delivery::event_of_delivery;
use crate::webhooks::{CreateEndpoint, Delivery, Job, UpdateEndpoint, WebhookEndpoint};

use super::Billing;

/// An endpoint with its secret, shown only when created and when rotated.
#[derive(Debug, Clone)]
pub struct CreatedEndpoint {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// `whsec_…`: what receivers verify signatures with.
    pub secret: String,
}

impl Billing {
    /// Creates an endpoint (every event type unless `events` says otherwise).
    #[tracing::instrument(skip_all)]
    pub async fn create_webhook_endpoint(
        &self,
        request: CreateEndpoint,
    ) -> Result<CreatedEndpoint> {
        let endpoint = request.parse(self.url_policy, self.clock.now())?;
        self.webhooks.insert_endpoint(&endpoint).await?;
        Ok(CreatedEndpoint {
            secret: endpoint.secret.expose().to_owned(),
            endpoint,
        })
    }

    /// Reads an endpoint; 404 when unknown.
    pub async fn webhook_endpoint(&self, id: &str) -> Result<WebhookEndpoint> {
        Ok(self.versioned_endpoint(id).await?.value)
    }

    /// Lists endpoints in creation order.
    pub async fn webhook_endpoints(&self, page: &PageRequest) -> Result<Page<WebhookEndpoint>> {
        self.webhooks.list_endpoints(page).await
    }

    /// Changes an endpoint's URL, event types, description or disabled flag (re-enabling also
    /// forgets its failing streak).
    #[tracing::instrument(skip(self, request))]
    pub async fn update_webhook_endpoint(
        &self,
        id: &str,
        request: UpdateEndpoint,
    ) -> Result<WebhookEndpoint> {
        retry_on_conflict("this webhook endpoint", || async {
            let current = self.versioned_endpoint(id).await?;
            let next = request
                .clone()
                .apply(&current.value, self.url_policy, self.clock.now())?;
            if next == current.value {
                return Ok(Attempt::Done(next));
            }
            Ok(self
                .webhooks
                .update_endpoint(&current, &next)
                .await?
                .into_attempt(next))
        })
        .await
    }

    /// Deletes an endpoint: nothing more is sent to it (its deliveries stay listed).
    #[tracing::instrument(skip(self))]
    pub async fn delete_webhook_endpoint(&self, id: &str) -> Result<WebhookEndpoint> {
        let current = self.versioned_endpoint(id).await?;
        self.webhooks.delete_endpoint(&current.value.id).await?;
        Ok(current.value)
    }

    /// Gives the endpoint a new secret; the old one also signs for 24 hours, so receivers can
    /// switch without missing a delivery.
    #[tracing::instrument(skip(self))]
    pub async fn rotate_webhook_secret(&self, id: &str) -> Result<CreatedEndpoint> {
        retry_on_conflict("this webhook endpoint", || async {
            let current = self.versioned_endpoint(id).await?;
            let next = current.value.rotated(self.clock.now())?;
            let created = CreatedEndpoint {
                secret: next.secret.expose().to_owned(),
                endpoint: next.clone(),
            };
            Ok(self
                .webhooks
                .update_endpoint(&current, &next)
                .await?
                .into_attempt(created))
        })
        .await
    }

    /// An endpoint's deliveries, newest first; 404 when the endpoint is unknown.
    pub async fn webhook_deliveries(&self, id: &str, page: &PageRequest) -> Result<Page<Delivery>> {
        let endpoint = self.versioned_endpoint(id).await?;
        self.webhooks
            .list_deliveries(&endpoint.value.id, page)
            .await
    }

    /// Sends a delivery again now, whatever its status (a failed one stays failed if this
    /// attempt fails too). Asking while a retry is pending is the same retry. 409
    /// `endpoint_disabled` when the endpoint is disabled.
    #[tracing::instrument(skip(self))]
    pub async fn retry_webhook_delivery(&self, id: &str, delivery: &str) -> Result<Delivery> {
        let queue = self.webhook_queue.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "webhooks_not_configured",
                "the webhook queue is not configured (set WEBHOOK_QUEUE_URL)",
            )
        })?;
        let endpoint = self.versioned_endpoint(id).await?.value;
        if endpoint.disabled {
            return Err(Error::conflict(
                "endpoint_disabled",
                "the endpoint is disabled; re-enable it first (PATCH {\"disabled\": false})",
            ));
        }
        let event =
            event_of_delivery(delivery).ok_or_else(|| Error::not_found("delivery", delivery))?;
        let requested = retry_on_conflict("this delivery", || async {
            let current = self
                .webhooks
                .get_delivery(&endpoint.id, &event)
                .await?
                .ok_or_else(|| Error::not_found("delivery", delivery))?;
            let Some(next) = current.value.with_retry_requested(self.clock.now()) else {
                return Ok(Attempt::Done(current.value));
            };
            Ok(self
                .webhooks
                .update_delivery(&current, &next)
                .await?
                .into_attempt(next))
        })
        .await?;
        queue
            .send(&[(
                Job::Delivery {
                    endpoint_id: endpoint.id.clone(),
                    event_id: event,
                },
                TimeDelta::zero(),
            )])
            .await?;
        Ok(requested)
    }

    async fn versioned_endpoint(&self, id: &str) -> Result<Versioned<WebhookEndpoint>> {
        let parsed =
            WebhookEndpointId::parse(id).map_err(|_| Error::not_found("webhook endpoint", id))?;
        self.webhooks
            .get_endpoint(&parsed)
            .await?
            .ok_or_else(|| Error::not_found("webhook endpoint", id))
    }
}
