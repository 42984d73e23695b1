# shellcheck shell=bash
# Helpers shared by the client suites (sourced by run.sh, never run alone):
# TAP reporting with failure diagnostics, the logging runtime wrapper, command capture with a
# timeout, polling, and the stop-by-PID / leftover checks. Everything a suite creates lives
# under $T (a fresh `mktemp -d` per run); nothing here ever signals a process it did not start.

# ---------------------------------------------------------------------------------------------
# TAP
# ---------------------------------------------------------------------------------------------
TAP_N=0 TAP_PASS=0 TAP_FAIL=0 TAP_SKIP=0
FAILED_TESTS=()

# diag LINE... : TAP diagnostic lines (stdout, prefixed "# ")
diag() { local l; for l in "$@"; do printf '%s\n' "$l"; done | sed 's/^/#   /'; }

pass() {
    TAP_N=$((TAP_N + 1)); TAP_PASS=$((TAP_PASS + 1))
    echo "ok $TAP_N - ${SUITE:+$SUITE: }$1"
    mark_logs
}

# fail DESC [EXTRA-DIAG...]: prints the last captured command, its status and output, then what
# the runtime logged and which runtime invocations failed since the previous test.
fail() {
    local desc=$1; shift
    TAP_N=$((TAP_N + 1)); TAP_FAIL=$((TAP_FAIL + 1))
    FAILED_TESTS+=("$TAP_N ${SUITE:+$SUITE: }$desc")
    echo "not ok $TAP_N - ${SUITE:+$SUITE: }$desc"
    [ -n "${LAST_CMD:-}" ] && diag "command: $LAST_CMD" "status:  $RC"
    [ -n "${OUT:-}" ] && { diag "output:"; printf '%s\n' "$OUT" | head -n 25 | diag "$(cat)"; }
    [ $# -gt 0 ] && diag "$@"
    runtime_diag
    mark_logs
}

# skip DESC REASON: only for parts that cannot run on this host for a documented reason.
skip() {
    TAP_N=$((TAP_N + 1)); TAP_SKIP=$((TAP_SKIP + 1))
    echo "ok $TAP_N - ${SUITE:+$SUITE: }$1 # SKIP $2"
    mark_logs
}

# check DESC CONDITION-COMMAND... : pass if the condition command succeeds.
check() { local desc=$1; shift; if "$@"; then pass "$desc"; else fail "$desc"; fi; }

tap_summary() {
    echo "1..$TAP_N"
    if [ "$TAP_FAIL" -gt 0 ]; then
        echo "# failed tests:"
        printf '#   %s\n' "${FAILED_TESTS[@]}"
    fi
    echo "# ${KEEP_DIR:+logs and state kept in $KEEP_DIR, }$(( $(date +%s) - START_TS )) s"
    if [ "$TAP_SKIP" -gt 0 ]; then
        echo "$TAP_PASS passed, $TAP_FAIL failed, $TAP_SKIP skipped"
    else
        echo "$TAP_PASS passed, $TAP_FAIL failed"
    fi
}

# ---------------------------------------------------------------------------------------------
# running client commands
# ---------------------------------------------------------------------------------------------
# cap CMD... : run CMD with stdin from /dev/null and a timeout ($CMD_TIMEOUT s, default 60);
# stdout+stderr go to $OUT (trailing CRs stripped), the status to $RC. Never fails itself.
cap() {
    LAST_CMD="$*"
    OUT=$(timeout -k 5 "${CMD_TIMEOUT:-60}" "$@" </dev/null 2>&1 9>&-)
    RC=$?
    OUT=${OUT//$'\r'/}
    [ "$RC" = 124 ] && OUT+=$'\n'"(timed out after ${CMD_TIMEOUT:-60} s)"
    return 0
}

# q CMD... : quiet helper for setup/teardown steps whose failure is reported by a later check.
q() { timeout -k 5 "${CMD_TIMEOUT:-60}" "$@" </dev/null >/dev/null 2>&1 9>&-; }

# wait_for SECONDS CMD... : poll CMD every 0.1 s until it succeeds; status 1 on timeout.
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    until "$@"; do
        [ "$(date +%s%N)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# out_is STR / out_has STR / rc_is N : conditions on the last cap
out_is()  { [ "$OUT" = "$1" ]; }
out_has() { [[ $OUT == *"$1"* ]]; }
rc_is()   { [ "$RC" = "$1" ]; }
ok_and_out_is() { [ "$RC" = 0 ] && [ "$OUT" = "$1" ]; }

# ---------------------------------------------------------------------------------------------
# the runtime wrapper: every client calls $T/bin/runtime-<suite>, which records each invocation
# (time, status, argv) in calls.log and makes sure the runtime's own log reaches sgrun.log:
#  - when the client passes no --log (podman's conmon for some verbs, `--version` probes), the
#    wrapper adds `--log <suite log> --log-format json`;
#  - when it does (containerd's runc shim: <bundle>/log.json, removed with the bundle), the
#    wrapper copies what the runtime appended to that file once the command is done.
# --debug is always added, so the log has the runtime's own trace around a failure.
# With a DEFAULT_ROOT, `--root DEFAULT_ROOT` is added when the client passes no --root: podman
# passes none (the runtime's default, /run/<name>, would be used) and its --runtime-flag does not
# reach every call (`podman container cleanup` drops it), so state would be split in two roots.
# It waits for the runtime instead of exec'ing it; no client signals the runtime process itself
# (they use `kill`, detached `exec` with --pid-file, and create/start), so that is transparent.
# ---------------------------------------------------------------------------------------------
make_wrapper() {  # make_wrapper SUITE [DEFAULT_ROOT] -> path of the wrapper on stdout
    local suite=$1 dir=$T/logs/$1 w=$T/bin/runtime-$1 root=${2:-}
    mkdir -p "$dir" "$T/bin"
    : >"$dir/sgrun.log"; : >"$dir/calls.log"
    cat >"$w" <<EOF
#!/bin/sh
# generated by tests/clients/lib.sh: runtime $SGRUN for suite $suite, logging to $dir
RT='$SGRUN'; LOG='$dir/sgrun.log'; CALLS='$dir/calls.log'; DEFAULT_ROOT='$root'
EOF
    cat >>"$w" <<'EOF'
clientlog='' want='' hasroot=''
for a in "$@"; do          # global flags come before the verb; stop at the verb
    if [ -n "$want" ]; then [ "$want" = log ] && clientlog=$a; want=; continue; fi
    case $a in
        --log|-log) want=log ;;
        --log=*|-log=*) clientlog=${a#*=} ;;
        --root|-root) want=skip; hasroot=1 ;;
        --root=*|-root=*) hasroot=1 ;;
        --log-format|-log-format|--criu|--rootless) want=skip ;;
        -*) ;;
        *) break ;;
    esac
