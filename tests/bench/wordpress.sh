#!/bin/bash
# WordPress requests per second with the wordpress class's seccomp filter against without it,
# in the same run: one installed site, started alternately under io.sgrun.profile=wordpress
# and under --default-profile none with no seccomp (same capabilities, same limits), each
# time warmed up, then loaded with CLIENTS keep-alive curl processes fetching the front page
# over the site's unix socket. Besides requests per second (wall clock: noisy on a shared
# 2-core VM), it reports the container's CPU time per request from its cgroup (cpuacct on
# cgroup v1, cpu.stat on v2), which a neighbour's load disturbs much less.
#
# Usage: tests/bench/wordpress.sh [--rounds N] [--requests N] [--clients N]
#        (root; SGRUN=path; IMAGE_DIR as for tests/wordpress/run.sh)
set -euo pipefail
ROUNDS=3
REQUESTS=400
CLIENTS=2
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --requests) REQUESTS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        *) echo "usage: $0 [--rounds N] [--requests N] [--clients N]" >&2; exit 2 ;;
    esac
done
SGRUN=${SGRUN:?set SGRUN to the sgrun binary}
export SGRUN
here=$(cd "$(dirname "$0")" && pwd)
wp=$here/../wordpress
image_dir=${IMAGE_DIR:-/var/tmp/sgrun-wordpress-image}
work=$(mktemp -d /var/tmp/sgrun-bench-wp.XXXXXX)
chmod 0755 "$work"
root=$work/root
id=bench-wp-$$
host=blog.example.test
sock=$work/sock/http.sock
sg() { "$SGRUN" --root "$root" "$@"; }
stop_site() {
    sg kill "$id" TERM >/dev/null 2>&1 || true
    for _ in $(seq 300); do
        [ "$(sg state "$id" 2>/dev/null | jq -r .status)" = running ] || break
        sleep 0.05
    done
    sg delete -f "$id" >/dev/null 2>&1 || true
}
trap 'stop_site; rm -rf --one-file-system "$work"' EXIT

"$wp/build-image.sh" "$image_dir" >/dev/null
for mode in filter none; do
    ann=""
    [ $mode = filter ] && ann=io.sgrun.profile=wordpress
    ANNOTATIONS=$ann SITE_ID=$id "$wp/bundle.sh" "$image_dir/rootfs" "$work/data" "$work/sock" \
        "$work/bundle-$mode" >/dev/null
done

start_site() { # MODE [WANT]: WANT is the HTTP code to wait for (200; "any" before the install)
    local profile=() want=${2:-200} code
    [ "$1" = none ] && profile=(--default-profile none)
    sg "${profile[@]}" run -d -b "$work/bundle-$1" "$id" >"$work/console-$1.log" 2>&1
    for _ in $(seq 600); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" "http://$host/" 2>/dev/null) || true
        [ "$code" = 200 ] && return 0
        [ "$want" = any ] && [ -n "$code" ] && [ "$code" != 000 ] && return 0
        sleep 0.05
    done
    echo "bench wordpress: the site did not answer $want under $1: $(tail -n 5 "$work/console-$1.log")" >&2
    return 1
}

# cpu_us: the site's cgroup CPU time so far, in microseconds.
cpu_us() {
    local f
    for f in /sys/fs/cgroup/cpuacct/sgrun/$id/cpuacct.usage /sys/fs/cgroup/cpu,cpuacct/sgrun/$id/cpuacct.usage; do
        [ -r "$f" ] && { echo $(($(cat "$f") / 1000)); return; }
    done
    f=/sys/fs/cgroup/sgrun/$id/cpu.stat
    [ -r "$f" ] && { awk '$1 == "usage_usec" {print $2}' "$f"; return; }
    echo "bench wordpress: no CPU accounting file for the cgroup sgrun/$id" >&2
    return 1
}

# load N: CLIENTS curl processes, each fetching N/CLIENTS front pages on one keep-alive
# connection; prints requests per second, fails unless every answer was 200.
load() {
    local per=$(($1 / CLIENTS)) pids=() start end i
    start=$(date +%s%N)
    for ((i = 0; i < CLIENTS; i++)); do
        curl -s --unix-socket "$sock" -o /dev/null -w '%{http_code}\n' "http://$host/?bench=[1-$per]" \
            >"$work/codes.$i" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    end=$(date +%s%N)
    local bad
    bad=$(cat "$work"/codes.* | grep -vc '^200$' || true)
    [ "$bad" = 0 ] || { echo "bench wordpress: $bad answers were not 200" >&2; return 1; }
    awk -v n=$((per * CLIENTS)) -v ns=$((end - start)) 'BEGIN {printf "%.1f", n / (ns / 1e9)}'
}

# The site is installed once (under the filter), as a user would.
start_site filter any
"$wp/flow.sh" "$sock" >"$work/flow.log" 2>&1 || { cat "$work/flow.log" >&2; exit 1; }
stop_site

declare -A rps cpu
for ((r = 0; r < ROUNDS; r++)); do
    # Alternate which mode goes first, so that drift hits both alike.
    if ((r % 2 == 0)); then order=(filter none); else order=(none filter); fi
    for mode in "${order[@]}"; do
        start_site "$mode"
        load 40 >/dev/null # warm-up: opcache, MariaDB's buffer pool
        c0=$(cpu_us)
        rps[$mode]+="$(load "$REQUESTS") "
        c1=$(cpu_us)
        cpu[$mode]+="$(awk -v d=$((c1 - c0)) -v n="$REQUESTS" 'BEGIN {printf "%.2f", d / n / 1000}') "
        stop_site
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
f=$(median <<<"${rps[filter]}")
n=$(median <<<"${rps[none]}")
fc=$(median <<<"${cpu[filter]}")
nc=$(median <<<"${cpu[none]}")
echo "| WordPress front page, $CLIENTS clients, $REQUESTS requests, median of $ROUNDS | req/s | container CPU ms per request |"
echo "|---|---:|---:|"
echo "| no seccomp filter (--default-profile none) | $n | $nc |"
echo "| wordpress class | $f | $fc |"
echo "| ratio (class / none) | $(awk -v a="$f" -v b="$n" 'BEGIN {printf "%.3f", a / b}') | $(awk -v a="$fc" -v b="$nc" 'BEGIN {printf "%.3f", a / b}') |"
echo
echo "samples, req/s: filter ${rps[filter]}; none ${rps[none]}"
echo "samples, CPU ms per request: filter ${cpu[filter]}; none ${cpu[none]}"
