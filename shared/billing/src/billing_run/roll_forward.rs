//! Step 1: rolling contracts always have drafts for the current and the next period, so usage
//! arriving on a period's first day finds its invoice.

use chrono::{DateTime, NaiveDate, Utc};

use crate::contract::{Contract, ContractStatus};
use crate::error::{Error, Result};
use crate::ids::InvoiceId;
use crate::invoice::Invoice;
use crate::pagination::PageRequest;
use crate::webhooks::events::invoice_created;

use super::{BillingRun, RunReport};

impl BillingRun {
    /// Drafts ahead for every active rolling contract.
    pub(super) async fn roll_forward(
        &self,
        date: NaiveDate,
        now: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<()> {
        let mut page = PageRequest {
            limit: crate::pagination::MAX_LIMIT,
            after: None,
        };
        loop {
            let contracts = self.contracts.list_contracts(None, &page).await?;
            for contract in contracts
                .items
                .iter()
                .filter(|c| c.status == ContractStatus::Active && c.end_date.is_none())
            {
                report.drafted += self.draft_ahead(contract, date, now).await?;
            }
            match contracts.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        Ok(())
    }

    /// Drafts of the period containing `date` and the next one, when missing.
    async fn draft_ahead(
        &self,
        contract: &Contract,
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let schedule = contract.schedule();
        let Some((index, _)) = schedule.period_containing(date) else {
            return Ok(0);
        };
        let wanted: Vec<_> = [index, index + 1]
            .into_iter()
            .filter_map(|i| schedule.period(i))
            .map(|p| (Invoice::id_for(&contract.id, p.start), p))
            .collect();
        let ids: Vec<InvoiceId> = wanted.iter().map(|(id, _)| id.clone()).collect();
        let existing = self.usage.invoice_statuses(&ids).await?;
        let mut drafted = 0;
        for (id, period) in wanted {
            if existing.contains_key(&id) {
                continue;
            }
            let plan = self
                .catalog
                .get_plan(&contract.plan_id)
                .await?
                .ok_or_else(|| Error::internal(format!("plan {} is missing", contract.plan_id)))?;
            let draft = Invoice::draft(contract, &plan, period, now);
            self.usage
                .ensure_invoice(&draft, &invoice_created(&draft, now))
                .await?;
            drafted += 1;
        }
        Ok(drafted)
    }
}
