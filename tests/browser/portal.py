#!/usr/bin/env python3
"""The payment portal in real headless Chromium (Debian's `chromium`, driven by Playwright).

Run through infra/example.sh (a fresh stack, the fake Stripe and a dev server):
    EXAMPLE=tests/browser/portal.py infra/example.sh
Sets the guide up to sent invoices (examples/guide.py), then, as Alice would: opens her
invoice's payment link, sees the invoice, ticks "save", presses Pay, lands on the Checkout
page, pays there, comes back, and sees "Paid" once the webhook has arrived.
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
import guide  # noqa: E402

from playwright.sync_api import sync_playwright  # noqa: E402


def check(condition, message):
    if not condition:
        raise SystemExit(f"browser test failed: {message}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    check(chromium, "no chromium on PATH (infra/install.sh installs Debian's)")
    api = guide.Api(args.url, args.key)
    state = guide.to_sent(api)
    invoice = state["invoices"]["alice"]
    link = invoice["paymentLink"]
    stripe = os.environ["STRIPE_API_BASE"]

    guide.step("Chromium: Alice opens her payment link")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(link)
        check(page.title().startswith(f"Invoice {invoice['invoiceNumber']}"), page.title())
        check(page.locator("#total").inner_text() == "USD 0.70", page.locator("#total").inner_text())
        check(page.locator("#status").inner_text() == "Awaiting payment", page.locator("#status").inner_text())
        check(page.get_by_role("table").count() == 1, "one table of charges")
        print(f"  sees {invoice['invoiceNumber']}, total {page.locator('#total').inner_text()}, "
              f"due {page.locator('#due-date').inner_text()}")

        page.get_by_label("Save payment method for future invoices").check()
        page.locator("#pay").click()
        page.wait_for_url(f"{stripe}/_checkout/**")
        print(f"  pressed Pay, now on {page.url}")
        check("USD" in page.content() or "0.70" in page.content(), "the Checkout page shows the amount")

        page.locator("#pay").click()  # the fake Checkout page's own Pay button
        page.wait_for_url(f"{args.url}/pay/**")
        deadline = time.monotonic() + 30
        while page.locator("#status").inner_text() != "Paid":
            check(time.monotonic() < deadline, f"still '{page.locator('#status').inner_text()}' after 30 s")
            time.sleep(0.3)
            page.reload()
        check(page.locator("#pay").count() == 0, "no Pay button on a paid invoice")
        print(f"  back on {page.url.split('?')[0][:60]}…: {page.locator('#status').inner_text()}")
        browser.close()
    contract = api.call("GET", f"/v1/contracts/{state['contracts']['alice']['id']}")
    check(contract["autoPay"] is True, "saving the card turned auto-pay on")
    print("\nThe payment portal works in Chromium.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
