//! Stripe behind the payment ports of [`crate::payments`]: a [`PaymentGateway`] over the Stripe
//! API (async-stripe 1.0) and a [`WebhookVerifier`] for Stripe's signed notifications. This is
//! the only module that names a Stripe type; everything leaves it in our terms, errors included
//! (outages are `Unavailable`, bad ids from the caller are `Unprocessable` with a stable code).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
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
use stripe_webhook::{EventObject, Webhook, WebhookError};

use crate::customer::{PaymentMethodId, ProviderCustomerId};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{CustomerId, InvoiceId};
use crate::money::Currency;
use crate::payments::{
    ChargeOutcome, ChargeRequest, CheckoutRequest, CheckoutSession, NewProviderCustomer,
    PaymentGateway, ProviderEvent, ProviderEventKind, SetupIntent, WebhookVerifier,
};

/// How long one Stripe request may take before it counts as an outage. async-stripe has no
/// default timeout, and a hung request would otherwise hold a Lambda until its own timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Metadata key holding our invoice id on sessions, payments and (copied by Stripe) charges.
const META_INVOICE: &str = "invoiceId";
/// Metadata key holding the customer's "save this payment method" choice on a session.
const META_SAVE: &str = "savePaymentMethod";
/// Metadata key holding our customer id on the Stripe customer.
const META_CUSTOMER: &str = "customerId";
/// Metadata key holding the auto-pay attempt number on a payment.
const META_ATTEMPT: &str = "attempt";

/// The message async-stripe gives when a non-2xx answer has no readable Stripe error body
/// (an HTML page from a proxy, a truncated answer): an outage, not a refusal.
const UNREADABLE_ERROR_BODY: &str = "error deserializing Stripe error";

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

    /// The gateway configured by `STRIPE_SECRET_KEY` (and optionally `STRIPE_API_BASE`), or
    /// `None` when no key is set, so a deployment without Stripe still runs everything else.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(key) = non_empty_env("STRIPE_SECRET_KEY") else {
            return Ok(None);
        };
        let base = non_empty_env("STRIPE_API_BASE");
        Self::new(&key, base.as_deref()).map(Some)
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
        let key = idempotency_key(format!("customer-create-{}", customer.customer_id))?;
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
        let key = idempotency_key(format!("refund-unneeded-{payment_intent}"))?;
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

/// Which of the caller's ids a `resource_missing` answer is about, for a precise error.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    /// The Stripe customer.
    Customer(&'a str),
    /// The payment method.
    PaymentMethod(&'a str),
    /// The PaymentIntent.
    PaymentIntent(&'a str),
    /// Unknown or not applicable.
    Nothing,
}

/// The id a `resource_missing` names, from its `param` or its message ("No such customer: …").
fn named_subject<'a>(
    api: &ApiErrors,
    customer: &'a str,
    method: Option<&'a str>,
) -> Option<Subject<'a>> {
    let param = api.param.as_deref().unwrap_or_default();
    let message = api
        .message
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if param == "customer" || message.contains("no such customer") {
        return Some(Subject::Customer(customer));
    }
    let method = method?;
    if param.starts_with("payment_method")
        || message.contains("no such paymentmethod")
        || message.contains("no such payment_method")
    {
        return Some(Subject::PaymentMethod(method));
    }
    None
}

/// Whether Stripe says an object does not exist.
fn is_missing(api: &ApiErrors, status: u16) -> bool {
    status == 404 || matches!(api.code, Some(ApiErrorsCode::ResourceMissing))
}

