#!/bin/bash
# sgrun benchmark: sgrun beside runc and crun, same bundles, same flags, same mount namespace.
#
#   tests/bench/run.sh [--rounds N] [--runtimes "sgrun runc crun"] [--out FILE] [--json FILE]
#                      [--scale-rounds N] [--scale N] [--timeout S] [--settle MS] [--keep]
#                      [--ops "run csd exec rss"]   (the per-round ops; tests/bench/exec.sh: exec)
#
# Environment: SGRUN (default <repo>/target/x86_64-unknown-linux-gnu/release/sgrun), RUNC, CRUN (default: on PATH);
# any other runtime name NAME is looked up as $NAME (upper case, - as _) then on PATH.
# See tests/bench/README.md for what each operation measures and why crun needs a masked view.
#
# Shape of a run (the order matters):
#  1. outer part (host mount namespace): checks, a lock, then re-runs this script with --inner in
#     a private mount namespace; on a hybrid cgroup host a tmpfs hides /sys/fs/cgroup/unified in
#     that namespace, so every runtime sees the same pure cgroup-v1 layout (crun 1.8.1 refuses the
#     hybrid one). One namespace for all runtimes: conditions are equal.
#  2. inner part: rootfs + all bundles are written first (nothing is generated while timing), then
#     one long-lived `sleep` container per runtime (the exec target), then ROUNDS alternating rounds
#     (every op, every runtime once, runtime order rotated each round), then the 50-container
#     rounds, then the report. An EXIT trap deletes every container still known, kills by PID
#     whatever is left in our cgroups, and removes the cgroup directories.
#  3. outer part again: checks from the host's own view that no /sys/fs/cgroup/*/sgrun-bench is
#     left (the inner view cannot see the real unified hierarchy), and cleans up if needed.
# Exit status: 0 all ops of all runtimes succeeded, 1 some op failed or something was left
# behind, 2 usage or setup error.
set -uo pipefail          # no -e: a failing runtime is a result, not a reason to stop
export LC_ALL=C           # EPOCHREALTIME must use "." as decimal separator

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SELF=$HERE/run.sh
CG_NAME=sgrun-bench       # every container's cgroupsPath is /$CG_NAME/<name> (absolute, never empty)
LOCK=/run/lock/sgrun-bench.lock

ROUNDS=20
SCALE_ROUNDS=3
SCALE_N=50
RUNTIMES="sgrun runc crun"
OPS="run csd exec rss"
OUT=
JSON=
TIMEOUT=60                # seconds before one runtime invocation is considered hung and killed
SETTLE_MS=150             # pause before each timed step of a round (see settle())
KEEP=0
INNER=0

usage() {
    sed -n '2,11p' "$SELF" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
die() { echo "bench: $*" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=${2-}; shift 2 || usage 2 ;;
        --rounds=*) ROUNDS=${1#*=}; shift ;;
        --runtimes) RUNTIMES=${2-}; shift 2 || usage 2 ;;
        --runtimes=*) RUNTIMES=${1#*=}; shift ;;
        --out) OUT=${2-}; shift 2 || usage 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        --json) JSON=${2-}; shift 2 || usage 2 ;;
        --json=*) JSON=${1#*=}; shift ;;
        --scale-rounds) SCALE_ROUNDS=${2-}; shift 2 || usage 2 ;;
        --scale-rounds=*) SCALE_ROUNDS=${1#*=}; shift ;;
        --scale) SCALE_N=${2-}; shift 2 || usage 2 ;;
        --scale=*) SCALE_N=${1#*=}; shift ;;
        --timeout) TIMEOUT=${2-}; shift 2 || usage 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --settle) SETTLE_MS=${2-}; shift 2 || usage 2 ;;
        --settle=*) SETTLE_MS=${1#*=}; shift ;;
        --ops) OPS=${2-}; shift 2 || usage 2 ;;
        --ops=*) OPS=${1#*=}; shift ;;
        --keep) KEEP=1; shift ;;
        --inner) INNER=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "bench: unknown argument: $1" >&2; usage 2 ;;
    esac
done
for o in $OPS; do
    case $o in run|csd|exec|rss) ;; *) die "--ops: unknown op '$o' (run, csd, exec, rss)" ;; esac
