#!/bin/bash
# Time to create and to delete (rm --purge) N tenants (default 100), one `sgrun tenant`
# process each, per storage backend available on this host: loop, dir and btrfs (on a btrfs
# pool that sgrun makes). Prints a Markdown table: total wall time, mean and p50/p90/max per
# command, for create and for purge.
#
# The project-quota backends (ext4-prjquota, xfs-prjquota) need a kernel with project quota,
# which our hosts lack; the only such kernel here is the cgroup-v2 VM's, under QEMU TCG,
# which emulates every instruction: its figures would measure the emulator, not the backend.
# They are left out on purpose.
#
# Usage: tests/bench/tenants.sh [--count N] [--backends "loop dir btrfs"] [--out FILE]
#        (root; SGRUN=path to the binary, default <repo>/target/release/sgrun)
set -euo pipefail
COUNT=100
BACKENDS="loop dir btrfs"
OUT=
while [ $# -gt 0 ]; do
    case $1 in
        --count) COUNT=$2; shift 2 ;;
        --backends) BACKENDS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "usage: $0 [--count N] [--backends \"loop dir btrfs\"] [--out FILE]" >&2; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
SGRUN=${SGRUN:-$repo/target/release/sgrun}
[ -x "$SGRUN" ] || { echo "tenants.sh: $SGRUN is not an executable (build it, or set SGRUN)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "tenants.sh: run as root (loop devices, mounts)" >&2; exit 2; }
for t in mkfs.ext4 mkfs.btrfs; do
    [ -x "/usr/sbin/$t" ] || { echo "tenants.sh: $t is missing (scripts/install-deps.sh --for bench)" >&2; exit 2; }
done

# The state dir lives on /var/tmp (disk), like /var/lib/sgrun would; images are sparse.
work=$(mktemp -d /var/tmp/sgrun-bench-tenants.XXXXXX)
cleanup() {
    # Whatever a failed run left: tenants, then the pool (sgrun's own commands; by-path last).
    for b in $BACKENDS; do
        sd=$work/$b
        [ -d "$sd/registry" ] || continue
        for f in "$sd"/registry/*.json; do
            n=$(basename "$f" .json)
            case $n in allocations|'*') continue ;; esac
            "$SGRUN" --state-dir "$sd" tenant rm --purge "$n" > /dev/null 2>&1 || true
        done
        [ -f "$sd/pools/$b.json" ] && "$SGRUN" --state-dir "$sd" tenant pool rm "$b" > /dev/null 2>&1 || true
    done
    if grep -q " $work" /proc/mounts; then
        echo "tenants.sh: warning: mounts left under $work; not removing it" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

now_us() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; }
# stats FILE: "mean p50 p90 max" in ms of the microsecond samples in FILE
stats() {
    sort -n "$1" | awk '{ v[NR] = $1; s += $1 }
        END { n = NR
              i50 = int((n * 50 + 99) / 100); i90 = int((n * 90 + 99) / 100)
              printf "%.1f %.1f %.1f %.1f", s / n / 1000, v[i50] / 1000, v[i90] / 1000, v[n] / 1000 }'
}

rows=()
for b in $BACKENDS; do
    sd=$work/$b
    mkdir -p "$sd"
    if [ "$b" = btrfs ]; then
        # 100 tenants of 64M each are overcommitted on purpose: quotas, not reservations.
        "$SGRUN" --state-dir "$sd" tenant pool create btrfs --size 2G > /dev/null
    fi
    : > "$work/$b.create"; : > "$work/$b.purge"
    t0=$(now_us)
    for i in $(seq 1 "$COUNT"); do
        s=$(now_us)
        "$SGRUN" --state-dir "$sd" tenant create "t$i" --storage 64M --inodes 2048 --backend "$b" \
            > /dev/null 2> "$work/err" || { echo "tenants.sh: create t$i ($b) failed:" >&2; cat "$work/err" >&2; exit 1; }
        echo $(( $(now_us) - s )) >> "$work/$b.create"
    done
    t1=$(now_us)
    for i in $(seq 1 "$COUNT"); do
        s=$(now_us)
        "$SGRUN" --state-dir "$sd" tenant rm --purge "t$i" > /dev/null 2> "$work/err" ||
            { echo "tenants.sh: rm --purge t$i ($b) failed:" >&2; cat "$work/err" >&2; exit 1; }
        echo $(( $(now_us) - s )) >> "$work/$b.purge"
    done
    t2=$(now_us)
    [ "$b" = btrfs ] && "$SGRUN" --state-dir "$sd" tenant pool rm btrfs > /dev/null
    read -r cm c50 c90 cmax <<< "$(stats "$work/$b.create")"
    read -r pm p50 p90 pmax <<< "$(stats "$work/$b.purge")"
    rows+=("| $b | $COUNT | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e6 }') | $cm | $c50 / $c90 / $cmax | $(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", (b - a) / 1e6 }') | $pm | $p50 / $p90 / $pmax |")
    echo "tenants.sh: $b done" >&2
done

{
    echo "| backend | tenants | create all (s) | create mean (ms) | create p50 / p90 / max (ms) | purge all (s) | purge mean (ms) | purge p50 / p90 / max (ms) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
} | tee ${OUT:+"$OUT"}
