//! Customers: who we bill, how to reach their billing contacts, and how they link to Stripe.
//! Raw input (`CreateCustomer`, `UpdateCustomer`) is parsed once into types that cannot hold an
//! invalid value; everything after parsing works with `Customer`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::change::Change;
use crate::error::{Error, Result};
use crate::ids::CustomerId;
use crate::text::bounded_text;

bounded_text!(
    /// The customer's display name, shown on invoices.
    CustomerName, max = 256, code = "invalid_name", what = "name"
);
bounded_text!(
    /// The registered legal entity name, when it differs from the display name.
    LegalName, max = 256, code = "invalid_legal_name", what = "legalName"
);
bounded_text!(
    /// The SaaS business's own id for this customer; unique, and usable instead of our id.
    ExternalCustomerId, max = 255, code = "invalid_external_customer_id", what = "externalCustomerId"
);
bounded_text!(
    /// A free-form label for grouping customers.
    Tag, max = 100, code = "invalid_tag", what = "tag"
);

/// The most contacts, tags and metadata entries one customer may carry; bounded so an item
/// always fits DynamoDB's 400 KB limit with room to spare.
pub const MAX_CONTACTS: usize = 20;
/// See [`MAX_CONTACTS`].
pub const MAX_TAGS: usize = 50;
/// See [`MAX_CONTACTS`].
pub const MAX_METADATA_KEYS: usize = 50;
const MAX_ROLES: usize = 10;
const MAX_METADATA_KEY_CHARS: usize = 40;
const MAX_METADATA_VALUE_CHARS: usize = 500;

/// An email address that can receive invoices. Deliberately a light check (one `@`, a dotted
/// domain, no spaces): the real test is delivery, and a stricter regex refuses valid addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Accepts `local@domain.tld` without whitespace, at most 254 characters.
    pub fn parse(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        let ok = raw.len() <= 254
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
            && match raw.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if ok {
            Ok(Self(raw))
        } else {
            Err(Error::unprocessable(
                "invalid_email",
                format!("'{raw}' is not a valid email address"),
            ))
        }
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self> {
        Self::parse(raw)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// What a contact is for (`billing`, `accounts_payable`, …): lowercase snake_case, so roles
/// can be matched exactly when choosing whom to email.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContactRole(String);

impl ContactRole {
    /// Accepts 1 to 64 characters of `a-z`, `0-9` and `_`, starting with a letter.
    pub fn parse(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        let ok = (1..=64).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(raw))
        } else {
            Err(Error::unprocessable(
                "invalid_role",
                format!("role '{raw}' must be lowercase snake_case, e.g. accounts_payable"),
            ))
        }
    }

    /// The role as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContactRole {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self> {
        Self::parse(raw)
    }
}

impl From<ContactRole> for String {
    fn from(r: ContactRole) -> String {
        r.0
    }
}

/// A person or mailbox that receives invoices for the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Where invoices and payment emails go.
    pub email: Email,
    /// What this contact is for; duplicates removed, in sorted order.
    pub roles: Vec<ContactRole>,
}

/// Payment providers a customer can be linked to. Only Stripe today; an enum so adding one is
/// a compile-checked change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentProvider {
    /// Stripe (customers `cus_…`, payment methods `pm_…`).
    Stripe,
}

impl PaymentProvider {
    /// The wire name (`stripe`).
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentProvider::Stripe => "stripe",
        }
    }

    /// Accepts the wire name.
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "stripe" => Ok(PaymentProvider::Stripe),
            other => Err(Error::unprocessable(
                "unsupported_provider",
                format!("provider '{other}' is not supported; use 'stripe'"),
            )),
        }
    }
}

/// Checks a Stripe object id such as `cus_…` or `pm_…`: the prefix, then letters and digits.
fn parse_stripe_id(raw: &str, prefix: &str, code: &'static str, what: &str) -> Result<()> {
    let ok = raw.len() <= 255
        && raw.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::unprocessable(
            code,
            format!("'{raw}' is not a valid {what} (expected '{prefix}…')"),
        ))
    }
}