done
[ -n "${OPS// /}" ] || die "--ops wants at least one of run, csd, exec, rss"
is_uint "$ROUNDS" && [ "$ROUNDS" -ge 1 ] || die "--rounds wants a positive integer, got '$ROUNDS'"
is_uint "$SCALE_ROUNDS" || die "--scale-rounds wants an integer >= 0, got '$SCALE_ROUNDS'"
is_uint "$SCALE_N" && [ "$SCALE_N" -ge 1 ] || die "--scale wants a positive integer, got '$SCALE_N'"
is_uint "$TIMEOUT" && [ "$TIMEOUT" -ge 1 ] || die "--timeout wants a positive integer, got '$TIMEOUT'"
is_uint "$SETTLE_MS" || die "--settle wants milliseconds (an integer >= 0), got '$SETTLE_MS'"
read -r -a RTS <<< "$RUNTIMES"
[ ${#RTS[@]} -ge 1 ] || die "--runtimes is empty"
for rt in "${RTS[@]}"; do
    [[ $rt =~ ^[a-z][a-z0-9_-]{0,15}$ ]] || die "bad runtime name '$rt' (lower-case letters, digits, - and _)"
done
[ "$(printf '%s\n' "${RTS[@]}" | sort | uniq -d)" = "" ] || die "a runtime is named twice in --runtimes"

# rt_bin NAME: the binary used for runtime NAME
rt_bin() {
    case $1 in
        sgrun) echo "${SGRUN:-$REPO/target/x86_64-unknown-linux-gnu/release/sgrun}" ;;
        runc) echo "${RUNC:-$(command -v runc || echo /usr/sbin/runc)}" ;;
        crun) echo "${CRUN:-$(command -v crun || echo /usr/bin/crun)}" ;;
        *) local v=${1^^}; v=${v//-/_}; echo "${!v:-$(command -v "$1" || echo "$1")}" ;;
    esac
}

# ---------------------------------------------------------------- cgroup leftovers (both parts)
# cg_dirs SKIP_UNIFIED: our top-level cgroup dirs in every hierarchy. Inside the masked namespace
# /sys/fs/cgroup/unified is our tmpfs, where crun writes a fake cgroup tree of plain files: its
# "cgroup.procs" lists are not real cgroups, so they are skipped there (killing PIDs from them
# could hit unrelated processes). The tmpfs disappears with the namespace.
cg_dirs() {
    local d
    for d in /sys/fs/cgroup/$CG_NAME /sys/fs/cgroup/*/$CG_NAME; do
        [ -d "$d" ] || continue
        [ "$1" = 1 ] && [ "$d" = /sys/fs/cgroup/unified/$CG_NAME ] && continue
        printf '%s\n' "$d"
    done
}
# cg_cleanup SKIP_UNIFIED: kill (by PID) every process still in our cgroups, then rmdir them
# depth first. Only containers of this harness live there (the lock makes runs exclusive).
cg_cleanup() {
    local dirs f pid left try
    mapfile -t dirs < <(cg_dirs "$1")
    [ ${#dirs[@]} -gt 0 ] || return 0
    for (( try = 0; try < 10; try++ )); do     # up to 3 s for killed tasks to leave
        left=0
        while read -r f; do
            # a frozen task cannot die: thaw first (v1 freezer, v2 cgroup.freeze)
            case $f in
                */freezer.state) [ "$(cat "$f" 2>/dev/null)" = THAWED ] || echo THAWED > "$f" 2>/dev/null ;;
                */cgroup.freeze) echo 0 > "$f" 2>/dev/null ;;
                */cgroup.procs)
                    while read -r pid; do
                        [ -n "$pid" ] || continue
                        left=1
                        kill -KILL "$pid" 2>/dev/null
                    done < "$f" ;;
            esac
        done < <(find "${dirs[@]}" \( -name freezer.state -o -name cgroup.freeze -o -name cgroup.procs \) 2>/dev/null)
        [ $left = 0 ] && break
        sleep 0.3
    done
    find "${dirs[@]}" -depth -type d -exec rmdir {} \; 2>/dev/null
    return 0
}

