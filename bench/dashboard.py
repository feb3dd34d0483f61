#!/usr/bin/env python3
"""Dashboard budgets: server time per screen and transfer size per screen, on a seeded table.

Run by bench/dashboard.sh (which starts a fresh stack and a dev server built with the
`server-bench` profile); Python standard library only. Against a dev server at --url:

1. Seeds through the API, as a business would: --customers customers (default 1,000), one meter,
   one monthly plan (a fixed fee and a usage price) and one fixed-term contract per customer
   starting --months-back months ago and lasting --periods months (default 10: 10,000 invoices
   pre-generated), then usage events, then the billing run on the first day of this month, which
   closes and sends the periods already over. Skipped with --no-seed (an already seeded server).
2. Signs in to the dashboard with the API key, then, per screen: --warmup requests, then --runs
   timed requests (sequential, one at a time). "Server" is the function's own `Server-Timing`
   (the dashboard's handler, its DynamoDB reads included); "round trip" adds the dev server's API
   Gateway conversion and HTTP on 127.0.0.1. Transfer size is the HTML plus every asset the page
   references (the stylesheet; charts are inline SVG), uncompressed, as API Gateway sends them.
3. Writes bench/results/dashboard.md and dashboard.json.
"""

import argparse
import concurrent.futures
import datetime as dt
import html.parser
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
BUDGET_P50_MS = 50.0
BUDGET_BYTES = 150 * 1024


class Client:
    """One keep-alive HTTP/1.1 connection to the dev server, with cookies."""

    def __init__(self, url, timeout=60):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        self.cookies = {}

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(2):
            try:
                started = time.perf_counter()
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                elapsed = (time.perf_counter() - started) * 1000
                break
            except (http.client.HTTPException, ConnectionError):
                if attempt:
                    raise
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        for value in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response, data, elapsed

    def api(self, key, method, path, payload=None, expect=(200, 201, 202)):
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"Authorization": f"Bearer {key}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        response, data, _ = self.request(method, path, body, headers)
        answer = json.loads(data) if data else None
        if response.status not in expect:
            raise SystemExit(f"{method} {path} -> {response.status}: {answer}")
        return answer


