//! The payment portal's use cases: a signed link opens one invoice's page; its Pay button
//! starts a provider checkout for exactly the frozen amount due.

use chrono::{DateTime, Utc};

use crate::customer::Customer;
use crate::error::ErrorKind;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::payments::{CheckoutRequest, PaymentLinks};
use crate::portal::{
    PaymentToken, PortalError, PortalState, PortalView, render_invoice_page, render_message_page,
};
use crate::service::Billing;

/// A portal answer: an HTML page with its status, or a redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortalAnswer {
    /// Show this page.
    Page {
        /// HTTP status.
        status: u16,
        /// The document.
        html: String,
    },
    /// Go there (303).
    Redirect(String),
}

fn message(status: u16, title: &str, text: &str) -> PortalAnswer {
    PortalAnswer::Page {
        status,
        html: render_message_page(title, text),
    }
}

impl Billing {
    /// The payment link of an invoice that has been sent, when links are configured.
    pub fn payment_link(&self, invoice: &Invoice) -> Option<String> {
        let links = self.links()?;
        let sent_at = invoice.payment.sent_at?;
        Some(links.payment_link(&invoice.id, sent_at))
    }

    /// Checks a link and reads its invoice and customer.
    async fn open_link(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<(Invoice, Customer, bool), PortalAnswer> {
        let Some(links) = self.links() else {
            return Err(message(
                503,
                "Payments unavailable",
                "Online payment is not configured for this service.",
            ));
        };
        let (id, expired) = match links.key().verify(token, now) {
            Ok(PaymentToken { invoice_id, .. }) => (invoice_id, false),
            Err(PortalError::Expired { invoice_id }) => (invoice_id, true),
            Err(PortalError::Invalid) => {
                return Err(message(
                    404,
                    "Invalid payment link",
                    "This payment link is not valid. Please use the link from your invoice email.",
                ));
            }
        };
        let not_found = || message(404, "Invoice not found", "This invoice does not exist.");
        let invoice = self.invoice_record(&id).await.map_err(|_| not_found())?;
        let customer = self
            .customer(invoice.customer_id.as_str())
            .await
            .map_err(|_| not_found())?;
        Ok((invoice, customer, expired))
    }

    /// The invoice page behind a payment link. `notice` is a line shown on top (e.g. after
    /// returning from checkout).
    pub async fn portal_page(&self, token: &str, notice: Option<&str>) -> PortalAnswer {
        let now = self.now();
        let (invoice, customer, expired) = match self.open_link(token, now).await {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let priced = match invoice.priced() {
            Ok(p) => p,
            Err(e) => return message(500, "Something went wrong", &e.message),
        };
        let state = match (expired, invoice.status) {
            (true, InvoiceStatus::Sent) => PortalState::Expired,
            (_, status) => PortalState::from_status(status, format!("/pay/{token}")),
        };
        PortalAnswer::Page {
            status: 200,
            html: render_invoice_page(&PortalView {
                customer_name: customer.name.as_str(),
                invoice: &priced,
                state,
                notice,
            }),
        }
    }

    /// The Pay button: a provider checkout for the amount due, back to this page afterwards.
    /// Only a sent, unpaid invoice behind a live link can be paid.
    pub async fn portal_checkout(&self, token: &str, save_payment_method: bool) -> PortalAnswer {
        let now = self.now();
        let (invoice, customer, expired) = match self.open_link(token, now).await {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        if expired || invoice.status != InvoiceStatus::Sent {
            // The page says why (paid, void, expired).
            return self.portal_page(token, None).await;
        }
        let Some(gateway) = self.gateway() else {
            return message(
                503,
                "Payments unavailable",
                "Online payment is not configured for this service.",
            );
        };
        let Some(amount) = invoice.payment.amount_due_minor_units else {
            return message(
                500,
                "Something went wrong",
                "The invoice has no amount due.",
            );
        };
        let base = self
            .links()
            .map(|l| l.base_url().trim_end_matches('/').to_owned());
        let page = format!("{}/pay/{token}", base.unwrap_or_default());
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
            Ok(session) => PortalAnswer::Redirect(session.url),
            Err(e) if e.kind == ErrorKind::Unavailable => message(
                503,
                "Payments unavailable",
                "Our payment provider cannot be reached right now. Please try again in a few minutes.",
            ),
            Err(e) => {
                tracing::error!(error = %e, invoice = %invoice.id, "checkout failed");
                message(
                    500,
                    "Something went wrong",
                    "The payment could not be started.",
                )
            }
        }
    }
}
