#!/usr/bin/env python3
"""Cold-start (process-level init) and package-size benchmark of the Lambda functions.

For each function's release `bootstrap` this script measures, against a tiny local stand-in of
the Lambda Runtime API, the time from process spawn to the process's first
`GET /2018-06-01/runtime/invocation/next` (that is, its whole init phase), and the size of the
deployment zip. It writes a Markdown report and a JSON file with the raw samples.

Standard library only (Python 3.11). Usually run through bench/coldstart.sh, which builds first.
Exit status: 0 when every run of every function reached `next`, 1 when any did not (a missed
goal is not an error: the figures are what they are), 2 on bad usage.
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

FUNCTIONS = ["api", "usage-matcher", "billing-run", "stripe-webhook", "dashboard"]
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
            self.server.arrivals.put(arrival)
            # Hold the request: the benchmark only needs its arrival time. Return as soon as the
            # client goes away (it is killed right after this) or the stand-in shuts down.
            self._hold()
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
    """A clean environment resembling Lambda's (nothing inherited from this shell)."""
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
        "USAGE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/UsageQueue",
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
    return {"min": ms[0], "median": statistics.median(ms), "p90": percentile(ms, 90),
            "max": ms[-1]}


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


def build_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        s = r["stats_ms"] or {}
        ok, total = len(r["samples_ns"]), r["runs_attempted"]
        if r["kind"].endswith("reference"):
            init_goal = zip_goal = ""
        else:
            if r["failures"] or r["error"]:
                init_goal = "FAILED"
            else:
                init_goal = "pass" if s and s["median"] < INIT_GOAL_MS else "fail"
            zb = r["zip_bytes"]
            zip_goal = "—" if zb is None else ("pass" if zb < ZIP_GOAL_BYTES else "fail")
        rows.append([r["label"], f"{ok}/{total}", fmt_ms(s.get("min")), fmt_ms(s.get("median")),
                     fmt_ms(s.get("p90")), fmt_ms(s.get("max")), fmt_mb(r.get("binary_bytes")),
                     fmt_mb(r.get("zip_bytes")), init_goal, zip_goal])
    return rows


HEADER = ["function", "ok runs", "init min (ms)", "median (ms)", "p90 (ms)", "max (ms)",
          "binary (MB)", "zip (MB)", "init < 10 ms", "zip < 6 MB"]


