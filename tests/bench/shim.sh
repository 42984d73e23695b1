#!/usr/bin/env bash
# The shim against containerd-shim-runc-v2, under the same private containerd 1.6:
#  - memory: K idle containers per shim kind (one shim each, as ctr starts them), private
#    memory (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup: what one more site
#    costs), PSS and RSS per shim, median over the K shims;
#  - latency: `ctr run --rm IMAGE true` (create + start + wait + delete through the shim),
#    rounds alternating between sgrun's shim with sgrun, the runc shim with runc, and the runc
#    shim with sgrun (--runc-binary), median of N each.
# Prints a Markdown table (docs/benchmarks.md takes it by hand, with the date).
#
#   SHIM=... SGRUN=... tests/bench/shim.sh [K] [N]      (defaults 10 and 15)
set -uo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SGRUN=${SGRUN:-$REPO/target/x86_64-unknown-linux-gnu/release/sgrun}
SHIM=${SHIM:-$REPO/target/x86_64-unknown-linux-gnu/release/containerd-shim-sgrun-v1}
RUNC=${RUNC:-/usr/sbin/runc}
RUNTIME=io.containerd.sgrun.v1
K=${1:-10} N=${2:-15}
START_TS=$(date +%s)

source "$REPO/tests/clients/lib.sh"
source "$REPO/tests/clients/image.sh"
source "$REPO/tests/shim/lib.sh"

die() { echo "shim.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
for b in "$SHIM" "$SGRUN" "$RUNC" "$(command -v containerd-shim-runc-v2)"; do
    [ -x "$b" ] || die "$b not found (make build shim; apt-get install containerd runc)"
done
exec 9>/run/lock/sgrun-clients-tests.lock
flock -w 300 9 || die "another client test run holds /run/lock/sgrun-clients-tests.lock"

T=$(mktemp -d /var/tmp/sgshim-bench.XXXXXX)
chmod 755 "$T"
RUN_TAG=sgshimb-${T##*.}; RUN_TAG=${RUN_TAG,,}
IMG_DIR=$T/image
host_paths_before
cleanup() {
    SUITE=teardown
    shim_teardown >/dev/null
    unmount_under "$T"
    rm_cgroup "/$RUN_TAG-ctr"
    for p in "${HOST_PATHS[@]}"; do
        [ -e "$p" ] && [ -z "${HOST_PATH_EXISTED[$p]:-}" ] && _tidy "$p"
    done
    rm -rf "$T"
}
trap cleanup EXIT

build_image "$IMG_DIR" >/dev/null 2>&1 || die "image build failed"
build_pause_image "$IMG_DIR" >/dev/null 2>&1 || die "pause image build failed"
# the real binary, not the logging wrapper of the tests: measure sgrun, not a shell script
shim_setup >/dev/null || die "containerd did not start (see $T)"
shim_options "$D/shim-ctr.toml" "$SGRUN"
SG=(--runtime "$RUNTIME" --runtime-config-path "$D/shim-ctr.toml")
RC_RUNC=(--runc-binary "$RUNC" --runc-root "$D/runc-root")
RC_SGRUN=(--runc-binary "$SGRUN" --runc-root "$D/runc-root-sg")

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR + 1) / 2]; else printf "%g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
kb() { awk -v k="$2" '$1 == k":" { s += $2 } END { print s + 0 }' "/proc/$1/smaps_rollup"; }
uss() { awk '/^Private_(Clean|Dirty):/ { s += $2 } END { print s + 0 }' "/proc/$1/smaps_rollup"; }
runc_shim_pids() { pgrep -f -- "containerd-shim-runc-v2 .*-address $D/c.sock( |$)"; }

# --- memory: K idle containers per shim kind ---------------------------------------------------
for i in $(seq "$K"); do
    "${CTR[@]}" run -d "${SG[@]}" "$IMAGE_NAME" "m-sg-$i" sleep 100000 >/dev/null || die "ctr run (sgrun shim) failed"
    "${CTR[@]}" run -d "${RC_RUNC[@]}" "$IMAGE_NAME" "m-rc-$i" sleep 100000 >/dev/null || die "ctr run (runc shim) failed"
done
# steady state: tokio's blocking-pool threads exit after 10 s idle, Go's runtime settles too
sleep 12
declare -A MEM
for kind in sg rc; do
    if [ $kind = sg ]; then pids=$(shim_pids); else pids=$(runc_shim_pids); fi
    [ "$(wc -w <<<"$pids")" = "$K" ] || die "expected $K $kind shims, found: $pids"
    MEM[$kind-uss]=$(for p in $pids; do uss "$p"; done | median)
    MEM[$kind-pss]=$(for p in $pids; do kb "$p" Pss; done | median)
    MEM[$kind-rss]=$(for p in $pids; do kb "$p" Rss; done | median)
    MEM[$kind-thr]=$(for p in $pids; do awk '/^Threads:/ { print $2 }' "/proc/$p/status"; done | median)
done
for i in $(seq "$K"); do
    for id in "m-sg-$i" "m-rc-$i"; do q "${CTR[@]}" task kill -s SIGKILL "$id"; done
done
for i in $(seq "$K"); do
    for id in "m-sg-$i" "m-rc-$i"; do
        wait_for 10 eval "! ctr_status_is $id RUNNING"
        q "${CTR[@]}" task delete "$id"; q "${CTR[@]}" container rm "$id"
    done
done

# --- latency: alternating rounds -------------------------------------------------------------
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1 </dev/null || return 1; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
declare -A LAT
for r in $(seq "$N"); do
    LAT[sg]+="$(ms "${CTR[@]}" run --rm "${SG[@]}" "$IMAGE_NAME" "l-sg-$r" true) " || die "sgrun shim run failed"
    LAT[rc]+="$(ms "${CTR[@]}" run --rm "${RC_RUNC[@]}" "$IMAGE_NAME" "l-rc-$r" true) " || die "runc shim run failed"
    LAT[rs]+="$(ms "${CTR[@]}" run --rm "${RC_SGRUN[@]}" "$IMAGE_NAME" "l-rs-$r" true) " || die "runc shim + sgrun run failed"
done
med() { tr ' ' '\n' <<<"$1" | grep . | median; }

echo "| shim (runtime) | private memory per shim (USS) | PSS | RSS | threads | ctr run --rm true (median of $N) |"
echo "|---|---|---|---|---|---|"
echo "| containerd-shim-sgrun-v1 (sgrun) | ${MEM[sg-uss]} kB | ${MEM[sg-pss]} kB | ${MEM[sg-rss]} kB | ${MEM[sg-thr]} | $(med "${LAT[sg]}") ms |"
echo "| containerd-shim-runc-v2 (runc) | ${MEM[rc-uss]} kB | ${MEM[rc-pss]} kB | ${MEM[rc-rss]} kB | ${MEM[rc-thr]} | $(med "${LAT[rc]}") ms |"
echo "| containerd-shim-runc-v2 (sgrun via --runc-binary) | | | | | $(med "${LAT[rs]}") ms |"
echo
echo "$K idle containers per shim kind (one shim each), medians; containerd $(containerd --version | awk '{print $3}'), $(date -u +%Y-%m-%d), $(( $(date +%s) - START_TS )) s"
