#!/usr/bin/env bash
# Cold-start and package-size benchmark (`make bench`), before, between and after: builds
# today's Lambda functions in release, zipped as deployed, into target/lambda, and the functions
# of earlier commits (BASELINES, default "eeade17 9daa5a3": the design before issue 10's
# restructuring, and the restructuring alone, its direct child) the same way, each from its own
# git worktree with its own Cargo.lock; then runs bench/coldstart.py, which measures every set
# interleaved in one run and writes one table with the sets side by side to
# bench/results/coldstart.md and coldstart.json.
#
#   bench/coldstart.sh                    build the three sets (a baseline's first build takes
#                                         about ten minutes on the shared 2-core machine), measure
#   SKIP_BUILD=1 bench/coldstart.sh       reuse the last builds of every set
#   SKIP_BUILD="today eeade17" ...        skip only these sets' builds (today or a commit)
#   BASELINES="<commit> [<commit> ...]"   the earlier sets, oldest first: the first is the
#                                         "before" every other set is compared with (default
#                                         "eeade17 9daa5a3"); BASELINES=none: today's only
#   BASELINE=<commit>                     the older form: one earlier set
#
# Extra arguments go to coldstart.py (e.g. --runs 100). Each baseline: a worktree in
# bench/.work/baseline (eeade17, shared with bench/usage.sh) or bench/.work/baseline-<commit>,
# built with CARGO_TARGET_DIR=bench/.work/target (never target/; shared by the baselines, so
# dependencies compiled alike are reused: cargo keys artifacts by their inputs) into
# bench/.work/lambda-<commit>; all ignored by git. Builds run under `nice -n 10` (the machine is
# shared) and refuse to start with less than 15 GB free.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAMBDA_DIR="$ROOT/target/lambda"  # coldstart.py's default too
FUNCTIONS=(api usage-matcher billing-run stripe-webhook dashboard webhook-dispatcher)
WORK="$ROOT/bench/.work"
BASELINE_TARGET="$WORK/target"
export PATH="$ROOT/infra/.venv/bin:$PATH"  # the pinned cargo-lambda

say() { echo "coldstart.sh: $*" >&2; }

# The command as called, for the report.
command="bench/coldstart.sh"
if [[ -n "${BASELINES:-}" ]]; then
    command="BASELINES=$(printf '%q' "$BASELINES") $command"
elif [[ -n "${BASELINE:-}" ]]; then
    command="BASELINE=$BASELINE $command"
