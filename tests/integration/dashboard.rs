//! The dashboard over HTTP, through the dev server's API Gateway conversion, against the local
//! stack: sign-in and its cookie, CSRF on every POST, scopes, tampered cookies and revoked keys,
//! and the running totals the customer list shows after a billing run (the DynamoDB adapter's
//! counters, moved in the close's transaction).

use chrono::{Datelike, Duration, Utc};
use integration_tests::{TestApp, unique, unique_code};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;

/// A browser in miniature: no redirects followed, the session cookie kept by hand.
struct Browser {
    url: String,
    client: reqwest::Client,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    location: String,
    set_cookies: Vec<String>,
    body: String,
}

impl Page {
    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let start = self.body.find("name=\"_csrf\" value=\"").expect("a form") + 20;
        self.body[start..start + 64].to_owned()
    }
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Self {
            url: app.url.clone(),
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&mut self, post: Option<&[(&str, &str)]>, path: &str) -> Page {
        let url = format!("{}{path}", self.url);
        let mut request = match post {
            Some(form) => self
                .client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(form).unwrap()),
            None => self.client.get(url),
        };
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie.clone());
        }
        let response = request.send().await.unwrap();
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        Page {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            set_cookies,
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(None, path).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Some(form), path).await
    }

    /// Signs in with `key`; keeps the session cookie.
    async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/dashboard/sign-in").await;
        assert_eq!(form.status, 200);
        let pre = form.set_cookies[0].split(';').next().unwrap().to_owned();
        self.cookie = Some(pre);
        let csrf = form.csrf();
        let page = self
            .post("/dashboard/sign-in", &[("_csrf", &csrf), ("apiKey", key)])
            .await;
        if page.status == 303 {
            let session = page
                .set_cookies
                .iter()
                .find(|c| c.starts_with("dashboard_session="))
                .expect("a session cookie");
            self.cookie = Some(session.split(';').next().unwrap().to_owned());
        }
        page
    }
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_that_carries_no_key() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);
    let home = browser.get("/dashboard").await;
    assert_eq!(
        (home.status, home.location.as_str()),
        (303, "/dashboard/sign-in")
    );
    let refused = browser.sign_in("sk_not_a_key").await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("not valid or has been revoked"));
    let page = browser.sign_in(&app.admin_key).await;
    assert_eq!((page.status, page.location.as_str()), (303, "/dashboard"));
    let session = page
        .set_cookies
        .iter()
        .find(|c| c.starts_with("dashboard_session="))
        .unwrap();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/dashboard",
        "Max-Age=28800",
    ] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains(&app.admin_key), "{session}");
    let home = browser.get("/dashboard").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("<h1>Home</h1>"));
}

#[tokio::test]
async fn a_sign_in_without_its_csrf_token_is_refused() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);
    let page = browser
        .post("/dashboard/sign-in", &[("apiKey", &app.admin_key)])
        .await;
    assert_eq!(page.status, 403);
    assert!(
        page.set_cookies
            .iter()
            .all(|c| !c.starts_with("dashboard_session="))
    );
}

#[tokio::test]
async fn every_post_needs_the_sessions_csrf_token() {
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.admin_key).await;
    let name = unique("Mallory");
    for token in ["", &"00".repeat(32)] {
        let page = browser
            .post("/dashboard/customers", &[("_csrf", token), ("name", &name)])
            .await;
        assert_eq!(page.status, 403, "{}", page.body);
    }
    // Another session's token is no good either.
    let mut other = Browser::new(&app);
    other.sign_in(&app.admin_key).await;
    let their_token = other.get("/dashboard/customers/new").await.csrf();
    let page = browser
        .post(
            "/dashboard/customers",
            &[("_csrf", &their_token), ("name", &name)],
        )
        .await;
    assert_eq!(page.status, 403);
    let listed = app.get("/v1/customers?limit=100").await;
    assert!(
        !listed.body.to_string().contains(&name),
        "nothing was written"
    );
    // With its own token the form works, and errors land next to their field.
    let csrf = browser.get("/dashboard/customers/new").await.csrf();
    let page = browser
        .post(
            "/dashboard/customers",
            &[
                ("_csrf", &csrf),
                ("name", &name),
                ("contacts[0].email", "nope"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("id=\"f-email-error\""), "{}", page.body);
    let page = browser
        .post("/dashboard/customers", &[("_csrf", &csrf), ("name", &name)])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.location.starts_with("/dashboard/customers/cus_"));
}

