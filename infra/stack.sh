#!/usr/bin/env bash
# Local AWS stack without Docker: moto server (SQS and the other AWS APIs) and the official
# DynamoDB Local, with template.yaml's tables and queues created by infra/bootstrap.py.
#
#   infra/stack.sh start  [NAME]   start (or reuse) stack NAME and write its env file
#   infra/stack.sh stop   [NAME]   stop stack NAME (only processes this script started)
#   infra/stack.sh status [NAME]   exit 0 when its servers run and answer, 3 otherwise
#   infra/stack.sh env    [NAME]   print the path of the env file:  . "$(infra/stack.sh env)"
#
# NAME defaults to "dev". Several stacks run side by side on their own free ports, each with its
# state (pids, ports, logs, env file, DynamoDB data) in infra/.local/NAME/. The "test" stack (or
# any stack with DDB_IN_MEMORY=1) keeps DynamoDB in memory; others keep it in .local/NAME/ddb.
# moto always keeps its state in memory: a restarted stack gets its queues back from bootstrap.py,
# but not their messages.
#
# A test script typically does:
#   infra/stack.sh start test && trap 'infra/stack.sh stop test' EXIT
#   . "$(infra/stack.sh env test)"
#
# STACK_ENGINE=localstack starts one LocalStack process (its community runtime, without Docker,
# offline) instead, serving DynamoDB (the same DynamoDB Local underneath), SQS, Scheduler and
# SES v1/v2; STACK_ENGINE=moto is the default. The engine is chosen at `start` (a running stack of
# the other engine is stopped first); stop, status and env work on whatever the stack runs.
# LocalStack (installed by infra/localstack/install.sh into infra/.cache/localstack) keeps
# everything in memory, whatever the stack's name: its persistence is not in the community build.
# Its env file points every AWS_ENDPOINT_URL* at its one port; queue URLs are
# http://127.0.0.1:PORT/queue/us-east-1/000000000000/NAME; sent mail is listed by
# GET http://127.0.0.1:PORT/_aws/ses (and counted by SES v1 GetSendQuota, as on moto).
# LOCALSTACK_EXTRA_SERVICES=a,b adds services (infra/deploy-localstack.sh adds CloudFormation,
# Lambda, IAM, S3, ...); its CloudFormation fails on resource types it cannot create, and its
# Lambda creates functions without Docker but cannot invoke them.
set -euo pipefail
# Without job control, a background job stays in this script's process group, so `setsid` below
# can make it a session leader in place instead of forking: $! is then the server's own pid.
set +m

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$INFRA_DIR")"
VENV="$INFRA_DIR/.venv"
PY="$VENV/bin/python"
DDB_DIR="$INFRA_DIR/.cache/dynamodb-local"
ENGINE="${STACK_ENGINE:-moto}"
LS_PY="$INFRA_DIR/.cache/localstack/venv/bin/python"
LS_LIBS="$INFRA_DIR/.cache/localstack/root/usr/lib/localstack" # Java, DynamoDB Local, catalog
# What the code uses: DynamoDB, SQS, Scheduler (retries), SES v2 (mail; our plugin) and SES v1
# (verifying the sender, as infra/payments.sh and the tests do). LOCALSTACK_EXTRA_SERVICES adds
# more to a stack at its start, e.g. what deploying template.yaml with CloudFormation needs
# (infra/deploy-localstack.sh); they are recorded, so `status` checks them too.
LS_SERVICES="dynamodb,sqs,scheduler,ses,sesv2${LOCALSTACK_EXTRA_SERVICES:+,$LOCALSTACK_EXTRA_SERVICES}"
LS_ACCOUNT_ID="000000000000" # LocalStack's account for the credentials bootstrap.py writes
# Set in LocalStack's environment only, so inherited by everything it starts (DynamoDB Local's
# JVM): `stop` finds such a child left behind by a LocalStack that died, and stops it too.
LS_MARKER="BILLING_LOCAL_STACK_STATE"
READY_TIMEOUT="${STACK_READY_TIMEOUT:-30}"  # seconds; the JVM alone needs 2-3 s
STOP_TIMEOUT=10                            # seconds between SIGTERM and SIGKILL

die() { echo "stack.sh: error: $*" >&2; exit 1; }
say() { echo "stack.sh: $*" >&2; }

