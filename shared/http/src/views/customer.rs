//! A customer as `GET /v1/customers/{id}` returns it.

use billing::customer::{Contact, Customer, Metadata};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A customer as the API shows it: the request's flat field names, `null` for unset fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    /// `cus_…`.
    pub id: String,
    name: String,
    legal_name: Option<String>,
    contacts: Vec<Contact>,
    external_customer_id: Option<String>,
    tags: Vec<String>,
    metadata: Metadata,
    payment_provider_id: Option<String>,
    provider: Option<&'static str>,
    payment_method_id: Option<String>,
    payment_method_type: Option<billing::customer::PaymentMethodType>,
    auto_pay_paused: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Customer> for CustomerView {
    fn from(c: Customer) -> Self {
        Self {
            id: c.id.into(),
            name: c.name.into(),
            legal_name: c.legal_name.map(Into::into),
            contacts: c.contacts,
            external_customer_id: c.external_customer_id.map(Into::into),
            tags: c.tags.into_iter().map(Into::into).collect(),
            metadata: c.metadata,
            provider: c.payment_provider.as_ref().map(|l| l.provider.as_str()),
            payment_provider_id: c.payment_provider.map(|l| l.customer_id.into()),
            payment_method_type: c.payment_method.as_ref().map(|m| m.kind),
            payment_method_id: c.payment_method.map(|m| m.id.into()),
            auto_pay_paused: c.auto_pay_paused,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}
