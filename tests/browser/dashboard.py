#!/usr/bin/env python3
"""The product guide through the dashboard, in real headless Chromium (Debian's `chromium`,
driven by Playwright), plus the dashboard's security checks.

Run through infra/example.sh (a fresh stack, the fake Stripe and a dev server):
    EXAMPLE=tests/browser/dashboard.py STACK=d11browser infra/example.sh

The guide, through the dashboard only (usage goes through the API, as a product sends it):
  1. sign in with the API key;
  2. add Alice and Bob, Bob linked to his existing Stripe customer with a card;
  3. create the API_CALL meter on call_count (Count);
  4. create the Free (USD 0.10 per call, Net 30) and Pro (USD 50 fixed + 0.08 per call, Net 0,
     auto-pay) plans;
  5. create the contracts from a plan's page, from the first day of last month;
  6. send 7 and 12 calls through the API, and see USD 0.70 and USD 50.96 on the invoice pages;
  7. run billing on the period end, and see Sent (with its payment link) and Paid.
Security: a read-only key sees no create buttons and its forged POST gets 403; a forged CSRF
token gets 403; a tampered session cookie and a revoked key send the browser to sign-in.
Every screen is saved as a screenshot under tests/browser/results/ and checked with axe-core
(no serious or critical violation); any Content-Security-Policy violation fails the test.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
import urllib.parse
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "examples"))
import guide  # noqa: E402

from playwright.sync_api import sync_playwright  # noqa: E402

RESULTS = os.path.join(HERE, "results")
AXE = os.path.join(ROOT, "infra", ".cache", "browser-npm", "node_modules", "axe-core", "axe.min.js")


def previous_month():
    """Last month and the first day of this one, by the real clock in UTC, as the server reads
    it: this test leaves the server's test clock alone (usage is dated around now)."""
    this = dt.datetime.now(dt.timezone.utc).date().replace(day=1)
    return (this - dt.timedelta(days=1)).replace(day=1), this


def wait_out_midnight():
    """The walk reads today's month and checks today's event count, each by UTC day, and takes
    under a minute or two: one starting in a day's last five minutes waits for the next day."""
    now = dt.datetime.now(dt.timezone.utc)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(0, 0, 1), dt.timezone.utc)
    if midnight - now < dt.timedelta(minutes=5):
        print(f"  waiting {midnight - now} for the UTC day to turn")
        time.sleep((midnight - now).total_seconds())


def billing_run(api, date):
    """The daily billing run for `date` on the real clock (`?date=`), failing on a report with
    errors or with invoices sent but no mail."""
    report = api.call("POST", f"/_local/run/billing?date={date}")
    print("  " + json.dumps(report))
    check(not report.get("errors"), f"the billing run on {date} reported errors: {report.get('errors')}")
    check(not report.get("sent") or report.get("mailsSent"),
          f"the billing run on {date} sent {report.get('sent')} invoice(s) but no mail")
    return report


def check(condition, message):
    if not condition:
        raise SystemExit(f"dashboard browser test failed: {message}")


class Screens:
    """Saves a screenshot of each screen and runs axe-core on it."""

    def __init__(self):
        self.count = 0
        self.axe = open(AXE, encoding="utf-8").read()
        self.csp_violations = []
        shutil.rmtree(RESULTS, ignore_errors=True)
        os.makedirs(RESULTS)

    def watch(self, page):
        page.on("console", lambda m: "Content Security Policy" in m.text and self.csp_violations.append(m.text))

    def capture(self, page, name):
        self.count += 1
        path = os.path.join(RESULTS, f"{self.count:02d}-{name}.png")
        page.screenshot(path=path, full_page=True)
        # Evaluated through the DevTools protocol, which the page's CSP (no script at all) does
        # not govern; a <script> tag would be refused, as it should be.
        page.evaluate(self.axe + "\n;true")
        result = page.evaluate("""async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
        }""")
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        check(not bad, f"axe found serious/critical violations on {name}: {json.dumps(bad, indent=1)}")
        minor = ", ".join(f"{v['id']} ({v['impact']})" for v in result)
        print(f"  screen {self.count:02d} {name}: {page.url.split('?')[0]} axe ok{' (also: ' + minor + ')' if minor else ''}")
        check(not self.csp_violations, f"CSP violations: {self.csp_violations}")


def sign_in(page, url, key):
    page.goto(f"{url}/dashboard")
    check(page.url.endswith("/dashboard/sign-in"), f"not sent to sign-in: {page.url}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/dashboard")


