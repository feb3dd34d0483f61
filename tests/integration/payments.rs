//! Getting paid, end to end against the fake Stripe (infra/stripe), or Stripe's test mode when
//! `STRIPE_SECRET_KEY` is a test key: the guide's Free and Pro customers from Stripe link to
//! paid invoices, and the webhook receiver's refusals. Each test has its own table and fake
//! Stripe (see `integration_tests::payments`).

use chrono::{Datelike, Months, NaiveDate, Utc};
use integration_tests::TestApp;
use integration_tests::payments::{TestStripe, mails_to, own_address};
use serde_json::{Value, json};

use crate::catalog::guide_catalog;

pub(crate) fn previous_month() -> (NaiveDate, NaiveDate) {
    let this = Utc::now().date_naive().with_day(1).unwrap();
    (this - Months::new(1), this)
}

pub(crate) async fn run_billing(app: &TestApp, date: NaiveDate) -> Value {
    app.send(
        reqwest::Method::POST,
        &format!("/_local/run/billing?date={date}"),
        None,
    )
    .await
    .expect(200)
    .clone()
}

pub(crate) async fn invoice(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/invoices/{id}"))
        .await
        .expect(200)
        .clone()
}

/// A contract as it is now.
async fn reread(app: &TestApp, contract: &Value) -> Value {
    let id = contract["id"].as_str().unwrap();
    app.get(&format!("/v1/contracts/{id}"))
        .await
        .expect(200)
        .clone()
}

pub(crate) async fn first_invoice(app: &TestApp, contract: &Value) -> Value {
    app.contract_invoices(contract["id"].as_str().unwrap())
        .await
        .into_iter()
        .next()
        .expect("an invoice")
}

/// A customer linked to a new Stripe customer (with `fields` such as its payment method) and
/// subscribed to `plan` since the start of last month: (customer, Stripe id, contract).
pub(crate) async fn subscribed_last_month(
    app: &TestApp,
    stripe: &TestStripe,
    name: &str,
    fields: Value,
    plan: &Value,
) -> (Value, String, Value) {
    let stripe_id = stripe.create_customer(name).await;
    let mut body = json!({"name": name, "paymentProviderId": stripe_id});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().expect("fields").clone());
    let customer = app.post("/v1/customers", body).await.expect(201).clone();
    let contract = app
        .post(
            "/v1/contracts",
            json!({"customerId": customer["id"], "planId": plan["id"],
                "startDate": previous_month().0.to_string()}),
        )
        .await
        .expect(201)
        .clone();
    (customer, stripe_id, contract)
}

/// Presses Pay on a payment page (saving the method or not): the Checkout URL our server
/// redirects to.
pub(crate) async fn press_pay(link: &str, save: bool) -> String {
    let pay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(link)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("savePaymentMethod={save}"))
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status(), 303);
    pay.headers()["location"].to_str().unwrap().to_owned()
}

