//! Payment provider notifications (Stripe webhooks): verified first, each event id handled
//! once, every change a conditional write so it agrees with the billing run's own updates
//! whichever comes first.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::concurrency::{Attempt, retry_on_conflict};
use crate::contract::Contract;
use crate::customer::{
    Contact, Customer, CustomerName, DefaultPaymentMethod, Email, PaymentMethodId,
    PaymentMethodType, PaymentProvider, ProviderCustomerId, ProviderLink,
};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{CustomerId, InvoiceId};
use crate::invoice::InvoiceStatus;
use crate::ports::{
    ContractStore, CustomerStore, LedgerStore, MailKind, MailTask, transition_invoice_with,
    update_contract_with,
};
use crate::ports::{PaymentGateway, ProviderEvent, ProviderEventKind, WebhookVerifier};
use crate::refunds;
use crate::webhooks::events::{customer_changed, customer_created, invoice_changed};

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Handled now.
    Handled {
        /// The provider's type name, for logs.
        kind: &'static str,
    },
    /// This event id was handled before: nothing done.
    Duplicate,
}

/// The webhook use case.
#[derive(Clone)]
pub struct Webhooks {
    verifier: Arc<dyn WebhookVerifier>,
    gateway: Option<Arc<dyn PaymentGateway>>,
    customers: Arc<dyn CustomerStore>,
    contracts: Arc<dyn ContractStore>,
    ledger: Arc<dyn LedgerStore>,
}

impl Webhooks {
    /// Over one store; the gateway is needed to find the payment method a checkout saved.
    pub fn new<S>(
        store: Arc<S>,
        verifier: Arc<dyn WebhookVerifier>,
        gateway: Option<Arc<dyn PaymentGateway>>,
    ) -> Self
    where
        S: CustomerStore + ContractStore + LedgerStore + 'static,
    {
        Self {
            verifier,
            gateway,
            customers: store.clone(),
            contracts: store.clone(),
            ledger: store,
        }
    }

