#!/bin/bash
# Proves the escape suite can fail, and that sgrun's tenant config passes it.
#
#   tests/escape/weakened.sh [--runtime PATH]      (make test-escape)
#
# 1. run.sh --config tenant must defend every vector except those in known-gaps.txt (and those
#    must still fail: a closed gap has to leave the list).
# 2. each weakening of the same config must open the vectors it is meant to open:
#      all-caps          -> capabilities
#      no-seccomp        -> the vectors only seccomp stops (NO_SECCOMP_OPENS below)
#      shared-namespaces -> host-processes, peer-network
#      host-fd           -> leaked-fds
#    and a weakened container must still start and report every vector (a run that breaks
#    proves nothing).
# Prints ok / not ok per check and a summary; exit 0 iff every check passed.
# Environment: SGRUN (default: <repo>/target/x86_64-unknown-linux-gnu/release/sgrun, from
# `make build`), ESCAPE_PROBE as for run.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUNTIME=${SGRUN:-$REPO/target/x86_64-unknown-linux-gnu/release/sgrun}
GAPS=$HERE/known-gaps.txt

# What each weakening must open (every one listed must fail). no-seccomp: vectors whose only
# barrier in a user namespace with the tenant's capabilities is the seccomp filter.
CAPS_OPENS="capabilities"
NO_SECCOMP_OPENS="io-uring keyctl perf-event-open new-namespaces"
SHARED_NS_OPENS="host-processes peer-network"
HOST_FD_OPENS="leaked-fds"

die() { echo "weakened: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --runtime) [ $# -ge 2 ] || die "--runtime needs a path"; RUNTIME=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (only --runtime PATH)" ;;
    esac
done
[ -x "$RUNTIME" ] || die "runtime $RUNTIME is not executable: run 'make build' first, or pass --runtime PATH / SGRUN=PATH"
[ -f "$GAPS" ] || die "missing $GAPS (one 'VECTOR-ID REASON' per line; may hold only comments)"

# known gaps: id -> reason; each line needs a reason
declare -A GAP=()
while read -r id reason; do
    [[ -z $id || $id == \#* ]] && continue
    [[ $id =~ ^[a-z0-9-]+$ ]] || die "$GAPS: bad vector id '$id' (lower case, digits, -)"
    [ -n "$reason" ] || die "$GAPS: '$id' has no reason; write why it is a known gap after the id"
    GAP[$id]=$reason
done < "$GAPS"

# one probe build for all runs
ESCAPE_PROBE=$("$HERE/run.sh" --print-probe) || die "could not build the probe"
export ESCAPE_PROBE

OUT=$(mktemp -d /tmp/sgrun-escape-weakened.XXXXXX)
trap 'rm -rf -- "$OUT"' EXIT

N=0 FAILED=0
check() {   # check OK(0/1) TEXT
    N=$(( N + 1 ))
    if [ "$1" = 1 ]; then echo "ok $N - $2"; else echo "not ok $N - $2"; FAILED=$(( FAILED + 1 )); fi
}

# run_escape NAME ARGS...: run.sh into $OUT/NAME.tap; fills RES (vector -> ok|fail) and RUN_OK
# (1 if the probe reported a final summary line and cleanup was verified)
declare -A RES=()
RUN_OK=0
run_escape() {
    local name=$1 rc=0 line t0
    shift
    RES=()
    t0=$SECONDS
    "$HERE/run.sh" --runtime "$RUNTIME" "$@" > "$OUT/$name.tap" 2> "$OUT/$name.err" || rc=$?
    while IFS= read -r line; do
        if [[ $line =~ ^ok\ [0-9]+\ -\ ([a-z0-9-]+): ]]; then RES[${BASH_REMATCH[1]}]=ok
        elif [[ $line =~ ^not\ ok\ [0-9]+\ -\ ([a-z0-9-]+): ]]; then RES[${BASH_REMATCH[1]}]=fail
        fi
    done < "$OUT/$name.tap"
    RUN_OK=0
    # exit 0/1 = probe verdict; 2 = setup error, 3 = something left behind, 124 = timeout
    if { [ $rc = 0 ] || [ $rc = 1 ]; } && tail -n 1 "$OUT/$name.tap" | grep -qE '^[0-9]+ passed, [0-9]+ failed$'; then
        RUN_OK=1
    fi
    echo "# $name: run.sh $* -> exit $rc, ${#RES[@]} vectors, $(( SECONDS - t0 )) s"
    if [ $RUN_OK = 0 ]; then
        sed 's/^/#   | /' "$OUT/$name.err" | tail -n 20
    fi
}

# ---------------------------------------------------------------- 1. the tenant baseline
run_escape baseline --config tenant
check "$RUN_OK" "baseline: sgrun --config tenant runs the probe to its summary and cleans up"
BASE_VECTORS=("${!RES[@]}")
declare -A RES_BASE=()
for v in "${!RES[@]}"; do RES_BASE[$v]=${RES[$v]}; done
unexpected=() closed=()
for v in "${!RES[@]}"; do
    if [ "${RES[$v]}" = fail ] && [ -z "${GAP[$v]:-}" ]; then unexpected+=("$v"); fi
done
for v in "${!GAP[@]}"; do
    if [ "${RES[$v]:-missing}" != fail ]; then closed+=("$v (${RES[$v]:-not reported})"); fi
done
check "$([ ${#unexpected[@]} = 0 ] && [ ${#BASE_VECTORS[@]} -gt 0 ] && echo 1 || echo 0)" \
    "baseline: every vector defended except known gaps${unexpected[*]:+; open: ${unexpected[*]}}"
for v in "${unexpected[@]}"; do grep -E "^not ok [0-9]+ - $v:" "$OUT/baseline.tap" | sed 's/^/#   /'; done
check "$([ ${#closed[@]} = 0 ] && echo 1 || echo 0)" \
    "baseline: every known gap still fails${closed[*]:+; remove from known-gaps.txt: ${closed[*]}}"
for v in "${!GAP[@]}"; do echo "#   known gap $v: ${GAP[$v]}"; done

# ---------------------------------------------------------------- 2. the weakenings
weaken() {   # weaken KIND "VECTORS"
    local kind=$1 v still=() bad=()
    run_escape "weaken-$kind" --config tenant --weaken "$kind"
    check "$RUN_OK" "weaken $kind: the weakened container still runs the probe to its summary"
    for v in $2; do
        case ${RES[$v]:-missing} in
            ok) still+=("$v") ;;
            missing) bad+=("$v (not reported)") ;;
            # the weakening, not a broken baseline, must be what opened it
            fail) [ "${RES_BASE[$v]:-}" = ok ] || bad+=("$v (open in the baseline too)") ;;
        esac
    done
    check "$([ ${#still[@]} = 0 ] && [ ${#bad[@]} = 0 ] && echo 1 || echo 0)" \
        "weaken $kind: opens $2${still[*]:+; still defended: ${still[*]}}${bad[*]:+; ${bad[*]}}"
    grep -E '^not ok ' "$OUT/weaken-$kind.tap" | sed 's/^/#   /' || true
}
weaken all-caps "$CAPS_OPENS"
weaken no-seccomp "$NO_SECCOMP_OPENS"
weaken shared-namespaces "$SHARED_NS_OPENS"
weaken host-fd "$HOST_FD_OPENS"

echo "1..$N"
echo "$(( N - FAILED )) passed, $FAILED failed"
[ "$FAILED" = 0 ]