pub(crate) async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let found = invoice(app, id).await;
        if found["status"] == status {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "invoice {id} is {} after 30 s, not {status}",
            found["status"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_guide_runs_from_stripe_link_to_paid_invoices() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_payments(&stripe).await;
    // Addresses of this test's own, so its mail is counted apart from every other test's.
    let (alice_mail, bob_mail) = (own_address("alice"), own_address("bob"));
    let (meter, free, pro) = guide_catalog(&app).await;
    let call_count = meter["eventName"].as_str().unwrap().to_owned();

    // Alice gets a Stripe customer made for her; Bob brings a card for auto-pay.
    let alice = app
        .post(
            "/v1/customers",
            json!({"name": "Alice (Free)",
            "contacts": [{"email": alice_mail, "roles": ["billing"]}]}),
        )
        .await
        .expect(201)
        .clone();
    let alice_stripe = alice["paymentProviderId"]
        .as_str()
        .expect("a Stripe customer")
        .to_owned();
    assert!(alice_stripe.starts_with("cus_"));
    stripe.get(&format!("/v1/customers/{alice_stripe}")).await;
    let bob_stripe = stripe.create_customer("Bob").await;
    let bob = app
        .post(
            "/v1/customers",
            json!({"name": "Bob (Pro)", "paymentProviderId": bob_stripe,
            "paymentMethodId": "pm_card_visa",
            "contacts": [{"email": bob_mail, "roles": ["billing"]}]}),
        )
        .await
        .expect(201)
        .clone();
    let default = stripe.get(&format!("/v1/customers/{bob_stripe}")).await;
    assert!(default["invoice_settings"]["default_payment_method"].is_string());
    // A link to a Stripe customer that does not exist is refused, and nothing is written.
    app.post(
        "/v1/customers",
        json!({"name": "Nobody", "paymentProviderId": "cus_doesnotexist"}),
    )
    .await
    .expect_error(422, "payment_provider_customer_not_found");

    let (start, end) = previous_month();
    let subscribe = |customer: &Value, plan: &Value| json!({"customerId": customer["id"], "planId": plan["id"], "startDate": start.to_string()});
    let free_contract = app
        .post("/v1/contracts", subscribe(&alice, &free))
        .await
        .expect(201)
        .clone();
    let pro_contract = app
        .post("/v1/contracts", subscribe(&bob, &pro))
        .await
        .expect(201)
        .clone();

    // Usage in last month's period: 7 calls for Alice, 12 for Bob.
    let at = (end - chrono::Days::new(1))
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .to_rfc3339();
    let events = |customer: &Value, n: usize, tag: &str| -> Vec<Value> {
        (0..n)
            .map(|i| {
                json!({"customerId": customer["id"], "eventName": call_count,
                "idempotencyKey": format!("{tag}{i}"), "timestamp": at})
            })
            .collect()
    };
    let mut batch = events(&alice, 7, "a");
    batch.extend(events(&bob, 12, "b"));
    app.post("/v1/events/batch", json!({ "events": batch }))
        .await
        .expect(202);
    app.wait_for_events(
        &format!(
            "customerId={}&status=matched",
            alice["id"].as_str().unwrap()
        ),
        7,
    )
    .await;
    app.wait_for_events(
        &format!("customerId={}&status=matched", bob["id"].as_str().unwrap()),
        12,
    )
    .await;
    let free_invoice = first_invoice(&app, &free_contract).await;
    let pro_invoice = first_invoice(&app, &pro_contract).await;
    assert_eq!(free_invoice["status"], "IN_PROGRESS");
    assert_eq!(free_invoice["total"], "0.70");
    assert_eq!(pro_invoice["total"], "50.96");
    assert!(
        free_invoice["paymentLink"].is_null(),
        "no link before sending"
    );

    // The billing run on the period's end date: both close with sequential numbers; Bob's is
    // charged to his card at once.
    let report = run_billing(&app, end).await;
    assert_eq!(report["sent"], 2, "{report}");
    assert_eq!(report["charged"], 1, "{report}");
    let free_id = free_invoice["id"].as_str().unwrap();
    let pro_id = pro_invoice["id"].as_str().unwrap();
    let free_sent = invoice(&app, free_id).await;
    let pro_paid = invoice(&app, pro_id).await;
    assert_eq!(free_sent["status"], "SENT");
    assert_eq!(pro_paid["status"], "PAID");
    let mut numbers = [
        free_sent["invoiceNumber"].as_str().unwrap().to_owned(),
        pro_paid["invoiceNumber"].as_str().unwrap().to_owned(),
    ];
    numbers.sort();
    assert_eq!(numbers, ["INV-000001", "INV-000002"]);
    assert_eq!(
        free_sent["total"], "0.70",
        "amounts are frozen as they were"
    );
    let charges = stripe.payment_intents(&bob_stripe).await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0]["amount"], 5096);
    assert_eq!(charges[0]["status"], "succeeded");
    // Running again changes nothing.
    let again = run_billing(&app, end).await;
    assert_eq!(
        (again["sent"].as_u64(), again["charged"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    assert_eq!(stripe.payment_intents(&bob_stripe).await.len(), 1);

    // Alice opens her payment link: the invoice and a Pay button.
    let link = free_sent["paymentLink"]
        .as_str()
        .expect("a payment link")
        .to_owned();
    assert!(link.starts_with(&app.url), "{link}");
    let page = reqwest::get(&link).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"pay\""), "{html}");
    assert!(html.contains("USD 0.70"), "{html}");
    // A tampered link shows no invoice.
    let tampered = reqwest::get(format!("{link}x")).await.unwrap();
    assert_eq!(tampered.status(), 404);

    // Pay, saving the card: our server redirects to Stripe Checkout.
    let checkout = press_pay(&link, true).await;
    assert!(
        checkout.starts_with(&stripe.checkout_origin()),
        "{checkout}"
    );
    let paid_on_checkout = stripe.fake_only("paying on the hosted Checkout page, and its webhook");
    if paid_on_checkout {
        let session = checkout.rsplit('/').next().unwrap().to_owned();
        stripe.complete_checkout(&session).await;
        // The webhook marks it paid, and the page says so.
        wait_for_status(&app, free_id, "PAID").await;
        let html = reqwest::get(&link).await.unwrap().text().await.unwrap();
        assert!(html.contains(">Paid<"), "{html}");
        assert!(!html.contains("id=\"pay\""));
        // The same webhook saves the method after marking the invoice paid: wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let contract = reread(&app, &free_contract).await;
            if contract["autoPay"] == true {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "opting in turns auto-pay on: {contract}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    // Next period: Bob's $50 is charged automatically, Alice's zero total needs no charge.
    let report = run_billing(&app, end + Months::new(1)).await;
    assert_eq!(report["charged"], 1, "{report}");
    assert_eq!(report["paidWithoutCharge"], 1, "{report}");
    let mut charged: Vec<i64> = stripe
        .payment_intents(&bob_stripe)
        .await
        .iter()
        .map(|pi| pi["amount"].as_i64().unwrap())
        .collect();
    charged.sort();
    assert_eq!(
        charged,
        [5000, 5096],
        "this period's charge is the flat 50.00 alone"
    );
    let invoices = app
        .contract_invoices(pro_contract["id"].as_str().unwrap())
        .await;
    assert_eq!(invoices[1]["status"], "PAID");
    assert_eq!(invoices[1]["total"], "50.00");
    assert_eq!(invoices[1]["payment"]["amountDueMinorUnits"], 5000);
    let alice_next = &app
        .contract_invoices(free_contract["id"].as_str().unwrap())
        .await[1];
    assert_eq!(
        (
            alice_next["status"].as_str(),
            alice_next["totalCents"].as_i64()
        ),
        (Some("PAID"), Some(0))
    );
    let mut numbers = [
        invoices[1]["invoiceNumber"].as_str().unwrap(),
        alice_next["invoiceNumber"].as_str().unwrap(),
    ];
    numbers.sort();
    assert_eq!(
        numbers,
        ["INV-000003", "INV-000004"],
        "the next numbers, no gap"
    );

    // Mail, counted exactly: each got both invoices; Bob a receipt per charge; Alice a receipt
    // for her Checkout payment (when it ran); nothing else, and nothing twice.
    let kinds = |to: &str, sent: &[integration_tests::payments::SentMail]| -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = sent
            .iter()
            .filter(|m| m.to.iter().any(|a| a == to))
            .map(|m| match m.subject.as_str() {
                s if s.starts_with("Invoice INV-") => "invoice",
                s if s.starts_with("Payment received for invoice") => "receipt",
                s => panic!("an unexpected mail to {to}: {s}"),
            })
            .collect();
        kinds.sort();
        kinds
    };
    let sent = mails_to(&[alice_mail.clone(), bob_mail.clone()]).await;
    assert_eq!(
        kinds(&bob_mail, &sent),
        ["invoice", "invoice", "receipt", "receipt"]
    );
    let alice_expected: &[&str] = if paid_on_checkout {
        &["invoice", "invoice", "receipt"]
    } else {
        &["invoice", "invoice"]
    };
    assert_eq!(kinds(&alice_mail, &sent), alice_expected);
    assert_eq!(sent.len(), 4 + alice_expected.len(), "{sent:?}");
}

#[tokio::test]
async fn webhooks_with_a_bad_stale_or_missing_signature_are_refused_and_repeats_are_no_ops() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_payments(&stripe).await;
    let payload = json!({"id": "evt_test_1", "object": "event", "type": "customer.created",
        "created": Utc::now().timestamp(), "livemode": false, "pending_webhooks": 0,
        "data": {"object": {"id": "cus_fromdashboard1", "object": "customer", "created": 1,
            "livemode": false, "name": "Dashboard Customer", "email": "d@example.com"}}})
    .to_string();
    let post = |signature: Option<String>| {
        let client = reqwest::Client::new();
        let mut request = client
            .post(format!("{}/webhooks/stripe", app.url))
            .header("Content-Type", "application/json")
            .body(payload.clone());
        if let Some(signature) = signature {
            request = request.header("Stripe-Signature", signature);
        }
        request.send()
    };
    let sign = |at: i64| {
        let signed = format!("{at}.{payload}");
        format!(
            "t={at},v1={}",
            hmac_hex(integration_tests::payments::WEBHOOK_SECRET, &signed)
        )
    };
    let now = Utc::now().timestamp();
    assert_eq!(post(None).await.unwrap().status(), 400);
    assert_eq!(
        post(Some(format!("t={now},v1=00"))).await.unwrap().status(),
        400
    );
    assert_eq!(
        post(Some(sign(now - 600))).await.unwrap().status(),
        400,
        "stale"
    );
    // Nothing was written: no customer for that Stripe id.
    let listed = app.get("/v1/customers?limit=100").await.expect(200).clone();
    assert!(!listed.to_string().contains("Dashboard Customer"));
    // A good one creates the customer; its redelivery is a no-op.
    let first = post(Some(sign(now))).await.unwrap();
    assert_eq!(first.status(), 200);
    let second = post(Some(format!("{},v1=ffff", sign(now)))).await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(second.json::<Value>().await.unwrap()["duplicate"], true);
    let listed = app.get("/v1/customers?limit=100").await.expect(200).clone();
    let matching: Vec<&Value> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["paymentProviderId"] == "cus_fromdashboard1")
        .collect();
    assert_eq!(matching.len(), 1, "{listed}");
    assert_eq!(matching[0]["name"], "Dashboard Customer");
}

