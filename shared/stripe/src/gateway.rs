//! The Stripe API as our [`PaymentGateway`]: customers, payment methods, SetupIntents,
//! Checkout Sessions, off-session charges (each attempt once, even after Stripe has forgotten
//! its idempotency key) and refunds of payments an invoice did not need.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use futures_util::StreamExt;
use stripe::{
    ApiErrors, ApiErrorsCode, ApiErrorsType, Client, ClientBuilder, IdempotencyKey,
    RequestStrategy, StripeError, StripeRequest,
};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, CreateCheckoutSessionPaymentIntentDataSetupFutureUsage,
    ProductData,
};
use stripe_core::PaymentIntentStatus;
use stripe_core::customer::{
    CreateCustomer, DeleteCustomer, RetrieveCustomer, RetrieveCustomerReturned, UpdateCustomer,
    UpdateCustomerInvoiceSettings,
};
use stripe_core::payment_intent::{
    CreatePaymentIntent, CreatePaymentIntentOffSession, ListPaymentIntent, RetrievePaymentIntent,
};
use stripe_core::refund::{CreateRefund, CreateRefundReason};
use stripe_core::setup_intent::{CreateSetupIntent, CreateSetupIntentUsage};
use stripe_payment::payment_method::{AttachPaymentMethod, RetrievePaymentMethod};
use stripe_types::RangeQueryTs;

use billing::customer::{PaymentMethodId, ProviderCustomerId};
use billing::error::{Error, ErrorKind, Result};
use billing::ids::InvoiceId;
use billing::money::Currency;
use billing::ports::{
    ChargeOutcome, ChargeRequest, CheckoutRequest, CheckoutSession, NewProviderCustomer,
    PaymentGateway, SetupIntent,
};

use crate::errors::{Subject, api_error, is_missing, named_subject, provider_error};
use crate::{META_ATTEMPT, META_CUSTOMER, META_INVOICE, META_SAVE, REQUEST_TIMEOUT, invoice_in};

/// The Stripe API as our [`PaymentGateway`]. Cheap to clone (one HTTP client inside).
#[derive(Clone, Debug)]
pub struct StripeGateway {
    client: Client,
}

impl StripeGateway {
    /// A gateway with the secret key `sk_…`; `api_base` points it elsewhere than
    /// `https://api.stripe.com` (e.g. `http://127.0.0.1:PORT` for the local fake).
    ///
    /// async-stripe loads the system's CA certificates here and panics if there are none;
    /// Lambda images and usual Linux hosts have them.
    pub fn new(secret_key: &str, api_base: Option<&str>) -> Result<Self> {
        if secret_key.trim().is_empty() {
            return Err(Error::internal("the Stripe secret key is empty"));
        }
        let mut builder = ClientBuilder::new(secret_key).timeout(REQUEST_TIMEOUT);
        if let Some(base) = api_base.filter(|b| !b.trim().is_empty()) {
            builder = builder.url(base);
        }
        let client = builder
            .build()
            .map_err(|e| Error::internal(format!("cannot build the Stripe client: {e}")))?;
        Ok(Self { client })
    }