/// A Stripe failure in our terms.
fn provider_error(error: StripeError, subject: Subject<'_>) -> Error {
    match error {
        StripeError::Stripe(api, status) => api_error(&api, status, subject),
        StripeError::JSONDeserialize(message) if message == UNREADABLE_ERROR_BODY => {
            unavailable("Stripe answered with an unreadable error")
        }
        StripeError::JSONDeserialize(message) => Error::new(
            ErrorKind::Internal,
            "payment_provider_response_invalid",
            format!("cannot read Stripe's answer: {message}"),
        ),
        StripeError::ClientError(message) => unavailable(format!("cannot reach Stripe: {message}")),
        StripeError::Timeout => unavailable(format!(
            "Stripe did not answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
        StripeError::ConfigError(message) => {
            Error::internal(format!("Stripe client configuration: {message}"))
        }
    }
}

/// An error answer of the Stripe API in our terms.
fn api_error(api: &ApiErrors, status: u16, subject: Subject<'_>) -> Error {
    let code = api.code.as_ref().map(|c| c.as_str().to_owned());
    let message = api.message.clone().unwrap_or_default();
    let detail = format!(
        "Stripe answered {status} {}{}: {message}",
        api.type_.as_str(),
        code.as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
    let retry_later = status == 409
        || status == 429
        || status >= 500
        || matches!(api.type_, ApiErrorsType::ApiError)
        || matches!(api.code, Some(ApiErrorsCode::RateLimit));
    if retry_later {
        return unavailable(detail);
    }
    if status == 401 || status == 403 {
        return Error::new(ErrorKind::Internal, "payment_provider_auth_failed", detail);
    }
    if matches!(api.type_, ApiErrorsType::IdempotencyError) {
        return Error::conflict("payment_provider_idempotency_conflict", detail);
    }
    if is_missing(api, status) {
        return match subject {
            Subject::Customer(id) => Error::unprocessable(
                "payment_provider_customer_not_found",
                format!("Stripe has no customer '{id}'"),
            ),
            Subject::PaymentMethod(id) => Error::unprocessable(
                "payment_method_not_found",
                format!("Stripe has no payment method '{id}'"),
            ),
            Subject::PaymentIntent(id) => Error::unprocessable(
                "payment_intent_not_found",
                format!("Stripe has no payment '{id}'"),
            ),
            Subject::Nothing => Error::unprocessable("payment_provider_resource_missing", detail),
        };
    }
    if matches!(api.type_, ApiErrorsType::CardError) {
        // A card refused outside a charge (e.g. declined when attached): the card's problem.
        let code = code.unwrap_or_else(|| "card_error".to_owned());
        let message = if message.is_empty() { detail } else { message };
        return Error::unprocessable(code, message);
    }
    Error::unprocessable("payment_provider_rejected", detail)
}

/// A dependency failure the caller may retry (503).
fn unavailable(message: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "payment_provider_unavailable",
        message,
    )
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

/// An environment variable, when set to something.
fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Checks Stripe's `Stripe-Signature` header (HMAC-SHA256 with the endpoint secret, 300 s
/// tolerance) and reads the event in our terms.
#[derive(Clone)]
pub struct StripeWebhookVerifier {
    secret: String,
}

impl std::fmt::Debug for StripeWebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeWebhookVerifier")
            .finish_non_exhaustive()
    }
}

impl StripeWebhookVerifier {
    /// A verifier for the endpoint's signing secret (`whsec_…`). An empty secret is refused:
    /// anyone could sign with it.
    pub fn new(secret: &str) -> Result<Self> {
        if secret.trim().is_empty() {
            return Err(Error::internal("the Stripe webhook secret is empty"));
        }
        Ok(Self {
            secret: secret.to_owned(),
        })
    }

    /// The verifier for `STRIPE_WEBHOOK_SECRET`, or `None` when it is not set.
    pub fn from_env() -> Result<Option<Self>> {
        non_empty_env("STRIPE_WEBHOOK_SECRET")
            .map(|secret| Self::new(&secret))
            .transpose()
    }
}

impl WebhookVerifier for StripeWebhookVerifier {
    fn verify(
        &self,
        payload: &str,
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ProviderEvent> {
        let signature = signature
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    "missing_signature",
                    "the Stripe-Signature header is missing",
                )
            })?;
        match Webhook::construct_event_with_timestamp(
            payload,
            signature,
            &self.secret,
            now.timestamp(),
        ) {
            Ok(event) => Ok(provider_event(event)),
            Err(WebhookError::BadSignature | WebhookError::BadHeader(_)) => Err(Error::invalid(
                "invalid_signature",
                "the Stripe-Signature header does not sign this payload with our secret",
            )),
            Err(WebhookError::BadTimestamp(at)) => Err(Error::invalid(
                "invalid_signature",
                format!(
                    "the signature's timestamp {at} is more than 300 s from now ({})",
                    now.timestamp()
                ),
            )),
            Err(WebhookError::BadKey) => Err(Error::internal("the webhook secret is unusable")),
            Err(WebhookError::BadParse(reason)) => unparsed_event(payload, &reason),
        }
    }
}