    /// Verifies and handles one delivery. A bad signature is an `Invalid` error (400) and
    /// nothing is read or written; a failure while handling releases the event id so the
    /// provider's redelivery is handled again.
    pub async fn receive(
        &self,
        payload: &str,
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Delivery> {
        self.receive_at(payload, signature, now, now).await
    }

    /// [`Self::receive`], with the signature's age judged against `signed_now` (the real
    /// time: the provider signed with its clock) and the delivery's effects dated `now` (the
    /// platform's clock, simulated on the local stack).
    #[tracing::instrument(skip_all, fields(event = tracing::field::Empty))]
    pub async fn receive_at(
        &self,
        payload: &str,
        signature: Option<&str>,
        signed_now: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Delivery> {
        let event = self.verifier.verify(payload, signature, signed_now)?;
        tracing::Span::current().record("event", event.id.as_str());
        if !self.ledger.claim_provider_event(&event.id, now).await? {
            return Ok(Delivery::Duplicate);
        }
        match self.apply(&event, now).await {
            Ok(kind) => Ok(Delivery::Handled { kind }),
            Err(e) => {
                self.ledger.release_provider_event(&event.id).await?;
                Err(e)
            }
        }
    }

    async fn apply(&self, event: &ProviderEvent, now: DateTime<Utc>) -> Result<&'static str> {
        match &event.kind {
            ProviderEventKind::CheckoutCompleted {
                invoice_id,
                payment_intent,
                save_payment_method,
                ..
            } => {
                if let Some(id) = invoice_id {
                    let contract = self.mark_paid(id, payment_intent.as_deref(), now).await?;
                    if let (true, Some(pi), Some(contract), Some(gateway)) = (
                        *save_payment_method,
                        payment_intent,
                        contract,
                        &self.gateway,
                    ) && let Some(method) = gateway.payment_method_of(pi).await?
                    {
                        self.save_on_contract(&contract, method, now).await?;
                    }
                }
                Ok("checkout.session.completed")
            }
            ProviderEventKind::PaymentSucceeded {
                invoice_id,
                payment_intent,
            } => {
                if let Some(id) = invoice_id {
                    self.mark_paid(id, Some(payment_intent), now).await?;
                }
                Ok("payment_intent.succeeded")
            }
            ProviderEventKind::PaymentFailed { .. } => {
                // The billing run records its own attempts (with their retry schedule) from the
                // charge's answer; a failed checkout payment leaves the invoice payable.
                Ok("payment_intent.payment_failed")
            }
            ProviderEventKind::SetupSucceeded {
                customer: Some(customer),
                payment_method: Some(method),
            } => {
                self.save_on_customer(customer, method, now).await?;
                Ok("setup_intent.succeeded")
            }
            ProviderEventKind::SetupSucceeded { .. } => Ok("setup_intent.succeeded"),
            ProviderEventKind::CustomerUpserted {
                customer,
                name,
                email,
                our_id,
            } => {
                self.upsert_customer(customer, name.as_deref(), email.as_deref(), our_id, now)
                    .await?;
                Ok("customer")
            }
            ProviderEventKind::Refunded {
                invoice_id,
                payment_intent,
            } => {
                let id = match (invoice_id, payment_intent, &self.gateway) {
                    (Some(id), _, _) => Some(id.clone()),
                    (None, Some(pi), Some(gateway)) => gateway.invoice_of_payment(pi).await?,
                    _ => None,
                };
                if let Some(id) = id {
                    self.mark_refunded(&id, payment_intent.as_deref(), now)
                        .await?;
                }
                Ok("charge.refunded")
            }
            ProviderEventKind::Other { .. } => Ok("ignored"),
        }
    }

    /// `SENT` → `PAID`. Returns the invoice's contract when the payment counts for it (now, or
    /// before: a redelivery, or the billing run's own charge). A payment the invoice did not
    /// need (it was paid by another payment, void, refunded or not yet sent: the customer paid
    /// on the portal while auto-pay charged) is refunded in full, and `None` returned.
    #[tracing::instrument(skip(self, now))]
    async fn mark_paid(
        &self,
        id: &InvoiceId,
        payment_intent: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Contract>> {
        retry_on_conflict("this invoice", || async {
            let Some(state) = self.ledger.invoice_state(id).await? else {
                tracing::warn!(invoice = %id, "payment for an unknown invoice");
                return Ok(Attempt::Done(None));
            };
            let invoice = &state.invoice;
            match payment_intent {
                Some(pi) if refunds::unneeded(invoice, pi) => {
                    self.refund_unneeded(id, pi, now).await?;
                    return Ok(Attempt::Done(None));
                }
                // Recorded before: a redelivery, or the billing run's own charge.
                Some(pi) if invoice.payment.payment_intent.as_deref() == Some(pi) => {
                    return Ok(Attempt::Done(self.contract_of(invoice).await?));
                }
                None if invoice.status != InvoiceStatus::Sent => {
                    return Ok(Attempt::Done(self.contract_of(invoice).await?));
                }
                _ => {}
            }
            let mut next = invoice.clone();
            next.status = InvoiceStatus::Paid;
            next.updated_at = now;
            next.payment.paid_at = Some(now);
            next.payment.next_attempt_on = None;
            next.payment.payment_intent = payment_intent.map(str::to_owned);
            let mail = [MailTask {
                invoice_id: id.clone(),
                kind: MailKind::PaymentReceived,
            }];
            let events = invoice_changed(invoice, &next, now);
            let write = self
                .ledger
                .transition(&state, &next, None, &mail, &events)
                .await?;
            Ok(match write.into_attempt(()) {
                Attempt::Done(()) => Attempt::Done(self.contract_of(invoice).await?),
                Attempt::Conflict => Attempt::Conflict,
            })
        })
        .await
    }

    async fn contract_of(&self, invoice: &crate::invoice::Invoice) -> Result<Option<Contract>> {
        Ok(self
            .contracts
            .get_contract(&invoice.contract_id)
            .await?
            .map(|v| v.value))
    }

    async fn refund_unneeded(
        &self,
        id: &InvoiceId,
        payment: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let gateway = self.gateway.as_ref().ok_or_else(|| {
            Error::internal("a payment needs refunding but no payment provider is configured")
        })?;
        refunds::refund_unneeded(self.ledger.as_ref(), gateway.as_ref(), id, payment, now).await
    }

    /// `PAID` → `REFUNDED`, when the refunded payment is the one that paid it (not a payment
    /// the invoice did not need, refunded by [`Self::mark_paid`]).
    #[tracing::instrument(skip(self, now))]
    async fn mark_refunded(
        &self,
        id: &InvoiceId,
        payment_intent: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        transition_invoice_with(self.ledger.as_ref(), id, now, |invoice| {
            let paid_by = invoice.payment.payment_intent.as_deref();
            if invoice.status != InvoiceStatus::Paid
                || payment_intent.is_some_and(|pi| paid_by != Some(pi))
            {
                return None;
            }
            let mut next = invoice.clone();
            next.status = InvoiceStatus::Refunded;
            next.updated_at = now;
            next.payment.refunded_at = Some(now);
            Some((next, Vec::new()))
        })
        .await
    }

    /// The customer opted in on the portal: this contract's invoices are charged to the method.
    async fn save_on_contract(
        &self,
        contract: &Contract,
        method: PaymentMethodId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        update_contract_with(self.contracts.as_ref(), &contract.id, now, |current| {
            let saved = current.auto_pay && current.payment_method.as_ref() == Some(&method);
            (!saved).then(|| Contract {
                auto_pay: true,
                payment_method: Some(method.clone()),
                ..current.clone()
            })
        })
        .await
    }

    async fn save_on_customer(
        &self,
        customer: &ProviderCustomerId,
        method: &PaymentMethodId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        retry_on_conflict("this customer", || async {
            let Some(current) = self.customers.get_by_provider_id(customer).await? else {
                tracing::warn!(customer = %customer.as_str(), "setup for an unknown customer");
                return Ok(Attempt::Done(()));
            };
            if current.value.payment_method.as_ref().map(|m| &m.id) == Some(method) {
                return Ok(Attempt::Done(()));
            }
            let mut next = current.value.clone();
            next.payment_method = Some(DefaultPaymentMethod {
                id: method.clone(),
                kind: PaymentMethodType::Card,
            });
            next.updated_at = now;
            let events = customer_changed(&current.value, &next, now);
            Ok(self
                .customers
                .update(&current, &next, &events)
                .await?
                .into_attempt(()))
        })
        .await
    }

    /// Creates or updates our customer linked to a provider customer. One we created (its
    /// metadata carries our id) is never created again here, even when its link is not written
    /// yet; one made in the provider's dashboard gets an id derived from the provider's, so
    /// redeliveries and races make one customer.
    async fn upsert_customer(
        &self,
        customer: &ProviderCustomerId,
        name: Option<&str>,
        email: Option<&str>,
        our_id: &Option<CustomerId>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let name = name
            .filter(|n| !n.trim().is_empty())
            .and_then(|n| CustomerName::parse(n).ok());
        retry_on_conflict("this customer", || async {
            if let Some(current) = self.customers.get_by_provider_id(customer).await? {
                let Some(name) = &name else {
                    return Ok(Attempt::Done(()));
                };
                if &current.value.name == name {
                    return Ok(Attempt::Done(()));
                }
                let mut next = current.value.clone();
                next.name = name.clone();
                next.updated_at = now;
                let events = customer_changed(&current.value, &next, now);
                return Ok(self
                    .customers
                    .update(&current, &next, &events)
                    .await?
                    .into_attempt(()));
            }
            if our_id.is_some() {
                return Ok(Attempt::Done(())); // ours: the API writes (or wrote) it with the link
            }
            let contacts = email
                .and_then(|e| Email::parse(e).ok())
                .map(|email| Contact {
                    email,
                    roles: Vec::new(),
                })
                .into_iter()
                .collect();
            let fallback = CustomerName::parse(customer.as_str())?;
            let new = Customer {
                id: CustomerId::derive(&format!("stripe:{}", customer.as_str())),
                name: name.clone().unwrap_or(fallback),
                legal_name: None,
                contacts,
                external_customer_id: None,
                tags: Vec::new(),
                metadata: Default::default(),
                payment_provider: Some(ProviderLink {
                    provider: PaymentProvider::Stripe,
                    customer_id: customer.clone(),
                }),
                payment_method: None,
                auto_pay_paused: false,
                created_at: now,
                updated_at: now,
            };
            match self
                .customers
                .insert(&new, &customer_created(&new, now))
                .await
            {
                Ok(()) => Ok(Attempt::Done(())),
                // Linked meanwhile (by the API or a concurrent delivery): re-read and update.
                Err(e) if e.kind == ErrorKind::Conflict => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            }
        })
        .await
    }
}

#[cfg(test)]
#[path = "provider_webhooks/tests.rs"]
mod tests;