def markdown_table(rows: list[list[str]]) -> str:
    align = ["---"] + ["--:"] * 7 + [":-:", ":-:"]
    lines = ["| " + " | ".join(HEADER) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADER)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(HEADER), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def write_report(out: Path, meta: dict, results: list[dict], args: argparse.Namespace) -> str:
    rows = build_rows(results)
    failures = [(r["label"], f) for r in results
                for f in ([r["error"]] if r["error"] else []) + r["failures"]]
    lines = [
        "# Cold-start and package-size benchmark",
        "",
        f"- Date (UTC): {meta['date_utc']}",
        f"- Machine: {meta['machine']['uname']}, {meta['machine']['nproc']} CPUs, "
        f"{meta['machine']['cpu']}",
        f"- Toolchain: {meta['machine']['rustc']}",
        f"- Commit: {meta['machine']['commit']}",
        f"- Command: `{meta['command']}`",
        f"- Build output: `{meta['lambda_dir']}`; {args.runs} measured runs per function "
        f"after {args.warmup} warm-up run(s), one process at a time; took "
        f"{meta['bench_seconds']} s",
        f"- Load average (1/5/15 min) at start: {meta['loadavg_start']}, at end: "
        f"{meta['loadavg_end']} (other work on the machine inflates the figures)",
        "",
        "Init = time from spawning `bootstrap` to the arrival of its first "
        "`GET /2018-06-01/runtime/invocation/next` at a local Runtime API stand-in "
        "(127.0.0.1), process level. Goals: median init < 10 ms, zipped package < 6 MB "
        "(MB = 10^6 bytes). p90 is nearest-rank.",
        "",
        markdown_table(rows),
        "",
        "The reference rows are not functions: they show how much of the figure is process spawn "
        "and the stand-in's own overhead on this machine, with the same spawn and timing code. "
        "For /bin/true the time runs from spawn to its exit being reaped (it makes no request); "
        "for curl, from spawn to the arrival of its `next` request, exactly as for a function.",
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
    return text_table(rows)


# --- main -------------------------------------------------------------------------------------


def measure_target(server: RuntimeApiStandIn, t: Target, env_name: str, args: argparse.Namespace,
                   logs: Path, kind: str, label: str) -> dict:
    result = {"label": label, "name": t.name, "kind": kind, "argv": t.argv,
              "binary_bytes": t.binary_bytes, "zip_bytes": t.zip_bytes,
              "zip_source": t.zip_source, "samples_ns": [], "warmup_ns": [], "failures": [],
              "runs_attempted": 0, "error": t.error, "stats_ms": None}
    if t.error:
        print(f"FAILED {label}: {t.error}", file=sys.stderr)
        return result
    env = lambda_env(env_name, t.task_root or Path("/"), server.port)
    log_path = logs / f"{t.name}.log"
    consecutive = 0
    for i in range(args.warmup + args.runs):
        warm = i < args.warmup
        if kind == "exit-reference":
            run = measure_exit_once(t.argv, env, t.task_root or Path("/"), args.timeout)
        else:
            run = measure_once(server, t.argv, env, t.task_root or Path("/"), args.timeout,
                               log_path)
        if not warm:
            result["runs_attempted"] += 1
        if run.init_ns is None:
            msg = f"{'warm-up run' if warm else f'run {i + 1 - args.warmup}'}: {run.error}"
            result["failures"].append(msg)
            print(f"FAILED {label}: {msg}", file=sys.stderr)
            consecutive += 1
            if consecutive >= args.max_failures:
                result["failures"].append(
                    f"gave up after {consecutive} consecutive failures")
                print(f"FAILED {label}: giving up after {consecutive} consecutive failures",
                      file=sys.stderr)
                break
            continue
        consecutive = 0
        (result["warmup_ns"] if warm else result["samples_ns"]).append(run.init_ns)
    result["stats_ms"] = summarize(result["samples_ns"])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lambda_dir", nargs="?", default=str(ROOT / "target" / "lambda"),
                   help="cargo lambda build output dir (default: the repository's target/lambda)")
    p.add_argument("--runs", type=int, default=30, help="measured runs per function (default 30)")
    p.add_argument("--warmup", type=int, default=1,
                   help="runs before the measured ones, left out of the statistics (they warm the page cache; "
                        "default 1; kept in the JSON)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for a process's first `next` (default 10)")
    p.add_argument("--max-failures", type=int, default=3,
                   help="stop measuring a function after this many consecutive failures (default 3)")
    p.add_argument("--function", action="append", dest="functions", metavar="NAME",
                   help=f"measure only this function (repeatable; default all of {FUNCTIONS})")
    p.add_argument("--command", action="append", default=[], metavar="NAME=CMD",
                   help="also measure an arbitrary command like a function (for checking the "
                        "failure path, e.g. 'sleeper=/bin/sleep 60')")
    p.add_argument("--no-baseline", action="store_true", help="skip the reference rows")
    p.add_argument("--target", default="x86_64-unknown-linux-gnu",
                   help="target triple the binaries were built for (for the report only)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "coldstart.md"),
                   help="Markdown results file; the JSON goes beside it with a .json suffix "
                        "(default: the repository's bench/results/coldstart.md)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.timeout <= 0 or args.max_failures < 1:
        p.error("--runs and --max-failures must be >= 1, --warmup >= 0, --timeout > 0")

    lambda_dir = Path(args.lambda_dir).absolute()
    out = Path(args.out).absolute()
    names = args.functions if args.functions is not None else FUNCTIONS
    unknown = [n for n in names if n not in FUNCTIONS]
    if unknown:
        p.error(f"unknown function(s) {unknown}; known: {FUNCTIONS}")

    command = os.environ.get("COLDSTART_COMMAND") or " ".join(
        shlex.quote(a) for a in ["python3", os.path.relpath(__file__)] + sys.argv[1:])
    meta = {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "command": command,
        "lambda_dir": str(lambda_dir),
        "target": args.target,
        "runs": args.runs,
        "warmup": args.warmup,
        "timeout_s": args.timeout,
        "loadavg_start": loadavg(),
        "goals": {"init_median_ms_below": INIT_GOAL_MS, "zip_bytes_below": ZIP_GOAL_BYTES},
    }

    results: list[dict] = []
    server = RuntimeApiStandIn()
    server.start()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="coldstart-") as scratch_s:
        scratch = Path(scratch_s)
        logs = scratch / "logs"
        logs.mkdir()
        try:
            if not args.no_baseline:
                curl = shutil.which("curl") or "/usr/bin/curl"
                ref = Target("curl", argv=[curl, "-s", "-o", "/dev/null", "--max-time", "5",
                                           f"http://127.0.0.1:{server.port}{NEXT_PATH}"],
                             task_root=scratch)
                print("measuring references: /bin/true, curl ...", file=sys.stderr)
                results.append(measure_target(
                    server, Target("true", argv=["/bin/true"], task_root=scratch), "true", args,
                    logs, "exit-reference", "(reference) process spawn + exit of /bin/true"))
                results.append(measure_target(
                    server, ref, "curl", args, logs, "reference",
                    "(reference) process spawn + one HTTP request by curl"))
            for name in names:
                t = prepare_function(name, lambda_dir, scratch / "task")
                print(f"measuring {name} ...", file=sys.stderr)
                results.append(measure_target(server, t, name, args, logs, "function", name))
            for spec in args.command:
                t = prepare_command(spec)
                print(f"measuring command {t.name} ...", file=sys.stderr)
                results.append(measure_target(server, t, t.name, args, logs, "command",
                                              f"{t.name} (command)"))
        finally:
            server.stop()
    meta["bench_seconds"] = round(time.monotonic() - started, 1)
    meta["loadavg_end"] = loadavg()

    table = write_report(out, meta, results, args)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(table)
    show = lambda path: (os.path.relpath(path) if path.is_relative_to(Path.cwd())  # noqa: E731
                         else str(path))
    print(f"\nwrote {show(out)} and {show(json_path)} "
          f"({meta['bench_seconds']} s)")

    failed = [r["label"] for r in results
              if not r["kind"].endswith("reference") and (r["error"] or r["failures"])]
    ref_failed = [r["label"] for r in results
                  if r["kind"].endswith("reference") and (r["error"] or r["failures"])]
    if ref_failed:
        print(f"warning: reference measurement failed: {ref_failed}", file=sys.stderr)
    if failed:
        print(f"\nFAILED: {', '.join(failed)} did not (always) reach `next`; "
              "see the Failures section of the report", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
