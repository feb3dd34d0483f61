#!/usr/bin/env python3
"""Cold-start (process-level init) and package-size benchmark of the Lambda functions.

For each function's release `bootstrap` this script measures, against a tiny local stand-in of
the Lambda Runtime API, the time from process spawn to the process's first
`GET /2018-06-01/runtime/invocation/next` (that is, its whole init phase), and the size of the
deployment zip. It writes a Markdown report and a JSON file with the raw samples.

With --before ROLE=DIR (repeatable) it also measures the builds of earlier commits (built by
bench/coldstart.sh into their own lambda dirs: before = eeade17, the design before issue 10's
restructuring, and restructure = 9daa5a3, the restructuring alone) in the same run, interleaved
run by run with today's, and writes one table with every set side by side, the ratios of each
later set to the first, and, for each later set against the first, the verdicts "init did not
grow" and "stripe-webhook zip shrank" (or their opposites); --requirement names the comparison
that is the requirement's test (the restructuring alone), the others are for information.

Standard library only (Python 3.11). Usually run through bench/coldstart.sh, which builds first.
Exit status: 0 when every run of every function reached `next`, 1 when any did not (a missed
goal, a grown init or a zip that did not shrink is not an error: the figures are what they are),
2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import json
import math
import os
import platform
import queue
import random
import select
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

FUNCTIONS = ["api", "usage-matcher", "billing-run", "stripe-webhook", "dashboard",
             "webhook-dispatcher"]
# The function whose zip issue 10 expects to shrink (it no longer links the API).
SHRINK_EXPECTED = ["stripe-webhook"]
# Goals from the issue: process-level init under 10 ms, zipped package under 6 MB.
INIT_GOAL_MS = 10.0
ZIP_GOAL_BYTES = 6_000_000  # MB here means 10^6 bytes (the stricter reading of "6 MB")
NEXT_PATH = "/2018-06-01/runtime/invocation/next"

ROOT = Path(__file__).resolve().parent.parent


# --- Runtime API stand-in ---------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "RuntimeApiStandIn"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if self.path.split("?", 1)[0] == NEXT_PATH:
            arrival = time.perf_counter_ns()
            with self.server.held_cond:
                self.server.held += 1
            self.server.arrivals.put(arrival)
            # Hold the request: the benchmark only needs its arrival time. Return as soon as the
            # client goes away (it is killed right after this) or the stand-in shuts down.
            try:
                self._hold()
            finally:
                with self.server.held_cond:
                    self.server.held -= 1
                    self.server.held_cond.notify_all()
            self.close_connection = True
            return
        self._not_found()

    def do_POST(self) -> None:  # noqa: N802
        self._not_found()

    def _not_found(self) -> None:
        # e.g. POST /runtime/init/error: never expected; kept for the failure diagnostics.
        self.server.others.append((self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b'{"errorMessage":"not found in the benchmark stand-in"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _hold(self) -> None:
        conn = self.connection
        while not self.server.stopping.is_set():
            readable, _, _ = select.select([conn], [], [], 0.2)
            if readable:
                try:
                    if not conn.recv(1, socket.MSG_PEEK):
                        return  # peer closed
                except OSError:
                    return
                time.sleep(0.01)  # a pipelined request; we never answer it

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # silence the per-request stderr lines


class RuntimeApiStandIn(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.arrivals: "queue.Queue[int]" = queue.Queue()
        self.others: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        # Requests being held (one per process that called `next` and may not be reaped yet).
        self.held = 0
        self.held_cond = threading.Condition()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="runtime-api-stand-in", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

    def wait_released(self, timeout_s: float) -> None:
        """Waits until no request is held any more: the previous process's connection is closed
        and its handler thread done, so none of its teardown runs during the next measurement."""
        with self.held_cond:
            self.held_cond.wait_for(lambda: self.held == 0, timeout_s)

    def drain(self) -> None:
        """Forget arrivals and stray requests left over from earlier runs."""
        while True:
            try:
                self.arrivals.get_nowait()
            except queue.Empty:
                break
        self.others.clear()


# --- one measured process ---------------------------------------------------------------------


@dataclass
class Run:
    init_ns: int | None
    error: str | None = None


def lambda_env(name: str, task_root: Path, port: int) -> dict[str, str]:
    """A clean environment resembling Lambda's (nothing inherited from this shell): template.yaml's
    variables of every commit measured (a build ignores a variable it does not read), so every
    set of a run starts with the same environment."""
    return {
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "TABLE_NAME": "BillingTable",
        "USAGE_TABLE_NAME": "UsageTable",
        "USAGE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/UsageQueue",
        "WEBHOOK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/WebhookQueue",
        "OPERATOR_EMAIL": "ops@example.com",
        "RUST_LOG": "info",
        "BOOTSTRAP_API_KEY_SHA256": "",
        # Payments configured as deployed with a Stripe secret (the fuller, slower start).
        "STRIPE_SECRET_KEY": "sk_test_bench",
        "STRIPE_WEBHOOK_SECRET": "whsec_bench",
        "PORTAL_SIGNING_KEY": "00" * 32,
        "DASHBOARD_SESSION_KEY": "11" * 32,
        "PUBLIC_BASE_URL": "https://billing.example.com",
        "MAIL_FROM": "billing@example.com",
        "BILLING_RUN_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:bench-billing-run",
        "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/bench",
        "PATH": "/usr/bin:/bin",
        "LAMBDA_TASK_ROOT": str(task_root),
        # Also set by Lambda for custom runtimes.
        "_HANDLER": "bootstrap",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
    }


def _tail(path: Path, limit: int = 1200) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()


def measure_once(server: RuntimeApiStandIn, argv: list[str], env: dict[str, str], cwd: Path,
                 timeout_s: float, log_path: Path) -> Run:
    """Spawn argv, wait for its first `next`, kill it. One process at a time, so the first
    `next` after the spawn is this process's."""
    server.drain()
    with open(log_path, "wb") as log:
        t0 = time.perf_counter_ns()
        try:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, close_fds=True)
        except OSError as exc:
            return Run(None, f"could not start {argv[0]}: {exc}")
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    arrival = server.arrivals.get(timeout=0.02)
                    return Run(arrival - t0)
                except queue.Empty:
                    pass
                code = proc.poll()
                if code is not None:
                    # It may have sent `next` just before dying: look once more.
                    try:
                        arrival = server.arrivals.get(timeout=0.05)
                        return Run(arrival - t0)
                    except queue.Empty:
                        pass
                    return Run(None, f"exited with status {code} before calling `next`"
                               + _diagnostics(server, log_path))
                if time.monotonic() >= deadline:
                    return Run(None, f"no `next` call within {timeout_s:g} s"
                               + _diagnostics(server, log_path))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            server.wait_released(1.0)