# =============================================================== outer part (host view)
outer() {
    [ "$(id -u)" = 0 ] || die "must run as root (it creates containers and cgroups)"
    local t
    for t in jq unshare mount flock find; do
        command -v "$t" >/dev/null || die "missing '$t' (apt-get install -y jq util-linux findutils)"
    done
    [ -x /usr/bin/time ] || die "missing /usr/bin/time (apt-get install -y time)"
    [ -x "$REPO/tests/rootfs/busybox.sh" ] || die "missing rootfs builder $REPO/tests/rootfs/busybox.sh"
    [ -d /sys/fs/cgroup ] || die "no /sys/fs/cgroup"

    # absolute paths: the inner part runs with the same cwd, but the report names them
    [ -n "$OUT" ] && OUT=$(realpath -m -- "$OUT")
    if [ -z "$JSON" ]; then
        if [ -n "$OUT" ]; then JSON=${OUT%.md}.jsonl
        else JSON=$HERE/results/bench-$(date -u +%Y%m%dT%H%M%SZ).jsonl; fi
    fi
    JSON=$(realpath -m -- "$JSON")
    mkdir -p "$(dirname "$JSON")" || die "cannot create $(dirname "$JSON")"
    [ -n "$OUT" ] && { mkdir -p "$(dirname "$OUT")" || die "cannot create $(dirname "$OUT")"; }
    # resolve the runtime binaries once, here, so that both parts use the same files
    SGRUN=$(realpath -m -- "$(rt_bin sgrun)")
    export SGRUN RUNC CRUN
    RUNC=$(rt_bin runc) CRUN=$(rt_bin crun)

    # one benchmark at a time: two would share the 2 cores and the $CG_NAME cgroups
    mkdir -p "$(dirname "$LOCK")"
    exec 9> "$LOCK"
    flock -n 9 || die "another benchmark holds $LOCK"
    if [ -n "$(cg_dirs 0)" ]; then
        echo "bench: removing cgroups left by an earlier run: $(cg_dirs 0 | tr '\n' ' ')" >&2
        cg_cleanup 0
        [ -z "$(cg_dirs 0)" ] || die "cannot remove old cgroups: $(cg_dirs 0 | tr '\n' ' ')"
    fi

    # Which cgroup layout the runtimes will see. On a hybrid host (cgroup2 mounted at
    # /sys/fs/cgroup/unified beside the v1 hierarchies) hide the cgroup2 mount under a tmpfs:
    # crun 1.8.1 refuses hybrid hosts, runc treats a non-cgroup2 "unified" as absent, so all of
    # them then run the v1 code paths. 16 MiB, not less: crun writes its fake unified tree into
    # the tmpfs, a few KiB per container.
    local view mask=0
    if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
        view="cgroup v2 (unified host)"
    elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
        view="cgroup v1 (hybrid host; its cgroup2 at /sys/fs/cgroup/unified hidden under a tmpfs)"
        mask=1
    else
        view="cgroup v1 (legacy host)"
    fi
    export BENCH_CG_VIEW=$view BENCH_MASKED=$mask

    local args=(--inner --rounds "$ROUNDS" --runtimes "${RTS[*]}" --json "$JSON"
                --scale-rounds "$SCALE_ROUNDS" --scale "$SCALE_N" --timeout "$TIMEOUT")
    [ -n "$OUT" ] && args+=(--out "$OUT")
    [ "$KEEP" = 1 ] && args+=(--keep)
    args+=(--ops "$OPS")
    args+=(--settle "$SETTLE_MS")
    local rc
    # The lock's fd 9 is closed for the inner part so that no container can inherit it.
    if [ $mask = 1 ]; then
        unshare -m --propagation private sh -c \
            'mount -t tmpfs -o size=16m,mode=755 sgrun-bench-mask /sys/fs/cgroup/unified && exec "$@"' \
            sgrun-bench-masked bash "$SELF" "${args[@]}" 9>&-
    else
        unshare -m --propagation private bash "$SELF" "${args[@]}" 9>&-
    fi
    rc=$?

    # The inner EXIT trap has cleaned up already; this is the check from the real view.
    if [ -n "$(cg_dirs 0)" ]; then
        echo "bench: cgroups left after the run: $(cg_dirs 0 | tr '\n' ' '); removing them" >&2
        cg_cleanup 0
        if [ -n "$(cg_dirs 0)" ]; then
            echo "bench: ERROR: could not remove: $(cg_dirs 0 | tr '\n' ' ')" >&2
        fi
        [ $rc = 0 ] && rc=1
    else
        echo "bench: cleanup verified: nothing left under /sys/fs/cgroup/*/$CG_NAME" >&2
    fi
    exit $rc
}

# =============================================================== inner part (masked namespace)
W=                    # work dir: rootfs, bundles, state roots, raw samples
declare -A BIN=() VER=() BROKEN=() LIVE=() NFAIL=() EXEC_READY=()
RC=0 US=0 WD_PID=

# ms US -> REPLY: microseconds as milliseconds with 3 decimals, no fork
ms() { printf -v REPLY '%d.%03d' $(( $1 / 1000 )) $(( $1 % 1000 )); }
sec() { printf -v REPLY '%d.%06d' $(( $1 / 1000000 )) $(( $1 % 1000000 )); }

# settle: pause SETTLE_MS before a timed step, so that every step starts from the same state
# whatever ran before it. The cause, measured on this host: moving a task into a cgroup takes
# cgroup_threadgroup_rwsem for writing, and the first such move after a quiet moment waits for an
# RCU grace period (moving a process between two v1 cgroups: 4.5-9 ms after a 150 ms pause,
# 0.06 ms right after another move). Every create, run and exec moves a task into a cgroup, so an
# op was fast or slow depending on whether the step before it had just done so: back to back, with
# the runtime order rotated, crun's exec took 4-5 ms after runc's exec and 10-16 ms after runc's
# delete --force (which sleeps 100 ms), and medians fell between the two modes. With the pause
# every runtime pays that grace period alike, as a command issued after a moment of quiet does
# (how an orchestrator or an SRE issues most of them). `--settle 0` measures back to back.
# `read -t` on the watchdog's output pipe, where nothing ever arrives, waits without a fork.
settle() {
    [ "$SETTLE_MS" -gt 0 ] || return 0
    local x
    printf -v x '%d.%03d' $(( SETTLE_MS / 1000 )) $(( SETTLE_MS % 1000 ))
    read -r -t "$x" -u "${WD[0]}" x
    return 0
}