#[tokio::test]
async fn a_read_only_key_sees_no_create_buttons_and_its_posts_are_403() {
    let app = TestApp::spawn().await;
    let key = app
        .key_with(&[
            "customers:read",
            "pricing:read",
            "contracts:read",
            "invoices:read",
            "usage:read",
        ])
        .await;
    let mut browser = Browser::new(&app);
    assert_eq!(browser.sign_in(&key).await.status, 303);
    for (path, button) in [
        ("/dashboard/customers", "Add customer"),
        ("/dashboard/meters", "Create meter"),
        ("/dashboard/plans", "Create plan"),
        ("/dashboard/contracts", "Create contract"),
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.body.contains(&format!(">{button}</a>")), "{path}");
    }
    assert_eq!(browser.get("/dashboard/api-keys").await.status, 403);
    let csrf = browser.get("/dashboard/customers").await.csrf();
    for (path, form) in [
        ("/dashboard/customers", vec![("name", "Mallory")]),
        ("/dashboard/meters", vec![("code", "FORGED")]),
        ("/dashboard/plans", vec![("name", "Forged")]),
        ("/dashboard/contracts", vec![]),
        ("/dashboard/api-keys", vec![("scopes", "*")]),
    ] {
        let mut fields = vec![("_csrf", csrf.as_str())];
        fields.extend(form);
        let page = browser.post(path, &fields).await;
        assert_eq!(page.status, 403, "{path}: {}", page.body);
    }
}

