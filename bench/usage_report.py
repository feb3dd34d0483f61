#!/usr/bin/env python3
"""Writes bench/results/usage.md and usage.json from the pieces bench/usage.sh collected: the
JSON documents of `usage-bench writes|concurrent|fresh` (this commit's design), of today's design
(eeade17's `usage-bench writes|sqs` and bench/baseline's `baseline concurrent`, built from a
worktree of that commit), and criterion's estimates for the matcher benchmark. Python standard
library only."""

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Goals of issue 12.
GOAL_WCU_ONE = 1.1
GOAL_WCU_THOUSAND = 1.25
GOAL_WCU_STRETCH = 1.1
GOAL_FRESH_P99 = 5.0

# On-demand list prices, us-east-1, as of PRICES_DATE.
PRICES_DATE = "2026-11-30"
PRICES = {
    "dynamodb_wru": 0.625 / 1e6,  # per write request unit
    "dynamodb_rru": 0.125 / 1e6,  # per read request unit
    "sqs_fifo_request": 0.50 / 1e6,  # per request (each 64 KB chunk of a payload is one)
    "sqs_standard_request": 0.40 / 1e6,  # today's design used a standard queue
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "apigw_http_request": 1.00 / 1e6,  # HTTP API, first 300 million a month
}
LAMBDA_GB = 256 / 1024  # template.yaml, Globals.Function.MemorySize
SQS_CHUNK = 64 * 1024
EVENTS_PER_API_REQUEST = 1000  # the assumption behind API Gateway and the API Lambda's cost

# eeade17's committed results (bench/results/usage.md at eeade17), quoted only when today's
# design cannot be built and measured in this run.
BASELINE_QUOTED = {
    "date": "2026-11-24 10:49:45 UTC",
    "wcu_one_customer_batch_100": 4.20,
    "wcu_thousand_customers_batch_100": 14.00,
    "e2e_events_per_second": 1680,
}