# record ROUND RT OP VALUE STATUS [NOTE]
record() {
    local note=${6-}
    note=${note//$'\t'/ }; note=${note//$'\n'/ }; note=${note:0:300}
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$note" >> "$W/samples.tsv"
}

# The watchdog: a coprocess that kills (by PID, with its descendants) a runtime invocation
# that has not finished after $TIMEOUT s, so that one hung runtime cannot stall the whole
# benchmark. It sits outside the timed path: the harness only writes two short lines to a pipe
# per invocation (no fork, unlike wrapping every call in timeout(1)).
kill_tree() {
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do kill_tree "$c"; done
    kill -KILL "$1" 2>/dev/null
}
watchdog() {
    local cmd pid x
    while read -r cmd pid; do
        [ "$cmd" = arm ] || continue
        if ! read -r -t "$TIMEOUT" x; then
            # log first: the harness reads this file as soon as its wait returns
            printf '%s\n' "$pid" >> "$W/timeouts"
            kill_tree "$pid"
            read -r x || return 0
        fi
    done
}

# invoke ERRFILE CMD...: run CMD (stdin /dev/null, stdout discarded, stderr to ERRFILE);
# sets RC and US (wall microseconds, from just before the fork to just after the reap).
invoke() {
    local err=$1 t0 t1 pid
    shift
    t0=${EPOCHREALTIME/./}
    # Started with & so that the watchdog can be told its PID. (Like every asynchronous command
    # of a non-interactive bash it starts with SIGINT and SIGQUIT ignored: the same for every
    # runtime, and our steps never send those signals.)
    "$@" < /dev/null > /dev/null 2> "$err" &
    pid=$!
    printf 'arm %s\n' "$pid" >&"${WD[1]}"
    # (2>/dev/null: bash's own "Killed" job notice; the failure report says it instead)
    wait "$pid" 2>/dev/null
    RC=$?
    t1=${EPOCHREALTIME/./}
    printf 'done\n' >&"${WD[1]}"
    US=$(( t1 - t0 ))
    if [ $RC -ne 0 ] && [ -f "$W/timeouts" ] && grep -qx "$pid" "$W/timeouts"; then
        echo "[bench: no answer after ${TIMEOUT}s: killed]" >> "$err"
    fi
}

# fail ROUND RT OP RC ERRFILE WHAT: record a failed sample and show the runtime's stderr.
# The first failures of an (runtime, op) pair are shown in full, later ones in one line, and
# after 10 they are only counted; everything goes to failures.log.
fail() {
    local round=$1 rt=$2 op=$3 rc=$4 err=$5 what=$6 key="$2/$3" n first
    n=$(( ${NFAIL[$key]:-0} + 1 )); NFAIL[$key]=$n
    first=$(grep -m1 -v '^[[:space:]]*$' "$err" 2>/dev/null)
    record "$round" "$rt" "$op" "" fail "$what: exit $rc: $first"
    {
        echo "=== FAIL $rt $op round $round: $what: exit status $rc"
        cat "$err" 2>/dev/null
    } >> "$W/failures.log"
    if [ "$n" -le 2 ]; then
        echo "FAIL $rt $op (round $round): $what exited with status $rc; stderr:" >&2
        if [ -s "$err" ]; then head -n 40 "$err" | sed 's/^/    | /' >&2
        else echo "    | (empty)" >&2; fi
    elif [ "$n" -le 10 ]; then
        echo "FAIL $rt $op (round $round): $what exited with status $rc: ${first:-(no stderr)}" >&2
    elif [ "$n" = 11 ]; then
        echo "FAIL $rt $op: more failures, counted in the report (see failures.log)" >&2
    fi
}
# skip ROUND RT OP WHY: the op could not be attempted (an earlier step failed); counts as failed
skip() { record "$1" "$2" "$3" "" fail "not run: $4"; }

# untimed best-effort delete of a container, e.g. after a failed step
force_delete() {
    invoke "$W/err.cleanup" "${BIN[$1]}" --root "$W/state/$1" delete --force "$2"
    [ $RC = 0 ] && unset "LIVE[$1:$2]"
}

# One bundle = a directory with config.json; all bundles share one read-only rootfs.
# The template mirrors the defaults of `runc spec` (namespaces, mounts, 3 capabilities, masked and
# read-only paths, no seccomp), so the figures compare with other runc-style measurements.
# @ARGS@ and @CGPATH@ are filled in per bundle.
CFG_TPL=
make_template() {
    CFG_TPL=$(cat <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": @ARGS@,
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
    "cwd": "/",
    "capabilities": {
      "bounding":  ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "$W/rootfs", "readonly": true},
  "hostname": "sgrun-bench",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "linux": {
    "cgroupsPath": "@CGPATH@",
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                    "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
EOF
)
}
ARGS_TRUE='["/bin/true"]'
ARGS_SLEEP='["/bin/sleep", "1000"]'
# mk_bundle DIR NAME ARGS_JSON (DIR must exist): cgroupsPath is /$CG_NAME/NAME
mk_bundle() {
    local c=${CFG_TPL//@ARGS@/"$3"}
    c=${c//@CGPATH@/"/$CG_NAME/$2"}
    printf '%s\n' "$c" > "$1/config.json"
}

# ---------------------------------------------------------------- the operations
# Each op is timed alone; bundles exist already. Container ids and cgroup names carry the
# runtime, the op and the round, so a container left by a failure never collides with the next.

# run + delete: foreground `run` of /bin/true (the runtime waits for it and removes the
# container), then `delete --force` (a cheap no-op when run cleaned up, as runc and crun do)
op_run() {
    local rt=$1 i=$2 id=sgb-$1-run-$2 us
    LIVE[$rt:$id]=1
    invoke "$W/err" "${BIN[$rt]}" --root "$W/state/$rt" run --bundle "$W/b/$rt-run-$i" "$id"
    us=$US
    if [ $RC != 0 ]; then fail "$i" "$rt" run $RC "$W/err" "run"; force_delete "$rt" "$id"; return; fi
    invoke "$W/err" "${BIN[$rt]}" --root "$W/state/$rt" delete --force "$id"
    if [ $RC != 0 ]; then fail "$i" "$rt" run $RC "$W/err" "delete --force after run"; return; fi
    unset "LIVE[$rt:$id]"
    ms $(( us + US )); record "$i" "$rt" run "$REPLY" ok
}

# create / start / delete --force of a `sleep 1000` container, each timed alone
op_csd() {
    local rt=$1 i=$2 id=sgb-$1-csd-$2 R=$W/state/$1
    LIVE[$rt:$id]=1
    invoke "$W/err" "${BIN[$rt]}" --root "$R" create --bundle "$W/b/$rt-csd-$i" "$id"
    if [ $RC != 0 ]; then
        fail "$i" "$rt" create $RC "$W/err" "create"
        skip "$i" "$rt" start "create failed"; skip "$i" "$rt" delete "create failed"
        force_delete "$rt" "$id"; return
    fi
    ms $US; record "$i" "$rt" create "$REPLY" ok
    invoke "$W/err" "${BIN[$rt]}" --root "$R" start "$id"
    if [ $RC != 0 ]; then
        fail "$i" "$rt" start $RC "$W/err" "start"
        skip "$i" "$rt" delete "start failed"
        force_delete "$rt" "$id"; return
    fi
    ms $US; record "$i" "$rt" start "$REPLY" ok
    invoke "$W/err" "${BIN[$rt]}" --root "$R" delete --force "$id"
    if [ $RC != 0 ]; then fail "$i" "$rt" delete $RC "$W/err" "delete --force"; force_delete "$rt" "$id"; return; fi
    unset "LIVE[$rt:$id]"
    ms $US; record "$i" "$rt" delete "$REPLY" ok
}

# exec /bin/true into the runtime's long-lived sleep container
op_exec() {
    local rt=$1 i=$2
    if [ -z "${EXEC_READY[$rt]-}" ]; then skip "$i" "$rt" exec "exec target container did not start"; return; fi
    invoke "$W/err" "${BIN[$rt]}" --root "$W/state/$rt" exec "sgb-$rt-exec" /bin/true
    if [ $RC != 0 ]; then fail "$i" "$rt" exec $RC "$W/err" "exec"; return; fi
    ms $US; record "$i" "$rt" exec "$REPLY" ok
}

# peak RSS (KiB) of a foreground `run` of /bin/true, from GNU time's %M: the largest maxrss
# among the runtime and the descendants it waited for (runc's `runc init`, crun's and sgrun's
# intermediate processes before they exec the payload)
op_rss() {
    local rt=$1 i=$2 id=sgb-$1-rss-$2 v
    LIVE[$rt:$id]=1
    invoke "$W/err" /usr/bin/time -f '%M' -o "$W/rss.out" \
        "${BIN[$rt]}" --root "$W/state/$rt" run --bundle "$W/b/$rt-rss-$i" "$id"
    if [ $RC != 0 ]; then fail "$i" "$rt" rss $RC "$W/err" "run under /usr/bin/time"; force_delete "$rt" "$id"; return; fi
    v=$(tail -n 1 "$W/rss.out")
    force_delete "$rt" "$id"
    if ! is_uint "$v"; then
        echo "/usr/bin/time wrote: $(cat "$W/rss.out")" > "$W/err"
        fail "$i" "$rt" rss 0 "$W/err" "reading peak RSS"; return
    fi
    record "$i" "$rt" rss "$v" ok
}

# SCALE_N detached sleep containers one after another, then their force-delete. The figure is the
# sum of the invocations' wall times (the harness's own loop costs no fork and is left out).
op_scale() {
    local rt=$1 r=$2 k id total=0 fails=0
    for (( k = 1; k <= SCALE_N; k++ )); do
        id=sgb-$rt-s$r-$k
        LIVE[$rt:$id]=1
        invoke "$W/err" "${BIN[$rt]}" --root "$W/state/$rt" run -d --bundle "$W/b/$rt-s$r-$k" "$id"
        total=$(( total + US ))
        if [ $RC != 0 ]; then
            fails=$(( fails + 1 ))
            [ $fails = 1 ] && { cp "$W/err" "$W/err.scale"; local frc=$RC; }
        fi
    done
    if [ $fails = 0 ]; then sec $total; record "$r" "$rt" scale_run "$REPLY" ok
    else fail "$r" "$rt" scale_run "$frc" "$W/err.scale" "run -d ($fails of $SCALE_N failed; first failure's stderr)"; fi
    total=0 fails=0
    for (( k = 1; k <= SCALE_N; k++ )); do
        id=sgb-$rt-s$r-$k
        invoke "$W/err" "${BIN[$rt]}" --root "$W/state/$rt" delete --force "$id"
        total=$(( total + US ))
        if [ $RC = 0 ]; then unset "LIVE[$rt:$id]"
        else
            fails=$(( fails + 1 ))
            [ $fails = 1 ] && { cp "$W/err" "$W/err.scale"; local drc=$RC; }
        fi
    done
    if [ $fails = 0 ]; then sec $total; record "$r" "$rt" scale_delete "$REPLY" ok
    else fail "$r" "$rt" scale_delete "$drc" "$W/err.scale" "delete --force ($fails of $SCALE_N failed; first failure's stderr)"; fi
}

# ---------------------------------------------------------------- cleanup (EXIT trap)
inner_cleanup() {
    local rc=$? key rt id
    trap - EXIT INT TERM HUP
    # delete what the runtimes still know of (untimed, still under the watchdog)
    if [ -n "$WD_PID" ]; then
        for key in "${!LIVE[@]}"; do
            rt=${key%%:*} id=${key#*:}
            [ -z "${BROKEN[$rt]-}" ] && force_delete "$rt" "$id"
        done
        kill "$WD_PID" 2>/dev/null; wait "$WD_PID" 2>/dev/null
    fi
    # whatever survived (a runtime that failed to delete, a killed hung invocation)
    cg_cleanup "${BENCH_MASKED:-0}"
    if [ -n "$(cg_dirs "${BENCH_MASKED:-0}")" ]; then
        echo "bench: could not remove $(cg_dirs "${BENCH_MASKED:-0}" | tr '\n' ' ')" >&2
        [ $rc = 0 ] && rc=1
    fi
    if [ -n "$W" ] && [ -d "$W" ]; then
        if [ "$KEEP" = 1 ]; then echo "bench: work dir kept: $W" >&2
        else rm -rf -- "$W"; fi
    fi
    exit $rc
}

# ---------------------------------------------------------------- report
OPS_JSON='[
 {"key":"run",          "label":"run + delete of /bin/true",            "unit":"ms"},
 {"key":"create",       "label":"create (sleep bundle)",                "unit":"ms"},
 {"key":"start",        "label":"start",                                "unit":"ms"},
 {"key":"delete",       "label":"delete --force (running)",             "unit":"ms"},
 {"key":"exec",         "label":"exec /bin/true into a running container", "unit":"ms"},
 {"key":"scale_run",    "label":"@N@ × run -d of sleep, total",          "unit":"s"},
 {"key":"scale_delete", "label":"delete --force of those @N@, total",    "unit":"s"},
 {"key":"rss",          "label":"peak RSS of run",                      "unit":"KiB"}
]'

# fmt VALUE UNIT
fmt() {
    if [ -z "$1" ] || [ "$1" = null ]; then REPLY="—"; return; fi
    case $2 in
        KiB) printf -v REPLY '%.0f' "$1" ;;
        *) printf -v REPLY '%.2f' "$1" ;;
    esac
}

report() {
    local ops pairs meta rt a b
    ops=${OPS_JSON//@N@/$SCALE_N}
    # ratio columns: sgrun against each other runtime (crun first: the fastest reference);
    # without sgrun, the first named runtime against the others
    local -a P=()
    if [[ " ${RTS[*]} " == *" sgrun "* ]]; then
        [[ " ${RTS[*]} " == *" crun "* ]] && P+=("sgrun crun")
        [[ " ${RTS[*]} " == *" runc "* ]] && P+=("sgrun runc")
        for rt in "${RTS[@]}"; do
            case $rt in sgrun|crun|runc) ;; *) P+=("sgrun $rt") ;; esac
        done
    else
        for rt in "${RTS[@]:1}"; do P+=("${RTS[0]} $rt"); done
    fi
    pairs=$(for a in "${P[@]}"; do printf '%s\n' "$a"; done | jq -R -s -c 'split("\n") | map(select(length > 0) | split(" "))')

    local vers='{}' bins='{}'
    for rt in "${RTS[@]}"; do
        vers=$(jq -c --arg k "$rt" --arg v "${VER[$rt]:-unknown}" '. + {($k): $v}' <<< "$vers")
        bins=$(jq -c --arg k "$rt" --arg v "${BIN[$rt]}" '. + {($k): $v}' <<< "$bins")
    done
    meta=$(jq -n -c --arg date "$DATE" --arg host "$(hostname)" --arg kernel "$(uname -r)" \
        --arg cpu "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" --arg nproc "$(nproc)" \
        --argjson rounds "$ROUNDS" --argjson scale_rounds "$SCALE_ROUNDS" --argjson scale_n "$SCALE_N" \
        --argjson runtimes "$(printf '%s\n' "${RTS[@]}" | jq -R -s -c 'split("\n") | map(select(length > 0))')" \
        --argjson versions "$vers" --argjson binaries "$bins" --arg git "$GIT" \
        --arg cgroups "$BENCH_CG_VIEW" --arg seconds "$(( ${EPOCHSECONDS} - START ))" \
        '{date: $date, host: $host, kernel: $kernel, cpu: $cpu, nproc: ($nproc | tonumber),
          rounds: $rounds, scale_rounds: $scale_rounds, scale_n: $scale_n, runtimes: $runtimes,
          versions: $versions, binaries: $binaries, sgrun_git: $git, cgroups: $cgroups,
          duration_s: ($seconds | tonumber)}')
    touch "$W/samples.tsv"
    jq -R -n -c --argjson meta "$meta" --argjson ops "$ops" \
        --argjson rts "$(jq -c '.runtimes' <<< "$meta")" --argjson pairs "$pairs" \
        -f "$HERE/stats.jq" "$W/samples.tsv" > "$JSON" || { echo "bench: stats failed" >&2; return 1; }

    # Markdown table from the JSON lines
    declare -A CELL=() RAT=()
    local op r ok failed samples med p90 unit label num den rom
    while IFS=$'\t' read -r op rt samples ok failed med p90 unit; do
        fmt "$med" "$unit"; med=$REPLY; fmt "$p90" "$unit"; p90=$REPLY
        if [ "$samples" = 0 ]; then CELL[$op/$rt]="—"
        elif [ "$failed" != 0 ]; then
            if [ "$ok" = 0 ]; then CELL[$op/$rt]="FAIL ($failed/$samples)"
            else CELL[$op/$rt]="FAIL ($failed/$samples; ok: $med)"; fi
        else CELL[$op/$rt]="$med ($p90)"; fi
    done < <(jq -r 'select(.type == "summary") | [.op, .runtime, .samples, .ok, .failed, .median, .p90, .unit] | map(tostring) | @tsv' "$JSON")
    while IFS=$'\t' read -r op num den rom; do
        if [ "$rom" = null ]; then RAT[$op/$num/$den]="—"; else printf -v RAT[$op/$num/$den] '%.2f' "$rom"; fi
    done < <(jq -r 'select(.type == "ratio") | [.op, .num, .den, .ratio_of_medians] | map(tostring) | @tsv' "$JSON")

    {
        echo "## sgrun benchmark — $DATE"
        echo
        echo "- host: $(hostname), kernel $(uname -r), $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo))"
        echo "- $BENCH_CG_VIEW; all runtimes in one private mount namespace"
        echo "- $ROUNDS alternating rounds (runtime order rotated every round, ${SETTLE_MS} ms pause before each timed step); $SCALE_N detached containers × $SCALE_ROUNDS round(s)"
        for rt in "${RTS[@]}"; do
            if [ "$rt" = sgrun ]; then echo "- sgrun: ${VER[$rt]:-unknown} (${BIN[$rt]}${GIT:+, git $GIT})"
            else echo "- $rt: ${VER[$rt]:-unknown} (${BIN[$rt]})"; fi
        done
        echo "- cells: median (p90) of wall-clock time per CLI invocation; ratios are of medians, below 1 means sgrun is faster"
        echo
        local hdr="| op |" sep="|---|"
        for rt in "${RTS[@]}"; do hdr+=" $rt |"; sep+="---:|"; done
        for a in "${P[@]}"; do hdr+=" ${a/ //} |"; sep+="---:|"; done
        echo "$hdr"; echo "$sep"
        while IFS=$'\t' read -r op label unit; do
            local line="| $label, $unit |" any=0
            for rt in "${RTS[@]}"; do [ "${CELL[$op/$rt]:-—}" != "—" ] && any=1; done
            [ $any = 1 ] || continue     # an op this run did not measure (--ops)
            for rt in "${RTS[@]}"; do line+=" ${CELL[$op/$rt]:-—} |"; done
            for a in "${P[@]}"; do line+=" ${RAT[$op/${a/ //}]:-—} |"; done
            echo "$line"
        done < <(jq -r '.[] | [.key, .label, .unit] | @tsv' <<< "$ops")
        echo
        echo "Raw samples and summaries (JSON lines): $JSON"
    } > "$W/report.md"
    cat "$W/report.md"
    [ -n "$OUT" ] && cp "$W/report.md" "$OUT"
    if [ -s "$W/failures.log" ]; then
        cp "$W/failures.log" "${JSON%.jsonl}.failures.log"
        echo "bench: stderr of every failure: ${JSON%.jsonl}.failures.log" >&2
    fi
    return 0
}

# ---------------------------------------------------------------- inner main
inner() {
    [ -n "$JSON" ] || die "--inner needs --json"
    if [ "${BENCH_MASKED:-0}" = 1 ] && [ "$(stat -f -c %T /sys/fs/cgroup/unified)" != tmpfs ]; then
        die "inner part: /sys/fs/cgroup/unified is not masked (run tests/bench/run.sh, not --inner)"
    fi
    START=$EPOCHSECONDS
    DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    W=$(mktemp -d /tmp/sgrun-bench.XXXXXX) || die "mktemp failed"
    trap inner_cleanup EXIT
    trap 'exit 130' INT TERM HUP

    "$REPO/tests/rootfs/busybox.sh" "$W" > /dev/null || die "building the rootfs failed"
    make_template
    jq -e . <<< "${CFG_TPL//@ARGS@/[]}" > /dev/null || die "bundle template is not valid JSON"

    GIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || true)
    if [ -n "$GIT" ] && [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -1)" ]; then GIT+="+dirty"; fi
    local rt b
    for rt in "${RTS[@]}"; do
        b=$(rt_bin "$rt"); BIN[$rt]=$b
        mkdir -p "$W/state/$rt"
        if [ ! -x "$b" ] || [ -d "$b" ]; then
            BROKEN[$rt]="runtime binary not found or not executable: $b"
            echo "FAIL $rt: ${BROKEN[$rt]}; every op of $rt is marked FAIL" >&2
            [ "$rt" = sgrun ] && echo "    (build it: cargo build --release -p sgrun, or set SGRUN=path)" >&2
            continue
        fi
        VER[$rt]=$(timeout 10 "$b" --version < /dev/null 2>&1 | grep -m1 -v '^[[:space:]]*$')
    done