usage() {
    sed -n '5,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# --- Processes we started -----------------------------------------------------------------
# Each server's state dir holds SERVICE.pid ("PID STARTTIME"), SERVICE.cmd (the argv we ran),
# SERVICE.port and SERVICE.log. A pid alone may have been reused by an unrelated process after
# ours exited; pid + start time (field 22 of /proc/PID/stat, fixed for a process's life) can't be:
# that is what `stop` checks before signalling. Reusing a server also needs its command line to
# be the one we launched (right port, right DynamoDB storage mode).

proc_stat_field() { # PID N: field N (>= 3) of /proc/PID/stat, after the "(comm)" that may hold spaces
    local stat rest fields
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    rest="${stat##*) }"
    read -r -a fields <<<"$rest"
    echo "${fields[$(($2 - 3))]}"
}

# True while SERVICE's recorded process exists (not as a zombie) and is the very process we
# forked: enough to know that signalling it hits nothing else.
alive() {
    local pid start
    [[ -f "$STATE/$1.pid" ]] || return 1
    read -r pid start <"$STATE/$1.pid" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ "$(proc_stat_field "$pid" 22)" == "$start" ]] || return 1
    [[ "$(proc_stat_field "$pid" 3)" != Z ]]
}

# True when SERVICE's recorded process is alive and runs the server we launched (not, say, the
# fork that has not reached its exec yet).
running() {
    local pid cmd actual
    alive "$1" && [[ -f "$STATE/$1.cmd" ]] || return 1
    pid="$(recorded_pid "$1")"
    cmd="$(cat "$STATE/$1.cmd")"
    actual="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    # moto_server is a Python script, so the kernel runs it as "python .../moto_server ...":
    # the argv we ran is then the end of the command line rather than all of it.
    [[ "${actual% }" == *"$cmd" ]]
}

recorded_pid() { cut -d' ' -f1 "$STATE/$1.pid" 2>/dev/null; }
recorded_port() { cat "$STATE/$1.port" 2>/dev/null; }

# Starts "$@" detached in its own session (so a Ctrl-C or a hangup meant for the caller doesn't
# reach it) with all output in the log and every descriptor beyond 0-2 closed: a server holding
# a caller's pipe (e.g. `out=$(stack.sh start)`, or bats' fd 3) would keep that caller waiting,
# and one holding our lock would block every later start/stop of this stack.
launch() {
    local service="$1" port="$2"
    shift 2
    (
        for fd in "/proc/$BASHPID/fd/"*; do
            fd="${fd##*/}"
            if ((fd > 2 && fd != 255)); then eval "exec $fd>&-"; fi
        done
        cd "$STATE" # DynamoDB Local writes dynamodb-local-metadata.json into its working directory
        exec setsid "$@"
    ) </dev/null >"$STATE/$service.log" 2>&1 &
    local pid=$!
    # Recorded before anything else can fail, so `stop` (ours on error, or a caller's trap) finds it.
    echo "$pid $(proc_stat_field "$pid" 22)" >"$STATE/$service.pid"
    echo "$*" >"$STATE/$service.cmd"
    echo "$port" >"$STATE/$service.port"
    # Returns once the fork has become the server (usually within milliseconds), so that from
    # here on `running` means what it says. A fork that exits instead is left to wait_ready,
    # which then shows its log.
    while alive "$service" && ! running "$service"; do sleep 0.01; done
}

stop_service() {
    local service="$1" pid start
    [[ -f "$STATE/$service.pid" ]] || return 0
    if alive "$service"; then
        read -r pid start <"$STATE/$service.pid"
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT))
        # Not our child, so `wait` can't be used: poll until it is gone. A zombie counts as gone;
        # its parent (init, once this script's start has exited) reaps it.
        while alive "$service"; do
            if ((SECONDS >= deadline)); then
                say "$service (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT} s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$((SECONDS + 5))
            fi
            sleep 0.1
        done
        say "stopped $service (pid $pid)"
    fi
    rm -f "$STATE/$service.pid" "$STATE/$service.cmd"
}

# Processes still carrying this stack's LocalStack marker (see LS_MARKER), e.g. the DynamoDB Local
# JVM of a LocalStack that crashed mid-start: LocalStack stops it itself when it shuts down
# normally. Matched on the exact variable, so nothing another stack or anyone else started.
stop_localstack_leftovers() {
    local file pid start
    for file in $(grep -lzxF "$LS_MARKER=$STATE" /proc/[0-9]*/environ 2>/dev/null || true); do
        pid="${file#/proc/}"
        pid="${pid%/environ}"
        start="$(proc_stat_field "$pid" 22)" || continue # gone meanwhile
        # Recorded like a service of ours, so stop_service's pid + start time checks apply.
        echo "$pid $start" >"$STATE/localstack-leftover.pid"
        stop_service localstack-leftover
    done
}

