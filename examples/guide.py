#!/usr/bin/env python3
"""The product guide, end to end, against a running server (`make example` starts one).

Stripe link -> meter API_CALL on call_count -> Free and Pro plans -> contracts -> usage ->
invoices in progress -> billing run on the period end -> sent with payment link and email ->
portal payment with "save" (Free customer) -> auto-pay on the next period (Pro customer) -> PAID.

Two months pass in seconds on the dev server's test clock (`/_local/clock`): January's usage,
the run on February 1, February's usage, the run on March 1. The clock goes back to real time
at the end.

Standard library only. Usage: guide.py --url http://127.0.0.1:3000 --key sk_local_dev
(`STRIPE_API_BASE` must point at the fake Stripe for the portal payment step).
"""

import argparse
import datetime as dt
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class Api:
    def __init__(self, url, key):
        self.url, self.key = url.rstrip("/"), key

    def call(self, method, path, body=None, expect=(200, 201, 202)):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        answer = json.loads(text) if text else None
        if status not in expect:
            raise SystemExit(f"{method} {path} -> {status}: {answer}")
        return answer


def step(text):
    print(f"\n== {text}")


# The months the guide bills, on the test clock: contracts start on START, January's usage is
# sent on its last day, the runs are at 00:15 UTC on February 1 and March 1 (the schedule's time).
START = dt.date(2027, 1, 1)


def set_clock(api, when):
    """Moves the dev server's test clock: everything it hosts now reads `when`."""
    answer = api.call("POST", "/_local/clock", {"now": when.isoformat().replace("+00:00", "Z")})
    print(f"  (test clock: {answer['now']})")


def utc(day, hour, minute=0):
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.timezone.utc)


def next_month(day):
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def billing_run(api, date):
    """Moves the clock to 00:15 UTC on `date` and runs the daily billing for the clock's day,
    printing its report. A report with errors fails the guide, and so does one that sent invoices
    but no mail (every customer here has a billing contact): the run leaves failed steps for the
    next run, so nothing else would show that mail is broken."""
    set_clock(api, utc(date, 0, 15))
    report = api.call("POST", "/_local/run/billing")
    print("  " + json.dumps(report))
    if report.get("date") != date.isoformat():
        raise SystemExit(f"the billing run did not follow the clock: {report}")
    if report.get("errors"):
        raise SystemExit(f"the billing run on {date} reported errors: {report['errors']}")
    if report.get("sent") and not report.get("mailsSent"):
        raise SystemExit(f"the billing run on {date} sent {report['sent']} invoice(s) but no mail "
                         "(is MAIL_FROM set for the server?)")
    return report


def send_usage(api, event, counts, at):
    """Sends `counts` ([(customer, calls)]) dated `at`; the matcher counts them asynchronously."""
    events = [{"customerId": customer["id"], "eventName": event, "idempotencyKey": f"{customer['id']}-{at:%m%d}-{i}",
               "timestamp": at.isoformat()}
              for customer, calls in counts for i in range(calls)]
    api.call("POST", "/v1/events/batch", {"events": events})


