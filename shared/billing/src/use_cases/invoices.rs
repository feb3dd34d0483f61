//! Invoices: read (priced), list, and the upcoming preview.

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ContractId, CustomerId, InvoiceId};
use crate::invoice::{Invoice, InvoiceStatus, PricedInvoice};
use crate::pagination::{Page, PageRequest};
use crate::ports::InvoiceFilter;

use super::Billing;

impl Billing {
    /// Reads an invoice with its amounts computed; 404 when unknown.
    #[tracing::instrument(skip(self), fields(invoice = id))]
    pub async fn invoice(&self, id: &str) -> Result<PricedInvoice> {
        let id = InvoiceId::parse(id).map_err(|_| Error::not_found("invoice", id))?;
        self.invoice_record(&id).await?.priced()
    }

    /// Reads an invoice as stored; 404 when unknown.
    pub async fn invoice_record(&self, id: &InvoiceId) -> Result<Invoice> {
        self.invoices
            .get_invoice(id)
            .await?
            .ok_or_else(|| Error::not_found("invoice", id.as_str()))
    }

    /// Lists invoices (filtered by customer, contract, status) with amounts computed.
    pub async fn invoices(
        &self,
        page: &PageRequest,
        customer: Option<&str>,
        contract: Option<&str>,
        status: Option<&str>,
    ) -> Result<Page<PricedInvoice>> {
        let filter = InvoiceFilter {
            customer: customer
                .map(|c| CustomerId::parse(c).map_err(|e| e.at("customerId")))
                .transpose()?,
            contract: contract
                .map(|c| ContractId::parse(c).map_err(|e| e.at("contractId")))
                .transpose()?,
            status: status.map(InvoiceStatus::parse).transpose()?,
        };
        let page = self.invoices.list_invoices(&filter, page).await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .map(Invoice::priced)
                .collect::<Result<_>>()?,
            next: page.next,
        })
    }

    /// The contract's open invoice (the one whose period contains today, or the first when the
    /// contract has not started), priced as if it closed now.
    #[tracing::instrument(skip(self))]
    pub async fn upcoming_invoice(&self, contract: &str) -> Result<PricedInvoice> {
        let id = ContractId::parse(contract).map_err(|e| e.at("contractId"))?;
        let contract = self.contract(id.as_str()).await?;
        let today = self.clock.now().date_naive();
        let schedule = contract.schedule();
        let period = match schedule.period_containing(today) {
            Some((_, period)) => Some(period),
            None if today < contract.start_date => schedule.period(0),
            None => None,
        }
        .ok_or_else(|| no_upcoming("the contract has ended"))?;
        let invoice = self
            .invoices
            .get_invoice(&Invoice::id_for(&id, period.start))
            .await?
            .ok_or_else(|| no_upcoming("the current period has no invoice yet"))?;
        invoice.priced()
    }

    /// The payment link of an invoice that has been sent, when links are configured.
    pub fn payment_link(&self, invoice: &Invoice) -> Option<String> {
        use crate::ports::PaymentLinks;
        let links = self.links()?;
        let sent_at = invoice.payment.sent_at?;
        Some(links.payment_link(&invoice.id, sent_at))
    }
}

fn no_upcoming(message: &str) -> Error {
    Error::new(ErrorKind::NotFound, "no_upcoming_invoice", message)
}
