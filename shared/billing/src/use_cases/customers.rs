//! Customers: create (linked to the payment provider), read, list, patch, SetupIntents, and
//! the current period's usage.

use crate::concurrency::retry_on_conflict;
use crate::customer::{
    CreateCustomer, Customer, ExternalCustomerId, PaymentProvider, ProviderLink, UpdateCustomer,
};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ContractId, CustomerId, InvoiceId, MeterId};
use crate::invoice::{Invoice, LineKind, PricedLine};
use crate::meter::MeterCode;
use crate::money::Currency;
use crate::pagination::{Page, PageRequest};
use crate::period::Period;
use crate::ports::{NewProviderCustomer, PaymentGateway, SetupIntent};
use crate::webhooks::events::{customer_changed, customer_created};

use super::{Billing, no_gateway};

/// One usage line of a customer's current period.
#[derive(Debug, Clone)]
pub struct UsageLine {
    /// Under which contract.
    pub contract_id: ContractId,
    /// On which invoice.
    pub invoice_id: InvoiceId,
    /// Which meter.
    pub meter_id: MeterId,
    /// The current period.
    pub period: Period,
    /// The invoice's currency.
    pub currency: Currency,
    /// The line, priced.
    pub line: PricedLine,
}

impl Billing {
    /// Creates a customer; 409 with the holder's id when a unique field is taken.
    ///
    /// With a payment provider: a customer without `paymentProviderId` gets a provider
    /// customer (created with an idempotency key derived from our id, so a retried call never
    /// makes two); a given one must exist there; a `paymentMethodId` is attached and made the
    /// default. The provider is called before our write; when the request is then refused (a
    /// declined card, a taken `externalCustomerId`), a provider customer made for it is
    /// deleted again, so a refused request leaves nothing behind.
    #[tracing::instrument(skip_all, fields(customer = tracing::field::Empty))]
    pub async fn create_customer(&self, request: CreateCustomer) -> Result<Customer> {
        let mut customer = request.parse(self.clock.now())?;
        tracing::Span::current().record("customer", customer.id.as_str());
        let Some(gateway) = &self.gateway else {
            let events = customer_created(&customer, customer.created_at);
            self.customers.insert(&customer, &events).await?;
            return Ok(customer);
        };
        let created = match &customer.payment_provider {
            Some(link) => {
                check_provider_customer(gateway.as_ref(), &link.customer_id).await?;
                None
            }
            None => {
                let created = gateway
                    .create_customer(&NewProviderCustomer {
                        customer_id: customer.id.clone(),
                        name: customer.name.as_str().to_owned(),
                        email: customer.contacts.first().map(|c| c.email.clone()),
                    })
                    .await?;
                customer.payment_provider = Some(ProviderLink {
                    provider: PaymentProvider::Stripe,
                    customer_id: created.clone(),
                });
                Some(created)
            }
        };
        let outcome = self.link_and_insert(gateway.as_ref(), &mut customer).await;
        match (outcome, created) {
            (Ok(()), _) => Ok(customer),
            (Err(Written::No(error)), Some(created)) => {
                if let Err(e) = gateway.delete_customer(&created).await {
                    tracing::warn!(error = %e, customer = %created.as_str(),
                        "could not delete the Stripe customer of a refused request");
                }
                Err(error)
            }
            (Err(Written::No(error) | Written::Unknown(error)), _) => Err(error),
        }
    }

    /// The rest of a customer create once it has its provider link: attach its payment method,
    /// then insert. Says whether a failure could have written the customer.
    async fn link_and_insert(
        &self,
        gateway: &dyn PaymentGateway,
        customer: &mut Customer,
    ) -> std::result::Result<(), Written> {
        let link = customer
            .payment_provider
            .as_ref()
            .map(|l| l.customer_id.clone());
        if let (Some(method), Some(link)) = (&mut customer.payment_method, link) {
            method.id = gateway
                .attach_default_payment_method(&link, &method.id)
                .await
                .map_err(|e| Written::No(e.at("paymentMethodId")))?;
        }
        let events = customer_created(customer, customer.created_at);
        self.customers.insert(customer, &events).await.map_err(|e| {
            // A refusal (a taken unique field) wrote nothing; an outage may have written it.
            if matches!(e.kind, ErrorKind::Conflict | ErrorKind::Unprocessable) {
                Written::No(e)
            } else {
                Written::Unknown(e)
            }
        })
    }