def wait_totals(api, contracts, index, totals):
    """Waits until invoice `index` (0: the first period) of each contract has its total."""
    deadline = time.monotonic() + 60
    while True:
        invoices = {who: api.call("GET", f"/v1/invoices?contractId={c['id']}")["data"][index]
                    for who, c in contracts.items()}
        if all(invoices[who]["total"] == total for who, total in totals.items()):
            return invoices
        if time.monotonic() > deadline:
            raise SystemExit(f"usage not matched after 60 s: {invoices}")
        time.sleep(0.3)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def to_sent(api):
    """Everything up to sent invoices; returns what later steps need."""
    tag = uuid.uuid4().hex[:8]
    step(f"Test clock: {START}, the day the contracts start")
    set_clock(api, utc(START, 9))
    step("Customers: Alice gets a Stripe customer made for her, Bob brings a card")
    alice = api.call("POST", "/v1/customers", {"name": "Alice (Free)", "externalCustomerId": f"alice-{tag}",
                                                "contacts": [{"email": "alice@example.com", "roles": ["billing"]}]})
    bob = api.call("POST", "/v1/customers", {"name": "Bob (Pro)", "externalCustomerId": f"bob-{tag}",
                                              "paymentMethodId": "pm_card_visa",
                                              "contacts": [{"email": "bob@example.com", "roles": ["billing"]}]})
    print(f"  Alice {alice['id']} -> Stripe {alice['paymentProviderId']}")
    print(f"  Bob   {bob['id']} -> Stripe {bob['paymentProviderId']}, card {bob['paymentMethodId']}")

    step("Meter API_CALL on call_count; Free and Pro plans")
    code, event = f"API_CALL_{tag.upper()}", f"call_count_{tag}"
    meter = api.call("POST", "/v1/meters", {"code": code, "eventName": event, "displayName": "API Calls",
                                            "aggregationType": "COUNT"})
    free = api.call("POST", "/v1/plans", {"name": "Free", "currency": "USD", "netTerms": 30,
                                          "prices": [{"model": "USAGE", "meterCode": code, "unitAmount": "0.10"}]})
    pro = api.call("POST", "/v1/plans", {"name": "Pro", "currency": "USD", "netTerms": 0, "autoPay": True,
                                         "prices": [{"model": "FLAT", "flatAmount": "50.00", "description": "Pro plan"},
                                                    {"model": "USAGE", "meterId": meter["id"], "unitAmount": "0.08"}]})

    start, end = START, next_month(START)
    step(f"Contracts from {start} (monthly)")
    contracts = {}
    for who, customer, plan in (("alice", alice, free), ("bob", bob, pro)):
        contracts[who] = api.call("POST", "/v1/contracts", {"customerId": customer["id"], "planId": plan["id"],
                                                            "startDate": start.isoformat()})

    step("Usage: 7 calls for Alice, 12 for Bob (last day of the period)")
    at = utc(end - dt.timedelta(days=1), 12)
    set_clock(api, at)
    send_usage(api, event, [(alice, 7), (bob, 12)], at)
    invoices = wait_totals(api, contracts, 0, {"alice": "0.70", "bob": "50.96"})
    for who, inv in invoices.items():
        print(f"  {who}: {inv['status']} total {inv['total']} {inv['currency']}")

    step(f"Billing run on {end}")
    billing_run(api, end)
    for who, inv in invoices.items():
        inv = api.call("GET", f"/v1/invoices/{inv['id']}")
        invoices[who] = inv
        print(f"  {who}: {inv['invoiceNumber']} {inv['status']} {inv['total']} link {inv['paymentLink']}")
    assert invoices["alice"]["status"] == "SENT", invoices["alice"]
    assert invoices["bob"]["status"] == "PAID", invoices["bob"]
    return {"alice": alice, "bob": bob, "contracts": contracts, "invoices": invoices, "end": end,
            "event": event}


def wait_paid(api, invoice_id):
    deadline = time.monotonic() + 30
    while api.call("GET", f"/v1/invoices/{invoice_id}")["status"] != "PAID":
        if time.monotonic() > deadline:
            raise SystemExit(f"invoice {invoice_id} not paid after 30 s")
        time.sleep(0.3)


def pay_through_portal(api, state):
    step("Alice pays on her payment page, saving her card")
    link = state["invoices"]["alice"]["paymentLink"]
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(link, data=b"savePaymentMethod=true", method="POST")
    try:
        opener.open(request)
        raise SystemExit("the Pay button did not redirect")
    except urllib.error.HTTPError as e:
        if e.code != 303:
            raise SystemExit(f"Pay answered {e.code}")
        checkout = e.headers["Location"]
    print(f"  Checkout: {checkout}")
    session = checkout.rstrip("/").rsplit("/", 1)[-1]
    base = os.environ.get("STRIPE_API_BASE")
    if not base:
        print("  (real Stripe: open the Checkout URL in a browser to pay)")
        return
    # The fake's hosted page, as a browser would submit it.
    form = urllib.parse.urlencode({"payment_method": "pm_card_visa", "save_payment_method": "true"}).encode()
    try:
        opener.open(urllib.request.Request(f"{base}/_checkout/{session}/pay", data=form, method="POST"))
    except urllib.error.HTTPError as e:
        if e.code != 303:
            raise SystemExit(f"the fake Checkout answered {e.code}")
    wait_paid(api, state["invoices"]["alice"]["id"])
    print("  Alice's invoice is PAID; her contract now has auto-pay:",
          api.call("GET", f"/v1/contracts/{state['contracts']['alice']['id']}")["autoPay"])


def next_period(api, state):
    step("Next period: 6 calls for Alice, 5 for Bob in mid-February")
    at = utc(state["end"] + dt.timedelta(days=13), 12)
    set_clock(api, at)
    send_usage(api, state["event"], [(state["alice"], 6), (state["bob"], 5)], at)
    wait_totals(api, state["contracts"], 1, {"alice": "0.60", "bob": "50.40"})
    date = next_month(state["end"])
    step(f"Billing run on {date}: both pay automatically (Alice saved her card)")
    billing_run(api, date)
    for who, contract in state["contracts"].items():
        inv = api.call("GET", f"/v1/invoices?contractId={contract['id']}")["data"][1]
        print(f"  {who}: {inv['invoiceNumber']} {inv['status']} {inv['total']}")
        assert inv["status"] == "PAID", inv


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:3000"))
    parser.add_argument("--key", default=os.environ.get("LOCAL_API_KEY", "sk_local_dev"))
    args = parser.parse_args()
    api = Api(args.url, args.key)
    try:
        state = to_sent(api)
        pay_through_portal(api, state)
        next_period(api, state)
    finally:
        api.call("DELETE", "/_local/clock")
    print("\nThe guide ran end to end: two months billed in seconds on the test clock.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