def nav(page, name):
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def stripe_customer(email):
    """Bob's existing Stripe customer, made in (the fake) Stripe as a business would have.

    Linking one is how the guide avoids waiting for webhook synchronization: Stripe takes seconds
    to deliver `customer.created`, the fake delivers it at once, and the receiver would then make
    Bob itself (a customer made in Stripe's dashboard gets one of ours). The metadata marks it as
    one the platform is about to write, which is what a not-yet-delivered webhook amounts to.
    """
    base = os.environ["STRIPE_API_BASE"]
    pending = "cus_" + uuid.uuid4().hex
    data = urllib.parse.urlencode({"email": email, "name": "Bob", "metadata[customerId]": pending}).encode()
    request = urllib.request.Request(f"{base}/v1/customers", data=data, method="POST")
    request.add_header("Authorization", f"Bearer {os.environ['STRIPE_SECRET_KEY']}")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["id"]


def invoice_of(page, url, contract_id):
    """Opens the contract's first invoice (the period of last month) and returns its page."""
    page.goto(f"{url}/dashboard/contracts/{contract_id}")
    page.get_by_role("table").get_by_role("link").first.click()
    page.wait_for_url(f"{url}/dashboard/invoices/**")


def post_form(page, url, path, fields):
    """A POST from inside the signed-in browser context (its cookies), like a forged form."""
    return page.request.post(f"{url}{path}", form=fields, max_redirects=0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    url, key = args.url, args.key
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    check(chromium, "no chromium on PATH (infra/install.sh installs Debian's)")
    check(os.path.exists(AXE), f"no axe-core at {AXE} (infra/install.sh installs it)")
    api = guide.Api(url, key)
    screens = Screens()
    wait_out_midnight()
    start, end = previous_month()
    bob_stripe = stripe_customer("bob@example.com")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        admin = browser.new_context(viewport={"width": 1280, "height": 800})
        page = admin.new_page()
        screens.watch(page)

        guide.step("1. Sign in")
        page.goto(f"{url}/dashboard/sign-in")
        screens.capture(page, "sign-in")
        page.get_by_label("API key").fill("sk_wrong")
        page.get_by_role("button", name="Sign in").click()
        check(page.get_by_role("alert").inner_text().startswith("This API key is not valid"), "wrong key refused")
        sign_in(page, url, key)
        screens.capture(page, "home-empty")
        cookie = next(c for c in admin.cookies() if c["name"] == "dashboard_session")
        check(cookie["httpOnly"] and cookie["sameSite"] == "Strict", f"session cookie flags: {cookie}")
        check(key not in cookie["value"], "the session cookie carries the key")

        guide.step("2. Customers: Alice, and Bob linked to his Stripe customer")
        nav(page, "Customers")
        screens.capture(page, "customers-empty")
        page.get_by_role("link", name="Add customer").click()
        page.get_by_label("Name").fill("Alice")
        page.get_by_label("Email").fill("not-an-email")
        page.get_by_role("button", name="Create customer").click()
        error = page.locator("#f-email-error")
        check(error.count() == 1 and "not a valid email" in error.inner_text(), "the email error is next to its field")
        screens.capture(page, "add-customer-error")
        page.get_by_label("Email").fill("alice@example.com")
        page.get_by_label("External customer ID").fill("alice")
        page.get_by_role("button", name="Create customer").click()
        page.wait_for_url(f"{url}/dashboard/customers/cus_*")
        alice_id = page.url.rsplit("/", 1)[1]
        nav(page, "Customers")
        page.get_by_role("link", name="Add customer").click()
        page.get_by_label("Name").fill("Bob")
        page.get_by_label("Email").fill("bob@example.com")
        page.get_by_label("External customer ID").fill("bob")
        page.get_by_label("Stripe customer ID").fill(bob_stripe)
        page.get_by_label("Payment method ID").fill("pm_card_visa")
        screens.capture(page, "add-customer")
        page.get_by_role("button", name="Create customer").click()
        page.wait_for_url(f"{url}/dashboard/customers/cus_*")
        bob_id = page.url.rsplit("/", 1)[1]
        check(page.get_by_role("link", name=bob_stripe).count() == 1, "Bob's page links his Stripe customer")
        nav(page, "Customers")
        check(page.get_by_role("row").count() == 3, "two customers listed")
        page.get_by_label("Search by customer ID or external customer ID").fill("bob")
        page.get_by_role("button", name="Search").click()
        check(page.get_by_role("row").count() == 2, "the search finds Bob by his external ID")

        guide.step("3. Products -> Meters -> Create meter: API_CALL on call_count")
        nav(page, "Meters")
        screens.capture(page, "meters-empty")
        page.get_by_role("link", name="Create meter").click()
        page.get_by_label("Code").fill("API_CALL")
        page.get_by_label("Event name").fill("call_count")
        page.get_by_label("Display name").fill("API Calls")
        page.get_by_label("Aggregation", exact=True).select_option(label="Count")
        screens.capture(page, "create-meter")
        page.get_by_role("button", name="Create meter").click()
        page.wait_for_url(f"{url}/dashboard/meters")
        check(page.locator("td code", has_text="API_CALL").count() == 1, "the meter is listed")
        # A second meter, archived, shows "Archive" works.
        page.get_by_role("link", name="Create meter").click()
        page.get_by_label("Code").fill("OLD_CALLS")
        page.get_by_label("Event name").fill("old_call")
        page.get_by_role("button", name="Create meter").click()
        page.get_by_role("button", name="Archive OLD_CALLS").click()
        check(page.locator("tr", has_text="OLD_CALLS").get_by_text("Archived").count() == 1, "OLD_CALLS archived")
        screens.capture(page, "meters")

        guide.step("4. Products -> Plans -> Create plan: Free and Pro")
        nav(page, "Plans")
        screens.capture(page, "plans-empty")
        page.get_by_role("link", name="Create plan").click()
        page.get_by_label("Name").fill("Free")
        page.get_by_label("Net terms").fill("30")
        page.get_by_role("button", name="Add usage price").click()
        page.get_by_label("Meter", exact=True).select_option(label="API Calls (API_CALL)")
        page.get_by_label("Unit amount", exact=True).fill("0.10")
        page.get_by_role("button", name="Create plan").click()
        page.wait_for_url(f"{url}/dashboard/plans/plan_*")
        check(page.get_by_text("USD 0.10 per unit").count() == 1, "Free charges 0.10 per call")
        nav(page, "Plans")
        page.get_by_role("link", name="Create plan").click()
        page.get_by_label("Name").fill("Pro")
        page.get_by_label("Net terms").fill("0")
        page.get_by_label("Auto-pay").check()
        page.get_by_role("button", name="Add fixed fee").click()
        page.get_by_label("Amount", exact=True).fill("50.00")
        page.get_by_role("button", name="Add usage price").click()
        page.get_by_label("Unit amount", exact=True).fill("abc")
        page.get_by_role("button", name="Create plan").click()
        check(page.locator("#f-price-1-unit-error").count() == 1, "a bad unit amount is shown next to its field")
        screens.capture(page, "create-plan-error")
        page.get_by_label("Unit amount", exact=True).fill("0.08")
        page.get_by_label("Description").first.fill("Pro plan")
        page.get_by_role("button", name="Create plan").click()
        page.wait_for_url(f"{url}/dashboard/plans/plan_*")
        screens.capture(page, "plan-pro")
        pro_url = page.url
        nav(page, "Plans")
        screens.capture(page, "plans")
        free_url = page.get_by_role("link", name="Free", exact=True).get_attribute("href")

        guide.step(f"5. A plan -> Create contract, from {start}")
        contracts = {}
        for who, plan_url, name in (("alice", f"{url}{free_url}", "Alice (alice)"), ("bob", pro_url, "Bob (bob)")):
            page.goto(plan_url)
            page.get_by_role("link", name="Create contract").click()
            page.get_by_label("Customer").select_option(label=name)
            page.get_by_label("Start date").fill(start.isoformat())
            if who == "bob":
                screens.capture(page, "create-contract")
            page.get_by_role("button", name="Create contract").click()
            page.wait_for_url(f"{url}/dashboard/contracts/ctr_*")
            contracts[who] = page.url.rsplit("/", 1)[1]
        screens.capture(page, "contract")
        nav(page, "Contracts")
        screens.capture(page, "contracts")

        guide.step("6. Usage through the API: 7 calls for Alice, 12 for Bob")
        at = dt.datetime.combine(end - dt.timedelta(days=1), dt.time(12), tzinfo=dt.timezone.utc).isoformat()
        events = [{"customerId": alice_id, "eventName": "call_count", "idempotencyKey": f"a{i}", "timestamp": at}
                  for i in range(7)]
        events += [{"customerId": bob_id, "eventName": "call_count", "idempotencyKey": f"b{i}", "timestamp": at}
                   for i in range(12)]
        events.append({"customerId": bob_id, "eventName": "call_cuont", "idempotencyKey": "typo"})
        # Alice keeps calling this month: her page charts it per day.
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        for day in range(min(now.day - 1, 13) + 1):
            for n in range(2 + (day * 7) % 9):
                events.append({"customerId": alice_id, "eventName": "call_count", "idempotencyKey": f"now{day}-{n}",
                               "timestamp": (now - dt.timedelta(days=day, minutes=n)).isoformat()})
        api.call("POST", "/v1/events/batch", {"events": events})
        deadline = time.monotonic() + 60
        for who, want in (("alice", "USD 0.70"), ("bob", "USD 50.96")):
            invoice_of(page, url, contracts[who])
            while page.locator("#invoice-total").inner_text() != want:
                check(time.monotonic() < deadline, f"{who}'s invoice shows {page.locator('#invoice-total').inner_text()}")
                time.sleep(0.5)
                page.reload()
            check(page.locator("#invoice-status").inner_text() == "In Progress", "usage puts it In Progress")
            print(f"  {who}: {page.locator('#invoice-total').inner_text()}, In Progress")
        screens.capture(page, "invoice-in-progress")
        nav(page, "Events")
        deadline = time.monotonic() + 30
        while page.get_by_text("call_cuont").count() == 0:
            check(time.monotonic() < deadline, "the misspelt event never showed as unbillable")
            time.sleep(0.5)
            page.reload()
        check(page.get_by_text("no active meter listens to this event name").count() >= 1, "its reason is shown")
        screens.capture(page, "events-unbillable")
        page.get_by_label("Status").select_option(label="Matched")
        page.get_by_label("Customer ID or external customer ID").fill("bob")
        page.get_by_role("button", name="Filter").click()
        check(page.get_by_role("row").count() == 13, "Bob's 12 matched events")
        screens.capture(page, "events-matched")
        page.goto(f"{url}/dashboard/customers/{bob_id}")
        screens.capture(page, "customer-bob")
        page.goto(f"{url}/dashboard/customers/{alice_id}")
        deadline = time.monotonic() + 30
        while page.locator("figure.chart").count() == 0:
            check(time.monotonic() < deadline, "Alice's usage chart never appeared")
            time.sleep(0.5)
            page.reload()
        screens.capture(page, "customer-alice")

        guide.step(f"7. Billing run on {end}: Sent with a payment link, and Paid")
        billing_run(api, end)
        invoice_of(page, url, contracts["alice"])
        check(page.locator("#invoice-status").inner_text() == "Sent", "Alice's invoice is Sent")
        check(page.locator("#invoice-total").inner_text() == "USD 0.70", "Alice's total")
        link = page.locator("#payment-link").get_attribute("href")
        check(link and "/pay/" in link, f"a payment link: {link}")
        screens.capture(page, "invoice-sent")
        invoice_of(page, url, contracts["bob"])
        deadline = time.monotonic() + 30
        while page.locator("#invoice-status").inner_text() != "Paid":
            check(time.monotonic() < deadline, f"Bob's invoice is {page.locator('#invoice-status').inner_text()}")
            time.sleep(0.5)
            page.reload()
        check(page.locator("#invoice-total").inner_text() == "USD 50.96", "Bob's total")
        screens.capture(page, "invoice-paid")
        nav(page, "Invoices")
        page.get_by_label("Status").select_option(label="Paid")
        page.get_by_role("button", name="Filter").click()
        check(page.get_by_role("row").count() == 2, "one paid invoice")
        screens.capture(page, "invoices-paid")
        nav(page, "Customers")
        check(page.locator("tr", has_text="Bob").get_by_text("USD 50.96").count() == 2, "Bob billed and paid 50.96")
        screens.capture(page, "customers")
        nav(page, "Home")
        check(page.locator("#sent").inner_text() == "2" and page.locator("#paid").inner_text() == "1",
              "home counts: " + page.locator(".figures").inner_text().replace("\n", " "))
        # Every event above was received today, the misspelt one unbillable (a day tally is
        # written at the end of its batch, just after the invoices' shares: poll briefly).
        deadline = time.monotonic() + 15
        while page.locator("#events-today").inner_text() != f"{len(events):,}":
            check(time.monotonic() < deadline,
                  f"events today: {page.locator('#events-today').inner_text()}, sent {len(events)}")
            time.sleep(0.5)
            page.reload()
        check(page.locator("#unbillable-today").inner_text() == "1 unbillable",
              "unbillable today: " + page.locator(".figures").inner_text().replace("\n", " "))
        screens.capture(page, "home")
        page.goto(f"{url}/dashboard/customers/{bob_id}")
        page.get_by_role("switch", name="Pause auto-pay").click()
        check(page.get_by_role("switch", name="Pause auto-pay").get_attribute("aria-checked") == "true", "paused")
        screens.capture(page, "customer-paused")

        guide.step("Security: a read-only key")
        nav(page, "API keys")
        page.get_by_label("Name").fill("finance (read-only)")
        for scope in ("Read customers", "Read meters and plans", "Read contracts", "Read invoices", "Read usage events"):
            page.get_by_label(scope, exact=True).check()
        page.get_by_role("button", name="Create API key").click()
        read_key = page.get_by_label("Secret").input_value()
        check(read_key.startswith("sk_"), "the secret is shown once")
        screens.capture(page, "api-keys-created")
        page.goto(f"{url}/dashboard/api-keys")
        check(page.get_by_label("Secret").count() == 0 and read_key not in page.content(), "never shown again")

        reader = browser.new_context(viewport={"width": 1280, "height": 800})
        rpage = reader.new_page()
        screens.watch(rpage)
        sign_in(rpage, url, read_key)
        for screen, button in (("customers", "Add customer"), ("meters", "Create meter"),
                               ("plans", "Create plan"), ("contracts", "Create contract")):
            rpage.goto(f"{url}/dashboard/{screen}")
            check(rpage.get_by_role("link", name=button).count() == 0, f"no {button} for a read-only key")
        rpage.goto(f"{url}/dashboard/customers/{bob_id}")
        check(rpage.get_by_role("switch").count() == 0, "no auto-pay switch for a read-only key")
        screens.capture(rpage, "read-only-customer")
        csrf = rpage.locator("form[action='/dashboard/sign-out'] input[name=_csrf]").get_attribute("value")
        forged = post_form(rpage, url, "/dashboard/customers", {"_csrf": csrf, "name": "Mallory"})
        check(forged.status == 403, f"a read-only key's POST got {forged.status}")
        forged = post_form(rpage, url, f"/dashboard/meters/x/archive", {"_csrf": csrf})
        check(forged.status == 403, f"a read-only key's archive got {forged.status}")
        print("  read-only: no create buttons; forged POSTs answered 403")

        guide.step("Security: forged CSRF token, tampered cookie, revoked key")
        forged = post_form(page, url, "/dashboard/customers", {"_csrf": "00" * 32, "name": "Mallory"})
        check(forged.status == 403, f"a forged CSRF token got {forged.status}")
        forged = post_form(page, url, "/dashboard/customers", {"name": "Mallory"})
        check(forged.status == 403, f"a missing CSRF token got {forged.status}")
        check(all(c["name"] != "Mallory" for c in api.call("GET", "/v1/customers?limit=100")["data"]), "nothing written")
        tampered = dict(cookie)
        value = cookie["value"]
        tampered["value"] = value[:-1] + ("0" if value[-1] != "0" else "1")
        other = browser.new_context()
        other.add_cookies([tampered])
        opage = other.new_page()
        opage.goto(f"{url}/dashboard/customers")
        check(opage.url.endswith("/dashboard/sign-in"), f"a tampered cookie reached {opage.url}")
        print("  forged CSRF and missing token: 403; tampered cookie: back to sign-in")
        page.goto(f"{url}/dashboard/api-keys")
        page.get_by_role("button", name="Revoke finance (read-only)").click()
        rpage.goto(f"{url}/dashboard/customers")
        check(rpage.url.endswith("/dashboard/sign-in"), "a revoked key's session ends at once")
        screens.capture(page, "api-keys")
        print("  revoked key: its session went back to sign-in")

        guide.step("A narrow window")
        narrow = browser.new_context(viewport={"width": 390, "height": 844})
        npage = narrow.new_page()
        screens.watch(npage)
        sign_in(npage, url, key)
        npage.goto(f"{url}/dashboard/invoices")
        screens.capture(npage, "narrow-invoices")

        guide.step("Sign out")
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{url}/dashboard/sign-in")
        page.goto(f"{url}/dashboard")
        check(page.url.endswith("/dashboard/sign-in"), "signed out")
        browser.close()
    print(f"\nThe guide works through the dashboard; {screens.count} screens saved in {RESULTS} and checked with axe.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