pub(crate) fn hmac_hex(secret: &str, message: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_declined_card_is_retried_then_auto_pay_turns_off_and_two_runs_charge_once() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_payments(&stripe).await;
    let (_, _, pro) = guide_catalog(&app).await;
    let (_, carol_stripe, contract) = subscribed_last_month(
        &app,
        &stripe,
        "Carol",
        json!({"paymentMethodId": "pm_card_chargeCustomerFail",
            "contacts": [{"email": "carol@example.com"}]}),
        &pro,
    )
    .await;
    let (_, end) = previous_month();
    let id = first_invoice(&app, &contract).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Two runs at once on the period end: one closes and charges, the other finds it done.
    let (a, b) = tokio::join!(run_billing(&app, end), run_billing(&app, end));
    assert_eq!(
        a["sent"].as_u64().unwrap() + b["sent"].as_u64().unwrap(),
        1,
        "{a} {b}"
    );
    assert_eq!(
        a["failedAttempts"].as_u64().unwrap() + b["failedAttempts"].as_u64().unwrap(),
        1,
        "{a} {b}"
    );
    assert_eq!(
        stripe.payment_intents(&carol_stripe).await.len(),
        1,
        "one charge per attempt"
    );
    let after_first = invoice(&app, &id).await;
    assert_eq!(after_first["status"], "SENT");
    assert_eq!(after_first["payment"]["attempts"], 1);
    let next = after_first["payment"]["nextAttemptOn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(next, (end + chrono::Days::new(1)).to_string());
    // A one-time EventBridge Scheduler retry (moto records it) for attempt 2 on that day.
    let config = billing_aws::aws_config().await;
    let schedule = aws_sdk_scheduler::Client::new(&config)
        .get_schedule()
        .name(format!("retry-{id}-2"))
        .send()
        .await
        .expect("the retry schedule exists");
    // At the next attempt's day, or in a minute when that day has passed (this test bills a
    // past period).
    let expression = schedule.schedule_expression().unwrap_or_default();
    let at = expression
        .strip_prefix("at(")
        .and_then(|e| e.strip_suffix(')'))
        .and_then(|e| chrono::NaiveDateTime::parse_from_str(e, "%Y-%m-%dT%H:%M:%S").ok())
        .unwrap_or_else(|| panic!("not a one-time schedule: {expression}"));
    let earliest = (end + chrono::Days::new(1)).and_hms_opt(0, 0, 0).unwrap();
    assert!(
        at >= earliest && at >= Utc::now().naive_utc(),
        "{expression}"
    );
    let input = schedule
        .target()
        .and_then(|t| t.input())
        .unwrap_or_default()
        .to_owned();
    assert!(
        input.contains("\"kind\":\"retry\"") && input.contains(&id),
        "{input}"
    );
    // Retries after 1, 3 and 5 days; the last failure turns auto-pay off.
    let mut date = end;
    for (days, attempts) in [(1u64, 2), (3, 3), (5, 4)] {
        date = date + chrono::Days::new(days);
        let report = run_billing(&app, date).await;
        assert_eq!(report["failedAttempts"], 1, "{report}");
        assert_eq!(invoice(&app, &id).await["payment"]["attempts"], attempts);
    }
    let last = invoice(&app, &id).await;
    assert_eq!(last["status"], "SENT", "still payable through the link");
    assert!(last["payment"]["nextAttemptOn"].is_null());
    let contract = reread(&app, &contract).await;
    assert_eq!(contract["autoPay"], false);
    assert_eq!(
        stripe.payment_intents(&carol_stripe).await.len(),
        4,
        "four attempts, four charges tried"
    );
    // Nothing more happens later.
    let report = run_billing(&app, date + chrono::Days::new(10)).await;
    assert_eq!(report["failedAttempts"], 0, "{report}");
    assert_eq!(stripe.payment_intents(&carol_stripe).await.len(), 4);
}

#[tokio::test]
async fn a_billing_run_killed_at_any_point_and_rerun_closes_and_charges_each_invoice_once() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_payments(&stripe).await;
    let (_, free, pro) = guide_catalog(&app).await;
    let (start, end) = previous_month();
    // Six Pro customers with cards (auto-pay) and six Free ones (no usage: a zero total, paid
    // without a charge).
    let mut pro_customers = Vec::new();
    let mut free_customers = Vec::new();
    for i in 0..12 {
        let stripe_id = stripe.create_customer(&format!("Customer {i}")).await;
        let customer = app
            .post(
                "/v1/customers",
                json!({"name": format!("Customer {i}"),
                "paymentProviderId": stripe_id, "paymentMethodId": "pm_card_visa"}),
            )
            .await
            .expect(201)
            .clone();
        let plan = if i % 2 == 0 { &pro } else { &free };
        app.post(
            "/v1/contracts",
            json!({"customerId": customer["id"], "planId": plan["id"],
                "startDate": start.to_string()}),
        )
        .await
        .expect(201);
        if i % 2 == 0 {
            pro_customers.push(stripe_id);
        } else {
            free_customers.push(stripe_id);
        }
    }
    // The run, cut off after 2, 4, 8, ... ms (a Lambda timeout or crash at an arbitrary await:
    // between reads, between a charge and its write, between a close and its mail), then rerun.
    let run = integration_tests::startup().await.billing_run().unwrap();
    let now = end.and_hms_opt(0, 15, 0).unwrap().and_utc();
    // After each cut, what the dead run had got done: invoices closed, Pro invoices paid.
    let progress = |all: &Value| {
        let data = all["data"].as_array().unwrap();
        let closed = data
            .iter()
            .filter(|i| i["invoiceNumber"].is_string())
            .count();
        let charged = data
            .iter()
            .filter(|i| i["status"] == "PAID" && i["total"] != "0.00")
            .count();
        (closed, charged)
    };
    let mut cut = 4.0_f64;
    let mut cuts = Vec::new();
    loop {
        let limit = std::time::Duration::from_secs_f64(cut / 1000.0);
        match tokio::time::timeout(limit, run.run_daily(end, now)).await {
            Ok(report) => {
                let report = report.expect("the run");
                assert!(report.errors.is_empty(), "{report:?}");
                break;
            }
            Err(_) => {
                let all = app.get("/v1/invoices?limit=100").await.expect(200).clone();
                cuts.push((cut as u64, progress(&all)));
                cut *= 1.5;
            }
        }
    }
    // The cuts fell inside the work, not only before or after it: some run died having closed
    // some invoices but not charged all of them (between a close and a charge, or between a
    // charge and its record).
    assert!(
        cuts.iter()
            .any(|(_, (closed, charged))| *closed > 0 && *charged < 6),
        "no cut fell between the first close and the last charge: {cuts:?}"
    );
    eprintln!("cuts (ms, (closed, charged)): {cuts:?}");
    // A last full run finds nothing to do.
    let last = run.run_daily(end, now).await.expect("the run");
    assert_eq!((last.sent, last.charged), (0, 0), "{last:?}");

    let all = app.get("/v1/invoices?limit=100").await.expect(200).clone();
    let closed: Vec<&Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["invoiceNumber"].is_string())
        .collect();
    assert_eq!(closed.len(), 12, "every invoice of the period closed once");
    let mut numbers: Vec<&str> = closed
        .iter()
        .map(|i| i["invoiceNumber"].as_str().unwrap())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=12).map(|n| format!("INV-{n:06}")).collect();
    assert_eq!(numbers, expected, "numbers without gaps or duplicates");
    for customer in &pro_customers {
        let charges = stripe.payment_intents(customer).await;
        assert_eq!(
            charges.len(),
            1,
            "exactly one charge for {customer}: {charges:?}"
        );
        assert_eq!(charges[0]["status"], "succeeded");
        assert_eq!(charges[0]["amount"], 5000, "Pro's flat 50.00, no usage");
    }
    for invoice in &closed {
        let (total, cents) = if invoice["total"] == "0.00" {
            ("0.00", 0)
        } else {
            ("50.00", 5000)
        };
        assert_eq!(invoice["total"], total, "{invoice}");
        assert_eq!(
            invoice["payment"]["amountDueMinorUnits"], cents,
            "{invoice}"
        );
    }
    assert_eq!(
        closed.iter().filter(|i| i["total"] == "50.00").count(),
        6,
        "six Pro invoices of 50.00"
    );
    for customer in &free_customers {
        assert!(
            stripe.payment_intents(customer).await.is_empty(),
            "no charge of a zero total"
        );
    }
    let paid = closed.iter().filter(|i| i["status"] == "PAID").count();
    assert_eq!(
        paid, 12,
        "Pro charged, Free zero totals paid without a charge"
    );
}

