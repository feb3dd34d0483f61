#!/usr/bin/env bash
# Local AWS stack without Docker: moto server (SQS and the other AWS APIs) and the official
# DynamoDB Local, with template.yaml's tables and queues created by infra/bootstrap.py.
#
#   infra/stack.sh start  [NAME]   start (or reuse) stack NAME and write its env file
#   infra/stack.sh stop   [NAME]   stop stack NAME (only processes this script started)
#   infra/stack.sh status [NAME]   exit 0 when both servers run and answer, 3 otherwise
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
set -euo pipefail
# Without job control, a background job stays in this script's process group, so `setsid` below
# can make it a session leader in place instead of forking: $! is then the server's own pid.
set +m

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$INFRA_DIR")"
VENV="$INFRA_DIR/.venv"
PY="$VENV/bin/python"
DDB_DIR="$INFRA_DIR/.cache/dynamodb-local"
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

stop_all() {
    stop_service moto
    stop_service dynamodb
    # The env file names endpoints that no longer answer: don't let anyone source it.
    rm -f "$STATE/env"
}

# --- Readiness ----------------------------------------------------------------------------

# Polls both servers until they answer, for at most TIMEOUT seconds (0: one try). Prints the
# services that didn't answer. Fails fast when a server process has died.
wait_ready() { # TIMEOUT
    "$PY" - "$1" "$(recorded_port moto)" "$(recorded_port dynamodb)" \
        "$(recorded_pid moto)" "$(recorded_pid dynamodb)" <<'EOF'
import http.client, sys, time, urllib.request

timeout, moto_port, ddb_port, moto_pid, ddb_pid = float(sys.argv[1]), *sys.argv[2:]

def answers(request):
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, HTTP error, garbled
        return False

def moto():
    return answers(f"http://127.0.0.1:{moto_port}/moto-api/")

def dynamodb():
    # A real ListTables call. DynamoDB Local wants a SigV4-shaped Authorization header (it
    # reads the access key and region from it) but does not check the signature.
    return answers(urllib.request.Request(
        f"http://127.0.0.1:{ddb_port}/", data=b"{}", method="POST",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, "
                             "SignedHeaders=host, Signature=0",
        }))

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

pending = {"moto": (moto, moto_pid), "dynamodb": (dynamodb, ddb_pid)}
deadline = time.monotonic() + timeout
while True:
    for name, (probe, pid) in list(pending.items()):
        if probe():
            del pending[name]
    if not pending:
        sys.exit(0)
    if time.monotonic() >= deadline or not all(alive(pid) for _, pid in pending.values()):
        print(" ".join(sorted(pending)))
        sys.exit(1)
    time.sleep(0.2)
EOF
}

# Prints "MOTO_PORT DDB_PORT": the ports this stack had last time when they are still free (so
# its env file stays the same across restarts), else ports the OS picks. Both sockets stay bound
# until both are chosen, so the two ports differ.
pick_ports() {
    "$PY" - "$(recorded_port moto || true)" "$(recorded_port dynamodb || true)" <<'EOF'
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

moto = bind("127.0.0.1", sys.argv[1])
# DynamoDB Local listens on every interface, so its port must be free on all of them.
ddb = bind("0.0.0.0", sys.argv[2])
print(moto.getsockname()[1], ddb.getsockname()[1])
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

cmd_start() {
    "$INFRA_DIR/install.sh"
    lock_stack

    local ddb_mode=(-dbPath "$STATE/ddb") in_memory=0
    if [[ "${DDB_IN_MEMORY:-0}" == 1 || "$NAME" == test ]]; then
        ddb_mode=(-inMemory)
        in_memory=1
    fi

    local reused=0
    if running moto && running dynamodb && wait_ready 0 >/dev/null &&
        # A DynamoDB started in the other storage mode (DDB_IN_MEMORY changed) is not reused.
        [[ "$(cat "$STATE/dynamodb.cmd")" == *" ${ddb_mode[*]}" ]]; then
        reused=1
    else
        # Whatever is left of an earlier run (one server died, or the mode changed) goes first.
        stop_all
        local ports moto_port ddb_port
        ports="$(pick_ports)" || die "could not find free ports"
        read -r moto_port ddb_port <<<"$ports"
        [[ "$in_memory" == 1 ]] || mkdir -p "$STATE/ddb"

        # Anything failing from here on (including Ctrl-C) stops what this run started, so a
        # failed start leaves no servers behind.
        trap stop_on_failure EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        trap 'exit 129' HUP

        launch moto "$moto_port" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port"
        # DynamoDB Local has no option for the address to bind: it listens on all interfaces,
        # not only 127.0.0.1. Clients here use 127.0.0.1; the port is a random free one.
        launch dynamodb "$ddb_port" java -Djava.library.path="$DDB_DIR/DynamoDBLocal_lib" \
            -jar "$DDB_DIR/DynamoDBLocal.jar" -port "$ddb_port" -sharedDb -disableTelemetry "${ddb_mode[@]}"

        local not_ready
        if ! not_ready="$(wait_ready "$READY_TIMEOUT")"; then
            for service in $not_ready; do show_log "$service"; done
            die "not ready within $READY_TIMEOUT s (or exited): $not_ready"
        fi
    fi

    local moto_url ddb_url
    moto_url="http://127.0.0.1:$(recorded_port moto)"
    ddb_url="http://127.0.0.1:$(recorded_port dynamodb)"
    "$PY" "$INFRA_DIR/bootstrap.py" --template "$ROOT/template.yaml" \
        --dynamodb-endpoint "$ddb_url" --moto-endpoint "$moto_url" --env-file "$STATE/env" >&2 ||
        die "bootstrap.py failed"

    local how="started"
    ((reused)) && how="reused running"
    say "stack $NAME: $how servers"
    say "  moto            $moto_url (pid $(recorded_pid moto))"
    say "  DynamoDB Local  $ddb_url (pid $(recorded_pid dynamodb), $( ((in_memory)) && echo in memory || echo "data in $STATE/ddb"))"
    say "  env file        $STATE/env   (load it with: . \"\$(infra/stack.sh env $NAME)\")"
    trap - EXIT INT TERM HUP
}

cmd_stop() {
    [[ -d "$STATE" ]] || return 0
    lock_stack
    stop_all
}

cmd_status() {
    local ok=0 service
    for service in moto dynamodb; do
        if running "$service"; then
            echo "$service: running, pid $(recorded_pid "$service"), port $(recorded_port "$service")"
        else
            echo "$service: stopped"
            ok=3
        fi
    done
    if ((ok == 0)); then
        local not_ready
        if not_ready="$(wait_ready 0)"; then
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

case "$COMMAND" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*) usage ;;
esac