/// The event types mapped to something other than [`ProviderEventKind::Other`].
const HANDLED_EVENTS: [&str; 7] = [
    "checkout.session.completed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "setup_intent.succeeded",
    "customer.created",
    "customer.updated",
    "charge.refunded",
];

/// A correctly signed payload async-stripe could not read. An event we ignore anyway is
/// acknowledged as `Other` (so Stripe stops resending it); one we need is `invalid_payload`.
fn unparsed_event(payload: &str, reason: &str) -> Result<ProviderEvent> {
    let invalid = || {
        Error::invalid(
            "invalid_payload",
            format!("unreadable Stripe event: {reason}"),
        )
    };
    let value: serde_json::Value = serde_json::from_str(payload).map_err(|_| invalid())?;
    let id = value.get("id").and_then(serde_json::Value::as_str);
    let kind = value.get("type").and_then(serde_json::Value::as_str);
    match (id, kind) {
        (Some(id), Some(kind)) if !HANDLED_EVENTS.contains(&kind) => Ok(ProviderEvent {
            id: id.to_owned(),
            kind: ProviderEventKind::Other {
                kind: kind.to_owned(),
            },
        }),
        _ => Err(invalid()),
    }
}

/// A verified Stripe event in our terms.
fn provider_event(event: stripe_webhook::Event) -> ProviderEvent {
    let type_name = event.type_.as_str().to_owned();
    let other = || ProviderEventKind::Other {
        kind: type_name.clone(),
    };
    let kind = match event.data.object {
        EventObject::CheckoutSessionCompleted(session) => {
            let metadata = session.metadata.as_ref();
            ProviderEventKind::CheckoutCompleted {
                invoice_id: metadata.and_then(invoice_in),
                payment_intent: session
                    .payment_intent
                    .as_ref()
                    .map(|pi| pi.id().as_str().to_owned()),
                customer: session
                    .customer
                    .as_ref()
                    .and_then(|c| ProviderCustomerId::parse(c.id().as_str()).ok()),
                save_payment_method: metadata
                    .and_then(|m| m.get(META_SAVE))
                    .is_some_and(|v| v == "true"),
            }
        }
        EventObject::PaymentIntentSucceeded(intent) => ProviderEventKind::PaymentSucceeded {
            invoice_id: invoice_in(&intent.metadata),
            payment_intent: intent.id.as_str().to_owned(),
        },
        EventObject::PaymentIntentPaymentFailed(intent) => ProviderEventKind::PaymentFailed {
            invoice_id: invoice_in(&intent.metadata),
            payment_intent: intent.id.as_str().to_owned(),
            message: intent
                .last_payment_error
                .as_ref()
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| "the payment failed".to_owned()),
        },
        EventObject::SetupIntentSucceeded(intent) => ProviderEventKind::SetupSucceeded {
            customer: intent
                .customer
                .as_ref()
                .and_then(|c| ProviderCustomerId::parse(c.id().as_str()).ok()),
            payment_method: intent
                .payment_method
                .as_ref()
                .and_then(|m| PaymentMethodId::parse(m.id().as_str()).ok()),
        },
        EventObject::CustomerCreated(customer) | EventObject::CustomerUpdated(customer) => {
            match ProviderCustomerId::parse(customer.id.as_str()) {
                Ok(id) => ProviderEventKind::CustomerUpserted {
                    customer: id,
                    name: customer.name.clone(),
                    email: customer.email.clone(),
                    our_id: customer
                        .metadata
                        .as_ref()
                        .and_then(|m| m.get(META_CUSTOMER))
                        .and_then(|v| CustomerId::parse(v).ok()),
                },
                Err(_) => {
                    tracing::warn!(customer = %customer.id, "ignoring a customer event with an unexpected id");
                    other()
                }
            }
        }
        EventObject::ChargeRefunded(charge)
            if charge.amount > 0 && charge.amount_refunded >= charge.amount =>
        {
            ProviderEventKind::Refunded {
                invoice_id: invoice_in(&charge.metadata),
                payment_intent: charge
                    .payment_intent
                    .as_ref()
                    .map(|pi| pi.id().as_str().to_owned()),
            }
        }
        _ => other(),
    };
    ProviderEvent {
        id: event.id.as_str().to_owned(),
        kind,
    }
}