#[tokio::test]
async fn paused_customers_wait_and_charges_below_the_minimum_are_left_for_the_link() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_payments(&stripe).await;
    let (_, _, pro) = guide_catalog(&app).await;
    let tiny = app
        .plan(
            json!({"name": "Tiny", "currency": "USD", "netTerms": 0, "autoPay": true,
            "prices": [{"model": "FLAT", "flatAmount": "0.30", "description": "Tiny plan"}]}),
        )
        .await;
    let (_, end) = previous_month();
    let mut subscribed = Vec::new();
    for (name, plan, paused) in [("Dave", &pro, true), ("Erin", &tiny, false)] {
        let (customer, stripe_id, contract) = subscribed_last_month(
            &app,
            &stripe,
            name,
            json!({"paymentMethodId": "pm_card_visa", "autoPayPaused": paused}),
            plan,
        )
        .await;
        assert_eq!(customer["autoPayPaused"], paused);
        let invoice = first_invoice(&app, &contract).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        subscribed.push((customer, stripe_id, invoice));
    }
    let report = run_billing(&app, end).await;
    assert_eq!(report["sent"], 2, "{report}");
    assert_eq!(report["paused"], 1, "{report}");
    assert_eq!(report["notCollectable"], 1, "{report}");
    assert_eq!(report["charged"], 0, "{report}");
    let (dave, dave_stripe, dave_invoice) = &subscribed[0];
    let (_, erin_stripe, erin_invoice) = &subscribed[1];
    assert!(stripe.payment_intents(dave_stripe).await.is_empty());
    assert!(stripe.payment_intents(erin_stripe).await.is_empty());
    let erin = invoice(&app, erin_invoice).await;
    assert_eq!(erin["status"], "SENT", "payable through its link");
    assert!(
        erin["payment"]["lastError"]
            .as_str()
            .unwrap()
            .contains("minimum"),
        "{erin}"
    );
    assert!(erin["paymentLink"].is_string());
    // A later run still waits while paused; lifting the pause charges on the next run.
    let report = run_billing(&app, end + chrono::Days::new(1)).await;
    assert_eq!(
        (report["paused"].as_u64(), report["charged"].as_u64()),
        (Some(1), Some(0))
    );
    let id = dave["id"].as_str().unwrap();
    app.patch(
        &format!("/v1/customers/{id}"),
        json!({"autoPayPaused": false}),
    )
    .await
    .expect(200);
    let report = run_billing(&app, end + chrono::Days::new(2)).await;
    assert_eq!(report["charged"], 1, "{report}");
    assert_eq!(invoice(&app, dave_invoice).await["status"], "PAID");
    assert_eq!(stripe.payment_intents(dave_stripe).await.len(), 1);
}