def measure_exit_once(argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> Run:
    """Spawn-to-reaped-exit time of a program that exits at once (the floor of process spawn)."""
    t0 = time.perf_counter_ns()
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        return Run(None, f"could not start {argv[0]}: {exc}")
    # A blocking wait (Popen.wait with a timeout polls with sleeps, which would add up to a
    # millisecond); a timer enforces the timeout instead.
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    code = proc.wait()
    t1 = time.perf_counter_ns()
    timer.cancel()
    if code == -9:
        return Run(None, f"did not exit within {timeout_s:g} s")
    return Run(t1 - t0) if code == 0 else Run(None, f"exited with status {code}")


def _diagnostics(server: RuntimeApiStandIn, log_path: Path) -> str:
    parts = []
    if server.others:
        parts.append("other requests: " + ", ".join(f"{m} {p}" for m, p in server.others[:5]))
    out = _tail(log_path)
    if out:
        parts.append("output: " + out.replace("\n", " | "))
    return ("; " + "; ".join(parts)) if parts else ""


# --- sizes ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    argv: list[str] = field(default_factory=list)
    task_root: Path | None = None
    binary_bytes: int | None = None
    zip_bytes: int | None = None
    zip_source: str = ""
    error: str | None = None


def zipped_size(binary: Path) -> int:
    """Size of `binary` zipped as deployed (single entry `bootstrap`, mode 0755)."""
    with tempfile.TemporaryDirectory(prefix="coldstart-zip-") as tmp:
        out = Path(tmp) / "bootstrap.zip"
        info = zipfile.ZipInfo("bootstrap", date_time=time.localtime(binary.stat().st_mtime)[:6])
        info.external_attr = (0o100755 << 16)
        info.create_system = 3  # unix, so the mode is honoured
        info.compress_type = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            with open(binary, "rb") as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return out.stat().st_size


def prepare_function(name: str, lambda_dir: Path, scratch: Path) -> Target:
    """Locate a function's build output. A bootstrap.zip, when present, is what is deployed: its
    size is the package size and its `bootstrap` (extracted into a scratch dir standing in for
    /var/task) is what runs. Otherwise the loose `bootstrap` runs and is zipped here to size it."""
    t = Target(name)
    fdir = lambda_dir / name
    zpath, bpath = fdir / "bootstrap.zip", fdir / "bootstrap"
    if zpath.is_file():
        try:
            with zipfile.ZipFile(zpath) as zf:
                info = zf.getinfo("bootstrap")
                task_root = scratch / name
                task_root.mkdir(parents=True)
                binary = task_root / "bootstrap"
                with zf.open(info) as src, open(binary, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                binary.chmod(0o755)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            t.error = f"{zpath}: cannot extract `bootstrap`: {exc}"
            return t
        t.zip_bytes, t.zip_source = zpath.stat().st_size, "bootstrap.zip"
        t.binary_bytes = info.file_size
        t.argv, t.task_root = [str(binary)], task_root
        if bpath.is_file() and bpath.stat().st_size != info.file_size:
            print(f"warning: {bpath} differs from the bootstrap in {zpath} (stale?); "
                  "measuring the zip's", file=sys.stderr)
        return t
    if bpath.is_file():
        if not os.access(bpath, os.X_OK):
            t.error = f"{bpath} is not executable"
            return t
        t.binary_bytes = bpath.stat().st_size
        t.zip_bytes, t.zip_source = zipped_size(bpath), "zipped here (deflate -9)"
        t.argv, t.task_root = [str(bpath.resolve())], bpath.resolve().parent
        return t
    t.error = f"neither {zpath} nor {bpath} exists (build first: bench/coldstart.sh)"
    return t


def prepare_command(spec: str) -> Target:
    """--command NAME=CMD: an arbitrary program measured like a function (used to check that a
    program that never calls `next`, or does not exist, is reported as a failure)."""
    name, sep, cmd = spec.partition("=")
    if not sep or not name or not cmd.strip():
        raise SystemExit(f"coldstart.py: --command wants NAME=COMMAND, got {spec!r}")
    argv = shlex.split(cmd)
    t = Target(name, argv=argv)
    exe = Path(argv[0])
    t.task_root = exe.parent if exe.parent.is_dir() else Path("/")
    if exe.is_file():
        t.binary_bytes = exe.stat().st_size
        t.zip_bytes, t.zip_source = zipped_size(exe), "zipped here (deflate -9)"
    return t


# --- statistics and report --------------------------------------------------------------------


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    k = max(1, math.ceil(p / 100 * len(sorted_ms)))
    return sorted_ms[k - 1]


def summarize(samples_ns: list[int]) -> dict[str, float] | None:
    if not samples_ns:
        return None
    ms = sorted(s / 1e6 for s in samples_ns)
    lo, hi = median_ci(ms)
    return {"min": ms[0], "median": statistics.median(ms), "p90": percentile(ms, 90),
            "max": ms[-1], "median_ci95": [lo, hi]}


def median_ci(sorted_ms: list[float]) -> tuple[float, float]:
    """Distribution-free 95 % confidence interval of the median: the order statistics of ranks
    (n - 1.96 sqrt n) / 2 and 1 + (n + 1.96 sqrt n) / 2 (for n = 30, the 9th and 22nd)."""
    n = len(sorted_ms)
    half = 1.96 * math.sqrt(n)
    lo = min(n, max(1, math.floor((n - half) / 2)))
    hi = max(1, min(n, math.ceil(1 + (n + half) / 2)))
    return sorted_ms[lo - 1], sorted_ms[hi - 1]


def median_noise(stats: dict | None) -> float | None:
    """Half the width of the median's 95 % interval: how far a median of these runs can move
    by chance."""
    if not stats:
        return None
    lo, hi = stats["median_ci95"]
    return (hi - lo) / 2


def _run(cmd: list[str], cwd: Path = ROOT) -> str:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = _run(["git", "rev-parse", "--short", "HEAD"])
    if commit != "unknown":
        status = _run(["git", "status", "--porcelain", "--", ".", ":(exclude)bench/results"])
        if status and status != "unknown":
            commit += "-dirty"
    return {
        "uname": _run(["uname", "-srm"]),
        "nproc": _run(["nproc"]),
        "cpu": cpu,
        "rustc": _run(["rustc", "--version"]),
        "commit": commit,
        "python": platform.python_version(),
    }


def fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def fmt_mb(b: int | None) -> str:
    return "—" if b is None else f"{b / 1e6:.2f}"


def ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3f}"


def _median(r: dict | None) -> float | None:
    return (r["stats_ms"] or {}).get("median") if r else None


def _ok(r: dict | None) -> bool:
    """Every attempted run of this program reached `next` (or exited, for /bin/true)."""
    return bool(r) and not r["error"] and not r["failures"] and bool(r["samples_ns"])


@dataclass
class BuildSet:
    """One set of functions measured: an earlier commit's build, or today's (the last)."""
    role: str  # its name in the table and the JSON: before, restructure, today, ...
    commit: str
    lambda_dir: Path
    functions: list[str]
    note: str = ""
    worktree: str | None = None
    build: str = "not by this command"
    build_seconds: int | None = None

    def meta(self) -> dict:
        return {"role": self.role, "commit": self.commit, "note": self.note,
                "lambda_dir": str(self.lambda_dir), "worktree": self.worktree,
                "functions": self.functions, "build": self.build,
                "build_seconds": self.build_seconds}


def compare(results: list[dict], sets: list[BuildSet]) -> list[dict]:
    """Gathers each program's results of every set (one row of the table each) and, for every
    set after the first, its ratios and differences against the first (the before)."""
    base = sets[0].role if len(sets) > 1 else None
    rows: dict[tuple[str, str], dict] = {}
    for r in results:
        key = (r["kind"], r["name"])
        row = rows.setdefault(key, {"name": r["name"], "label": r["label"], "kind": r["kind"],
                                    "sets": {}})
        row["sets"][r["set"]] = r
    out = []
    for row in rows.values():
        b = row["sets"].get(base) if base else None
        row["new_since_before"] = bool(base) and b is None and row["kind"] == "function"
        row["vs_before"] = {}
        for s in sets[1:] if base else []:
            a = row["sets"].get(s.role)
            if a is None or b is None:
                continue
            nb, na = median_noise(b["stats_ms"]), median_noise(a["stats_ms"])
            delta = (None if _median(a) is None or _median(b) is None
                     else _median(a) - _median(b))
            row["vs_before"][s.role] = {
                "init_median_ratio": ratio(_median(a), _median(b)),
                "init_median_delta_ms": delta,
                "zip_ratio": ratio(a["zip_bytes"], b["zip_bytes"]),
                "zip_delta_bytes": (None if a["zip_bytes"] is None or b["zip_bytes"] is None
                                    else a["zip_bytes"] - b["zip_bytes"]),
                # The function's own noise of the difference (for information; the verdict
                # uses the reference's, see compare_with_before()).
                "own_noise_ms": None if nb is None or na is None else math.hypot(nb, na),
            }
        out.append(row)
    return out


def verdicts(rows: list[dict], sets: list[BuildSet], requirement: str | None) -> dict:
    """The verdicts of every set after the first against the first (the before); `requirement`
    names the set whose comparison is the requirement's test."""
    base = sets[0] if len(sets) > 1 else None
    out: dict = {"before": base.commit if base else None, "before_role": base.role if base else None,
                 "requirement": requirement, "comparisons": []}
    if base:
        for s in sets[1:]:
            out["comparisons"].append(compare_with_before(rows, base, s, s.role == requirement))
    return out


def compare_with_before(rows: list[dict], base: BuildSet, s: BuildSet, is_requirement: bool) -> dict:
    """Tolerance: the noise of a difference of two medians as shown by the curl reference,
    measured in the same interleaved rounds in every set's slot. curl does what every function's
    init does outside its own code (spawn, dynamic loading, one connection and HTTP request to
    the stand-in) and nothing in it differs between slots, so how far its median can move by
    chance is how far a function's median can move for reasons that are not the function's code.
    Each slot's median carries half its 95 % interval of noise (`median_noise`); the difference
    of two independent medians carries the two combined: T = sqrt(h_before^2 + h_set^2)."""
    out: dict = {"role": s.role, "commit": s.commit, "before_role": base.role,
                 "before": base.commit, "is_requirement": is_requirement,
                 "tolerance_ms": None, "tolerance_source": None, "reference_delta_ms": None,
                 "reference_within_tolerance": None, "init": [], "init_did_not_grow": None,
                 "zip": [], "zip_shrank": None}
    curl = next((r for r in rows if r["kind"] == "reference" and r["name"] == "curl"), None)
    cb, ca = (curl["sets"].get(base.role), curl["sets"].get(s.role)) if curl else (None, None)
    if _ok(cb) and _ok(ca):
        out["tolerance_ms"] = math.hypot(median_noise(cb["stats_ms"]), median_noise(ca["stats_ms"]))
        out["tolerance_source"] = "curl reference"
        out["reference_delta_ms"] = _median(ca) - _median(cb)
        out["reference_within_tolerance"] = abs(out["reference_delta_ms"]) <= out["tolerance_ms"]
    grew_any, all_compared = False, True
    for row in rows:
        if row["kind"] != "function" or row["new_since_before"]:
            continue
        b, a = row["sets"].get(base.role), row["sets"].get(s.role)
        if not (_ok(b) and _ok(a)):
            all_compared = False
            out["init"].append({"function": row["name"], "compared": False,
                                "reason": "not built in this set" if a is None
                                else "a build or a run failed"})
            continue
        vs = row["vs_before"][s.role]
        tol, source = out["tolerance_ms"], out["tolerance_source"]
        if tol is None:  # no reference rows: fall back on the function's own noise
            tol, source = vs["own_noise_ms"], "own samples"
        delta = vs["init_median_delta_ms"]
        grew = delta > tol
        grew_any |= grew
        out["init"].append({"function": row["name"], "compared": True,
                            "before_median_ms": _median(b), "median_ms": _median(a),
                            "delta_ms": delta, "ratio": vs["init_median_ratio"],
                            "tolerance_ms": tol, "tolerance_source": source,
                            "own_noise_ms": vs["own_noise_ms"], "grew": grew})
    if any(v["compared"] for v in out["init"]):
        # "Did not grow" needs every function of the before build compared.
        out["init_did_not_grow"] = (not grew_any) if all_compared else (False if grew_any
                                                                        else None)
    shrank_all = None
    for name in SHRINK_EXPECTED:
        row = next((r for r in rows if r["kind"] == "function" and r["name"] == name), None)
        b, a = (row["sets"].get(base.role), row["sets"].get(s.role)) if row else (None, None)
        zb, za = (b and b["zip_bytes"]), (a and a["zip_bytes"])
        if zb is None or za is None:
            out["zip"].append({"function": name, "compared": False})
            shrank_all = False if shrank_all is False else None
            continue
        shrank = za < zb
        out["zip"].append({"function": name, "compared": True, "before_bytes": zb,
                           "bytes": za, "delta_bytes": za - zb, "ratio": za / zb,
                           "shrank": shrank})
        shrank_all = shrank if shrank_all is None else (shrank_all and shrank)
    out["zip_shrank"] = shrank_all
    return out


def _goals(r: dict | None, kind: str) -> tuple[str, str]:
    """The goals' cells for today's result of a program."""
    if kind.endswith("reference") or r is None:
        return "", ""
    if r["failures"] or r["error"]:
        init_goal = "FAILED"
    else:
        init_goal = "pass" if r["stats_ms"] and r["stats_ms"]["median"] < INIT_GOAL_MS else "fail"
    z = r["zip_bytes"]
    return init_goal, "—" if z is None else ("pass" if z < ZIP_GOAL_BYTES else "fail")


def _label(row: dict) -> str:
    return row["label"] + (" *" if row["new_since_before"] else "")


def main_table(rows: list[dict], sets: list[BuildSet], short: bool = False
               ) -> tuple[list[str], list[list[str]]]:
    """Per program: median init of every set, the ratios of every later set to the first, the
    zip of every set and its ratios, the goals for today's build (the last set)."""
    base, later, today = sets[0], sets[1:], sets[-1]
    if short:
        header = (["function"] + [f"init {s.role}" for s in sets]
                  + [f"{s.role}/{base.role}" for s in later]
                  + [f"zip MB {s.role}" for s in sets] + [f"{s.role}/{base.role}" for s in later]
                  + ["init<10ms", "zip<6MB"])
    else:
        header = (["function"]
                  + [f"init median (ms) {s.role} {s.commit}" for s in sets]
                  + [f"init {s.role} / {base.role}" for s in later]
                  + [f"zip (MB) {s.role} {s.commit}" for s in sets]
                  + [f"zip {s.role} / {base.role}" for s in later]
                  + [f"init < 10 ms ({today.role})", f"zip < 6 MB ({today.role})"])
    table = []
    for row in rows:
        rs = [row["sets"].get(s.role) for s in sets]
        vs = [row["vs_before"].get(s.role, {}) for s in later]
        table.append([_label(row)]
                     + [fmt_ms(_median(r)) for r in rs]
                     + [fmt_ratio(v.get("init_median_ratio")) for v in vs]
                     + [fmt_mb(r and r["zip_bytes"]) for r in rs]
                     + [fmt_ratio(v.get("zip_ratio")) for v in vs]
                     + list(_goals(rs[-1], row["kind"])))
    return header, table


def details_table(rows: list[dict], sets: list[BuildSet]) -> tuple[list[str], list[list[str]]]:
    """Per program: runs that reached `next`, p90 init and binary size of every set."""
    runs = lambda r: "—" if r is None else f"{len(r['samples_ns'])}/{r['runs_attempted']}"  # noqa: E731
    header = (["function", "ok runs " + " · ".join(s.role for s in sets)]
              + [f"init p90 (ms) {s.role}" for s in sets]
              + [f"Δ init median vs {sets[0].role} (ms) {s.role}" for s in sets[1:]]
              + [f"binary (MB) {s.role}" for s in sets])
    table = []
    for row in rows:
        rs = [row["sets"].get(s.role) for s in sets]
        vs = [row["vs_before"].get(s.role, {}) for s in sets[1:]]
        delta = lambda v: ("—" if v.get("init_median_delta_ms") is None  # noqa: E731
                           else f"{v['init_median_delta_ms']:+.2f}")
        table.append([_label(row), " · ".join(runs(r) for r in rs)]
                     + [fmt_ms(((r and r["stats_ms"]) or {}).get("p90")) for r in rs]
                     + [delta(v) for v in vs]
                     + [fmt_mb(r and r["binary_bytes"]) for r in rs])
    return header, table


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["--:" if not h.startswith(("init <", "zip <")) else ":-:"
                       for h in header[1:]]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def _init_word(v: bool | None) -> str:
    return {True: "init did not grow", False: "init grew", None: "init not established"}[v]


def _zip_word(c: dict) -> str:
    names = ", ".join(z["function"] for z in c["zip"]) or "no"
    return {True: f"{names} zip shrank", False: f"{names} zip did not shrink",
            None: f"{names} zip not compared"}[c["zip_shrank"]]


def summary_lines(v: dict) -> list[str]:
    """One line per comparison, the requirement's first."""
    comps = sorted(v["comparisons"], key=lambda c: not c["is_requirement"])
    out = []
    for c in comps:
        what = "Requirement" if c["is_requirement"] else "For information"
        out.append(f"{what}, {c['role']} ({c['commit']}) against {c['before_role']} "
                   f"({c['before']}): {_init_word(c['init_did_not_grow'])}; {_zip_word(c)}.")
    return out


def verdict_lines(v: dict, rows: list[dict], sets: list[BuildSet]) -> list[str]:
    if not v["before"]:
        return ["Only today's build was measured (BASELINES=none): no verdicts."]
    lines = [f"- {line}" for line in summary_lines(v)] + [""]
    if any(c["tolerance_ms"] is not None for c in v["comparisons"]):
        lines.append(
            "Tolerance for init, per comparison: **T**, the noise of a difference of two medians "
            "shown by the curl reference in this run: each of its slots' medians (one slot per "
            "set, in the same rounds) has a distribution-free 95 % interval (order statistics), "
            "and T combines the half-widths of the before's slot and the compared set's "
            "(sqrt(h_before² + h_set²)). curl does what every init does outside the function's "
            "own code (spawn, loading, one connection and HTTP request to the stand-in) and "
            "nothing of it differs between slots, so a function's median moving by no more than "
            "T is indistinguishable from noise. A function's init *grew* when its median in the "
            "compared set exceeds its median before by more than T. Not a percentage: a fixed "
            "tolerance would be too loose on a quiet machine and too strict on a loaded one.")
        lines.append("")
    else:
        lines += ["No reference rows (--no-reference): each function's tolerance is its own "
                  "noise, the half-widths of its two medians' 95 % intervals combined.", ""]
    notes = {s.role: s.note for s in sets}
    for c in sorted(v["comparisons"], key=lambda c: not c["is_requirement"]):
        pair = f"{c['role']} ({c['commit']}) against {c['before_role']} ({c['before']})"
        if c["is_requirement"]:
            lines += [f"### The requirement: {pair}", ""]
            lines.append(
                f"{c['role']} is {notes.get(c['role']) or 'the set the requirement is about'}. "
                "The requirement (init must not grow; the stripe-webhook zip should shrink, as "
                "it no longer links the API) is judged on this comparison.")
        else:
            lines += [f"### For information: {pair}", ""]
            lines.append(
                f"{c['role']} is {notes.get(c['role']) or 'another build'}. Not the "
                "requirement's test: this build holds other changes besides the restructuring, "
                "so what it shows cannot be put down to the restructuring alone.")
        lines.append("")
        tol = c["tolerance_ms"]
        if tol is not None:
            check = (f"T = {tol:.3f} ms; the curl reference's own two slots (nothing differs "
                     f"between them) differ by {c['reference_delta_ms']:+.3f} ms")
            if c["reference_within_tolerance"] is False:
                lines.append(f"{check}, more than T. Warning: this run was noisier than T "
                             "assumes (other load?); rerun before trusting the init verdict.")
            else:
                lines.append(f"{check}, within T.")
            lines.append("")
        head = {True: "**Init did not grow**", False: "**Init grew**",
                None: "**Init: not established**"}[c["init_did_not_grow"]]
        lines.append(f"- {head}:")
        for f in c["init"]:
            if not f["compared"]:
                lines.append(f"  - {f['function']}: not compared ({f['reason']}, see Failures)")
                continue
            word = "grew" if f["grew"] else "did not grow"
            lines.append(
                f"  - {f['function']}: median {f['before_median_ms']:.2f} → "
                f"{f['median_ms']:.2f} ms, Δ {f['delta_ms']:+.3f} ms (ratio "
                f"{f['ratio']:.3f}) {'>' if f['grew'] else '≤'} T {f['tolerance_ms']:.3f} ms: "
                f"{word} (its own noise of the difference: {f['own_noise_ms']:.3f} ms)")
        for z in c["zip"]:
            if not z["compared"]:
                lines.append(f"- **{z['function']} zip: not compared** (missing from one build)")
                continue
            head = f"**{z['function']} zip shrank**" if z["shrank"] else \
                f"**{z['function']} zip did not shrink**"
            lines.append(
                f"- {head}: {z['before_bytes']:,} → {z['bytes']:,} bytes "
                f"({z['delta_bytes']:+,} bytes, ratio {z['ratio']:.3f}); sizes are exact, no "
                "tolerance.")
        new = [r["name"] for r in rows if r["new_since_before"] and c["role"] in r["sets"]]
        if new:
            lines.append(f"- New since {c['before']} (no before): {', '.join(new)}.")
        lines.append("")
    return lines[:-1] if lines and lines[-1] == "" else lines


def write_report(out: Path, meta: dict, results: list[dict], rows: list[dict], verdict: dict,
                 sets: list[BuildSet], args: argparse.Namespace) -> str:
    failures = [(f"{r['label']} ({r['set']})", f) for r in results
                for f in ([r["error"]] if r["error"] else []) + r["failures"]]
    several = len(sets) > 1
    title = "# Cold-start and package-size benchmark"
    if several:
        title += ": " + ", ".join(f"{s.role} ({s.commit})" for s in sets[:-1]) \
            + f" and {sets[-1].role} ({sets[-1].commit})"
    lines = [
        title,
        "",
        f"- Date (UTC): {meta['date_utc']}",
        f"- Machine: {meta['machine']['uname']}, {meta['machine']['nproc']} CPUs, "
        f"{meta['machine']['cpu']}",
        f"- Toolchain: {meta['machine']['rustc']}",
        f"- Command: `{meta['command']}`",
    ]
    for s in sets:
        lines.append(
            f"- Set **{s.role}**: commit {s.commit}" + (f", {s.note}" if s.note else "")
            + (f"; worktree `{s.worktree}`" if s.worktree else "")
            + f"; `{s.lambda_dir}`; build: {s.build}")
    lines += [
        f"- Runs: {args.runs} measured runs of every program after {args.warmup} warm-up "
        "run(s), interleaved: each round runs every program of every set once, one process at "
        f"a time, in a random order (seed {args.seed}), so drift, other load and whichever "
        "program ran just before fall on every set alike; took "
        f"{meta['bench_seconds']} s",
        f"- Load average (1/5/15 min) at start: {meta['loadavg_start']}, at end: "
        f"{meta['loadavg_end']} (other work on the machine inflates the figures)",
        "",
        "Init = time from spawning `bootstrap` to the arrival of its first "
        "`GET /2018-06-01/runtime/invocation/next` at a local Runtime API stand-in "
        "(127.0.0.1), process level. Goals (for today's build): median init < 10 ms, zipped "
        "package < 6 MB (MB = 10^6 bytes)."
        + (f" Ratios are a set's figure divided by {sets[0].role}'s ({sets[0].commit}). Every "
           "set runs with the same environment (template.yaml's variables of every commit "
           "measured: a build ignores the ones it does not read)." if several else ""),
        "",
        markdown_table(*main_table(rows, sets)),
        "",
    ]
    if any(r["new_since_before"] for r in rows):
        lines += [f"\\* New since {sets[0].commit}: no {sets[0].role}.", ""]
    lines += [
        "Details (p90 is nearest-rank; Δ is the difference of the medians):",
        "",
        markdown_table(*details_table(rows, sets)),
        "",
        "The reference rows are not functions: they show how much of the figure is process spawn "
        "and the stand-in's own overhead on this machine, with the same spawn and timing code. "
        "For /bin/true the time runs from spawn to its exit being reaped (it makes no request); "
        "for curl, from spawn to the arrival of its `next` request, exactly as for a function. "
        + ("Each is measured once per set, in slots of the same rounds: nothing differs between "
           "them, so their ratios show what noise alone does to a ratio." if several else ""),
        "",
        "## Verdicts",
        "",
        *verdict_lines(verdict, rows, sets),
        "",
        "Caveat: this is not the Lambda cold start. A real cold start adds sandbox creation and "
        "code download before the process starts, which cannot be measured locally; the "
        "figures also come from this machine's CPU, not Lambda's. The binaries were built for "
        f"{meta['target']}; template.yaml's default Architecture is arm64, whose package size "
        "differs slightly.",
    ]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- **{label}**: {msg}" for label, msg in failures]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text_table(*main_table(rows, sets, short=True))


# --- main -------------------------------------------------------------------------------------


@dataclass
class Slot:
    """One program measured in the interleaved rounds (a function of one set, or a reference)."""
    target: Target
    env_name: str
    result: dict
    consecutive: int = 0
    done: bool = False


def new_slot(t: Target, env_name: str, kind: str, label: str, set_name: str) -> Slot:
    result = {"label": label, "name": t.name, "set": set_name, "kind": kind, "argv": t.argv,
              "binary_bytes": t.binary_bytes, "zip_bytes": t.zip_bytes,
              "zip_source": t.zip_source, "samples_ns": [], "warmup_ns": [], "failures": [],
              "runs_attempted": 0, "error": t.error, "stats_ms": None}
    if t.error:
        print(f"FAILED {label} ({set_name}): {t.error}", file=sys.stderr)
    return Slot(t, env_name, result, done=bool(t.error))


def run_slot(server: RuntimeApiStandIn, slot: Slot, i: int, args: argparse.Namespace,
             logs: Path) -> None:
    t, result = slot.target, slot.result
    warm = i < args.warmup
    cwd = t.task_root or Path("/")
    env = lambda_env(slot.env_name, cwd, server.port)
    if result["kind"] == "exit-reference":
        run = measure_exit_once(t.argv, env, cwd, args.timeout)
    else:
        run = measure_once(server, t.argv, env, cwd, args.timeout,
                           logs / f"{result['set']}-{t.name}.log")
    if not warm:
        result["runs_attempted"] += 1
    label = f"{result['label']} ({result['set']})"
    if run.init_ns is None:
        msg = f"{'warm-up run' if warm else f'run {i + 1 - args.warmup}'}: {run.error}"
        result["failures"].append(msg)
        print(f"FAILED {label}: {msg}", file=sys.stderr)
        slot.consecutive += 1
        if slot.consecutive >= args.max_failures:
            result["failures"].append(f"gave up after {slot.consecutive} consecutive failures")
            print(f"FAILED {label}: giving up after {slot.consecutive} consecutive failures",
                  file=sys.stderr)
            slot.done = True
        return
    slot.consecutive = 0
    (result["warmup_ns"] if warm else result["samples_ns"]).append(run.init_ns)


def measure_rounds(server: RuntimeApiStandIn, slots: list[Slot], args: argparse.Namespace,
                   logs: Path) -> None:
    """Each round runs every program once, in a new random order (seeded: --seed), so that no
    program is always measured right after the same one (the one before can still be winding
    down: a fixed order showed a bias of a few percent between two slots of the same curl)."""
    rng = random.Random(args.seed)
    for i in range(args.warmup + args.runs):
        order = slots[:]
        rng.shuffle(order)
        for slot in order:
            if not slot.done:
                run_slot(server, slot, i, args, logs)
    for slot in slots:
        slot.result["stats_ms"] = summarize(slot.result["samples_ns"])


def _keyed(p: argparse.ArgumentParser, option: str, values: list[str] | None,
           roles: list[str]) -> dict[str, str]:
    """ROLE=VALUE options, each naming a set given by --before."""
    out: dict[str, str] = {}
    for v in values or []:
        role, sep, value = v.partition("=")
        if not sep or role not in roles:
            p.error(f"{option} wants ROLE=VALUE with ROLE one of --before's {roles}, got {v!r}")
        out[role] = value
    return out


def parse_sets(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[BuildSet]:
    """The earlier sets (--before, oldest first; the first is the before) and today's (last)."""
    sets: list[BuildSet] = []
    for i, spec in enumerate(args.before or []):
        role, sep, d = spec.partition("=")
        if not sep or not role.replace("-", "").replace("_", "").isalnum():
            # The older form, --before DIR: the one earlier set, named "before".
            role, d = ("before" if i == 0 else Path(spec).name), spec
        if role == "today" or any(s.role == role for s in sets):
            p.error(f"--before: set name {role!r} used twice (or 'today', which is today's)")
        sets.append(BuildSet(role, "", Path(d).absolute(), []))
    roles = [s.role for s in sets]
    commits = _keyed(p, "--before-commit", args.before_commit, roles)
    functions = _keyed(p, "--before-functions", args.before_functions, roles)
    notes = _keyed(p, "--before-note", args.before_note, roles)
    worktrees = _keyed(p, "--before-worktree", args.before_worktree, roles)
    builds = _keyed(p, "--before-build", args.before_build, roles)
    seconds = _keyed(p, "--before-build-seconds", args.before_build_seconds, roles)
    for s in sets:
        s.commit = commits.get(s.role) or s.lambda_dir.name
        if s.role in functions:
            s.functions = [f for f in functions[s.role].split(",") if f]
        elif s.lambda_dir.is_dir():
            s.functions = sorted(d.name for d in s.lambda_dir.iterdir() if d.is_dir())
        if not s.functions:
            p.error(f"--before {s.role}={s.lambda_dir}: no functions (neither "
                    "--before-functions nor subdirectories)")
        s.note = notes.get(s.role, "")
        s.worktree = worktrees.get(s.role)
        s.build = builds.get(s.role, s.build)
        s.build_seconds = int(seconds[s.role]) if seconds.get(s.role, "").isdigit() else None
    return sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lambda_dir", nargs="?", default=str(ROOT / "target" / "lambda"),
                   help="cargo lambda build output dir of today's build, the set `today` "
                        "(default: the repository's target/lambda)")
    p.add_argument("--before", action="append", metavar="ROLE=DIR",
                   help="cargo lambda build output dir of an earlier commit's build, measured "
                        "in the same run as the set named ROLE (repeatable, oldest first: the "
                        "first is the before every other set is compared with; bench/coldstart.sh "
                        "passes before=eeade17's and restructure=9daa5a3's). A bare DIR names "
                        "the set `before`")
    p.add_argument("--before-commit", action="append", metavar="ROLE=COMMIT",
                   help="that set's commit, for the report (default: the name of its DIR)")
    p.add_argument("--before-functions", action="append", metavar="ROLE=NAME,NAME",
                   help="that set's functions (default: the subdirectories of its DIR); one "
                        "listed but not built is a failure, one not listed is not in that set")
    p.add_argument("--before-note", action="append", metavar="ROLE=TEXT",
                   help="what that set is, for the report")
    p.add_argument("--before-worktree", action="append", metavar="ROLE=PATH",
                   help="the worktree it was built in, for the report")
    p.add_argument("--before-build", action="append", metavar="ROLE=TEXT",
                   help="how it was built, for the report")
    p.add_argument("--before-build-seconds", action="append", metavar="ROLE=N",
                   help="its build time, for the JSON")
    p.add_argument("--today-build", metavar="TEXT", default="not by this command",
                   help="how today's set was built, for the report")
    p.add_argument("--today-build-seconds", type=int, metavar="N", help="its build time")
    p.add_argument("--today-note", metavar="TEXT", default="", help="what today's set is")
    p.add_argument("--requirement", metavar="ROLE",
                   help="the set whose comparison with the before is the requirement's test "
                        "(default: today's; bench/coldstart.sh passes restructure)")
    # 100: on this shared machine a median of 30 runs moves by 0.4-2 ms by chance, as much as
    # the before/after differences looked for; 100 rounds of three sets take about 20 s.
    p.add_argument("--runs", type=int, default=100,
                   help="measured runs per program (default 100)")
    p.add_argument("--warmup", type=int, default=1,
                   help="rounds before the measured ones, left out of the statistics (they warm "
                        "the page cache; default 1; kept in the JSON)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the random order of each round (default 1)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for a process's first `next` (default 10)")
    p.add_argument("--max-failures", type=int, default=3,
                   help="stop measuring a program after this many consecutive failures "
                        "(default 3)")
    p.add_argument("--function", action="append", dest="functions", metavar="NAME",
                   help=f"measure only this function (repeatable; default all of {FUNCTIONS} "
                        "and the earlier commits')")
    p.add_argument("--command", action="append", default=[], metavar="NAME=CMD",
                   help="also measure an arbitrary command like a function, in today's set "
                        "(for checking the failure path, e.g. 'sleeper=/bin/sleep 60')")
    p.add_argument("--no-reference", "--no-baseline", dest="no_reference", action="store_true",
                   help="skip the reference rows (then each function's init tolerance is its "
                        "own noise)")
    p.add_argument("--target", default="x86_64-unknown-linux-gnu",
                   help="target triple the binaries were built for (for the report only)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "coldstart.md"),
                   help="Markdown results file; the JSON goes beside it with a .json suffix "
                        "(default: the repository's bench/results/coldstart.md)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.timeout <= 0 or args.max_failures < 1:
        p.error("--runs and --max-failures must be >= 1, --warmup >= 0, --timeout > 0")

    machine = machine_info()
    sets = parse_sets(p, args)
    sets.append(BuildSet("today", machine["commit"], Path(args.lambda_dir).absolute(),
                         FUNCTIONS[:], args.today_note, None, args.today_build,
                         args.today_build_seconds))
    roles = [s.role for s in sets]
    requirement = args.requirement or (roles[-1] if len(sets) > 1 else None)
    if requirement is not None and requirement not in roles[1:]:
        p.error(f"--requirement {requirement!r}: not one of the compared sets {roles[1:]}")
    out = Path(args.out).absolute()
    known = FUNCTIONS + [n for s in sets for n in s.functions if n not in FUNCTIONS]
    known = list(dict.fromkeys(known))
    names = args.functions if args.functions is not None else known
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown function(s) {unknown}; known: {known}")
    names = [n for n in known if n in names]  # the table's order
    for s in sets:
        s.functions = [n for n in names if n in s.functions]

    command = os.environ.get("COLDSTART_COMMAND") or " ".join(
        shlex.quote(a) for a in ["python3", os.path.relpath(__file__)] + sys.argv[1:])
    meta = {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine,
        "command": command,
        "sets": [s.meta() for s in sets],
        "requirement": requirement,
        "target": args.target,
        "runs": args.runs,
        "warmup": args.warmup,
        "interleaved": True,
        "order_seed": args.seed,
        "timeout_s": args.timeout,
        "loadavg_start": loadavg(),
        "goals": {"init_median_ms_below": INIT_GOAL_MS, "zip_bytes_below": ZIP_GOAL_BYTES},
    }

    server = RuntimeApiStandIn()
    server.start()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="coldstart-") as scratch_s:
        scratch = Path(scratch_s)
        logs = scratch / "logs"
        logs.mkdir()
        slots: list[Slot] = []
        if not args.no_reference:
            curl = shutil.which("curl") or "/usr/bin/curl"
            for s in sets:
                slots.append(new_slot(Target("true", argv=["/bin/true"], task_root=scratch),
                                      "true", "exit-reference",
                                      "(reference) process spawn + exit of /bin/true", s.role))
            for s in sets:
                ref = Target("curl", argv=[curl, "-s", "-o", "/dev/null", "--max-time", "5",
                                           f"http://127.0.0.1:{server.port}{NEXT_PATH}"],
                             task_root=scratch)
                slots.append(new_slot(ref, "curl", "reference",
                                      "(reference) process spawn + one HTTP request by curl",
                                      s.role))
        for name in names:
            for s in sets:
                if name in s.functions:
                    t = prepare_function(name, s.lambda_dir, scratch / "task" / s.role)
                    slots.append(new_slot(t, name, "function", name, s.role))
        for spec in args.command:
            t = prepare_command(spec)
            slots.append(new_slot(t, t.name, "command", f"{t.name} (command)", "today"))
        print(f"measuring {len(slots)} programs ({', '.join(roles)}), "
              f"{args.warmup} + {args.runs} interleaved rounds ...", file=sys.stderr)
        try:
            measure_rounds(server, slots, args, logs)
        finally:
            server.stop()
    meta["bench_seconds"] = round(time.monotonic() - started, 1)
    meta["loadavg_end"] = loadavg()
    results = [s.result for s in slots]
    rows = compare(results, sets)
    verdict = verdicts(rows, sets, requirement)

    table = write_report(out, meta, results, rows, verdict, sets, args)
    json_path = out.with_suffix(".json")
    comparison = [{k: v for k, v in r.items() if k != "sets"}
                  | {"sets": {role: _brief(res) for role, res in r["sets"].items()}}
                  for r in rows]
    json_path.write_text(json.dumps({"meta": meta, "verdicts": verdict,
                                     "comparison": comparison, "results": results},
                                    indent=2) + "\n")
    print(table)
    print()
    print("\n".join(summary_lines(verdict) if verdict["before"]
                    else verdict_lines(verdict, rows, sets)))
    show = lambda path: (os.path.relpath(path) if path.is_relative_to(Path.cwd())  # noqa: E731
                         else str(path))
    print(f"\nwrote {show(out)} and {show(json_path)} "
          f"({meta['bench_seconds']} s)")

    failed = [f"{r['label']} ({r['set']})" for r in results
              if not r["kind"].endswith("reference") and (r["error"] or r["failures"])]
    ref_failed = [f"{r['label']} ({r['set']})" for r in results
                  if r["kind"].endswith("reference") and (r["error"] or r["failures"])]
    if ref_failed:
        print(f"warning: reference measurement failed: {ref_failed}", file=sys.stderr)
    if failed:
        print(f"\nFAILED: {', '.join(failed)} did not (always) reach `next`; "
              "see the Failures section of the report", file=sys.stderr)
        return 1
    return 0


def _brief(r: dict | None) -> dict | None:
    """A result's numbers without its raw samples (those are under `results`)."""
    if r is None:
        return None
    return {"set": r["set"], "stats_ms": r["stats_ms"], "zip_bytes": r["zip_bytes"],
            "binary_bytes": r["binary_bytes"], "ok_runs": len(r["samples_ns"]),
            "runs_attempted": r["runs_attempted"], "failed": bool(r["error"] or r["failures"])}


if __name__ == "__main__":
    sys.exit(main())