def seed(url, key, customers, months_back, periods, events, workers):
    """Customers, a meter, a plan, a contract each; usage; the billing run. Returns what the
    screens need (ids)."""
    started = time.monotonic()
    main = Client(url)
    today = dt.date.today()
    tag = f"{int(time.time())}"
    meter = main.api(key, "POST", "/v1/meters", {"code": f"API_CALL_{tag}", "eventName": f"call_{tag}",
                                                 "displayName": "API Calls", "aggregationType": "COUNT"})
    plan = main.api(key, "POST", "/v1/plans", {
        "name": "Pro", "currency": "USD", "netTerms": 30,
        "prices": [{"model": "FLAT", "flatAmount": "50.00", "description": "Pro plan"},
                   {"model": "USAGE", "meterId": meter["id"], "unitAmount": "0.08"}]})
    first = today.replace(day=1)
    start = first
    for _ in range(months_back):
        start = (start - dt.timedelta(days=1)).replace(day=1)
    end = start
    for _ in range(periods):
        end = (end + dt.timedelta(days=32)).replace(day=1)

    def one(i):
        client = Client(url)
        customer = client.api(key, "POST", "/v1/customers", {
            "name": f"Customer {i:04d}", "externalCustomerId": f"bench-{tag}-{i:04d}",
            "contacts": [{"email": f"billing+{i}@example.com"}]})
        contract = client.api(key, "POST", "/v1/contracts", {
            "customerId": customer["id"], "planId": plan["id"],
            "startDate": start.isoformat(), "endDate": end.isoformat()})
        return customer["id"], contract["id"]

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        made = list(pool.map(one, range(customers)))
    print(f"dashboard.py: {customers} customers and contracts ({customers * periods} invoices) "
          f"in {time.monotonic() - started:.0f} s", file=sys.stderr)

    # Usage in the current and the last closed period, spread over the customers; some misspelt.
    now = dt.datetime.now(dt.timezone.utc)
    batch = []
    for i in range(events):
        customer = made[i % len(made)][0]
        when = now - dt.timedelta(days=(i % 20), minutes=i % 600)
        name = f"call_{tag}" if i % 50 else f"call_typo_{tag}"
        batch.append({"customerId": customer, "eventName": name, "idempotencyKey": f"e{i}",
                      "timestamp": when.isoformat()})
    for chunk in range(0, len(batch), 1000):
        main.api(key, "POST", "/v1/events/batch", {"events": batch[chunk:chunk + 1000]})
    # Closing 3,000 invoices one transaction each (with their webhook outbox entries) takes
    # minutes on the emulators: seeding, not a measured figure.
    report = Client(url, timeout=1800).api(key, "POST", f"/_local/run/billing?date={first.isoformat()}")
    print(f"dashboard.py: billing run on {first}: {json.dumps(report)}", file=sys.stderr)
    seeded = time.monotonic() - started
    return {"customer": made[len(made) // 2][0], "contract": made[len(made) // 2][1], "plan": plan["id"],
            "meter": meter["id"], "seconds": round(seeded), "report": report,
            "customers": customers, "invoices": customers * periods, "events": events}


class Assets(html.parser.HTMLParser):
    """The external resources a page loads (stylesheets, images, scripts)."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" and a.get("rel") == "stylesheet":
            self.urls.append(a.get("href"))
        elif tag in ("script", "img") and a.get("src"):
            self.urls.append(a["src"])


def sign_in(client, key):
    response, data, _ = client.request("GET", "/dashboard/sign-in")
    token = re.search(rb'name="_csrf" value="([0-9a-f]+)"', data).group(1).decode()
    body = urllib.parse.urlencode({"_csrf": token, "apiKey": key})
    response, _, _ = client.request("POST", "/dashboard/sign-in", body,
                                    {"Content-Type": "application/x-www-form-urlencoded"})
    if response.status != 303 or "dashboard_session" not in client.cookies:
        raise SystemExit(f"sign-in failed: {response.status}")


def pct(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def measure(client, screens, warmup, runs):
    rows = []
    asset_sizes = {}
    for name, path in screens:
        server, total, size, status = [], [], 0, None
        for i in range(warmup + runs):
            response, data, elapsed = client.request("GET", path)
            status = response.status
            if status != 200:
                raise SystemExit(f"{name} ({path}) answered {status}: {data[:300]!r}")
            timing = response.headers.get("Server-Timing", "")
            match = re.search(r"dur=([0-9.]+)", timing)
            if i >= warmup:
                server.append(float(match.group(1)) if match else float("nan"))
                total.append(elapsed)
            size = len(data)
        parser = Assets()
        parser.feed(data.decode("utf-8", "replace"))
        assets = 0
        for url in parser.urls:
            if url not in asset_sizes:
                _, body, _ = client.request("GET", url)
                asset_sizes[url] = len(body)
            assets += asset_sizes[url]
        row = {
            "screen": name, "path": path, "runs": runs,
            "server_p50_ms": round(statistics.median(server), 2), "server_p90_ms": round(pct(server, 0.9), 2),
            "round_trip_p50_ms": round(statistics.median(total), 2), "round_trip_p90_ms": round(pct(total, 0.9), 2),
            "html_bytes": size, "asset_bytes": assets, "transfer_bytes": size + assets,
        }
        row["pass"] = row["server_p50_ms"] < BUDGET_P50_MS and row["transfer_bytes"] < BUDGET_BYTES
        rows.append(row)
        print(f"  {name:28} server p50 {row['server_p50_ms']:7.2f} ms p90 {row['server_p90_ms']:7.2f} ms "
              f"round trip p50 {row['round_trip_p50_ms']:7.2f} ms  {row['transfer_bytes']:7d} B", file=sys.stderr)
    return rows


def run(cmd):
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--periods", type=int, default=10)
    p.add_argument("--months-back", type=int, default=3)
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--no-seed", action="store_true")
    p.add_argument("--ids", help="JSON of the ids a previous seed printed (with --no-seed)")
    p.add_argument("--command", default="bench/dashboard.sh")
    args = p.parse_args()

    if args.no_seed:
        ids = json.loads(args.ids)
    else:
        ids = seed(args.url, args.key, args.customers, args.months_back, args.periods, args.events, args.workers)
        print("dashboard.py: ids " + json.dumps({k: ids[k] for k in ("customer", "contract", "plan", "meter")}),
              file=sys.stderr)
    time.sleep(3)  # let the matcher finish the usage
    client = Client(args.url)
    sign_in(client, args.key)
    api = Client(args.url)
    sent = api.api(args.key, "GET", f"/v1/invoices?contractId={ids['contract']}&status=SENT")["data"]
    invoice = sent[0]["id"] if sent else api.api(args.key, "GET", f"/v1/invoices?contractId={ids['contract']}")["data"][0]["id"]
    open_invoice = api.api(args.key, "GET", f"/v1/invoices/upcoming?contractId={ids['contract']}")["id"]
    screens = [
        ("Sign in", "/dashboard/sign-in"),
        ("Home", "/dashboard"),
        ("Customers", "/dashboard/customers"),
        ("Customers, search", "/dashboard/customers?q=" + urllib.parse.quote(ids["customer"])),
        ("Customer", f"/dashboard/customers/{ids['customer']}"),
        ("Add customer", "/dashboard/customers/new"),
        ("Meters", "/dashboard/meters"),
        ("Create meter", "/dashboard/meters/new"),
        ("Plans", "/dashboard/plans"),
        ("Plan", f"/dashboard/plans/{ids['plan']}"),
        ("Create plan", "/dashboard/plans/new"),
        ("Contracts", "/dashboard/contracts"),
        ("Contract", f"/dashboard/contracts/{ids['contract']}"),
        ("Create contract", f"/dashboard/contracts/new?plan={ids['plan']}"),
        ("Cancel contract (confirm)", f"/dashboard/contracts/{ids['contract']}/cancel"),
        ("Invoices", "/dashboard/invoices"),
        ("Invoices, status Sent", "/dashboard/invoices?status=SENT"),
        ("Invoices, status Paid", "/dashboard/invoices?status=PAID"),
        ("Invoices, one customer", f"/dashboard/invoices?customer={ids['customer']}"),
        ("Invoice (sent)", f"/dashboard/invoices/{invoice}"),
        ("Invoice (open, preview)", f"/dashboard/invoices/{open_invoice}"),
        ("Events (unbillable)", "/dashboard/events"),
        ("Events, matched", "/dashboard/events?status=matched"),
        ("Events, one customer", f"/dashboard/events?status=&customer={ids['customer']}"),
        ("API keys", "/dashboard/api-keys"),
    ]
    print(f"dashboard.py: timing {len(screens)} screens ({args.warmup} warm-up + {args.runs} runs each)",
          file=sys.stderr)
    rows = measure(client, screens, args.warmup, args.runs)

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": run(["git", "rev-parse", "--short", "HEAD"]) + (" (dirty)" if run(["git", "status", "--porcelain"]) else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "load": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?",
        "rustc": run(["rustc", "--version"]),
        "command": args.command,
        "table": {k: ids.get(k) for k in ("customers", "invoices", "events", "seconds", "report")},
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "dashboard.json"), "w") as f:
        json.dump({"meta": meta, "budgets": {"server_p50_ms": BUDGET_P50_MS, "transfer_bytes": BUDGET_BYTES},
                   "screens": rows}, f, indent=1)
    lines = [
        "# Dashboard: server time and transfer size per screen",
        "",
        f"- Date: {meta['date']}; commit {meta['commit']}; {meta['rustc']}",
        f"- Machine: {meta['machine']}; load average at the end {' '.join(meta['load'])}",
        f"- Command: `{meta['command']}`",
        f"- Table: {ids.get('customers', '?')} customers, {ids.get('invoices', '?')} invoices pre-generated by "
        f"their contracts, {ids.get('events', '?')} usage events, then the billing run of the first day of "
        f"this month: {json.dumps(ids.get('report', {}))}",
        "- Local stack: DynamoDB Local (in memory) and moto on 127.0.0.1; the dev server built with the "
        "`server-bench` profile (release optimisation), the dashboard served through its API Gateway "
        "conversion. Sequential requests on one keep-alive connection, warm: "
        f"{args.warmup} warm-up requests, then {args.runs} timed ones per screen.",
        "- Server: the dashboard function's `Server-Timing` (handler and its DynamoDB reads). Round trip: "
        "as the client saw it. Transfer: the HTML plus every asset it loads (the stylesheet), "
        "uncompressed.",
        f"- Budgets: server p50 < {BUDGET_P50_MS:.0f} ms; transfer < {BUDGET_BYTES // 1024} KB.",
        "",
        "| screen | server p50 (ms) | server p90 (ms) | round trip p50 (ms) | HTML (bytes) | transfer (bytes) | within budget |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['screen']} | {r['server_p50_ms']:.2f} | {r['server_p90_ms']:.2f} | "
                     f"{r['round_trip_p50_ms']:.2f} | {r['html_bytes']:,} | {r['transfer_bytes']:,} | "
                     f"{'yes' if r['pass'] else '**no**'} |")
    failing = [r["screen"] for r in rows if not r["pass"]]
    lines += ["", "Every list is paginated (25 rows a page, a cursor for the next)." ,
              f"Over budget: {', '.join(failing) if failing else 'none'}.", ""]
    with open(os.path.join(RESULTS, "dashboard.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