#[tokio::test]
async fn tampered_cookies_and_revoked_keys_go_back_to_sign_in() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            "/v1/api-keys",
            json!({"name": unique("dash"), "scopes": ["*"]}),
        )
        .await
        .expect(201)
        .clone();
    let (id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    );
    let mut browser = Browser::new(&app);
    browser.sign_in(&key).await;
    assert_eq!(browser.get("/dashboard/customers").await.status, 200);
    let cookie = browser.cookie.clone().unwrap();
    let last = cookie.chars().last().unwrap();
    let tampered = format!(
        "{}{}",
        &cookie[..cookie.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let mut forger = Browser::new(&app);
    forger.cookie = Some(tampered);
    let page = forger.get("/dashboard/customers").await;
    assert_eq!(
        (page.status, page.location.as_str()),
        (303, "/dashboard/sign-in")
    );
    assert!(
        page.set_cookies[0].contains("Max-Age=0"),
        "the bad cookie is cleared"
    );
    // Revoking the key (here, through its own session) ends that session at once.
    let csrf = browser.get("/dashboard/api-keys").await.csrf();
    let revoked = browser
        .post(
            &format!("/dashboard/api-keys/{id}/revoke"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    let page = browser.get("/dashboard/customers").await;
    assert_eq!(
        (page.status, page.location.as_str()),
        (303, "/dashboard/sign-in")
    );
}

#[tokio::test]
async fn the_customer_list_shows_totals_moved_by_the_billing_run() {
    // Its own table: the billing run closes every due invoice it finds, other tests' too.
    let app = TestApp::spawn_with_own_table().await;
    let code = unique_code("DASH");
    let meter = app
        .meter(json!({"code": code, "eventName": unique("dash"), "aggregationType": "COUNT"}))
        .await;
    let plan = app
        .plan(
            json!({"name": "Dash", "currency": "JPY", "netTerms": 30, "prices": [
            {"model": "FLAT", "flatAmount": "1200"},
            {"model": "USAGE", "meterId": meter["id"], "unitAmount": "1"}]}),
        )
        .await;
    let customer = app
        .post(
            "/v1/customers",
            json!({"name": unique("Totals"), "externalCustomerId": unique("totals")}),
        )
        .await
        .expect(201)
        .clone();
    let today = Utc::now().date_naive();
    let first = today.with_day(1).unwrap();
    let start = (first - Duration::days(1)).with_day(1).unwrap();
    app.post(
        "/v1/contracts",
        json!({"customerId": customer["id"], "planId": plan["id"],
               "startDate": start.to_string(), "endDate": first.to_string()}),
    )
    .await
    .expect(201);
    let run = reqwest::Client::new()
        .post(format!("{}/_local/run/billing?date={first}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 200);
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.admin_key).await;
    let id = customer["id"].as_str().unwrap();
    let page = browser.get(&format!("/dashboard/customers?q={id}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("JPY 1,200"),
        "billed total: {}",
        page.body
    );
    let page = browser.get(&format!("/dashboard/customers/{id}")).await;
    assert!(
        page.body.contains("<dd id=\"total-billed\">JPY 1,200</dd>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<dd id=\"total-paid\">—</dd>"));
}

#[tokio::test]
async fn the_plan_form_builds_tiers_packages_and_dimensional_rates_as_the_api_takes_them() {
    let app = TestApp::spawn().await;
    let [code, dimensional, packaged] = ["TOKENS", "REGIONS", "PACKS"].map(unique_code);
    for meter in [&code, &dimensional, &packaged] {
        app.meter(
            json!({"code": meter, "eventName": unique("tokens"), "aggregationType": "SUM",
                         "aggregationKey": "tokens", "groupKeys": ["region"]}),
        )
        .await;
    }
    let mut browser = Browser::new(&app);
    browser.sign_in(&app.admin_key).await;
    let csrf = browser.get("/dashboard/plans/new").await.csrf();
    // "Add usage price" then "Add tier": a round trip that shows one more row.
    let grown = browser
        .post(
            "/dashboard/plans",
            &[("_csrf", &csrf), ("name", "Tiers"), ("_add", "usage")],
        )
        .await;
    assert_eq!(grown.status, 200);
    assert!(
        grown
            .body
            .contains("name=\"prices[0].model\" value=\"USAGE\"")
    );
    let grown = browser
        .post(
            "/dashboard/plans",
            &[
                ("_csrf", &csrf),
                ("prices[0].model", "USAGE"),
                ("_add", "tier-0"),
            ],
        )
        .await;
    assert!(
        grown.body.contains("name=\"prices[0].tiers[0].upTo\""),
        "{}",
        grown.body
    );
    let name = unique("Graduated");
    let created = browser
        .post(
            "/dashboard/plans",
            &[
                ("_csrf", &csrf),
                ("name", &name),
                ("currency", "EUR"),
                ("netTerms", "15"),
                ("billingInterval", "MONTH"),
                ("gracePeriodDays", "2"),
                ("prices[0].model", "USAGE"),
                ("prices[0].meterCode", &code),
                ("prices[0].tiering", "GRADUATED"),
                ("prices[0].unitAmount", ""),
                ("prices[0].tiers[0].upTo", "1000"),
                ("prices[0].tiers[0].unitAmount", "0.002"),
                ("prices[0].tiers[0].flatAmount", ""),
                ("prices[0].tiers[1].upTo", ""),
                ("prices[0].tiers[1].unitAmount", "0.001"),
                ("prices[1].model", "USAGE"),
                ("prices[1].meterCode", &dimensional),
                ("prices[1].tiering", "NONE"),
                ("prices[1].dimensionalRates[0].dimensions", "region=eu"),
                ("prices[1].dimensionalRates[0].unitAmount", "0.03"),
                ("prices[1].fallbackUnitAmount", "0.05"),
                ("prices[2].model", "USAGE"),
                ("prices[2].meterCode", &packaged),
                ("prices[2].tiering", "PACKAGE"),
                ("prices[2].unitAmount", "5"),
                ("prices[2].packageSize", "1000"),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let id = created.location.rsplit('/').next().unwrap().to_owned();
    let plan = app
        .get(&format!("/v1/plans/{id}"))
        .await
        .expect(200)
        .clone();
    assert_eq!(
        (plan["currency"].as_str(), plan["netTerms"].as_u64()),
        (Some("EUR"), Some(15))
    );
    assert_eq!(plan["prices"][0]["tiering"], "GRADUATED");
    assert_eq!(plan["prices"][0]["tiers"][0]["upTo"], "1000");
    assert_eq!(
        plan["prices"][1]["dimensionalRates"][0]["dimensions"]["region"],
        "eu"
    );
    assert_eq!(plan["prices"][1]["fallbackUnitAmount"], "0.05");
    assert_eq!(plan["prices"][2]["packageSize"], "1000");
    let page = browser.get(&format!("/dashboard/plans/{id}")).await;
    assert!(
        page.body
            .contains("graduated: up to 1000 at EUR 0.002, above at EUR 0.001"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("(region=eu: EUR 0.03); otherwise EUR 0.05"),
        "{}",
        page.body
    );
    // A tier without its unit amount is named next to its field.
    let refused = browser
        .post(
            "/dashboard/plans",
            &[
                ("_csrf", &csrf),
                ("name", "Broken"),
                ("prices[0].model", "USAGE"),
                ("prices[0].meterCode", &code),
                ("prices[0].tiering", "VOLUME"),
                ("prices[0].tiers[0].upTo", "10"),
                ("prices[0].tiers[0].unitAmount", "x"),
            ],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("id=\"f-price-0-tier-0-unit-error\""),
        "{}",
        refused.body
    );
}