def load(path):
    with open(path) as f:
        return json.load(f)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(*args):
    try:
        return subprocess.run(list(args), capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def criterion_estimate(directory, group, bench, parameter=None):
    parts = [directory, group, bench] + ([str(parameter)] if parameter is not None else [])
    path = os.path.join(*parts, "new", "estimates.json")
    try:
        data = load(path)
    except OSError:
        return None
    mean = data["mean"]
    return {
        "mean_ns": mean["point_estimate"],
        "mean_ci95_ns": [mean["confidence_interval"]["lower_bound"],
                         mean["confidence_interval"]["upper_bound"]],
        "median_ns": data["median"]["point_estimate"],
    }


def ok(passed):
    return "**pass**" if passed else "**FAIL**"


def f(x, digits=2):
    return f"{x:,.{digits}f}"


def usd(x):
    return f"${x:,.4f}"


def release_profile():
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as fh:
        text = fh.read()
    section = re.search(r"^\[profile\.release\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
    if not section:
        return "Cargo's defaults"
    pairs = re.findall(r"^([\w-]+)\s*=\s*(.+?)\s*$", section.group(1), re.M)
    return ", ".join(f"{k} = {v}" for k, v in pairs)


def event_source(template_path):
    """BatchSize and MaximumBatchingWindowInSeconds of the usage matcher's SQS event, and whether
    its queue is FIFO, read from a template (not restated here)."""
    with open(template_path, encoding="utf-8") as fh:
        text = fh.read()
    fn = text[text.index("UsageMatcherFunction:"):]
    batch = re.search(r"BatchSize:\s*(\d+)", fn)
    window = re.search(r"MaximumBatchingWindowInSeconds:\s*(\d+)", fn)
    queue = text[text.index("  UsageQueue:"):]
    queue = queue[:queue.index("\n  UsageDeadLetterQueue:")] if "\n  UsageDeadLetterQueue:" in queue else queue
    return {
        "batch_size": int(batch.group(1)) if batch else None,
        "batching_window_seconds": int(window.group(1)) if window else None,
        "fifo": "FifoQueue: true" in queue,
    }


# --- Costs -----------------------------------------------------------------------------------


def new_cost(scenario, headline, fresh):
    """USD per million events of this commit's design, with its parts."""
    customers = scenario["customers"]
    wcu_steady = headline["wcu_per_event"]["total"]
    flip = scenario["warmup"]["status_flip_wcu_per_invoice"]
    # The million events of one period spread over the scenario's customers: each invoice flips
    # once in that million.
    flips_per_event = customers / 1e6
    wcu = wcu_steady + flip * flips_per_event
    rru = headline["reads"]["items_read_per_event"]  # strongly consistent, items ≤ 4 KB: 1 each
    per_msg_events = headline["events_per_message"]
    chunks = math.ceil(headline["message_bytes_mean"] / SQS_CHUNK)
    sqs_requests = (2 * chunks) / per_msg_events + 1 / headline["events_per_batch"]
    lambda_seconds = headline["process_us_per_event"] / 1e6
    matcher_invocations = 1 / headline["events_per_batch"]
    api_requests = 1 / EVENTS_PER_API_REQUEST
    api_seconds = fresh["e2e"]["post_latency"]["p50"] / EVENTS_PER_API_REQUEST if fresh else 0.0
    m = 1e6
    parts = {
        "dynamodbWrites": wcu * m * PRICES["dynamodb_wru"],
        "dynamodbReads": rru * m * PRICES["dynamodb_rru"],
        "sqs": sqs_requests * m * PRICES["sqs_fifo_request"],
        "lambdaMatcher": (lambda_seconds * LAMBDA_GB * PRICES["lambda_gb_second_arm64"]
                          + matcher_invocations * PRICES["lambda_request"]) * m,
        "lambdaApi": (api_seconds * LAMBDA_GB * PRICES["lambda_gb_second_arm64"]
                      + api_requests * PRICES["lambda_request"]) * m,
        "apiGateway": api_requests * m * PRICES["apigw_http_request"],
    }
    return {
        "total": sum(parts.values()),
        "parts": parts,
        "inputs": {
            "wcu_per_event_steady": wcu_steady,
            "status_flip_wcu_per_invoice": flip,
            "status_flips_per_event": flips_per_event,
            "wcu_per_event_with_flips": wcu,
            "rru_per_event": rru,
            "sqs_chunks_per_message": chunks,
            "events_per_message": per_msg_events,
            "events_per_batch": headline["events_per_batch"],
            "sqs_requests_per_event": sqs_requests,
            "matcher_seconds_per_event": lambda_seconds,
            "api_seconds_per_event": api_seconds,
            "events_per_api_request": EVENTS_PER_API_REQUEST,
        },
    }


def old_cost(row, sqs_row, api_seconds):
    """USD per million events of today's design at one of its `writes` rows."""
    wcu = row["total_wcu_per_event"]
    rru = row["invoices_read"] / row["events"]
    per_msg = sqs_row["events_per_message"] if sqs_row else 200.0
    # Standard queue, messages ≤ 60 KiB: one chunk to send, one to receive; deletes in batches
    # of 10 messages.
    sqs_requests = 2 / per_msg + 0.1 / per_msg
    lambda_seconds = 1 / row["events_per_second"]
    invocations = 1 / row["batch"]
    m = 1e6
    api_requests = 1 / EVENTS_PER_API_REQUEST
    parts = {
        "dynamodbWrites": wcu * m * PRICES["dynamodb_wru"],
        "dynamodbReads": rru * m * PRICES["dynamodb_rru"],
        "sqs": sqs_requests * m * PRICES["sqs_standard_request"],
        "lambdaMatcher": (lambda_seconds * LAMBDA_GB * PRICES["lambda_gb_second_arm64"]
                          + invocations * PRICES["lambda_request"]) * m,
        "lambdaApi": (api_seconds * LAMBDA_GB * PRICES["lambda_gb_second_arm64"]
                      + api_requests * PRICES["lambda_request"]) * m,
        "apiGateway": api_requests * m * PRICES["apigw_http_request"],
    }
    return {"total": sum(parts.values()), "parts": parts,
            "inputs": {"wcu_per_event": wcu, "rru_per_event": rru, "events_per_message": per_msg,
                       "sqs_requests_per_event": sqs_requests,
                       "matcher_seconds_per_event": lambda_seconds, "batch": row["batch"]}}


def old_row(writes, scenario, batch):
    for r in writes["rows"]:
        if r["scenario"] == scenario and r["batch"] == batch:
            return r
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--writes", required=True)
    p.add_argument("--concurrent", required=True)
    p.add_argument("--fresh", required=True)
    p.add_argument("--baseline-writes")
    p.add_argument("--baseline-sqs")
    p.add_argument("--baseline-concurrent")
    p.add_argument("--baseline-status", required=True, help="a file: 'ok' or why not")
    p.add_argument("--baseline-commit", default="eeade17")
    p.add_argument("--criterion", required=True, help="criterion's output directory")
    p.add_argument("--timings", required=True, help="lines 'step seconds'")
    p.add_argument("--command", default="bench/usage.sh")
    p.add_argument("--load-start", default="")
    p.add_argument("--md", required=True)
    p.add_argument("--json", required=True)
    a = p.parse_args()

    writes = load(a.writes)
    concurrent = load(a.concurrent)
    fresh = load(a.fresh)
    with open(a.baseline_status) as fh:
        baseline_status = fh.read().strip()
    measured_baseline = (baseline_status == "ok"
                         and all(x and os.path.exists(x) for x in (a.baseline_writes, a.baseline_concurrent)))
    if baseline_status == "ok" and not measured_baseline:
        baseline_status = "a run of today's design left no results"
    bw = load(a.baseline_writes) if measured_baseline else None
    bs = load(a.baseline_sqs) if measured_baseline and a.baseline_sqs and os.path.exists(a.baseline_sqs) else None
    bc = load(a.baseline_concurrent) if measured_baseline else None
    timings = {}
    with open(a.timings) as fh:
        for line in fh:
            name, secs = line.split()
            timings[name] = int(secs)

    source = event_source(os.path.join(ROOT, "template.yaml"))
    old_template = os.path.join(ROOT, "bench", ".work", "baseline", "template.yaml")
    old_source = event_source(old_template) if os.path.exists(old_template) else {
        "batch_size": 100, "batching_window_seconds": 1, "fifo": False}

    sc = writes["scenarios"]
    one, many = sc["oneCustomer"], sc["thousandCustomers"]
    head = lambda s: s["rounds"][0]  # the deployed BatchSize (first composition)
    one_h, many_h = head(one), head(many)
    wcu_one = one_h["wcu_per_event"]["total"]
    wcu_many = many_h["wcu_per_event"]["total"]

    cost_one = new_cost(one, one_h, fresh)
    cost_many = new_cost(many, many_h, fresh)

    api_seconds = fresh["e2e"]["post_latency"]["p50"] / EVENTS_PER_API_REQUEST
    baseline = {"design": f"{a.baseline_commit} (transactional matcher: records and the invoice's "
                          "aggregates in TransactWriteItems of at most 100 actions)",
                "measured": bool(measured_baseline)}
    if measured_baseline:
        ob_one = old_row(bw, "one_customer", 100)
        ob_many = old_row(bw, "1000_customers", 100)
        sqs_row = None
        if bs:
            sqs_row = next((r for r in bs["rows"] if r["events_per_call"] == 1000), None)
        baseline.update({
            "status": "measured in this run",
            "eventSource": old_source,
            "wcuPerEventAllIn": {"oneCustomer": ob_one["total_wcu_per_event"],
                                 "thousandCustomers": ob_many["total_wcu_per_event"],
                                 "batch": 100},
            "conflictsPer1000": {"fourMatchers": bc["conflicts_per_1000_events"]},
            "retriesPer1000": {"fourMatchers": bc["retries_per_1000_events"]},
            "eventsPerSecond": {"fourMatchers": bc["events_per_second"]},
            "usdPerMillionEvents": old_cost(ob_many, sqs_row, api_seconds)["total"],
            "usdPerMillionEventsDetail": {
                "oneCustomer": old_cost(ob_one, sqs_row, api_seconds),
                "thousandCustomers": old_cost(ob_many, sqs_row, api_seconds),
            },
            "writes": bw,
            "sqs": bs,
            "concurrent": bc,
        })
    else:
        baseline.update({
            "status": f"not measured in this run: {baseline_status}",
            "quoted": {"source": f"bench/results/usage.md at {a.baseline_commit}",
                       **BASELINE_QUOTED},
        })

    cpu = {}
    for customers in (1, 100):
        for batch in (100, 1000):
            est = criterion_estimate(a.criterion, "matcher_process", f"{customers}_customers", batch)
            if est:
                est["per_event_ns"] = est["mean_ns"] / batch
                cpu[f"{customers}_customers_batch_{batch}"] = est
    parts = {}
    for group, bench in [("aggregate_add", "count"), ("aggregate_add", "sum"),
                         ("record_encode", "serde_dynamo"), ("matcher_parts", "invoice_id_for"),
                         ("matcher_parts", "line_id_derive"),
                         ("matcher_parts", "memstore_record_key_and_clone"),
                         ("matcher_parts", "memstore_invoice_statuses_100"),
                         ("matcher_parts", "memstore_lanes_100")]:
        est = criterion_estimate(a.criterion, group, bench)
        if est:
            parts[f"{group}/{bench}"] = est

    now = datetime.datetime.now(datetime.timezone.utc)
    commit = run("git", "-C", ROOT, "rev-parse", "--short=7", "HEAD")
    dirty = bool(run("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"))
    machine = f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs, {cpu_model()}"
    load_end = open("/proc/loadavg").read().split()[:3]

    result = {
        "wcuPerEventAllIn": {"oneCustomer": wcu_one, "thousandCustomers": wcu_many},
        "conflictsPer1000": {"fourMatchers": concurrent["conflicts_per_1000_events"]},
        "retriesPer1000": {"fourMatchers": concurrent["retries_per_1000_events"]},
        "eventsPerSecond": {"fourMatchers": concurrent["events_per_second"],
                            "e2eBurst": fresh["e2e"]["events_per_second"]},
        "freshnessSeconds": {k: fresh["freshness_seconds"][k] for k in ("p50", "p90", "p99", "max", "mean")},
        "usdPerMillionEvents": cost_many["total"],
        "usdPerMillionEventsDetail": {"oneCustomer": cost_one, "thousandCustomers": cost_many,
                                      "headline": "thousandCustomers",
                                      "prices": PRICES, "pricesDate": PRICES_DATE,
                                      "lambdaMemoryGb": LAMBDA_GB},
        "eventSource": source,
        "baseline": baseline,
        "goals": {"wcuOneCustomer": GOAL_WCU_ONE, "wcuThousandCustomers": GOAL_WCU_THOUSAND,
                  "wcuStretch": GOAL_WCU_STRETCH, "freshnessP99Seconds": GOAL_FRESH_P99},
        "writes": writes,
        "concurrent": concurrent,
        "fresh": fresh,
        "matcherCpu": cpu,
        "matcherParts": parts,
        "meta": {"date": now.strftime("%Y-%m-%d %H:%M:%S UTC"), "commit": commit, "dirty": dirty,
                 "command": a.command, "machine": machine, "rustc": run("rustc", "--version"),
                 "release_profile": release_profile(), "timings_seconds": timings,
                 "load_start": a.load_start, "load_end": " ".join(load_end)},
    }
    with open(a.json, "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")

    # --- Markdown ---------------------------------------------------------------------------
    L = []
    w = L.append
    w("# Usage pipeline benchmark (issue 12)")
    w("")
    w(f"- Date (UTC): {result['meta']['date']}")
    w(f"- Commit: {commit}{' (with uncommitted changes)' if dirty else ''}; today's design: {a.baseline_commit}")
    w(f"- Command: `{a.command}` (`make bench-usage`); wall time {timings.get('total', 0) // 60} min {timings.get('total', 0) % 60} s")
    w(f"- Steps (s): " + ", ".join(f"{k} {v}" for k, v in timings.items() if k != "total"))
    w(f"- Machine: {machine}; {result['meta']['rustc']}; release profile ({result['meta']['release_profile']}), both designs")
    w(f"- Load average (1/5/15 min) at start: {a.load_start}, at end: {' '.join(load_end)} (the machine is shared)")
    w("- Local stack: `infra/stack.sh start` with `DDB_IN_MEMORY=1` (DynamoDB Local in memory, moto for SQS), "
      "started and stopped by the script; both designs run against the same emulators, each on its own tables. "
      "Rates are this machine's (2 cores shared by the emulators, the benchmark and other work), not AWS's.")
    w(f"- Deployed batching: this commit's template: FIFO queue, BatchSize {source['batch_size']}, "
      f"batching window {source['batching_window_seconds'] if source['batching_window_seconds'] is not None else 'none'} "
      f"(a FIFO event source allows none). Today's design ({a.baseline_commit}): "
      f"{'FIFO' if old_source['fifo'] else 'standard'} queue, BatchSize {old_source['batch_size']}, "
      f"MaximumBatchingWindowInSeconds {old_source['batching_window_seconds']}.")
    w("")
    w("## Summary: today's design and the new one, side by side")
    w("")
    w(f"| measure | goal | today's design ({a.baseline_commit}) | new design ({commit}) | |")
    w("| --- | --- | --: | --: | :-: |")
    if measured_baseline:
        b_one = f"{f(baseline['wcuPerEventAllIn']['oneCustomer'], 2)} (batch 100 events)"
        b_many = f"{f(baseline['wcuPerEventAllIn']['thousandCustomers'], 2)} (batch 100 events)"
        b_conf = f"{f(bc['conflicts_per_1000_events'], 1)} conflicts, {f(bc['retries_per_1000_events'], 1)} retries"
        b_rate = f"{f(bc['events_per_second'], 0)} events/s"
        b_usd = usd(baseline["usdPerMillionEvents"])
    else:
        q = BASELINE_QUOTED
        b_one = f"not measured ({q['wcu_one_customer_batch_100']:.2f} quoted from {a.baseline_commit}'s results of {q['date']})"
        b_many = f"not measured ({q['wcu_thousand_customers_batch_100']:.2f} quoted, {q['date']})"
        b_conf = "not measured"
        b_rate = "not measured"
        b_usd = "not measured"
    w(f"| WCU per event all-in, one customer | ≤ {GOAL_WCU_ONE} | {b_one} | **{f(wcu_one, 3)}** ({f(one_h['messages_per_batch'], 0)} messages × {f(one_h['events_per_message'], 0)} events a batch) | {ok(wcu_one <= GOAL_WCU_ONE)} |")
    w(f"| WCU per event all-in, 1,000 active customers | ≤ {GOAL_WCU_THOUSAND} (stretch {GOAL_WCU_STRETCH}) | {b_many} | **{f(wcu_many, 3)}** ({f(many_h['messages_per_batch'], 0)} messages a batch, {f(many_h['events_per_customer_per_batch'], 1)} events per customer) | {ok(wcu_many <= GOAL_WCU_THOUSAND)}{' (stretch met)' if wcu_many <= GOAL_WCU_STRETCH else ' (stretch not met)'} |")
    w(f"| 4 concurrent matchers, one customer: conflicts / retries per 1,000 events | no version conflicts serialising | {b_conf} | **{f(concurrent['conflicts_per_1000_events'], 1)} conflicts, {f(concurrent['retries_per_1000_events'], 1)} retries** | {ok(concurrent['conflicts'] == 0)} |")
    w(f"| … rate of that run | — | {b_rate} | {f(concurrent['events_per_second'], 0)} events/s | |")
    fs = fresh["freshness_seconds"]
    w(f"| freshness, 202 → invoice total, local (p50 / p99) | p99 < {GOAL_FRESH_P99:g} s | not measured (no per-request freshness step at {a.baseline_commit}) | **{f(fs['p50'], 2)} s / {f(fs['p99'], 2)} s** | {ok(fs['p99'] < GOAL_FRESH_P99)} |")
    w(f"| end-to-end burst through the dev server | — | {BASELINE_QUOTED['e2e_events_per_second']:,} events/s (quoted from {a.baseline_commit}'s results, not re-run) | {f(fresh['e2e']['events_per_second'], 0)} events/s | |")
    w(f"| USD per million events, 1,000 customers, list prices | — | {b_usd} | **{usd(cost_many['total'])}** | |")
    w(f"| … one customer | — | {usd(baseline['usdPerMillionEventsDetail']['oneCustomer']['total']) if measured_baseline else 'not measured'} | {usd(cost_one['total'])} | |")
    cpu1 = cpu.get("1_customers_batch_1000")
    cpu100 = cpu.get("100_customers_batch_1000")
    if cpu1 and cpu100:
        w(f"| matcher CPU per event (criterion, in memory, batch 1,000) | — | 2.71 / 4.41 µs (quoted from {a.baseline_commit}'s results) | {f(cpu1['per_event_ns'] / 1000, 2)} µs (1 customer) / {f(cpu100['per_event_ns'] / 1000, 2)} µs (100 customers) | |")
    w("")
    if not measured_baseline:
        w(f"**Today's design was not measured in this run**: {baseline_status}. Its figures above are "
          f"quoted from {a.baseline_commit}'s committed results (dated {BASELINE_QUOTED['date']}), not measured now.")
        w("")
    w("All-in means: every table write, plus every index write, times the transactional factor, with "
      "item sizes as stored (read back and sized as DynamoDB bills them). The new design has no "
      "transaction in the usage path (factor 1); today's design writes in transactions (factor 2 on "
      "the table writes) and propagates records and invoice updates to its ALL-projected indexes.")
    w("")

    # 1. WCU
    w("## 1. WCU per event, all-in, steady state, at the deployed batching")
    w("")
    w("`usage-bench writes`: events for the benchmark catalog (a COUNT and a SUM meter on one event "
      "name, a plan with a flat fee and both usage prices, one monthly contract per customer) are "
      f"sent as API requests of {one['events_per_request']:,} events, packed into messages by the real "
      "`billing::usage::pack` (≤ 250 KiB, a fresh nonce and so a lane each), decoded as the "
      "usage-matcher handler decodes SQS bodies, and delivered to `Matcher::process` over the real "
      "`DynamoStore` against DynamoDB Local the way Lambda's FIFO source does: batches of at most "
      f"{one['batch_size']} messages of one lane. Requests keep arriving until some lane holds the "
      "batch's messages (a lane with a backlog; other lanes' messages wait). *One customer*: every "
      "event for one customer. *1,000 customers*: events round robin over 1,000 customers. A warm-up "
      "request first reaches every customer once (see *Once per invoice and period* below); then "
      "the measured rounds. Every write is counted by kind from the matcher's `BatchReport` and "
      "checked against the adapter's count (`DynamoStore::usage_write_actions()`). No event is "
      "unbillable (all are matched), so no record carries index keys.")
    w("")
    w("| customers | messages / batch | batches | events | events / message | events / customer / batch | record puts | lane puts | day tally puts | claims | status flips | **WCU / event** | writes / event |")
    w("| --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |")
    for s in (one, many):
        for r in s["rounds"]:
            rep = r["report"]
            w(f"| {s['customers']:,} | {f(r['messages_per_batch'], 1)} | {r['batches']} | {r['events']:,} | {f(r['events_per_message'], 0)} | {f(r['events_per_customer_per_batch'], 1)} | {rep['record_writes']:,} | {rep['lane_writes']:,} | {rep.get('tally_writes', 0):,} | {rep['claim_writes']} | {rep['status_writes']} | **{f(r['wcu_per_event']['total'], 4)}** | {f(r['wcu_per_event']['writes_per_event'], 4)} |")
    w("")
    bpe = one_h.get("message_bytes_per_event", 0) or 1
    w(f"Messages: an event takes ≈ {f(bpe, 0)} bytes of message body, so a message of at most 250 KiB "
      f"holds ≈ {f(250 * 1024 / bpe, 0)} events and a request of {one['events_per_request']:,} events packs into "
      + ("two messages (a full one and a small one), each on its own lane: a 10-message batch carries a "
         "mix of full and small messages " if one['events_per_request'] * bpe > 250 * 1024 else "one message; ")
      + f"({f(one_h['events_per_message'], 0)} events per message on average here, "
      f"{f(one_h['message_bytes_mean'] / 1024, 0)} KiB, the largest {one_h['message_bytes_max']:,} bytes). Larger requests "
      "(up to 10,000 events) fill more messages fully, which lowers the 1,000-customer figure.")
    w("")
    w(f"The goal rows are the first of each scenario: full batches of {one['batch_size']} messages (the "
      "deployed BatchSize, as a lane with a backlog receives them). Thinner batches cost more when "
      "events spread over many customers: each batch writes one lane share per invoice it touches, so "
      "the lane part per event is (invoices touched ÷ events) per batch; for 1,000 customers that is "
      "1 ÷ (events per customer per batch). One customer stays near 1.0 whatever the batch. Each "
      "batch also writes one day tally (the dashboard's *events today*) per day its events were "
      "received on, one here: 1 ÷ (events per batch) per event.")
    w("")
    for label, s in (("One customer", one), ("1,000 customers", many)):
        z = s["sizes"]
        wc = z["wcu"]
        w(f"**Item sizes as stored, {label.lower()}** (read back from DynamoDB Local and sized by DynamoDB's "
          "rules: attribute names + values; strings by UTF-8 length, numbers 1 byte per 2 significant "
          "digits + 1, maps and lists 3 bytes + 1 per element): "
          f"records {z['record']['min_bytes']}–{z['record']['max_bytes']} bytes ({z['record']['samples']} samples, {f(wc['record_put'], 2)} WCU a put; "
          f"{z['records_with_index_keys']} with index keys), lane shares {z['lane']['min_bytes']}–{z['lane']['max_bytes']} bytes "
          f"({z['lane']['samples']} samples, {f(wc['lane_put'], 2)} WCU a put), day tallies {z['tally']['min_bytes']}–{z['tally']['max_bytes']} bytes "
          f"({z['tally']['samples']} samples, {f(wc['tally_put'], 2)} WCU a put), invoices {z['invoice']['min_bytes']}–{z['invoice']['max_bytes']} bytes "
          f"(statuses {', '.join(f'{k} {v}' for k, v in z['invoice_statuses'].items())}).")
        w("")
    w("WCU rule: 1 per started KB of the item written (a put replacing an item, or an update, bills "
      "the larger of before and after); no transactions (factor 1); index writes: a record has gsi1 "
      "keys only when late or unbillable (0 here), lane shares, day tallies and value claims have none.")
    w("")
    w("**Once per invoice and period** (not in the steady-state figures above): an invoice's first "
      "usage flips it from Drafted to In Progress, one `UpdateItem` of the invoice item, which also "
      "rewrites its entries in the billing table's ALL-projected indexes (gsi1, gsi2, gsi3; gsi4 "
      "projects only `id` and is not touched).")
    w("")
    w("| scenario | warm-up events | status flips | WCU per flip (table + indexes) | amortized per event at 1,000 / 10,000 / 100,000 events per customer and month |")
    w("| --- | --: | --: | --: | --: |")
    for label, s in (("one customer", one), ("1,000 customers", many)):
        fl = s["warmup"]["status_flip_wcu_per_invoice"]
        w(f"| {label} | {s['warmup']['events']:,} | {s['warmup']['report']['status_writes']:,} | {f(fl, 0)} | {fl / 1000:.4f} / {fl / 10000:.5f} / {fl / 100000:.6f} |")
    w("")
    w("**Cross-check with DynamoDB Local's accounting** (`ReturnConsumedCapacity=INDEXES`, on copies "
      "of stored items under probe keys, deleted afterwards; the emulator's accounting is not AWS's bill):")
    w("")
    w("| scenario | write | item bytes | estimate (WCU) | DynamoDB Local reports |")
    w("| --- | --- | --: | --: | --- |")

    def cap(c):
        if not c:
            return "—"
        gsi = c.get("gsi") or {}
        g = ", ".join(f"{k} {v}" for k, v in sorted(gsi.items())) or "no index"
        return f"total {c.get('total')}, table {c.get('table')}, {g}"

    for label, s in (("one customer", one), ("1,000 customers", many)):
        ec = s["emulator_consumed_capacity"]
        if "error" in ec:
            w(f"| {label} | — | — | — | failed: {ec['error']} |")
            continue
        if "record" in ec:
            w(f"| {label} | record `PutItem` (new) | {ec['record']['item_bytes']} | {ec['record']['estimate_wcu']} | {cap(ec['record']['put_new'])} |")
        if "lane" in ec:
            w(f"| {label} | lane share `PutItem` (new / replacing) | {ec['lane']['item_bytes']} | {ec['lane']['estimate_wcu']} | {cap(ec['lane']['put_new'])} / {cap(ec['lane'].get('put_replace'))} |")
        if "tally" in ec:
            w(f"| {label} | day tally `PutItem` (new / replacing) | {ec['tally']['item_bytes']} | {ec['tally']['estimate_wcu']} | {cap(ec['tally']['put_new'])} / {cap(ec['tally'].get('put_replace'))} |")
        if "status_flip" in ec:
            w(f"| {label} | status flip `UpdateItem` | {ec['status_flip']['item_bytes']} | {ec['status_flip']['estimate_wcu']} | {cap(ec['status_flip']['update'])} |")
    w("")
    if measured_baseline:
        w(f"**Today's design, same run** (`usage-bench writes` of {a.baseline_commit}, built from its "
          "worktree, on its own table): its method sizes records and invoices the same way, counts "
          "transactional table writes at 2 WCU per started KB and index propagation as standard "
          "writes (a record is written to gsi1 and gsi2, an invoice update to gsi1–gsi3). Its "
          f"deployed source handed it batches of up to {old_source['batch_size']} messages of ≤ 60 KiB "
          "(≈ 200–230 events each) after a 1 s window; the rows by events per `process` call:")
        w("")
        w("| customers | batch (events) | events | transactions | write actions / event | table WCU / event | **all-in WCU / event** |")
        w("| --: | --: | --: | --: | --: | --: | --: |")
        for r in bw["rows"]:
            w(f"| {r['customers']:,} | {r['batch']:,} | {r['events']:,} | {r['transactions']:,} | {f(r['write_actions_per_event'], 3)} | {f(r['table_wcu_per_event'], 2)} | **{f(r['total_wcu_per_event'], 2)}** |")
        w("")
        w("The summary quotes its batch-100 rows, as issue 12 does; its larger batches are within 0.1 WCU of them.")
        w("")

    # 2. Concurrency
    w("## 2. Four concurrent matchers on one customer")
    w("")
    w(f"`usage-bench concurrent`: {concurrent['events']:,} events for one customer (after a warm-up of "
      f"{concurrent['warmup_events']} that flips the invoice; each matcher's cache warm), sent as requests of "
      f"{concurrent['events_per_request']:,} events, packed onto lanes ({concurrent['messages']} messages); four "
      "`Matcher::process` loops run concurrently over the real `DynamoStore`, matcher *w* taking the "
      "lanes whose number is *w* modulo 4, each lane's messages in order, ≤ 10 per batch "
      f"({concurrent['batches']} batches, {f(concurrent['messages_per_batch'], 1)} messages each on average). "
      "Conflicts are lane share writes refused (`BatchReport.conflicts`), retries are passes repeated "
      "(`BatchReport.retries`). The invoice's COUNT, read back through the ledger (lanes merged), "
      "must equal every event sent, and does.")
    w("")
    w("| design | matchers | events | events / batch | seconds | **events/s** | conflicts | retries | **conflicts / 1,000 events** | retries / 1,000 events |")
    w("| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: |")
    w(f"| new ({commit}) | {concurrent['matchers']} | {concurrent['events']:,} | {f(concurrent['events'] / max(concurrent['batches'], 1), 0)} | {f(concurrent['seconds'], 1)} | **{f(concurrent['events_per_second'], 0)}** | {concurrent['conflicts']} | {concurrent['retries']} | **{f(concurrent['conflicts_per_1000_events'], 2)}** | {f(concurrent['retries_per_1000_events'], 2)} |")
    if measured_baseline:
        w(f"| today ({a.baseline_commit}) | {bc['matchers']} | {bc['events']:,} | {bc['events_per_batch']:,} | {f(bc['seconds'], 1)} | **{f(bc['events_per_second'], 0)}** | {bc['conflicts']} | {bc['retries']} | **{f(bc['conflicts_per_1000_events'], 2)}** | {f(bc['retries_per_1000_events'], 2)} |")
    else:
        w(f"| today ({a.baseline_commit}) | not measured: {baseline_status} | | | | | | | | |")
    w("")
    if measured_baseline:
        w(f"Today's design (bench/baseline/baseline.rs, against {a.baseline_commit}'s API): the same number of "
          f"events for one customer in batches of {bc['events_per_batch']:,} events (≈ 4–5 of its ≤ 60 KiB messages), "
          "taken by whichever of the four matchers is free, as its standard queue handed batches to "
          "any concurrent invocation. Its conflicts: commits refused because the invoice's usage "
          f"version moved (`CommitOutcome::InvoiceMoved`: {bc['commits_invoice_moved']}, counted by a "
          "`UsageStore` wrapper) plus transactions cancelled by `TransactionConflict` (another "
          f"transaction on the invoice at the same moment: {bc['transaction_conflicts']}, counted by an "
          "interceptor on the DynamoDB client; the adapter re-sends those itself). Its retries: passes "
          f"repeated after a refused or failed commit ({bc['commits_invoice_moved'] + bc['commits_failed']}) plus those re-sent "
          f"transactions. {bc['transactions_committed']:,} transactions committed out of {bc['transact_attempts']:,} sent; "
          f"{bc['failed_invocations']} `process` calls gave up (12 refused passes in a row) and their batches were "
          f"redelivered ({bc.get('recorded_before_redelivery', 0):,} of their events were found already recorded then). It sent "
          f"{bc['write_actions_sent']:,} write actions in transactions for {bc['write_actions_committed']:,} committed: "
          "a refused transaction's actions are sent again (what a cancelled transaction is billed is not "
          "counted in the WCU rows of §1).")
        w("")

    # 3. Freshness
    w("## 3. Freshness: 202 → invoice total")
    w("")
    w(f"`usage-bench fresh`: the dev server's library (`dev_server::start`: the real API, API Gateway "
      "conversion, and its SQS poller driving the real usage-matcher handler on the stack's FIFO queue "
      "like Lambda's FIFO source, one batch of ≤ 10 messages at a time) on 127.0.0.1. After a warm-up, "
      f"{fresh['requests']} `POST /v1/events/batch` of {fresh['events_per_request']} events each, one every "
      f"{f(1 / fresh['requests_per_second'], 2)} s for {fresh['seconds']:g} s ({f(fresh['events_per_second_offered'], 0)} events/s offered), "
      "each timed to its 202; meanwhile `GET /v1/invoices/{id}` polls the COUNT line every 20 ms "
      f"(median interval {f(fresh['poll_interval']['p50'] * 1000, 0)} ms, {fresh['poll_samples']:,} polls). A request's delay is "
      "from its 202 to the first poll answer, arriving after that 202, whose count includes it and "
      "every earlier request (the poller receives messages in the order they were sent): an upper "
      "bound by up to one poll interval.")
    w("")
    w("| measure | p50 | p90 | p99 | max | mean |")
    w("| --- | --: | --: | --: | --: | --: |")
    d = fresh["freshness_seconds"]
    w(f"| **202 → counted on the invoice (s)** | **{f(d['p50'], 3)}** | {f(d['p90'], 3)} | **{f(d['p99'], 3)}** | {f(d['max'], 3)} | {f(d['mean'], 3)} |")
    d = fresh["post_latency"]
    w(f"| POST → 202 (s) | {f(d['p50'], 3)} | {f(d['p90'], 3)} | {f(d['p99'], 3)} | {f(d['max'], 3)} | {f(d['mean'], 3)} |")
    w("")
    e = fresh["e2e"]
    w(f"End-to-end burst (the old e2e figure): {e['events']:,} events posted as {e['events'] // e['per_post']} requests of "
      f"{e['per_post']:,}, one after another (ingested in {f(e['ingest_seconds'], 2)} s, median POST {f(e['post_latency']['p50'] * 1000, 0)} ms), "
      f"all counted on the invoice after {f(e['seconds'], 2)} s: **{f(e['events_per_second'], 0)} events/s** with one poller "
      "(today's design measured 1,680 events/s this way at eeade17, quoted, not re-run).")
    w("")
    w("**On AWS (an estimate, not measured):** Lambda's pollers long-poll the FIFO queue and invoke "
      "as soon as messages arrive (no batching window: a FIFO source allows none; BatchSize 10 only "
      "caps a batch), one invocation at a time per message group, so a lane's message waits at most "
      "for its lane's batch in progress. Per batch the matcher makes one `BatchGetItem` of invoice "
      "statuses, the record puts (≤ 32 in flight), one `BatchGetItem` of lane shares and one lane "
      "put per invoice, then a day tally read and put: six round trips of single-digit milliseconds on DynamoDB, plus SQS receive "
      "and Lambda invoke overhead of tens of milliseconds. A quiet lane should show new usage in "
      "roughly 0.1–0.3 s (p50); p99 is set by cold starts (≈ 0.1–0.5 s more), lanes with a backlog "
      "(a 10-message batch of 1,000-event messages is 10,000 puts, ≈ 1–2 s at 32 in flight) and "
      "DynamoDB throttling; well under the 5 s goal unless a lane runs a sustained backlog.")
    w("")

    # 4. Cost
    w("## 4. USD per million events (on-demand list prices)")
    w("")
    w(f"Prices (us-east-1, on-demand, as of {PRICES_DATE}): DynamoDB $0.625 per million write request "
      "units and $0.125 per million read request units; SQS FIFO $0.50 per million requests (standard: "
      "$0.40, today's design), each 64 KB chunk of a payload billed as one request; Lambda arm64 "
      "$0.0000133334 per GB-s and $0.20 per million requests, at the template's 256 MB; API Gateway "
      "HTTP API $1.00 per million requests.")
    w("")
    w("| part | basis (new design) | 1 customer | 1,000 customers |" + (" today, 1,000 customers |" if measured_baseline else ""))
    w("| --- | --- | --: | --: |" + (" --: |" if measured_baseline else ""))
    i1, im = cost_one["inputs"], cost_many["inputs"]
    rows = [
        ("dynamodbWrites", f"measured WCU/event at BatchSize 10 ({f(i1['wcu_per_event_steady'], 3)} / {f(im['wcu_per_event_steady'], 3)}) + status flips, each invoice once in the million"),
        ("dynamodbReads", f"items the matcher reads per event (invoice statuses, lane shares, day tallies; strongly consistent, ≤ 4 KB: 1 RRU each): {f(i1['rru_per_event'], 4)} / {f(im['rru_per_event'], 4)}"),
        ("sqs", f"per message ({f(i1['events_per_message'], 0)} events, {i1['sqs_chunks_per_message']} chunks of 64 KB): send + receive per chunk, one delete request per batch"),
        ("lambdaMatcher", f"measured `process` time per event against DynamoDB Local ({f(i1['matcher_seconds_per_event'] * 1e6, 0)} / {f(im['matcher_seconds_per_event'] * 1e6, 0)} µs) × 256 MB, + one invocation per batch"),
        ("lambdaApi", f"median local POST time of a 1,000-event request ÷ 1,000 ({f(i1['api_seconds_per_event'] * 1e6, 0)} µs/event) × 256 MB, + one invocation per request"),
        ("apiGateway", f"one request per {EVENTS_PER_API_REQUEST:,} events (assumption: batch requests of 1,000)"),
    ]
    for key, basis in rows:
        line = f"| {key} | {basis} | {usd(cost_one['parts'][key])} | {usd(cost_many['parts'][key])} |"
        if measured_baseline:
            line += f" {usd(baseline['usdPerMillionEventsDetail']['thousandCustomers']['parts'][key])} |"
        w(line)
    tot = f"| **total** | | **{usd(cost_one['total'])}** | **{usd(cost_many['total'])}** |"
    if measured_baseline:
        tot += f" **{usd(baseline['usdPerMillionEvents'])}** |"
    w(tot)
    w("")
    w("`usdPerMillionEvents` in usage.json is the 1,000-customer total (the dearer one). Not per event "
      "and left out: the matcher's catalog reads (cached per warm Lambda for 60 s), Lambda's empty "
      "polls of the queue, storage, and the event records' TTL deletions (free). Today's design's "
      "column uses its batch-100 row (WCU, invoices read, matcher time) and its measured events per "
      "message on a standard queue.")
    w("")

    # 5. CPU
    w("## 5. Matcher CPU per event (criterion, no network)")
    w("")
    w("`cargo bench -p usage-bench --bench matcher`: `Matcher::process` of one lane message carrying a "
      "batch of fresh events over `billing::testing::MemoryStore`, a warm matcher, fixed clock, the "
      "same catalog (two readings per event). Not included: decoding SQS bodies and the DynamoDB "
      "encoding of items (`record_encode`). Run on the shared machine under the load shown at the "
      "top (other people's builds): figures are inflated accordingly. eeade17's committed figures "
      "(2.48–4.41 µs per event, a quieter machine, the old matcher and its in-memory store) are not "
      "re-run here.")
    w("")
    w("| customers | batch | mean per batch | 95 % CI | **per event** |")
    w("| --: | --: | --: | --: | --: |")
    for customers in (1, 100):
        for batch in (100, 1000):
            est = cpu.get(f"{customers}_customers_batch_{batch}")
            if est:
                lo, hi = est["mean_ci95_ns"]
                w(f"| {customers} | {batch:,} | {f(est['mean_ns'] / 1000, 1)} µs | {f(lo / 1000, 1)}–{f(hi / 1000, 1)} µs | **{f(est['per_event_ns'] / 1000, 3)} µs** |")
    w("")
    w("| micro-benchmark | mean |")
    w("| --- | --: |")
    for name, est in parts.items():
        w(f"| `{name}` | {f(est['mean_ns'], 1)} ns |")
    w("")
    w("Raw numbers: `bench/results/usage.json`. Reproduce: `make bench-usage` (see bench/README.md).")
    with open(a.md, "w") as fh:
        fh.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
