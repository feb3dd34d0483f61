//! The payment portal's use cases: a signed link opens one invoice's page; its Pay button
//! starts a provider checkout for exactly the frozen amount due. They answer in outcomes; the
//! HTTP edge (crate `billing-http`) turns each into a page, a redirect or an error page.

use chrono::{DateTime, Utc};

use crate::customer::Customer;
use crate::error::{Error, ErrorKind};
use crate::invoice::{Invoice, InvoiceStatus, PricedInvoice};
use crate::portal::{PaymentToken, PortalError, PortalState};
use crate::ports::CheckoutRequest;

use super::Billing;

/// What a payment link leads to.
#[derive(Debug, Clone)]
pub enum PortalOutcome {
    /// Show the invoice.
    Page(Box<PortalPage>),
    /// Send the customer to the provider's hosted checkout.
    Redirect(String),
    /// The link shows no invoice, or the payment cannot start.
    Refused(PortalRefusal),
}

/// Everything the invoice page shows.
#[derive(Debug, Clone)]
pub struct PortalPage {
    /// The billed customer's display name.
    pub customer_name: String,
    /// The invoice with its money computed (the page never computes amounts itself).
    pub invoice: PricedInvoice,
    /// What the customer can do.
    pub state: PortalState,
}

/// Why a link shows no invoice or cannot be paid.
#[derive(Debug, Clone)]
pub enum PortalRefusal {
    /// Payment links or the payment provider are not configured.
    NotConfigured,
    /// Malformed, tampered with, or signed with another key.
    InvalidLink,
    /// A genuine link to an invoice we no longer have.
    UnknownInvoice,
    /// The payment provider cannot be reached; trying later may work.
    ProviderUnavailable,
    /// A failure on our side: the edge logs the error and shows a generic page.
    Failed(Error),
}

impl From<PortalRefusal> for PortalOutcome {
    fn from(refusal: PortalRefusal) -> Self {
        Self::Refused(refusal)
    }
}

impl Billing {
    /// Checks a link and reads its invoice and customer.
    async fn open_link(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(Invoice, Customer, bool), PortalRefusal> {
        let links = self.links().ok_or(PortalRefusal::NotConfigured)?;
        let (id, expired) = match links.key().verify(token, now) {
            Ok(PaymentToken { invoice_id, .. }) => (invoice_id, false),
            Err(PortalError::Expired { invoice_id }) => (invoice_id, true),
            Err(PortalError::Invalid) => return Err(PortalRefusal::InvalidLink),
        };
        let invoice = self.invoice_record(&id).await.map_err(unknown_or_failed)?;
        let customer = self
            .customer(invoice.customer_id.as_str())
            .await
            .map_err(unknown_or_failed)?;
        Ok((invoice, customer, expired))
    }

    /// The invoice page behind a payment link.
    #[tracing::instrument(skip_all, fields(invoice = tracing::field::Empty))]
    pub async fn portal_page(&self, token: &str) -> PortalOutcome {
        let now = self.now();
        let (invoice, customer, expired) = match self.open_link(token, now).await {
            Ok(found) => found,
            Err(refusal) => return refusal.into(),
        };
        tracing::Span::current().record("invoice", invoice.id.as_str());
        let priced = match invoice.priced() {
            Ok(p) => p,
            Err(e) => return PortalRefusal::Failed(e).into(),
        };
        let state = match (expired, invoice.status) {
            (true, InvoiceStatus::Sent) => PortalState::Expired,
            (_, status) => PortalState::from_status(status),
        };
        PortalOutcome::Page(Box::new(PortalPage {
            customer_name: customer.name.as_str().to_owned(),
            invoice: priced,
            state,
        }))
    }

    /// The Pay button: a provider checkout for the amount due, back to this page afterwards.
    /// Only a sent, unpaid invoice behind a live link can be paid; any other shows its page.
    #[tracing::instrument(skip_all, fields(invoice = tracing::field::Empty))]
    pub async fn portal_checkout(&self, token: &str, save_payment_method: bool) -> PortalOutcome {
        let now = self.now();
        let (invoice, customer, expired) = match self.open_link(token, now).await {
            Ok(found) => found,
            Err(refusal) => return refusal.into(),
        };
        tracing::Span::current().record("invoice", invoice.id.as_str());
        if expired || invoice.status != InvoiceStatus::Sent {
            // The page says why (paid, void, expired).
            return self.portal_page(token).await;
        }
        let (Some(gateway), Some(links)) = (self.gateway(), self.links()) else {
            return PortalRefusal::NotConfigured.into();
        };
        let Some(amount) = invoice.payment.amount_due_minor_units else {
            return PortalRefusal::Failed(Error::internal(format!(
                "sent invoice {} has no amount due",
                invoice.id
            )))
            .into();
        };
        let page = links.page_url(token);
        let request = CheckoutRequest {
            invoice_id: invoice.id.clone(),
            customer: customer.payment_provider.map(|l| l.customer_id),
            amount_minor: amount,
            currency: invoice.currency,
            description: format!(
                "Invoice {}",
                invoice
                    .invoice_number
                    .as_deref()
                    .unwrap_or(invoice.id.as_str())
            ),
            save_payment_method,
            success_url: format!("{page}?checkout=success"),
            cancel_url: format!("{page}?checkout=cancelled"),
        };
        match gateway.create_checkout(&request).await {
            Ok(session) => PortalOutcome::Redirect(session.url),
            Err(e) if e.kind == ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "the payment provider is unavailable");
                PortalRefusal::ProviderUnavailable.into()
            }
            Err(e) => PortalRefusal::Failed(e).into(),
        }
    }
}

/// A read that found nothing is an unknown invoice; anything else is our failure.
fn unknown_or_failed(e: Error) -> PortalRefusal {
    if e.kind == ErrorKind::NotFound {
        PortalRefusal::UnknownInvoice
    } else {
        PortalRefusal::Failed(e)
    }
}
