//! The event types a webhook endpoint can subscribe to.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What happened. The wire name (`invoice.paid`) is the `type` of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// A customer was created.
    #[serde(rename = "customer.created")]
    CustomerCreated,
    /// A customer changed (fields, payment method).
    #[serde(rename = "customer.updated")]
    CustomerUpdated,
    /// A contract was created.
    #[serde(rename = "contract.created")]
    ContractCreated,
    /// A contract's settings changed (auto-pay, saved payment method).
    #[serde(rename = "contract.updated")]
    ContractUpdated,
    /// A contract was cancelled: it ends with its current period.
    #[serde(rename = "contract.terminated")]
    ContractTerminated,
    /// A draft invoice was created (with its contract, or for a new period).
    #[serde(rename = "invoice.created")]
    InvoiceCreated,
    /// An invoice changed otherwise: usage (coalesced, at most once a minute), status
    /// `IN_PROGRESS`, a refunded duplicate payment.
    #[serde(rename = "invoice.updated")]
    InvoiceUpdated,
    /// An invoice was closed and sent, or sent again.
    #[serde(rename = "invoice.sent")]
    InvoiceSent,
    /// An invoice was paid (through the provider, or marked paid).
    #[serde(rename = "invoice.paid")]
    InvoicePaid,
    /// An automatic payment attempt failed.
    #[serde(rename = "invoice.payment_failed")]
    InvoicePaymentFailed,
    /// An invoice was voided.
    #[serde(rename = "invoice.voided")]
    InvoiceVoided,
    /// A paid invoice was refunded.
    #[serde(rename = "invoice.refunded")]
    InvoiceRefunded,
    /// Usage events were recorded as unbillable (coalesced per customer and reason, at most
    /// once a minute).
    #[serde(rename = "usage.unbillable")]
    UsageUnbillable,
}

impl EventType {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [EventType; 13] = [
        Self::CustomerCreated,
        Self::CustomerUpdated,
        Self::ContractCreated,
        Self::ContractUpdated,
        Self::ContractTerminated,
        Self::InvoiceCreated,
        Self::InvoiceUpdated,
        Self::InvoiceSent,
        Self::InvoicePaid,
        Self::InvoicePaymentFailed,
        Self::InvoiceVoided,
        Self::InvoiceRefunded,
        Self::UsageUnbillable,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerCreated => "customer.created",
            Self::CustomerUpdated => "customer.updated",
            Self::ContractCreated => "contract.created",
            Self::ContractUpdated => "contract.updated",
            Self::ContractTerminated => "contract.terminated",
            Self::InvoiceCreated => "invoice.created",
            Self::InvoiceUpdated => "invoice.updated",
            Self::InvoiceSent => "invoice.sent",
            Self::InvoicePaid => "invoice.paid",
            Self::InvoicePaymentFailed => "invoice.payment_failed",
            Self::InvoiceVoided => "invoice.voided",
            Self::InvoiceRefunded => "invoice.refunded",
            Self::UsageUnbillable => "usage.unbillable",
        }
    }

    /// Accepts a wire name; anything else is 422 `invalid_event_type` naming the known ones.
    pub fn parse(raw: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
                Error::unprocessable(
                    "invalid_event_type",
                    format!("'{raw}' is not an event type; known: {}", known.join(", ")),
                )
            })
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_reads_back_from_its_wire_name_and_serde_agrees() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()).unwrap(), t);
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.as_str().to_owned())
            );
        }
        let err = EventType::parse("invoice.exploded").unwrap_err();
        assert_eq!(err.code, "invalid_event_type");
        assert!(err.message.contains("invoice.paid"), "{}", err.message);
    }
}