/// Our invoice id from Stripe metadata; absent or not one of ours is `None`.
fn invoice_in(metadata: &HashMap<String, String>) -> Option<InvoiceId> {
    metadata
        .get(META_INVOICE)
        .and_then(|v| InvoiceId::parse(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::{Value, json};

    const SECRET: &str = "whsec_test_secret";
    const INVOICE: &str = "inv_0123456789abcdef0123456789abcdef";
    const OUR_CUSTOMER: &str = "cus_0123456789abcdef0123456789abcdef";

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).single().unwrap()
    }

    fn verifier() -> StripeWebhookVerifier {
        StripeWebhookVerifier::new(SECRET).unwrap()
    }

    fn event(kind: &str, object: Value) -> String {
        json!({
            "id": "evt_1",
            "object": "event",
            "api_version": "2026-09-30.endive",
            "created": 1_800_000_000,
            "livemode": false,
            "pending_webhooks": 1,
            "type": kind,
            "data": { "object": object },
        })
        .to_string()
    }

    fn signed(payload: &str) -> String {
        Webhook::generate_test_header(payload, SECRET, Some(now().timestamp()))
    }

    fn verify(payload: &str) -> Result<ProviderEvent> {
        verifier().verify(payload, Some(&signed(payload)), now())
    }

    fn session(metadata: Value) -> Value {
        json!({
            "id": "cs_test_1",
            "object": "checkout.session",
            "automatic_tax": { "enabled": false },
            "created": 1_800_000_000,
            "custom_fields": [],
            "custom_text": {},
            "expires_at": 1_800_086_400,
            "livemode": false,
            "mode": "payment",
            "payment_method_types": ["card"],
            "payment_status": "paid",
            "shipping_options": [],
            "status": "complete",
            "customer": "cus_Stripe123",
            "payment_intent": "pi_123",
            "metadata": metadata,
        })
    }

    fn payment_intent(status: &str, metadata: Value, last_error: Value) -> Value {
        json!({
            "id": "pi_123",
            "object": "payment_intent",
            "amount": 4500,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "created": 1_800_000_000,
            "currency": "usd",
            "livemode": false,
            "metadata": metadata,
            "payment_method_types": ["card"],
            "status": status,
            "last_payment_error": last_error,
        })
    }

    fn charge(amount: i64, refunded: i64) -> Value {
        json!({
            "id": "ch_1",
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": refunded,
            "billing_details": {},
            "captured": true,
            "created": 1_800_000_000,
            "currency": "usd",
            "disputed": false,
            "livemode": false,
            "metadata": { "invoiceId": INVOICE },
            "paid": true,
            "refunded": refunded == amount,
            "status": "succeeded",
            "payment_intent": "pi_123",
        })
    }

    fn code_of(result: Result<ProviderEvent>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
        error.code.into_owned()
    }

    #[test]
    fn a_good_signature_gives_the_checkout_in_our_terms() {
        let payload = event(
            "checkout.session.completed",
            session(json!({ "invoiceId": INVOICE, "savePaymentMethod": "true" })),
        );
        let event = verify(&payload).unwrap();
        assert_eq!(event.id, "evt_1");
        assert_eq!(
            event.kind,
            ProviderEventKind::CheckoutCompleted {
                invoice_id: Some(InvoiceId::parse(INVOICE).unwrap()),
                payment_intent: Some("pi_123".into()),
                customer: Some(ProviderCustomerId::parse("cus_Stripe123").unwrap()),
                save_payment_method: true,
            }
        );
    }

    #[test]
    fn a_foreign_invoice_id_is_none_and_save_defaults_to_false() {
        let payload = event(
            "checkout.session.completed",
            session(json!({ "invoiceId": "order-17" })),
        );
        let ProviderEventKind::CheckoutCompleted {
            invoice_id,
            save_payment_method,
            ..
        } = verify(&payload).unwrap().kind
        else {
            panic!("not a checkout");
        };
        assert_eq!(invoice_id, None);
        assert!(!save_payment_method);
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let payload = event(
            "customer.created",
            json!({ "id": "cus_A", "created": 1, "livemode": false }),
        );
        let other = Webhook::generate_test_header(&payload, "whsec_other", Some(now().timestamp()));
        assert_eq!(
            code_of(verifier().verify(&payload, Some(&other), now())),
            "invalid_signature"
        );
        let tampered = payload.replace("cus_A", "cus_B");
        assert_eq!(
            code_of(verifier().verify(&tampered, Some(&signed(&payload)), now())),
            "invalid_signature"
        );
        for header in ["garbage", "t=abc,v1=00", "t=1800000000", "v1=00"] {
            assert_eq!(
                code_of(verifier().verify(&payload, Some(header), now())),
                "invalid_signature"
            );
        }
    }

    #[test]
    fn a_stale_or_future_signature_is_refused() {
        let payload = event(
            "customer.created",
            json!({ "id": "cus_A", "created": 1, "livemode": false }),
        );
        let header = signed(&payload);
        let later = now() + chrono::Duration::seconds(301);
        assert_eq!(
            code_of(verifier().verify(&payload, Some(&header), later)),
            "invalid_signature"
        );
        let earlier = now() - chrono::Duration::seconds(301);
        assert_eq!(
            code_of(verifier().verify(&payload, Some(&header), earlier)),
            "invalid_signature"
        );
        let within = now() + chrono::Duration::seconds(299);
        assert!(verifier().verify(&payload, Some(&header), within).is_ok());
    }

    #[test]
    fn a_missing_header_is_refused() {
        let payload = event(
            "customer.created",
            json!({ "id": "cus_A", "created": 1, "livemode": false }),
        );
        assert_eq!(
            code_of(verifier().verify(&payload, None, now())),
            "missing_signature"
        );
        assert_eq!(
            code_of(verifier().verify(&payload, Some("  "), now())),
            "missing_signature"
        );
    }

    #[test]
    fn one_matching_v1_among_several_is_enough() {
        let payload = event(
            "customer.created",
            json!({ "id": "cus_A", "created": 1, "livemode": false }),
        );
        let good = signed(&payload);
        let good_v1 = good.split_once(",v1=").unwrap().1;
        let header = format!(
            "t={},v1={},v0=abc,v1={good_v1}",
            now().timestamp(),
            "ab".repeat(32)
        );
        assert!(verifier().verify(&payload, Some(&header), now()).is_ok());
        let none_match = format!(
            "t={},v1={},v1={}",
            now().timestamp(),
            "ab".repeat(32),
            "cd".repeat(32)
        );
        assert_eq!(
            code_of(verifier().verify(&payload, Some(&none_match), now())),
            "invalid_signature"
        );
    }

    #[test]
    fn unknown_and_unhandled_types_are_other() {
        let payload = event("invoice.paid", json!({ "id": "in_1", "object": "invoice" }));
        assert_eq!(
            verify(&payload).unwrap(),
            ProviderEvent {
                id: "evt_1".into(),
                kind: ProviderEventKind::Other {
                    kind: "invoice.paid".into()
                },
            }
        );
        let payload = event("made.up_event", json!({}));
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::Other {
                kind: "made.up_event".into()
            }
        );
        // A known type async-stripe cannot read, that we ignore anyway: acknowledged.
        let payload = event("payment_intent.created", json!({ "id": "pi_1" }));
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::Other {
                kind: "payment_intent.created".into()
            }
        );
    }

    #[test]
    fn an_unreadable_payload_is_refused() {
        assert_eq!(code_of(verify("not json")), "invalid_payload");
        assert_eq!(code_of(verify(r#"{"id":"evt_1"}"#)), "invalid_payload");
        // A type we act on, with an object we cannot read.
        let payload = event("payment_intent.succeeded", json!({ "id": "pi_1" }));
        assert_eq!(code_of(verify(&payload)), "invalid_payload");
    }

    #[test]
    fn payments_carry_their_invoice() {
        let payload = event(
            "payment_intent.succeeded",
            payment_intent(
                "succeeded",
                json!({ "invoiceId": INVOICE, "attempt": "1" }),
                Value::Null,
            ),
        );
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::PaymentSucceeded {
                invoice_id: Some(InvoiceId::parse(INVOICE).unwrap()),
                payment_intent: "pi_123".into(),
            }
        );
        let payload = event(
            "payment_intent.payment_failed",
            payment_intent(
                "requires_payment_method",
                json!({ "invoiceId": "nope" }),
                json!({ "type": "card_error", "code": "card_declined", "message": "Your card was declined." }),
            ),
        );
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::PaymentFailed {
                invoice_id: None,
                payment_intent: "pi_123".into(),
                message: "Your card was declined.".into(),
            }
        );
    }

    #[test]
    fn setups_and_customers_are_read() {
        let payload = event(
            "setup_intent.succeeded",
            json!({
                "id": "seti_1", "object": "setup_intent", "created": 1, "livemode": false,
                "payment_method_types": ["card"], "status": "succeeded", "usage": "off_session",
                "customer": "cus_Stripe123", "payment_method": "pm_123",
            }),
        );
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::SetupSucceeded {
                customer: Some(ProviderCustomerId::parse("cus_Stripe123").unwrap()),
                payment_method: Some(PaymentMethodId::parse("pm_123").unwrap()),
            }
        );
        for kind in ["customer.created", "customer.updated"] {
            let payload = event(
                kind,
                json!({
                    "id": "cus_Stripe123", "object": "customer", "created": 1, "livemode": false,
                    "name": "Acme", "email": "billing@acme.test",
                    "metadata": { "customerId": OUR_CUSTOMER },
                }),
            );
            assert_eq!(
                verify(&payload).unwrap().kind,
                ProviderEventKind::CustomerUpserted {
                    customer: ProviderCustomerId::parse("cus_Stripe123").unwrap(),
                    name: Some("Acme".into()),
                    email: Some("billing@acme.test".into()),
                    our_id: Some(CustomerId::parse(OUR_CUSTOMER).unwrap()),
                }
            );
        }
        let payload = event(
            "customer.updated",
            json!({ "id": "cus_Stripe123", "object": "customer", "created": 1, "livemode": false }),
        );
        let ProviderEventKind::CustomerUpserted { our_id, name, .. } =
            verify(&payload).unwrap().kind
        else {
            panic!("not a customer");
        };
        assert_eq!((our_id, name), (None, None));
    }

    #[test]
    fn only_a_full_refund_is_a_refund() {
        let payload = event("charge.refunded", charge(4500, 4500));
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::Refunded {
                invoice_id: Some(InvoiceId::parse(INVOICE).unwrap()),
                payment_intent: Some("pi_123".into()),
            }
        );
        let payload = event("charge.refunded", charge(4500, 1000));
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::Other {
                kind: "charge.refunded".into()
            }
        );
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(StripeWebhookVerifier::new(" ").is_err());
        assert!(StripeGateway::new("", None).is_err());
    }

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

    fn api(type_: &str, code: Option<&str>, message: &str) -> ApiErrors {
        ApiErrors {
            advice_code: None,
            charge: None,
            code: code.map(|c| ApiErrorsCode::from_str(c).unwrap()),
            decline_code: None,
            doc_url: None,
            message: Some(message.to_owned()),
            network_advice_code: None,
            network_decline_code: None,
            param: None,
            payment_intent: None,
            payment_method: None,
            payment_method_type: None,
            request_log_url: None,
            setup_intent: None,
            source: None,
            type_: ApiErrorsType::from_str(type_).unwrap(),
        }
    }

    #[test]
    fn provider_errors_map_to_our_kinds() {
        let missing = api(
            "invalid_request_error",
            Some("resource_missing"),
            "No such customer: 'cus_X'",
        );
        let e = api_error(
            &missing,
            400,
            named_subject(&missing, "cus_X", Some("pm_1")).unwrap(),
        );
        assert_eq!(
            (e.kind, e.code.as_ref()),
            (
                ErrorKind::Unprocessable,
                "payment_provider_customer_not_found"
            )
        );
        let missing = api(
            "invalid_request_error",
            Some("resource_missing"),
            "No such PaymentMethod: 'pm_1'",
        );
        let e = api_error(
            &missing,
            404,
            named_subject(&missing, "cus_X", Some("pm_1")).unwrap(),
        );
        assert_eq!(
            (e.kind, e.code.as_ref()),
            (ErrorKind::Unprocessable, "payment_method_not_found")
        );
        for status in [429, 500, 502, 503, 409] {
            let e = api_error(&api("api_error", None, "oops"), status, Subject::Nothing);
            assert_eq!(
                (e.kind, e.code.as_ref()),
                (ErrorKind::Unavailable, "payment_provider_unavailable")
            );
        }
        let e = api_error(
            &api("invalid_request_error", None, "Invalid API Key"),
            401,
            Subject::Nothing,
        );
        assert_eq!(e.kind, ErrorKind::Internal);
        let e = api_error(
            &api(
                "idempotency_error",
                None,
                "Keys for idempotent requests ...",
            ),
            400,
            Subject::Nothing,
        );
        assert_eq!(e.kind, ErrorKind::Conflict);
        let e = api_error(
            &api(
                "card_error",
                Some("card_declined"),
                "Your card was declined.",
            ),
            402,
            Subject::Nothing,
        );
        assert_eq!(
            (e.kind, e.code.as_ref()),
            (ErrorKind::Unprocessable, "card_declined")
        );
        let e = api_error(
            &api(
                "invalid_request_error",
                Some("amount_too_small"),
                "too small",
            ),
            400,
            Subject::Nothing,
        );
        assert_eq!(
            (e.kind, e.code.as_ref()),
            (ErrorKind::Unprocessable, "payment_provider_rejected")
        );
        for error in [
            StripeError::ClientError("connection refused".into()),
            StripeError::Timeout,
            StripeError::JSONDeserialize(UNREADABLE_ERROR_BODY.into()),
        ] {
            assert_eq!(
                provider_error(error, Subject::Nothing).kind,
                ErrorKind::Unavailable
            );
        }
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