stop_all() {
    stop_service moto
    stop_service dynamodb
    if [[ -f "$STATE/localstack.pid" ]]; then
        stop_service localstack
        stop_localstack_leftovers
    fi
    # The env file names endpoints that no longer answer: don't let anyone source it.
    rm -f "$STATE/env"
}

# --- Readiness ----------------------------------------------------------------------------

# Polls SERVICEs until they answer, for at most TIMEOUT seconds (0: one try). Prints the
# services that didn't answer. Fails fast when a server process has died.
wait_ready() { # TIMEOUT SERVICE...
    local timeout="$1" service args=()
    shift
    for service in "$@"; do
        args+=("$service" "$(recorded_port "$service")" "$(recorded_pid "$service")")
    done
    LS_SERVICES="$LS_SERVICES" "$PY" - "$timeout" "${args[@]}" <<'EOF'
import http.client, json, os, sys, time, urllib.request

timeout, args = float(sys.argv[1]), sys.argv[2:]

def answers(request, check=None):
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200 and (check is None or check(response.read()))
    except (OSError, http.client.HTTPException, ValueError):  # refused, reset, timed out, HTTP error, garbled
        return False

def moto(port):
    return answers(f"http://127.0.0.1:{port}/moto-api/")

def dynamodb(port):
    # A real ListTables call. DynamoDB Local wants a SigV4-shaped Authorization header (it
    # reads the access key and region from it) but does not check the signature.
    return answers(urllib.request.Request(
        f"http://127.0.0.1:{port}/", data=b"{}", method="POST",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, "
                             "SignedHeaders=host, Signature=0",
        }))

def localstack(port):
    # Ready once every service we asked for runs (they start eagerly): a provider that failed
    # to load (say, the SES v2 plugin) shows as "error" or is missing, and is not ready.
    def all_running(body):
        services = json.loads(body).get("services", {})
        return all(services.get(name) == "running" for name in os.environ["LS_SERVICES"].split(","))
    return answers(f"http://127.0.0.1:{port}/_localstack/health", all_running)

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

probes = {"moto": moto, "dynamodb": dynamodb, "localstack": localstack}
pending = {args[i]: (args[i + 1], args[i + 2]) for i in range(0, len(args), 3)}
deadline = time.monotonic() + timeout
while True:
    for name, (port, pid) in list(pending.items()):
        if probes[name](port):
            del pending[name]
    if not pending:
        sys.exit(0)
    if time.monotonic() >= deadline or not all(alive(pid) for _, pid in pending.values()):
        print(" ".join(sorted(pending)))
        sys.exit(1)
    time.sleep(0.2)
EOF
}