    # all bundles first, so that nothing but the runtimes runs while timing
    echo "bench: writing bundles under $W" >&2
    local i r k dirs=()
    for rt in "${RTS[@]}"; do
        dirs+=("$W/b/$rt-exec")
        for (( i = 1; i <= ROUNDS; i++ )); do dirs+=("$W/b/$rt-run-$i" "$W/b/$rt-csd-$i" "$W/b/$rt-rss-$i"); done
        for (( r = 1; r <= SCALE_ROUNDS; r++ )); do
            for (( k = 1; k <= SCALE_N; k++ )); do dirs+=("$W/b/$rt-s$r-$k"); done
        done
    done
    mkdir -p "${dirs[@]}"
    for rt in "${RTS[@]}"; do
        mk_bundle "$W/b/$rt-exec" "$rt-exec" "$ARGS_SLEEP"
        for (( i = 1; i <= ROUNDS; i++ )); do
            mk_bundle "$W/b/$rt-run-$i" "$rt-run-$i" "$ARGS_TRUE"
            mk_bundle "$W/b/$rt-csd-$i" "$rt-csd-$i" "$ARGS_SLEEP"
            mk_bundle "$W/b/$rt-rss-$i" "$rt-rss-$i" "$ARGS_TRUE"
        done
        for (( r = 1; r <= SCALE_ROUNDS; r++ )); do
            for (( k = 1; k <= SCALE_N; k++ )); do mk_bundle "$W/b/$rt-s$r-$k" "$rt-s$r-$k" "$ARGS_SLEEP"; done
        done
    done