done
[ -n "$DEFAULT_ROOT" ] && [ -z "$hasroot" ] && set -- --root "$DEFAULT_ROOT" "$@"
start=$(date +%T.%N)
if [ -z "$clientlog" ]; then
    "$RT" --log "$LOG" --log-format json --debug "$@"
    rc=$?
else
    off=$(stat -c %s "$clientlog" 2>/dev/null || echo 0)
    "$RT" --debug "$@"
    rc=$?
    [ -f "$clientlog" ] && tail -c +$((off + 1)) "$clientlog" >>"$LOG"
fi
printf '%s rc=%s %s\n' "$start" "$rc" "$*" >>"$CALLS"
exit $rc
EOF
    chmod 755 "$w"
    echo "$w"
}

# Byte offsets into the current suite's logs at the end of the previous test.
LOG_MARK=0 CALLS_MARK=0
mark_logs() {
    [ -n "${SUITE:-}" ] && [ -f "$T/logs/$SUITE/sgrun.log" ] || return 0
    LOG_MARK=$(stat -c %s "$T/logs/$SUITE/sgrun.log")
    CALLS_MARK=$(stat -c %s "$T/logs/$SUITE/calls.log")
    LAST_CMD='' OUT='' RC=''
}

# runtime_diag: runtime invocations that failed, and error/warn log lines, since the last mark.
runtime_diag() {
    [ -n "${SUITE:-}" ] && [ -f "$T/logs/$SUITE/sgrun.log" ] || return 0
    local calls errs
    calls=$(tail -c +$((CALLS_MARK + 1)) "$T/logs/$SUITE/calls.log" | grep -v ' rc=0 ' | tail -n 8)
    errs=$(tail -c +$((LOG_MARK + 1)) "$T/logs/$SUITE/sgrun.log" \
             | grep -Ei '"level":"(error|warn|warning|fatal)"|^(time=.*level=)?(error|warn|fatal)' \
             | grep -v 'not supported on this system' | tail -n 12)
    [ -n "$calls" ] && diag "runtime invocations that failed:" "$calls"
    [ -n "$errs" ] && diag "runtime log (errors/warnings; 'cgroup X not supported' left out):" "$errs"
    return 0
}