    /// A SetupIntent for collecting a payment method in the SaaS business's own page (Stripe
    /// Elements); the method is saved on the customer when its webhook arrives.
    #[tracing::instrument(skip(self), fields(customer = id))]
    pub async fn create_setup_intent(&self, id: &str) -> Result<SetupIntent> {
        let customer = self.customer(id).await?;
        let gateway = self.gateway.as_ref().ok_or_else(no_gateway)?;
        let link = customer.payment_provider.ok_or_else(|| {
            Error::unprocessable(
                "no_payment_provider_customer",
                "the customer is not linked to a Stripe customer; set paymentProviderId",
            )
        })?;
        gateway.create_setup_intent(&link.customer_id).await
    }

    /// Reads a customer by our id; 404 when unknown (or not an id we could have issued).
    pub async fn customer(&self, id: &str) -> Result<Customer> {
        let id = CustomerId::parse(id).map_err(|_| Error::not_found("customer", id))?;
        self.customers
            .get(&id)
            .await?
            .map(|v| v.value)
            .ok_or_else(|| Error::not_found("customer", id.as_str()))
    }

    /// Lists customers in creation order, or finds the one holding `external_id`.
    pub async fn customers(
        &self,
        page: &PageRequest,
        external_id: Option<&str>,
    ) -> Result<Page<Customer>> {
        match external_id {
            None => self.customers.list(page).await,
            Some(raw) => {
                let external_id =
                    ExternalCustomerId::parse(raw).map_err(|e| e.at("externalCustomerId"))?;
                let found = self.customers.get_by_external_id(&external_id).await?;
                Ok(Page {
                    items: found.into_iter().collect(),
                    next: None,
                })
            }
        }
    }

    /// Applies a partial update. Concurrent updates are serialised by version: a loser re-reads
    /// and re-applies its patch, so no change is silently lost.
    #[tracing::instrument(skip(self, request), fields(customer = id))]
    pub async fn update_customer(&self, id: &str, request: UpdateCustomer) -> Result<Customer> {
        let id = CustomerId::parse(id).map_err(|_| Error::not_found("customer", id))?;
        let patch = request.parse()?;
        retry_on_conflict("this customer", || async {
            let current = self
                .customers
                .get(&id)
                .await?
                .ok_or_else(|| Error::not_found("customer", id.as_str()))?;
            let now = self.clock.now();
            let mut next = patch.apply(&current.value, now);
            self.sync_provider(&current.value, &mut next).await?;
            let events = customer_changed(&current.value, &next, now);
            Ok(self
                .customers
                .update(&current, &next, &events)
                .await?
                .into_attempt(next))
        })
        .await
    }

    /// Checks a newly linked provider customer and attaches a newly set payment method.
    async fn sync_provider(&self, current: &Customer, next: &mut Customer) -> Result<()> {
        let Some(gateway) = &self.gateway else {
            return Ok(());
        };
        let Some(link) = next.payment_provider.clone() else {
            return Ok(());
        };
        let relinked = current.payment_provider.as_ref() != Some(&link);
        if relinked {
            check_provider_customer(gateway.as_ref(), &link.customer_id).await?;
        }
        let changed = next.payment_method != current.payment_method;
        if let Some(method) = &mut next.payment_method
            && (relinked || changed)
        {
            method.id = gateway
                .attach_default_payment_method(&link.customer_id, &method.id)
                .await
                .map_err(|e| e.at("paymentMethodId"))?;
        }
        Ok(())
    }