    # the watchdog ignores Ctrl-C so that it still guards the cleanup that follows one
    coproc WD { trap "" INT; watchdog; }

    # the exec targets: one sleep container per runtime, alive for all rounds
    for rt in "${RTS[@]}"; do
        [ -n "${BROKEN[$rt]-}" ] && continue
        LIVE[$rt:sgb-$rt-exec]=1
        invoke "$W/err" "${BIN[$rt]}" --root "$W/state/$rt" run -d --bundle "$W/b/$rt-exec" "sgb-$rt-exec"
        if [ $RC = 0 ]; then EXEC_READY[$rt]=1
        else fail 0 "$rt" exec_target $RC "$W/err" "run -d of the exec target container"; fi
    done

    local n=${#RTS[@]} op
    local -a order
    for (( i = 1; i <= ROUNDS; i++ )); do
        echo "bench: round $i/$ROUNDS" >&2
        k=$(( (i - 1) % n )); order=("${RTS[@]:k}" "${RTS[@]:0:k}")
        for op in $OPS; do
            for rt in "${order[@]}"; do
                if [ -n "${BROKEN[$rt]-}" ]; then
                    case $op in
                        csd) skip "$i" "$rt" create "${BROKEN[$rt]}"; skip "$i" "$rt" start "${BROKEN[$rt]}"
                             skip "$i" "$rt" delete "${BROKEN[$rt]}" ;;
                        *) skip "$i" "$rt" "$op" "${BROKEN[$rt]}" ;;
                    esac
                    continue
                fi
                settle
                "op_$op" "$rt" "$i"
            done
        done
    done
    for (( r = 1; r <= SCALE_ROUNDS; r++ )); do
        k=$(( (r - 1) % n )); order=("${RTS[@]:k}" "${RTS[@]:0:k}")
        for rt in "${order[@]}"; do
            if [ -n "${BROKEN[$rt]-}" ]; then
                skip "$r" "$rt" scale_run "${BROKEN[$rt]}"; skip "$r" "$rt" scale_delete "${BROKEN[$rt]}"; continue
            fi
            echo "bench: $SCALE_N containers, round $r/$SCALE_ROUNDS, $rt" >&2
            sleep 1     # let the previous batch's teardown (namespaces, cgroups) finish
            op_scale "$rt" "$r"
        done
    done
    for rt in "${RTS[@]}"; do
        [ -n "${EXEC_READY[$rt]-}" ] && force_delete "$rt" "sgb-$rt-exec"
    done

    report || exit 1
    if grep -q $'\tfail\t' "$W/samples.tsv"; then
        echo "bench: some operations failed (FAIL cells above)" >&2
        exit 1
    fi
    exit 0
}

if [ "$INNER" = 1 ]; then inner; else outer; fi