/// The id of the customer in the payment provider (Stripe `cus_…`). Unique per provider:
/// two of our customers never link to one Stripe customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderCustomerId(String);

impl ProviderCustomerId {
    /// Accepts a Stripe customer id (`cus_` followed by letters and digits).
    pub fn parse(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        parse_stripe_id(
            &raw,
            "cus_",
            "invalid_payment_provider_id",
            "Stripe customer id",
        )?;
        Ok(Self(raw))
    }

    /// The id as Stripe knows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProviderCustomerId {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self> {
        Self::parse(raw)
    }
}

impl From<ProviderCustomerId> for String {
    fn from(v: ProviderCustomerId) -> String {
        v.0
    }
}

/// A saved payment method in the provider (Stripe `pm_…`), used for auto-pay.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PaymentMethodId(String);

impl PaymentMethodId {
    /// Accepts a Stripe payment method id (`pm_…`, including test ids such as `pm_card_visa`).
    pub fn parse(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        parse_stripe_id(
            &raw,
            "pm_",
            "invalid_payment_method_id",
            "payment method id",
        )?;
        Ok(Self(raw))
    }

    /// The id as Stripe knows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PaymentMethodId {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self> {
        Self::parse(raw)
    }
}

impl From<PaymentMethodId> for String {
    fn from(v: PaymentMethodId) -> String {
        v.0
    }
}

/// The kinds of saved payment method auto-pay can charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethodType {
    /// A card.
    Card,
    /// A US bank account (ACH debit).
    UsBankAccount,
}

impl PaymentMethodType {
    /// Accepts `card` or `us_bank_account`.
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "card" => Ok(Self::Card),
            "us_bank_account" => Ok(Self::UsBankAccount),
            other => Err(Error::unprocessable(
                "invalid_payment_method_type",
                format!("'{other}' is not a payment method type; use 'card' or 'us_bank_account'"),
            )),
        }
    }
}

/// A link to the customer in a payment provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderLink {
    /// Which provider.
    pub provider: PaymentProvider,
    /// The customer's id there.
    pub customer_id: ProviderCustomerId,
}

/// The payment method auto-pay charges by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultPaymentMethod {
    /// The provider's id of the method.
    pub id: PaymentMethodId,
    /// What kind of method it is.
    #[serde(rename = "type")]
    pub kind: PaymentMethodType,
}

/// Free-form key/value pairs for the SaaS business's own bookkeeping; bounded in size.
pub type Metadata = BTreeMap<String, String>;