    /// The customer's usage in the current period: per usage line of each invoice whose period
    /// contains today, its quantity and amount so far; optionally one meter's only.
    pub async fn customer_usage(
        &self,
        customer: &str,
        meter_code: Option<&str>,
    ) -> Result<Vec<UsageLine>> {
        let customer = self.customer(customer).await?;
        let meter = match meter_code {
            None => None,
            Some(code) => {
                let code = MeterCode::parse(code).map_err(|e| e.at("meterCode"))?;
                Some(
                    self.catalog
                        .get_meter_by_code(&code)
                        .await?
                        .ok_or_else(|| Error::not_found("meter", code.as_str()).at("meterCode"))?,
                )
            }
        };
        let today = self.clock.now().date_naive();
        let index = self.contracts.customer_contracts(&customer.id).await?;
        let mut lines = Vec::new();
        for summary in index.value.iter().filter(|c| c.span().contains(today)) {
            let Some(contract) = self.contracts.get_contract(&summary.id).await? else {
                continue;
            };
            let Some((_, period)) = contract.value.schedule().period_containing(today) else {
                continue;
            };
            let Some(invoice) = self
                .invoices
                .get_invoice(&Invoice::id_for(&summary.id, period.start))
                .await?
            else {
                continue;
            };
            let priced = invoice.priced()?;
            for line in priced.lines {
                let LineKind::Usage { meter_id, .. } = &line.line.kind else {
                    continue;
                };
                if meter.as_ref().is_some_and(|m| &m.id != meter_id) {
                    continue;
                }
                lines.push(UsageLine {
                    contract_id: summary.id.clone(),
                    invoice_id: invoice.id.clone(),
                    meter_id: meter_id.clone(),
                    period,
                    currency: invoice.currency,
                    line,
                });
            }
        }
        Ok(lines)
    }
}

async fn check_provider_customer(
    gateway: &dyn PaymentGateway,
    id: &crate::customer::ProviderCustomerId,
) -> Result<()> {
    if gateway.customer_exists(id).await? {
        Ok(())
    } else {
        Err(Error::unprocessable(
            "payment_provider_customer_not_found",
            format!("Stripe has no customer '{}'", id.as_str()),
        )
        .at("paymentProviderId"))
    }
}

/// How a failed write left the store: untouched, or perhaps written (an outage mid-request).
enum Written {
    No(Error),
    Unknown(Error),
}

/// Events counted per meter per day of a customer's current period, for the dashboard's chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    /// The meter.
    pub meter_id: MeterId,
    /// The period charted.
    pub period: Period,
    /// Billed events per day of the period, in day order (days without events are 0).
    pub per_day: Vec<(chrono::NaiveDate, u64)>,
}

/// The most event records the chart reads for one customer (the newest first); a customer with
/// more events in the period gets a chart of the newest ones, and says so.
pub const DAILY_USAGE_MAX_EVENTS: usize = 1_000;

impl Billing {
    /// The running totals (billed, paid, last payment) of the given customers, in one read;
    /// customers with nothing sent yet are absent.
    pub async fn customer_totals(
        &self,
        customers: &[CustomerId],
    ) -> Result<std::collections::HashMap<CustomerId, crate::totals::Totals>> {
        if customers.is_empty() {
            return Ok(Default::default());
        }
        self.ledger.customer_totals(customers).await
    }

    /// Billed events per meter per day of `period`, read through the customer's event records
    /// (listed by event time, oldest first), reading at most [`DAILY_USAGE_MAX_EVENTS`] of
    /// them; the flag says whether that cap stopped the reading before the period's end.
    pub async fn customer_daily_usage(
        &self,
        customer: &str,
        period: Period,
    ) -> Result<(Vec<DailyUsage>, bool)> {
        use std::collections::BTreeMap;
        let mut counts: BTreeMap<MeterId, BTreeMap<chrono::NaiveDate, u64>> = BTreeMap::new();
        let mut page = PageRequest {
            limit: crate::pagination::MAX_LIMIT,
            after: None,
        };
        let mut read = 0;
        let capped = 'pages: loop {
            let records = self.events(&page, Some(customer), None, None).await?;
            for record in &records.items {
                let day = record.event.timestamp.date_naive();
                if day >= period.end {
                    break 'pages false;
                }
                if day < period.start {
                    continue;
                }
                for m in record.matches.iter().filter(|m| m.status.is_billed()) {
                    *counts
                        .entry(m.meter_id.clone())
                        .or_default()
                        .entry(day)
                        .or_default() += 1;
                }
            }
            read += records.items.len();
            match records.next {
                Some(_) if read >= DAILY_USAGE_MAX_EVENTS => break true,
                Some(next) => page.after = Some(next),
                None => break false,
            }
        };
        let days: Vec<chrono::NaiveDate> = period
            .start
            .iter_days()
            .take_while(|d| *d < period.end)
            .collect();
        let usage = counts
            .into_iter()
            .map(|(meter_id, per)| DailyUsage {
                meter_id,
                period,
                per_day: days
                    .iter()
                    .map(|d| (*d, per.get(d).copied().unwrap_or(0)))
                    .collect(),
            })
            .collect();
        Ok((usage, capped))
    }
}