/// Delivers a Stripe event the way Stripe signs it (for types the fake does not emit).
pub(crate) async fn deliver(app: &TestApp, event: Value) -> Value {
    let payload = event.to_string();
    let at = Utc::now().timestamp();
    let signature = format!(
        "t={at},v1={}",
        hmac_hex(
            integration_tests::payments::WEBHOOK_SECRET,
            &format!("{at}.{payload}")
        )
    );
    let answer = reqwest::Client::new()
        .post(format!("{}/webhooks/stripe", app.url))
        .header("Content-Type", "application/json")
        .header("Stripe-Signature", signature)
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

pub(crate) fn event(kind: &str, object: Value) -> Value {
    json!({"id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "object": "event",
        "type": kind, "created": Utc::now().timestamp(), "livemode": false,
        "pending_webhooks": 1, "data": {"object": object}})
}

#[tokio::test]
async fn setup_intents_save_the_method_and_refunds_mark_invoices_refunded() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_payments(&stripe).await;
    let (_, _, pro) = guide_catalog(&app).await;
    let frank = app
        .post("/v1/customers", json!({"name": "Frank"}))
        .await
        .expect(201)
        .clone();
    let frank_id = frank["id"].as_str().unwrap();
    let frank_stripe = frank["paymentProviderId"].as_str().unwrap().to_owned();
    // A custom payment form: a SetupIntent, then Stripe's notice that it succeeded.
    let intent = app
        .post(
            &format!("/v1/customers/{frank_id}/setup-intents"),
            json!({}),
        )
        .await
        .expect(201)
        .clone();
    assert!(
        intent["clientSecret"]
            .as_str()
            .unwrap()
            .contains("_secret_")
    );
    let stripe_intent = stripe
        .get(&format!(
            "/v1/setup_intents/{}",
            intent["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(stripe_intent["usage"], "off_session");
    let handled = deliver(
        &app,
        event(
            "setup_intent.succeeded",
            json!({
        "id": intent["id"], "object": "setup_intent", "created": 1, "livemode": false,
        "payment_method_types": ["card"], "status": "succeeded", "usage": "off_session",
        "customer": frank_stripe, "payment_method": "pm_1FromElements"}),
        ),
    )
    .await;
    assert_eq!(handled["handled"], "setup_intent.succeeded", "{handled}");
    let frank = app
        .get(&format!("/v1/customers/{frank_id}"))
        .await
        .expect(200)
        .clone();
    assert_eq!(frank["paymentMethodId"], "pm_1FromElements");

    // A paid invoice, then a full refund of its charge (whose metadata Stripe does not copy
    // from the PaymentIntent: the invoice is found through the PaymentIntent).
    let (start, end) = previous_month();
    app.patch(
        &format!("/v1/customers/{frank_id}"),
        json!({"paymentMethodId": "pm_card_visa"}),
    )
    .await
    .expect(200);
    let contract = app
        .post(
            "/v1/contracts",
            json!({"customerId": frank_id, "planId": pro["id"], "startDate": start.to_string()}),
        )
        .await
        .expect(201)
        .clone();
    run_billing(&app, end).await;
    let paid = first_invoice(&app, &contract).await;
    assert_eq!(paid["status"], "PAID", "{paid}");
    let pi = paid["payment"]["paymentIntent"]
        .as_str()
        .unwrap()
        .to_owned();
    let refund = event(
        "charge.refunded",
        json!({
        "id": "ch_refunded1", "object": "charge", "amount": 5000, "amount_captured": 5000,
        "amount_refunded": 5000, "billing_details": {}, "captured": true, "created": 1,
        "currency": "usd", "disputed": false, "livemode": false, "metadata": {},
        "paid": true, "refunded": true, "status": "succeeded", "payment_intent": pi}),
    );
    deliver(&app, refund.clone()).await;
    let refunded = invoice(&app, paid["id"].as_str().unwrap()).await;
    assert_eq!(refunded["status"], "REFUNDED", "{refunded}");
    assert!(refunded["payment"]["refundedAt"].is_string());
    // The same delivery again is a no-op.
    assert_eq!(deliver(&app, refund).await["duplicate"], true);
}

#[tokio::test]
async fn refused_creates_leave_no_stripe_customer_behind() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_payments(&stripe).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let email = |who: &str| format!("{who}-{tag}@example.com");
    let stripe_customers = |address: String| {
        let stripe = &stripe;
        async move {
            stripe
                .get(&format!("/v1/customers?email={address}&limit=10"))
                .await["data"]
                .as_array()
                .map_or(0, Vec::len)
        }
    };
    let create = |who: &str, extra: Value| {
        let mut body = json!({"name": who, "contacts": [{"email": email(who)}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        app.post("/v1/customers", body)
    };
    let external = json!({"externalCustomerId": format!("ext-{tag}")});
    create("first", external.clone()).await.expect(201);
    assert_eq!(stripe_customers(email("first")).await, 1);
    // A taken externalCustomerId is refused after the Stripe customer was made: it is deleted.
    create("second", external)
        .await
        .expect_error(409, "external_customer_id_taken");
    assert_eq!(stripe_customers(email("second")).await, 0);
    // A card declined on attach: refused, and its new Stripe customer deleted too.
    create(
        "third",
        json!({"paymentMethodId": "pm_card_visa_chargeDeclined"}),
    )
    .await
    .expect_error(422, "card_declined");
    assert_eq!(stripe_customers(email("third")).await, 0);
    let ours = app.get("/v1/customers?limit=100").await.expect(200).clone();
    assert_eq!(ours["data"].as_array().unwrap().len(), 1, "{ours}");
}

#[tokio::test]
async fn a_charge_whose_answer_was_lost_is_found_not_repeated_after_stripe_forgets_its_key() {
    let stripe = TestStripe::start();
    if !stripe.fake_only("forgetting idempotency keys early (Stripe does so after 24 hours)") {
        return;
    }
    let app = TestApp::spawn_with_payments(&stripe).await;
    let (_, _, pro) = guide_catalog(&app).await;
    let (grace, grace_stripe, contract) = subscribed_last_month(
        &app,
        &stripe,
        "Grace",
        json!({"paymentMethodId": "pm_card_visa", "autoPayPaused": true}),
        &pro,
    )
    .await;
    let (_, end) = previous_month();
    // Sent, but not charged while paused.
    let report = run_billing(&app, end).await;
    assert_eq!(
        (report["sent"].as_u64(), report["paused"].as_u64()),
        (Some(1), Some(1))
    );
    let sent = first_invoice(&app, &contract).await;
    let id = sent["id"].as_str().unwrap();
    // A run charged attempt 1 and died before recording it (the request a run sends, with
    // its idempotency key) ...
    let lost = billing::ports::ChargeRequest {
        invoice_id: billing::ids::InvoiceId::parse(id).unwrap(),
        attempt: 1,
        customer: billing::customer::ProviderCustomerId::parse(&grace_stripe).unwrap(),
        payment_method: billing::customer::PaymentMethodId::parse(
            grace["paymentMethodId"].as_str().unwrap(),
        )
        .unwrap(),
        amount_minor: sent["payment"]["amountDueMinorUnits"].as_i64().unwrap(),
        currency: billing::money::Currency::USD,
        sent_at: sent["payment"]["sentAt"].as_str().unwrap().parse().unwrap(),
    };
    use billing::ports::PaymentGateway;
    stripe.gateway().charge(&lost).await.unwrap();
    assert_eq!(stripe.payment_intents(&grace_stripe).await.len(), 1);
    // ... and the next run comes after Stripe has forgotten that key.
    let forgotten = stripe
        .api(reqwest::Method::DELETE, "/_config/idempotency")
        .await;
    assert!(forgotten["forgotten"].as_u64().unwrap() >= 1, "{forgotten}");
    app.patch(
        &format!("/v1/customers/{}", grace["id"].as_str().unwrap()),
        json!({"autoPayPaused": false}),
    )
    .await
    .expect(200);
    let report = run_billing(&app, end + chrono::Days::new(1)).await;
    assert_eq!(report["charged"], 1, "{report}");
    let charges = stripe.payment_intents(&grace_stripe).await;
    assert_eq!(
        charges.len(),
        1,
        "the first payment was found, not made again: {charges:?}"
    );
    let paid = invoice(&app, id).await;
    assert_eq!(paid["status"], "PAID");
    assert_eq!(paid["payment"]["paymentIntent"], charges[0]["id"]);
}

#[tokio::test]
async fn a_payment_still_processing_is_settled_by_the_next_run_without_a_second_charge() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_payments(&stripe).await;
    let (_, _, pro) = guide_catalog(&app).await;
    let (_, ivan_stripe, contract) = subscribed_last_month(
        &app,
        &stripe,
        "Ivan",
        json!({"paymentMethodId": "pm_card_visa"}),
        &pro,
    )
    .await;
    // Stripe takes the payment but answers that it is still processing (as for a bank debit),
    // which the adapter reports as the error `payment_processing`.
    let processing: integration_tests::payments::FirstAnswer = Box::new(|answer| {
        let Ok(billing::ports::ChargeOutcome::Succeeded { payment_intent }) = answer else {
            panic!("not charged: {answer:?}");
        };
        Err(billing::Error::new(
            billing::ErrorKind::Internal,
            "payment_processing",
            format!("payment {payment_intent} is still processing"),
        ))
    });
    let run = integration_tests::startup()
        .await
        .billing_run()
        .unwrap()
        .with_gateway(std::sync::Arc::new(
            integration_tests::payments::HookedGateway::new(stripe.gateway())
                .first_answer(processing),
        ));
    let (_, end) = previous_month();
    let report = run
        .run_daily(end, end.and_hms_opt(0, 15, 0).unwrap().and_utc())
        .await
        .unwrap();
    assert_eq!((report.sent, report.charged), (1, 0), "{report:?}");
    assert!(
        report.errors.len() == 1 && report.errors[0].contains("payment_processing"),
        "{report:?}"
    );
    let id = first_invoice(&app, &contract).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = invoice(&app, &id).await;
    assert_eq!(waiting["status"], "SENT");
    assert_eq!(waiting["payment"]["attempts"], 0, "the attempt stays open");
    assert_eq!(waiting["payment"]["nextAttemptOn"], end.to_string());
    // The next run asks again for the same attempt: it finds that payment (settled by now)
    // and records it, with no second charge.
    let report = run_billing(&app, end + chrono::Days::new(1)).await;
    assert_eq!(report["charged"], 1, "{report}");
    let charges = stripe.payment_intents(&ivan_stripe).await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    let paid = invoice(&app, &id).await;
    assert_eq!(paid["status"], "PAID");
    assert_eq!(paid["payment"]["paymentIntent"], charges[0]["id"]);
}