/// A customer as stored and as shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// Our id (`cus_…`).
    pub id: CustomerId,
    /// Display name on invoices.
    pub name: CustomerName,
    /// Registered legal name, if different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_name: Option<LegalName>,
    /// Billing contacts.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// The business's own id for the customer (unique).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_customer_id: Option<ExternalCustomerId>,
    /// Labels, duplicates removed.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Free-form key/values.
    #[serde(default)]
    pub metadata: Metadata,
    /// The linked payment-provider customer (unique per provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_provider: Option<ProviderLink>,
    /// The default payment method for auto-pay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<DefaultPaymentMethod>,
    /// Auto-pay holds off charging this customer while set (e.g. during a dispute); invoices stay
    /// due and are charged on the first run after it is lifted.
    #[serde(default)]
    pub auto_pay_paused: bool,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/customers` as sent, before parsing. Unknown fields are refused so typos surface.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCustomer {
    /// Required display name.
    pub name: Option<String>,
    /// Optional legal name.
    pub legal_name: Option<String>,
    /// Optional billing contacts.
    pub contacts: Option<Vec<ContactInput>>,
    /// Optional unique external id.
    pub external_customer_id: Option<String>,
    /// Optional labels.
    pub tags: Option<Vec<String>>,
    /// Optional key/values.
    pub metadata: Option<Metadata>,
    /// Stripe customer to link (`cus_…`).
    pub payment_provider_id: Option<String>,
    /// Provider of `paymentProviderId`; `stripe` when omitted.
    pub provider: Option<String>,
    /// Default payment method (`pm_…`).
    pub payment_method_id: Option<String>,
    /// Kind of `paymentMethodId`; `card` when omitted.
    pub payment_method_type: Option<String>,
    /// Hold auto-pay for this customer; `false` when omitted.
    pub auto_pay_paused: Option<bool>,
}

/// One contact as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactInput {
    /// Email address.
    pub email: String,
    /// Roles, e.g. `["accounts_payable"]`.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `PATCH /v1/customers/{id}` as sent: absent fields are kept, `null` clears optional ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateCustomer {
    /// New display name (cannot be cleared).
    #[serde(default)]
    pub name: Change<String>,
    /// New legal name.
    #[serde(default)]
    pub legal_name: Change<String>,
    /// Replaces all contacts.
    #[serde(default)]
    pub contacts: Change<Vec<ContactInput>>,
    /// New external id.
    #[serde(default)]
    pub external_customer_id: Change<String>,
    /// Replaces all tags.
    #[serde(default)]
    pub tags: Change<Vec<String>>,
    /// Replaces all metadata.
    #[serde(default)]
    pub metadata: Change<Metadata>,
    /// New Stripe customer link.
    #[serde(default)]
    pub payment_provider_id: Change<String>,
    /// Provider of `paymentProviderId`.
    #[serde(default)]
    pub provider: Option<String>,
    /// New default payment method.
    #[serde(default)]
    pub payment_method_id: Change<String>,
    /// Kind of `paymentMethodId`.
    #[serde(default)]
    pub payment_method_type: Option<String>,
    /// Pause (`true`) or resume (`false`) auto-pay.
    #[serde(default)]
    pub auto_pay_paused: Option<bool>,
}

fn parse_contacts(raw: Vec<ContactInput>) -> Result<Vec<Contact>> {
    if raw.len() > MAX_CONTACTS {
        return Err(Error::unprocessable(
            "too_many_contacts",
            format!("at most {MAX_CONTACTS} contacts"),
        )
        .at("contacts"));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, c)| {
            let at = |e: Error| e.at(format!("contacts[{i}]"));
            let email = Email::parse(c.email).map_err(|e| at(e.at("email")))?;
            if c.roles.len() > MAX_ROLES {
                return Err(at(Error::unprocessable(
                    "too_many_roles",
                    format!("at most {MAX_ROLES} roles per contact"),
                )
                .at("roles")));
            }
            let roles: BTreeSet<ContactRole> = c
                .roles
                .into_iter()
                .enumerate()
                .map(|(j, r)| ContactRole::parse(r).map_err(|e| at(e.at(format!("roles[{j}]")))))
                .collect::<Result<_>>()?;
            Ok(Contact {
                email,
                roles: roles.into_iter().collect(),
            })
        })
        .collect()
}

fn parse_tags(raw: Vec<String>) -> Result<Vec<Tag>> {
    if raw.len() > MAX_TAGS {
        return Err(
            Error::unprocessable("too_many_tags", format!("at most {MAX_TAGS} tags")).at("tags"),
        );
    }
    let mut seen = BTreeSet::new();
    let mut tags = Vec::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        let tag = Tag::parse(t).map_err(|e| e.at(format!("tags[{i}]")))?;
        if seen.insert(tag.clone()) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// Checks metadata bounds: at most `max_keys` keys, keys 1 to 40 characters, values at most 500.
pub(crate) fn parse_metadata(raw: Metadata, max_keys: usize) -> Result<Metadata> {
    if raw.len() > max_keys {
        return Err(Error::unprocessable(
            "too_many_metadata_keys",
            format!("at most {max_keys} metadata keys"),
        )
        .at("metadata"));
    }
    for (k, v) in &raw {
        if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(Error::unprocessable(
                "invalid_metadata",
                format!("metadata keys must be 1 to {MAX_METADATA_KEY_CHARS} characters"),
            )
            .at(format!("metadata.{k}")));
        }
        if v.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(Error::unprocessable(
                "invalid_metadata",
                format!("metadata values must be at most {MAX_METADATA_VALUE_CHARS} characters"),
            )
            .at(format!("metadata.{k}")));
        }
    }
    Ok(raw)
}

fn parse_provider_link(id: String, provider: Option<String>) -> Result<ProviderLink> {
    let provider = match provider {
        Some(p) => PaymentProvider::parse(&p).map_err(|e| e.at("provider"))?,
        None => PaymentProvider::Stripe,
    };
    Ok(ProviderLink {
        provider,
        customer_id: ProviderCustomerId::parse(id).map_err(|e| e.at("paymentProviderId"))?,
    })
}

fn parse_payment_method(id: String, kind: Option<String>) -> Result<DefaultPaymentMethod> {
    Ok(DefaultPaymentMethod {
        id: PaymentMethodId::parse(id).map_err(|e| e.at("paymentMethodId"))?,
        kind: match kind {
            Some(k) => PaymentMethodType::parse(&k).map_err(|e| e.at("paymentMethodType"))?,
            None => PaymentMethodType::Card,
        },
    })
}

fn orphan(field: &str, needs: &str) -> Error {
    Error::unprocessable(
        "field_requires_other",
        format!("{field} is only meaningful together with {needs}"),
    )
    .at(field)
}

impl CreateCustomer {
    /// Parses every field, reporting the first invalid one by its path; assigns a new id.
    pub fn parse(self, now: DateTime<Utc>) -> Result<Customer> {
        let name = self
            .name
            .ok_or_else(|| Error::invalid("missing_field", "name is required").at("name"))
            .and_then(|n| CustomerName::parse(n).map_err(|e| e.at("name")))?;
        if self.payment_provider_id.is_none() && self.provider.is_some() {
            return Err(orphan("provider", "paymentProviderId"));
        }
        if self.payment_method_id.is_none() && self.payment_method_type.is_some() {
            return Err(orphan("paymentMethodType", "paymentMethodId"));
        }
        Ok(Customer {
            id: CustomerId::generate(),
            name,
            legal_name: self
                .legal_name
                .map(|n| LegalName::parse(n).map_err(|e| e.at("legalName")))
                .transpose()?,
            contacts: parse_contacts(self.contacts.unwrap_or_default())?,
            external_customer_id: self
                .external_customer_id
                .map(|x| ExternalCustomerId::parse(x).map_err(|e| e.at("externalCustomerId")))
                .transpose()?,
            tags: parse_tags(self.tags.unwrap_or_default())?,
            metadata: parse_metadata(self.metadata.unwrap_or_default(), MAX_METADATA_KEYS)?,
            payment_provider: self
                .payment_provider_id
                .map(|id| parse_provider_link(id, self.provider))
                .transpose()?,
            payment_method: self
                .payment_method_id
                .map(|id| parse_payment_method(id, self.payment_method_type))
                .transpose()?,
            auto_pay_paused: self.auto_pay_paused.unwrap_or(false),
            created_at: now,
            updated_at: now,
        })
    }
}

/// A parsed partial update, ready to apply to a stored customer.
#[derive(Debug, Clone, Default)]
pub struct CustomerPatch {
    name: Option<CustomerName>,
    legal_name: Change<LegalName>,
    contacts: Option<Vec<Contact>>,
    external_customer_id: Change<ExternalCustomerId>,
    tags: Option<Vec<Tag>>,
    metadata: Option<Metadata>,
    payment_provider: Change<ProviderLink>,
    payment_method: Change<DefaultPaymentMethod>,
    auto_pay_paused: Option<bool>,
}

/// Lists may be replaced or emptied with `null`; both mean the same for a list.
fn list_change<T>(c: Change<Vec<T>>) -> Option<Vec<T>> {
    match c {
        Change::Keep => None,
        Change::Clear => Some(Vec::new()),
        Change::Set(v) => Some(v),
    }
}

impl UpdateCustomer {
    /// Parses the mentioned fields, reporting the first invalid one by its path.
    pub fn parse(self) -> Result<CustomerPatch> {
        let name = self
            .name
            .required("name")?
            .map(|n| CustomerName::parse(n).map_err(|e| e.at("name")))
            .transpose()?;
        if self.provider.is_some() && !matches!(self.payment_provider_id, Change::Set(_)) {
            return Err(orphan("provider", "paymentProviderId"));
        }
        if self.payment_method_type.is_some() && !matches!(self.payment_method_id, Change::Set(_)) {
            return Err(orphan("paymentMethodType", "paymentMethodId"));
        }
        let provider = self.provider;
        let method_type = self.payment_method_type;
        Ok(CustomerPatch {
            name,
            legal_name: self
                .legal_name
                .try_map(|n| LegalName::parse(n).map_err(|e| e.at("legalName")))?,
            contacts: list_change(self.contacts).map(parse_contacts).transpose()?,
            external_customer_id: self.external_customer_id.try_map(|x| {
                ExternalCustomerId::parse(x).map_err(|e| e.at("externalCustomerId"))
            })?,
            tags: list_change(self.tags).map(parse_tags).transpose()?,
            metadata: match self.metadata {
                Change::Keep => None,
                Change::Clear => Some(Metadata::new()),
                Change::Set(m) => Some(parse_metadata(m, MAX_METADATA_KEYS)?),
            },
            payment_provider: self
                .payment_provider_id
                .try_map(|id| parse_provider_link(id, provider))?,
            payment_method: self
                .payment_method_id
                .try_map(|id| parse_payment_method(id, method_type))?,
            auto_pay_paused: self.auto_pay_paused,
        })
    }
}

impl CustomerPatch {
    /// The customer as it is after this patch; `updatedAt` moves to `now`.
    pub fn apply(&self, current: &Customer, now: DateTime<Utc>) -> Customer {
        let c = self.clone();
        let mut next = current.clone();
        if let Some(name) = c.name {
            next.name = name;
        }
        next.legal_name = c.legal_name.apply(next.legal_name);
        if let Some(contacts) = c.contacts {
            next.contacts = contacts;
        }
        next.external_customer_id = c.external_customer_id.apply(next.external_customer_id);
        if let Some(tags) = c.tags {
            next.tags = tags;
        }
        if let Some(metadata) = c.metadata {
            next.metadata = metadata;
        }
        next.payment_provider = c.payment_provider.apply(next.payment_provider);
        next.payment_method = c.payment_method.apply(next.payment_method);
        if let Some(paused) = c.auto_pay_paused {
            next.auto_pay_paused = paused;
        }
        next.updated_at = now;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-24T10:00:00Z".parse().unwrap()
    }

    fn create(json: &str) -> Result<Customer> {
        serde_json::from_str::<CreateCustomer>(json)
            .unwrap()
            .parse(now())
    }

    #[test]
    fn a_full_customer_parses_and_defaults_provider_and_method_type() {
        let c = create(
            r#"{"name":"Acme","legalName":"Acme Inc.","externalCustomerId":"acme-1",
                "contacts":[{"email":"ap@acme.com","roles":["billing","accounts_payable","billing"]}],
                "tags":["ai","ai","beta"],"metadata":{"plan":"pro"},
                "paymentProviderId":"cus_NffrFeUfNV2Hib","paymentMethodId":"pm_card_visa"}"#,
        )
        .unwrap();
        assert_eq!(c.name.as_str(), "Acme");
        assert_eq!(c.contacts[0].roles.len(), 2, "duplicate roles are folded");
        assert_eq!(c.tags.len(), 2, "duplicate tags are folded");
        assert_eq!(
            c.payment_provider.unwrap().provider,
            PaymentProvider::Stripe
        );
        assert_eq!(c.payment_method.unwrap().kind, PaymentMethodType::Card);
        assert_eq!(c.created_at, c.updated_at);
    }

    #[test]
    fn invalid_fields_are_named_by_their_path() {
        let cases = [
            (r#"{}"#, "missing_field", "name"),
            (r#"{"name":"  "}"#, "invalid_name", "name"),
            (
                r#"{"name":"a","contacts":[{"email":"a@b.co"},{"email":"nope"}]}"#,
                "invalid_email",
                "contacts[1].email",
            ),
            (
                r#"{"name":"a","contacts":[{"email":"a@b.co","roles":["Billing"]}]}"#,
                "invalid_role",
                "contacts[0].roles[0]",
            ),
            (r#"{"name":"a","tags":["ok",""]}"#, "invalid_tag", "tags[1]"),
            (
                r#"{"name":"a","paymentProviderId":"acct_1"}"#,
                "invalid_payment_provider_id",
                "paymentProviderId",
            ),
            (
                r#"{"name":"a","paymentProviderId":"cus_1","provider":"adyen"}"#,
                "unsupported_provider",
                "provider",
            ),
            (
                r#"{"name":"a","provider":"stripe"}"#,
                "field_requires_other",
                "provider",
            ),
            (
                r#"{"name":"a","paymentMethodId":"pm_1","paymentMethodType":"cash"}"#,
                "invalid_payment_method_type",
                "paymentMethodType",
            ),
            (
                r#"{"name":"a","metadata":{"":"x"}}"#,
                "invalid_metadata",
                "metadata.",
            ),
        ];
        for (json, code, param) in cases {
            let e = create(json).unwrap_err();
            assert_eq!(
                (e.code.as_ref(), e.param.as_deref()),
                (code, Some(param)),
                "{json}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused_at_decoding() {
        assert!(serde_json::from_str::<CreateCustomer>(r#"{"name":"a","nmae":"b"}"#).is_err());
    }

    #[test]
    fn bounds_on_lists_hold() {
        let tags: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        let e = CreateCustomer {
            name: Some("a".into()),
            tags: Some(tags),
            ..Default::default()
        }
        .parse(now())
        .unwrap_err();
        assert_eq!(e.code, "too_many_tags");
    }

    #[test]
    fn patch_keeps_clears_and_sets() {
        let c = create(
            r#"{"name":"Acme","legalName":"Acme Inc.","tags":["a"],"externalCustomerId":"x"}"#,
        )
        .unwrap();
        let later: DateTime<Utc> = "2026-11-25T10:00:00Z".parse().unwrap();
        let patch: UpdateCustomer =
            serde_json::from_str(r#"{"legalName":null,"tags":["b","c"],"externalCustomerId":"y"}"#)
                .unwrap();
        let next = patch.parse().unwrap().apply(&c, later);
        assert_eq!(next.name, c.name);
        assert_eq!(next.legal_name, None);
        assert_eq!(next.tags.len(), 2);
        assert_eq!(next.external_customer_id.unwrap().as_str(), "y");
        assert_eq!(next.created_at, c.created_at);
        assert_eq!(next.updated_at, later);
    }

    #[test]
    fn patch_cannot_remove_the_name() {
        let patch: UpdateCustomer = serde_json::from_str(r#"{"name":null}"#).unwrap();
        assert_eq!(patch.parse().unwrap_err().code, "field_required");
    }

    #[test]
    fn emails_are_checked_lightly_but_surely() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@.co", "a@b.", "a b@c.co", "a@b@c.co",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