    /// Which of the two ids a `resource_missing` answer is about: the one Stripe names, else
    /// the customer if Stripe does not know it, else the payment method.
    async fn missing_subject<'a>(
        &self,
        api: &ApiErrors,
        customer: &'a ProviderCustomerId,
        method: &'a PaymentMethodId,
    ) -> Result<Subject<'a>> {
        if let Some(subject) = named_subject(api, customer.as_str(), Some(method.as_str())) {
            return Ok(subject);
        }
        Ok(if self.customer_exists(customer).await? {
            Subject::PaymentMethod(method.as_str())
        } else {
            Subject::Customer(customer.as_str())
        })
    }

    /// A PaymentIntent, its id checked before it goes into the URL path.
    async fn retrieve_intent(&self, payment_intent: &str) -> Result<stripe_core::PaymentIntent> {
        check_payment_intent_id(payment_intent)?;
        RetrievePaymentIntent::new(payment_intent)
            .send(&self.client)
            .await
            .map_err(|e| provider_error(e, Subject::PaymentIntent(payment_intent)))
    }

    /// The PaymentIntent an earlier call made for this invoice and attempt, if any. Stripe keeps
    /// idempotency keys for 24 hours only, so a call repeated later (a run that died after
    /// charging, a payment that was still processing) finds the first payment instead of
    /// making a second one. PaymentIntent lists are read consistently, unlike search.
    async fn earlier_attempt(
        &self,
        request: &ChargeRequest,
    ) -> Result<Option<stripe_core::PaymentIntent>> {
        // An hour's margin for the two clocks.
        let since = request.sent_at - chrono::Duration::hours(1);
        let mut intents = ListPaymentIntent::new()
            .customer(request.customer.as_str())
            .created(RangeQueryTs::gte(since.timestamp()))
            .limit(100)
            .paginate()
            .stream(&self.client);
        let attempt = request.attempt.to_string();
        while let Some(intent) = intents.next().await {
            let intent = match intent {
                Ok(intent) => intent,
                // An unknown customer has no payments; the charge itself names the error.
                Err(StripeError::Stripe(api, status)) if is_missing(&api, status) => {
                    return Ok(None);
                }
                Err(e) => return Err(provider_error(e, Subject::Nothing)),
            };
            let meta = |key: &str| intent.metadata.get(key).map(String::as_str);
            if meta(META_INVOICE) == Some(request.invoice_id.as_str())
                && meta(META_ATTEMPT) == Some(attempt.as_str())
            {
                return Ok(Some(intent));
            }
        }
        Ok(None)
    }

    /// Attaches, treating "already attached to this customer" as done; returns the attached
    /// method's id (Stripe's test ids such as `pm_card_visa` become a new `pm_…` on attach).
    async fn attach(
        &self,
        customer: &ProviderCustomerId,
        method: &PaymentMethodId,
    ) -> Result<String> {
        let attached = AttachPaymentMethod::new(method.as_str())
            .customer(customer.as_str())
            .send(&self.client)
            .await;
        let (api, status) = match attached {
            Ok(pm) => return Ok(pm.id.as_str().to_owned()),
            Err(StripeError::Stripe(api, status)) => (api, status),
            Err(other) => return Err(provider_error(other, Subject::Nothing)),
        };
        if is_missing(&api, status) {
            let subject = self.missing_subject(&api, customer, method).await?;
            return Err(api_error(&api, status, subject));
        }
        if status == 400 && matches!(api.type_, ApiErrorsType::InvalidRequestError) {
            // Possibly "already attached": look at whom the method belongs to.
            let pm = RetrievePaymentMethod::new(method.as_str())
                .send(&self.client)
                .await
                .map_err(|e| provider_error(e, Subject::PaymentMethod(method.as_str())))?;
            match pm.customer.as_ref().map(|c| c.id().as_str()) {
                Some(owner) if owner == customer.as_str() => {
                    return Ok(pm.id.as_str().to_owned());
                }
                Some(_) => {
                    return Err(Error::conflict(
                        "payment_method_attached_to_other_customer",
                        format!(
                            "payment method '{}' belongs to another Stripe customer",
                            method.as_str()
                        ),
                    ));
                }
                None => {}
            }
        }
        Err(api_error(&api, status, Subject::Nothing))
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    async fn create_customer(&self, customer: &NewProviderCustomer) -> Result<ProviderCustomerId> {
        let key = idempotency_key(billing::idempotency::provider_customer(
            &customer.customer_id,
        ))?;
        let mut request =
            CreateCustomer::new()
                .name(customer.name.as_str())
                .metadata(HashMap::from([(
                    META_CUSTOMER.to_owned(),
                    customer.customer_id.as_str().to_owned(),
                )]));
        if let Some(email) = &customer.email {
            request = request.email(email.as_str());
        }
        let created = request
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(|e| provider_error(e, Subject::Nothing))?;
        ProviderCustomerId::parse(created.id.as_str())
            .map_err(|e| Error::internal(format!("Stripe answered an unexpected customer id: {e}")))
    }

    async fn customer_exists(&self, customer: &ProviderCustomerId) -> Result<bool> {
        match RetrieveCustomer::new(customer.as_str())
            .send(&self.client)
            .await
        {
            Ok(RetrieveCustomerReturned::Customer(_)) => Ok(true),
            Ok(RetrieveCustomerReturned::DeletedCustomer(_)) => Ok(false),
            Err(StripeError::Stripe(api, status)) if is_missing(&api, status) => Ok(false),
            Err(e) => Err(provider_error(e, Subject::Customer(customer.as_str()))),
        }
    }

    async fn delete_customer(&self, customer: &ProviderCustomerId) -> Result<()> {
        match DeleteCustomer::new(customer.as_str())
            .send(&self.client)
            .await
        {
            Ok(_) => Ok(()),
            Err(StripeError::Stripe(api, status)) if is_missing(&api, status) => Ok(()),
            Err(e) => Err(provider_error(e, Subject::Customer(customer.as_str()))),
        }
    }

    async fn attach_default_payment_method(
        &self,
        customer: &ProviderCustomerId,
        payment_method: &PaymentMethodId,
    ) -> Result<PaymentMethodId> {
        let attached = self.attach(customer, payment_method).await?;
        UpdateCustomer::new(customer.as_str())
            .invoice_settings(UpdateCustomerInvoiceSettings {
                default_payment_method: Some(attached.clone()),
                ..Default::default()
            })
            .send(&self.client)
            .await
            .map_err(|e| provider_error(e, Subject::Customer(customer.as_str())))?;
        PaymentMethodId::parse(attached)
    }

    async fn refund_unneeded(&self, payment_intent: &str, invoice: &InvoiceId) -> Result<()> {
        check_payment_intent_id(payment_intent)?;
        let key = idempotency_key(billing::idempotency::refund_unneeded(payment_intent))?;
        let refunded = CreateRefund::new()
            .payment_intent(payment_intent)
            .reason(CreateRefundReason::Duplicate)
            .metadata(HashMap::from([(
                META_INVOICE.to_owned(),
                invoice.as_str().to_owned(),
            )]))
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await;
        match refunded {
            Ok(_) => Ok(()),
            // Refunded before (after Stripe forgot the key): done.
            Err(StripeError::Stripe(api, _))
                if matches!(api.code, Some(ApiErrorsCode::ChargeAlreadyRefunded)) =>
            {
                Ok(())
            }
            Err(e) => Err(provider_error(e, Subject::PaymentIntent(payment_intent))),
        }
    }

    async fn create_setup_intent(&self, customer: &ProviderCustomerId) -> Result<SetupIntent> {
        let intent = CreateSetupIntent::new()
            .customer(customer.as_str())
            .usage(CreateSetupIntentUsage::OffSession)
            .send(&self.client)
            .await
            .map_err(|e| provider_error(e, Subject::Customer(customer.as_str())))?;
        let client_secret = intent.client_secret.ok_or_else(|| {
            Error::internal(format!(
                "Stripe's SetupIntent {} has no client secret",
                intent.id
            ))
        })?;
        Ok(SetupIntent {
            id: intent.id.as_str().to_owned(),
            client_secret,
        })
    }

    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<CheckoutSession> {
        let amount = stripe_amount(request.currency, request.amount_minor)?;
        let invoice = request.invoice_id.as_str().to_owned();

        let mut price =
            CreateCheckoutSessionLineItemsPriceData::new(stripe_currency(request.currency));
        price.unit_amount = Some(amount);
        let name = if request.description.trim().is_empty() {
            format!("Invoice {invoice}")
        } else {
            request.description.clone()
        };
        price.product_data = Some(ProductData::new(name));
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price_data = Some(price);
        item.quantity = Some(1);

        let mut payment = CreateCheckoutSessionPaymentIntentData::new();
        payment.metadata = Some(HashMap::from([(META_INVOICE.to_owned(), invoice.clone())]));
        if request.save_payment_method {
            payment.setup_future_usage =
                Some(CreateCheckoutSessionPaymentIntentDataSetupFutureUsage::OffSession);
        }

        let save = if request.save_payment_method {
            "true"
        } else {
            "false"
        };
        let mut create = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .line_items(vec![item])
            .metadata(HashMap::from([
                (META_INVOICE.to_owned(), invoice),
                (META_SAVE.to_owned(), save.to_owned()),
            ]))
            .payment_intent_data(payment)
            .success_url(request.success_url.as_str())
            .cancel_url(request.cancel_url.as_str());
        if let Some(customer) = &request.customer {
            create = create.customer(customer.as_str());
        }
        // No idempotency key: after a session expires the customer may open the page again,
        // and that must give a new session, not the expired one.
        let session = create.send(&self.client).await.map_err(|e| {
            let subject = request
                .customer
                .as_ref()
                .map_or(Subject::Nothing, |c| Subject::Customer(c.as_str()));
            provider_error(e, subject)
        })?;
        let url = session.url.ok_or_else(|| {
            Error::internal(format!(
                "Stripe's Checkout Session {} has no URL",
                session.id
            ))
        })?;
        Ok(CheckoutSession {
            id: session.id.as_str().to_owned(),
            url,
        })
    }

    async fn payment_method_of(&self, payment_intent: &str) -> Result<Option<PaymentMethodId>> {
        let intent = self.retrieve_intent(payment_intent).await?;
        let Some(method) = intent.payment_method.as_ref().map(|m| m.id().as_str()) else {
            return Ok(None);
        };
        match PaymentMethodId::parse(method) {
            Ok(id) => Ok(Some(id)),
            Err(_) => {
                tracing::warn!(payment_intent, method, "payment method id not saveable");
                Ok(None)
            }
        }
    }

    async fn invoice_of_payment(&self, payment_intent: &str) -> Result<Option<InvoiceId>> {
        let intent = self.retrieve_intent(payment_intent).await?;
        Ok(invoice_in(&intent.metadata))
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome> {
        let amount = stripe_amount(request.currency, request.amount_minor)?;
        if let Some(earlier) = self.earlier_attempt(request).await? {
            return outcome_of(&earlier);
        }
        let key = idempotency_key(request.idempotency_key())?;
        let sent = CreatePaymentIntent::new(amount, stripe_currency(request.currency))
            .customer(request.customer.as_str())
            .payment_method(request.payment_method.as_str())
            .confirm(true)
            .off_session(CreatePaymentIntentOffSession::Bool(true))
            .metadata(HashMap::from([
                (
                    META_INVOICE.to_owned(),
                    request.invoice_id.as_str().to_owned(),
                ),
                (META_ATTEMPT.to_owned(), request.attempt.to_string()),
            ]))
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await;
        match sent {
            Ok(intent) => outcome_of(&intent),
            Err(StripeError::Stripe(api, status))
                if status == 402 || matches!(api.type_, ApiErrorsType::CardError) =>
            {
                Ok(refused(&api))
            }
            Err(StripeError::Stripe(api, status)) if is_missing(&api, status) => {
                let subject = self
                    .missing_subject(&api, &request.customer, &request.payment_method)
                    .await?;
                Err(api_error(&api, status, subject))
            }
            Err(StripeError::Stripe(api, status)) => Err(api_error(&api, status, Subject::Nothing)),
            Err(other) => Err(provider_error(other, Subject::Nothing)),
        }
    }
}

/// The outcome of a PaymentIntent Stripe created (confirmed, off session) without an error.
fn outcome_of(intent: &stripe_core::PaymentIntent) -> Result<ChargeOutcome> {
    let id = intent.id.as_str().to_owned();
    let failed = |code: &str, message: &str| match intent.last_payment_error.as_deref() {
        Some(last) => failure(last, Some(id.clone()), code, message),
        None => ChargeOutcome::Failed {
            payment_intent: Some(id.clone()),
            code: code.to_owned(),
            message: message.to_owned(),
        },
    };
    match &intent.status {
        PaymentIntentStatus::Succeeded => Ok(ChargeOutcome::Succeeded { payment_intent: id }),
        PaymentIntentStatus::RequiresAction => Ok(ChargeOutcome::Failed {
            payment_intent: Some(id.clone()),
            code: "authentication_required".to_owned(),
            message: "the bank asks the customer to authenticate this payment".to_owned(),
        }),
        PaymentIntentStatus::RequiresPaymentMethod => Ok(failed(
            "requires_payment_method",
            "the payment method was refused; another one is needed",
        )),
        PaymentIntentStatus::Canceled => Ok(failed(
            "payment_intent_canceled",
            "the payment was canceled",
        )),
        // The port has no "pending" outcome. Neither Succeeded (no money yet) nor Failed (a
        // new attempt could charge twice) is true, so say so. The invoice stays due with the
        // same attempt: the next run's call finds this payment again (`earlier_attempt`) and
        // records how it ended; `payment_intent.succeeded` marks it paid sooner.
        PaymentIntentStatus::Processing => Err(Error::new(
            ErrorKind::Internal,
            "payment_processing",
            format!("payment {id} is still processing; its webhook will settle the invoice"),
        )),
        other => Err(Error::internal(format!(
            "payment {id} is in the unexpected status '{}'",
            other.as_str()
        ))),
    }
}

/// A charge Stripe refused with a card error (HTTP 402): declined, authentication required, ...
fn refused(api: &ApiErrors) -> ChargeOutcome {
    let payment_intent = api
        .payment_intent
        .as_ref()
        .map(|pi| pi.id.as_str().to_owned());
    failure(api, payment_intent, "card_error", "the payment was refused")
}

/// A refused payment in our terms, read the same way from a 402 answer and from a
/// PaymentIntent's `last_payment_error`: Stripe's code (else its decline code, else
/// `code`), and its message with the decline code when that says more.
fn failure(
    api: &ApiErrors,
    payment_intent: Option<String>,
    code: &str,
    message: &str,
) -> ChargeOutcome {
    let code = api
        .code
        .as_ref()
        .map(|c| c.as_str().to_owned())
        .or_else(|| api.decline_code.clone())
        .unwrap_or_else(|| code.to_owned());
    let mut message = api.message.clone().unwrap_or_else(|| message.to_owned());
    if let Some(decline) = api.decline_code.as_deref().filter(|d| *d != code) {
        message = format!("{message} ({decline})");
    }
    ChargeOutcome::Failed {
        payment_intent,
        code,
        message,
    }
}

/// The idempotency key Stripe accepts (1 to 255 characters).
fn idempotency_key(key: String) -> Result<IdempotencyKey> {
    IdempotencyKey::new(key).map_err(|e| Error::internal(format!("bad idempotency key: {e}")))
}

/// Our currency as Stripe's lower-case code.
fn stripe_currency(currency: Currency) -> stripe_types::Currency {
    let Ok(code) = stripe_types::Currency::from_str(&currency.code().to_ascii_lowercase());
    code
}

/// Our minor units as Stripe's amount. They are the same except for currencies Stripe keeps
/// two-decimal for compatibility although ISO 4217 has no minor unit (ISK: 100 = 1 króna).
fn stripe_amount(currency: Currency, amount_minor: i64) -> Result<i64> {
    if amount_minor <= 0 {
        return Err(Error::unprocessable(
            "invalid_amount",
            format!("a payment must be positive, not {amount_minor} minor units"),
        ));
    }
    let factor = match currency.code() {
        "ISK" => 100,
        _ => 1,
    };
    amount_minor.checked_mul(factor).ok_or_else(|| {
        Error::unprocessable("invalid_amount", format!("{amount_minor} is too large"))
    })
}

/// Refuses anything but a Stripe PaymentIntent id, so it is safe in a URL path.
fn check_payment_intent_id(id: &str) -> Result<()> {
    let ok = id.len() <= 255
        && id.strip_prefix("pi_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::unprocessable(
            "invalid_payment_intent_id",
            format!("'{id}' is not a Stripe PaymentIntent id (expected 'pi_…')"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_stay_minor_units_except_where_stripe_differs() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let isk = Currency::parse("ISK").unwrap();
        assert_eq!(stripe_amount(usd, 4500).unwrap(), 4500);
        assert_eq!(stripe_amount(jpy, 500).unwrap(), 500);
        assert_eq!(stripe_amount(isk, 500).unwrap(), 50_000);
        assert_eq!(stripe_amount(usd, 0).unwrap_err().code, "invalid_amount");
        assert_eq!(
            stripe_amount(isk, i64::MAX).unwrap_err().code,
            "invalid_amount"
        );
        assert_eq!(stripe_currency(usd).to_string(), "usd");
    }

    #[test]
    fn payment_intent_ids_are_checked_before_use_in_a_path() {
        assert!(check_payment_intent_id("pi_3Nabc123").is_ok());
        for bad in ["", "pi_", "pi_../customers", "seti_1", "pi_a b"] {
            assert_eq!(
                check_payment_intent_id(bad).unwrap_err().code,
                "invalid_payment_intent_id"
            );
        }
    }
}