fi
[[ -n "${SKIP_BUILD:-}" ]] && command="SKIP_BUILD=$(printf '%q' "$SKIP_BUILD") $command"
(($#)) && command+="$(printf ' %q' "$@")"

read -r -a baselines <<<"${BASELINES:-${BASELINE:-eeade17 9daa5a3}}"
[[ "${baselines[*]}" == none ]] && baselines=()

# The name of a set in the table and the JSON: the first baseline is "before" (the one every
# other set is compared with), 9daa5a3 after it "restructure", any other its commit.
role_of() {
    if ((${#seen[@]} == 1)); then
        echo before
    elif [[ "$1" == 9daa5a3 ]]; then
        echo restructure
    else
        echo "$1"
    fi
}
note_of() {
    case "$1" in
        eeade17) echo "the design before issue 10's restructuring (stripe-webhook links the api crate)" ;;
        9daa5a3) echo "issue 10's restructuring alone (\"Split the house into rooms\", eeade17's direct child: domain crate apart from adapters and HTTP edge, stripe-webhook no longer links the api crate)" ;;
        *) echo "commit $1" ;;
    esac
}

# SKIP_BUILD=1 skips every build; otherwise a list of sets ("today" and/or commits) to skip.
skip_build() {
    local set="$1" s
    [[ "${SKIP_BUILD:-}" == 1 ]] && return 0
    for s in ${SKIP_BUILD:-}; do
        [[ "$s" == "$set" ]] && return 0
        # A commit may be named by any unambiguous prefix or name git knows.
        [[ "$set" != today && "$s" != today ]] &&
            [[ "$(git -C "$ROOT" rev-parse --short=7 --verify --quiet "$s^{commit}" || true)" == "$set" ]] &&
            return 0
    done
    return 1
}

check_disk() {
    local free_kb
    free_kb="$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')"
    if ((free_kb < 15 * 1024 * 1024)); then
        say "error: only $((free_kb / 1024 / 1024)) GB free; 15 GB are needed for a release build"
        exit 1
    fi
}

# Builds packages "$@" (in the current directory's workspace) into lambda dir $1.
lambda_build() {
    local dir="$1" packages=()
    shift
    for f in "$@"; do packages+=(-p "$f"); done
    # --output-format zip leaves <name>/bootstrap.zip; coldstart.py measures that zip and runs
    # the bootstrap it extracts from it, so what is measured is what is deployed.
    nice -n 10 cargo lambda build --release --locked --x86-64 --output-format zip \
        --lambda-dir "$dir" "${packages[@]}"
}

# infra/.venv holds the pinned cargo-lambda (a no-op when already installed).
"$ROOT/infra/install.sh"

today_args=(--today-build "skipped (SKIP_BUILD)")
if ! skip_build today; then
    check_disk
    say "building today's ${FUNCTIONS[*]} (release, x86_64, zip) into target/lambda"
    start=$SECONDS
    (cd "$ROOT" && lambda_build "$LAMBDA_DIR" "${FUNCTIONS[@]}")
    took=$((SECONDS - start))
    today_args=(--today-build "\`cargo lambda build --release --locked --x86-64 --output-format zip\`, $took s"
                --today-build-seconds "$took")
    say "build of today's took $took s"
fi

before_args=()
build_failed=0
has_restructure=0
seen=()
for baseline in "${baselines[@]}"; do
    commit="$(git -C "$ROOT" rev-parse --short=7 --verify --quiet "$baseline^{commit}")" ||
        { say "error: $baseline is not a commit of this clone (a shallow clone?)"; exit 1; }
    [[ " ${seen[*]} " == *" $commit "* ]] && { say "error: $commit listed twice"; exit 1; }
    seen+=("$commit")
    role="$(role_of "$commit")"
    [[ "$role" == restructure ]] && has_restructure=1
    if [[ "$commit" == eeade17 ]]; then
        worktree="$WORK/baseline"  # the one bench/usage.sh uses
    else
        worktree="$WORK/baseline-$commit"
    fi
    lambda_dir="$WORK/lambda-$commit"
    if [[ ! -e "$worktree/.git" ]]; then
        mkdir -p "$WORK"
        git -C "$ROOT" worktree prune
        git -C "$ROOT" worktree add --detach "$worktree" "$commit" >&2
    fi
    [[ "$(git -C "$worktree" rev-parse --short=7 HEAD)" == "$commit" ]] ||
        { say "error: ${worktree#"$ROOT/"} is not at $commit"; exit 1; }
    # The commit's functions: its functions/ crates (eeade17 and 9daa5a3: api usage-matcher
    # billing-run stripe-webhook).
    functions=()
    for manifest in "$worktree"/functions/*/Cargo.toml; do
        functions+=("$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -1)")
    done
    build="skipped (SKIP_BUILD)"
    build_seconds=()
    if ! skip_build "$commit"; then
        check_disk
        say "building $commit's ${functions[*]} (release, x86_64, zip, its Cargo.lock) into ${lambda_dir#"$ROOT/"}"
        start=$SECONDS
        if (cd "$worktree" && export CARGO_TARGET_DIR="$BASELINE_TARGET" &&
            lambda_build "$lambda_dir" "${functions[@]}"); then
            took=$((SECONDS - start))
            build="the same command in \`${worktree#"$ROOT/"}\` with CARGO_TARGET_DIR=\`${BASELINE_TARGET#"$ROOT/"}\`, $took s"
            build_seconds=(--before-build-seconds "$role=$took")
            say "build of $commit took $took s"
        else
            # Measure the others anyway: the report lists this set's missing zips as failures.
            build_failed=1
            build="FAILED after $((SECONDS - start)) s (see the build output)"
            say "error: the build of $commit failed; measuring what exists"
        fi
    fi
    before_args+=(--before "$role=$lambda_dir" --before-commit "$role=$commit"
                  --before-worktree "$role=${worktree#"$ROOT/"}"
                  --before-note "$role=$(note_of "$commit")"
                  --before-functions "$role=$(IFS=,; echo "${functions[*]}")"
                  --before-build "$role=$build" "${build_seconds[@]}")
done
# Which comparison with the first set is the requirement's test: the restructuring alone when
# it is measured, otherwise today's.
((has_restructure)) && before_args+=(--requirement restructure)
# What today's set is: the commits after the last earlier set.
today_note="the working tree at HEAD"
if ((${#seen[@]})); then
    last="${seen[-1]}"
    today_note+=", $(git -C "$ROOT" rev-list --count --first-parent "$last..HEAD") first-parent commits after $last"
    [[ "$last" == 9daa5a3 ]] && today_note+=" (the restructuring plus the rest of issue 10's work and issues 11-14: the dashboard, the usage storage design, LocalStack, outgoing webhooks with an outbox and SQS nudges)"
fi
today_args+=(--today-note "$today_note")

status=0
COLDSTART_COMMAND="$command" python3 "$ROOT/bench/coldstart.py" \
    --target x86_64-unknown-linux-gnu "${today_args[@]}" "${before_args[@]}" "$@" || status=$?
((build_failed)) && ((status == 0)) && status=1
exit "$status"