# Prints a port for each HOST:SERVICE (moto and LocalStack bind 127.0.0.1; DynamoDB Local
# listens on every interface, 0.0.0.0): the port the service had last time when it is still free
# (so the stack's env file stays the same across restarts), else one the OS picks. All sockets
# stay bound until all are chosen, so the ports differ.
pick_ports() { # HOST:SERVICE...
    local spec args=()
    for spec in "$@"; do args+=("${spec%%:*}" "$(recorded_port "${spec#*:}" || true)"); done
    "$PY" - "${args[@]}" <<'EOF'
import socket, sys

def bind(host, preferred):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
    for port in ([int(preferred)] if preferred.isdigit() else []) + [0]:
        try:
            s.bind((host, port))
            return s
        except OSError:
            pass
    raise SystemExit("no free port")

args = sys.argv[1:]
sockets = [bind(args[i], args[i + 1]) for i in range(0, len(args), 2)]
print(*(s.getsockname()[1] for s in sockets))
EOF
}

show_log() { # SERVICE
    say "last lines of $STATE/$1.log:"
    tail -n 30 "$STATE/$1.log" >&2 || true
}

# --- Commands -----------------------------------------------------------------------------

lock_stack() {
    mkdir -p "$STATE"
    # One start/stop of a stack at a time (e.g. a test's EXIT trap racing a start).
    exec 8>"$STATE/.lock"
    flock -w 120 8 || die "stack $NAME is locked by another stack.sh for over 2 minutes"
}

stop_on_failure() {
    local status=$?
    ((status == 0)) || stop_all
    exit "$status"
}

# Anything failing from here on (including Ctrl-C) stops what this run started, so a failed
# start leaves no servers behind.
stop_all_on_failure() {
    trap stop_on_failure EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

bootstrap() { # DYNAMODB_URL OTHER_URL [bootstrap.py options]: tables, queues and the env file
    "$PY" "$INFRA_DIR/bootstrap.py" --template "$ROOT/template.yaml" \
        --dynamodb-endpoint "$1" --moto-endpoint "$2" --env-file "$STATE/env" "${@:3}" >&2 ||
        die "bootstrap.py failed"
}

# The engine a stack was last started with (status checks that one), else STACK_ENGINE's.
stack_engine() { cat "$STATE/engine" 2>/dev/null || echo "$ENGINE"; }

services_of() { # ENGINE
    case "$1" in
    localstack) echo localstack ;;
    *) echo moto dynamodb ;;
    esac
}

cmd_start() {
    "$INFRA_DIR/install.sh"
    if [[ "$ENGINE" == localstack ]]; then
        "$INFRA_DIR/localstack/install.sh"
        lock_stack
        start_localstack
        return
    fi
    lock_stack

    local ddb_mode=(-dbPath "$STATE/ddb") in_memory=0
    if [[ "${DDB_IN_MEMORY:-0}" == 1 || "$NAME" == test ]]; then
        ddb_mode=(-inMemory)
        in_memory=1
    fi

    local reused=0
    if running moto && running dynamodb && wait_ready 0 moto dynamodb >/dev/null &&
        # A DynamoDB started in the other storage mode (DDB_IN_MEMORY changed) is not reused.
        [[ "$(cat "$STATE/dynamodb.cmd")" == *" ${ddb_mode[*]}" ]]; then
        reused=1
    else
        # Whatever is left of an earlier run (one server died, the mode or the engine changed)
        # goes first.
        stop_all
        local ports moto_port ddb_port
        ports="$(pick_ports 127.0.0.1:moto 0.0.0.0:dynamodb)" || die "could not find free ports"
        read -r moto_port ddb_port <<<"$ports"
        [[ "$in_memory" == 1 ]] || mkdir -p "$STATE/ddb"

        stop_all_on_failure
        echo moto >"$STATE/engine"
        launch moto "$moto_port" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port"
        # DynamoDB Local has no option for the address to bind: it listens on all interfaces,
        # not only 127.0.0.1. Clients here use 127.0.0.1; the port is a random free one.
        launch dynamodb "$ddb_port" java -Djava.library.path="$DDB_DIR/DynamoDBLocal_lib" \
            -jar "$DDB_DIR/DynamoDBLocal.jar" -port "$ddb_port" -sharedDb -disableTelemetry "${ddb_mode[@]}"

        local not_ready
        if ! not_ready="$(wait_ready "$READY_TIMEOUT" moto dynamodb)"; then
            for service in $not_ready; do show_log "$service"; done
            die "not ready within $READY_TIMEOUT s (or exited): $not_ready"
        fi
    fi

    local moto_url ddb_url
    moto_url="http://127.0.0.1:$(recorded_port moto)"
    ddb_url="http://127.0.0.1:$(recorded_port dynamodb)"
    bootstrap "$ddb_url" "$moto_url"

    local how="started"
    ((reused)) && how="reused running"
    say "stack $NAME: $how servers"
    say "  moto            $moto_url (pid $(recorded_pid moto))"
    say "  DynamoDB Local  $ddb_url (pid $(recorded_pid dynamodb), $( ((in_memory)) && echo in memory || echo "data in $STATE/ddb"))"
    say "  env file        $STATE/env   (load it with: . \"\$(infra/stack.sh env $NAME)\")"
    trap - EXIT INT TERM HUP
}

# STACK_ENGINE=localstack: one LocalStack process on a free loopback port (the lock is held).
start_localstack() {
    local reused=0 root="$STATE/localstack"
    if running localstack && wait_ready 0 localstack >/dev/null; then
        reused=1
    else
        stop_all
        local port
        port="$(pick_ports 127.0.0.1:localstack)" || die "could not find a free port"
        # A filesystem root per stack, as LocalStack clears <root>/tmp when it starts and stops;
        # its static libs (Java, DynamoDB Local, the service catalog) are shared, prepared by
        # infra/localstack/install.sh.
        mkdir -p "$root/usr/lib"
        ln -sfn "$LS_LIBS" "$root/usr/lib/localstack"

        stop_all_on_failure
        echo localstack >"$STATE/engine"
        echo "$LS_SERVICES" >"$STATE/localstack.services"
        (
            # OVERRIDE_IN_DOCKER=0: this machine carries Docker's marker file, and LocalStack
            # would otherwise use its container folders instead of FILESYSTEM_ROOT.
            export OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$root" XDG_CACHE_HOME="$root/cache"
            export GATEWAY_LISTEN="127.0.0.1:$port" SERVICES="$LS_SERVICES" EAGER_SERVICE_LOADING=1
            # Queue URLs as http://127.0.0.1:PORT/queue/REGION/ACCOUNT/NAME, which resolve offline
            # (the default host, *.localhost.localstack.cloud, needs DNS).
            export LOCALSTACK_HOST="127.0.0.1:$port" SQS_ENDPOINT_STRATEGY=path
            # In memory: LocalStack's persistence is not in the community build.
            export DYNAMODB_IN_MEMORY=1
            # Offline and quiet: no certificate download, no usage reporting, no DNS server.
            export SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 DNS_ADDRESS=0
            # CloudFormation fails on a resource type it has no provider for, instead of
            # reporting it created (LocalStack's default): a deploy is CREATE_COMPLETE only when
            # every resource exists.
            export CFN_IGNORE_UNSUPPORTED_RESOURCE_TYPES=0
            # Lambda functions are created without Docker and never run: our executor plugin
            # (infra/localstack/offline_plugins); the dev server runs the handlers.
            export LAMBDA_RUNTIME_EXECUTOR=no-docker
            export "$LS_MARKER=$STATE"
            launch localstack "$port" "$LS_PY" -m localstack.runtime.main
        )

        local not_ready
        if ! not_ready="$(wait_ready "$READY_TIMEOUT" localstack)"; then
            show_log localstack
            die "not ready within $READY_TIMEOUT s (or exited): $not_ready"
        fi
    fi

    local url
    url="http://127.0.0.1:$(recorded_port localstack)"
    # Both endpoints at LocalStack; ARNs made up by bootstrap.py (the scheduler role, the billing
    # run function) get LocalStack's account, like the queue and table ARNs it reports.
    bootstrap "$url" "$url" --account-id "$LS_ACCOUNT_ID"

    local how="started"
    ((reused)) && how="reused running"
    say "stack $NAME: $how LocalStack"
    say "  LocalStack      $url (pid $(recorded_pid localstack); DynamoDB, SQS, Scheduler, SES v1 and v2; in memory)"
    say "  sent mail       GET $url/_aws/ses"
    say "  env file        $STATE/env   (load it with: . \"\$(infra/stack.sh env $NAME)\")"
    trap - EXIT INT TERM HUP
}

cmd_stop() {
    [[ -d "$STATE" ]] || return 0
    lock_stack
    stop_all
}

cmd_status() {
    local ok=0 service services
    # The services a LocalStack stack was started with (LOCALSTACK_EXTRA_SERVICES included).
    LS_SERVICES="$(cat "$STATE/localstack.services" 2>/dev/null || echo "$LS_SERVICES")"
    read -r -a services <<<"$(services_of "$(stack_engine)")"
    for service in "${services[@]}"; do
        if running "$service"; then
            echo "$service: running, pid $(recorded_pid "$service"), port $(recorded_port "$service")"
        else
            echo "$service: stopped"
            ok=3
        fi
    done
    if ((ok == 0)); then
        local not_ready
        if not_ready="$(wait_ready 0 "${services[@]}")"; then
            echo "env file: $STATE/env"
        else
            echo "not answering: $not_ready"
            ok=3
        fi
    fi
    return "$ok"
}

cmd_env() {
    [[ -f "$STATE/env" ]] || die "stack $NAME has no env file: run infra/stack.sh start $NAME"
    echo "$STATE/env"
}

[[ $# -ge 1 && $# -le 2 ]] || usage
COMMAND="$1"
NAME="${2:-dev}"
[[ "$NAME" =~ ^[A-Za-z0-9_-]+$ ]] || die "stack name must be letters, digits, - or _: $NAME"
STATE="$INFRA_DIR/.local/$NAME"
[[ "$ENGINE" == moto || "$ENGINE" == localstack ]] || die "STACK_ENGINE must be moto or localstack, not: $ENGINE"

case "$COMMAND" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*) usage ;;
esac