# ---------------------------------------------------------------------------------------------
# daemons and leftovers
# ---------------------------------------------------------------------------------------------
# stop_pid PID [SECONDS]: SIGTERM, wait, then SIGKILL — only for PIDs this run started.
stop_pid() {
    local pid=$1 t=${2:-15}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    wait_for "$t" eval "! kill -0 $pid 2>/dev/null" || { kill -KILL "$pid" 2>/dev/null; sleep 0.2; }
    wait "$pid" 2>/dev/null || true
}

# mounts_under DIR: mount points at or below DIR (deepest first)
mounts_under() { awk -v d="$1" '{ m = $5; gsub(/\\040/, " ", m) } m == d || index(m, d "/") == 1 { print m }' /proc/self/mountinfo | sort -r; }

# unmount_under DIR: lazily unmount whatever is still mounted below DIR (cleanup only)
unmount_under() { local m; mounts_under "$1" | while read -r m; do umount -l "$m" 2>/dev/null || true; done; }

# cgroup_dirs NAME: every directory of cgroup NAME (absolute path from the hierarchy root) in
# every mounted hierarchy (v1 controllers and the unified one)
cgroup_dirs() {
    local h
    for h in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts | sort -u); do
        [ -d "$h$1" ] && echo "$h$1"
    done
}

# procs_in_cgroup NAME: PIDs in cgroup NAME or below, any hierarchy
procs_in_cgroup() {
    local d
    for d in $(cgroup_dirs "$1"); do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -un
}

# rm_cgroup NAME: remove the (empty) cgroup NAME and its children in every hierarchy
rm_cgroup() {
    local d
    for d in $(cgroup_dirs "$1"); do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    return 0
}

# ---------------------------------------------------------------------------------------------
# host paths: the clients create a few things outside their configured dirs (hard-coded in them,
# see README.md). Those that did not exist before the run are removed again if they hold nothing
# but empty directories, sockets or known empty/cache files; anything else is a leftover.
# ---------------------------------------------------------------------------------------------
HOST_PATHS=(/run/containerd /run/docker /var/lib/containers /var/lib/cni /run/containers
            /run/libpod /etc/cni/net.d/cni.lock /dev/shm/libpod_lock /opt/containerd
            /var/lib/containerd /var/lib/docker /etc/docker /run/netns /var/run/docker.sock)
declare -A HOST_PATH_EXISTED=()
host_paths_before() { local p; for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && HOST_PATH_EXISTED[$p]=1; done; return 0; }

# _tidy PATH: delete empty files, podman's blob-info cache and then empty directories in PATH;
# status 0 if PATH is gone. Sockets are never deleted: a live one belongs to someone's shim.
_tidy() {
    find "$1" \( -type f -empty -o -type f -name blob-info-cache-v1.boltdb \) -delete 2>/dev/null
    [ -d "$1" ] && find "$1" -depth -type d -empty -delete 2>/dev/null
    [ ! -e "$1" ]
}

leftovers_check() {
    local p left=() removed=() procs mnts cgs
    for p in "${HOST_PATHS[@]}"; do
        [ -e "$p" ] && [ -z "${HOST_PATH_EXISTED[$p]:-}" ] || continue
        if _tidy "$p"; then removed+=("$p"); else left+=("$p: $(find "$p" ! -type d | head -n 5 | tr '\n' ' ')"); fi
    done
    procs=$(pgrep -af -- "$T" | grep -v "^$$ ")
    mnts=$(mounts_under "$T")
    cgs=$(for h in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts | sort -u); do
              find "$h" -maxdepth 2 -type d -name "$RUN_TAG*" 2>/dev/null; done)
    [ ${#removed[@]} -gt 0 ] && echo "# removed host paths the clients created: ${removed[*]}"
    if [ ${#left[@]} = 0 ] && [ -z "$procs$mnts$cgs" ]; then
        pass "nothing left behind (processes, mounts under $T, cgroups $RUN_TAG*, host paths)"
    else
        fail "nothing left behind" ${procs:+"processes: $procs"} ${mnts:+"mounts: $mnts"} \
            ${cgs:+"cgroups: $cgs"} "${left[@]/#/host path: }"
        unmount_under "$T"
        for p in $cgs; do find "$p" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    fi
}
