#!/bin/bash
# Time a tenant's root filesystem adds to a container's start (docs/rootfs.md): `sgrun run` of
# /bin/true on a tenant's idmapped overlay (io.sgrun.tenant + io.sgrun.image) against the same
# config on a plain bundle rootfs, with the same user namespace (0 -> the tenant's uid_base) so
# that only the filesystem differs. Rounds alternate, so drift on a busy machine hits both
# alike; medians. Then sgrun-rootfs' own timing of its steps, from its debug log.
# Target: at most 5 ms added (issue 4).
# Usage: tests/bench/rootfs.sh [--rounds N] [--backend loop|dir]     (needs SGRUN=path, root)
set -euo pipefail
ROUNDS=40
BACKEND=loop
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        *) echo "usage: $0 [--rounds N] [--backend loop|dir]" >&2; exit 2 ;;
    esac
done
SGRUN=${SGRUN:?set SGRUN to the sgrun binary}
[ "$(id -u)" = 0 ] || { echo "$0: needs root (containers, loop volumes)" >&2; exit 2; }
command -v jq >/dev/null || { echo "$0: needs jq" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
# /var/tmp, 0755: the tenant's mapped root must reach the plain bundle's rootfs.
work=$(mktemp -d /var/tmp/sgrun-bench-rootfs.XXXXXX)
chmod 0755 "$work"
state=$work/state
root=$work/root
sg() { "$SGRUN" --state-dir "$state" --root "$root" "$@"; }
cleanup() {
    for id in $(sg list -q 2>/dev/null); do sg delete -f "$id" >/dev/null 2>&1 || true; done
    sg tenant rm --purge bench >/dev/null 2>&1 || true
    if grep -q " $work/" /proc/self/mountinfo; then
        echo "$0: mounts left under $work; not removing it" >&2
        return
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# busybox as a docker-archive (tests/clients/image.sh), imported into the store as an
# orchestrator would; it has no /srv/site, so a read-only root of it is the overlay
# (docs/rootfs.md), which this benchmark measures.
HERE=$here/../clients
# shellcheck source=../clients/image.sh
. "$here/../clients/image.sh"
build_image "$work" 2>/dev/null || { echo "$0: building the busybox image failed" >&2; exit 1; }
sg image import "$work/busybox-docker.tar" --name busybox --quiet >/dev/null ||
    { echo "$0: sgrun image import failed" >&2; exit 1; }
sg tenant create bench --backend "$BACKEND" --storage 64M --inodes 4096 >/dev/null 2>&1
uid=$(sg tenant show bench --json | jq -r .uid_base)

# The plain bundle's rootfs: a copy owned by the tenant's root, as a rootless-style bundle
# would be prepared without idmapped mounts.
cp -a "$work/rootfs" "$work/plain-rootfs"
chown -R "$uid:$uid" "$work/plain-rootfs"

bundle() { # NAME plain|tenant
    local dir=$work/$1
    mkdir -p "$dir"
    "$SGRUN" spec --bundle "$dir"
    jq --arg kind "$2" --arg rootfs "$work/plain-rootfs" --argjson uid "$uid" '
        .process.terminal = false
        | .process.args = ["/bin/true"]
        | .linux.cgroupsPath = ("/sgrun-bench/rootfs-" + $kind)
        | if $kind == "plain" then
            .root = {path: $rootfs, readonly: true}
            | .linux.namespaces += [{"type": "user"}]
            | .linux.uidMappings = [{"containerID": 0, "hostID": $uid, "size": 65536}]
            | .linux.gidMappings = [{"containerID": 0, "hostID": $uid, "size": 65536}]
          else
            .root = {path: "unused", readonly: true}
            | .annotations = {"io.sgrun.tenant": "bench", "io.sgrun.image": "busybox", "io.sgrun.site": "bench"}
          end
    ' "$dir/config.json" > "$dir/config.json.new"
    mv "$dir/config.json.new" "$dir/config.json"
}
bundle plain plain
bundle tenant tenant

run_once() { # NAME -> microseconds of the whole `sgrun run`
    local start end
    start=$(date +%s%N)
    sg run --bundle "$work/$1" "bench-$1" >/dev/null 2>"$work/err" ||
        { echo "$0: sgrun run ($1) failed: $(cat "$work/err")" >&2; exit 1; }
    end=$(date +%s%N)
    echo $(( (end - start) / 1000 ))
}
start_once() { # NAME -> microseconds of `sgrun create` + `sgrun start` (the delete is not timed)
    local start end
    start=$(date +%s%N)
    sg create --bundle "$work/$1" "bench-s-$1" >/dev/null 2>"$work/err" &&
        sg start "bench-s-$1" >/dev/null 2>>"$work/err" ||
        { echo "$0: sgrun create/start ($1) failed: $(cat "$work/err")" >&2; exit 1; }
    end=$(date +%s%N)
    sg delete -f "bench-s-$1" >/dev/null 2>&1
    echo $(( (end - start) / 1000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Warm-up (page cache, seccomp cache, the loop volume's first writes), not counted.
run_once plain >/dev/null; run_once tenant >/dev/null
plain=() tenant=() splain=() stenant=()
for ((r = 0; r < ROUNDS; r++)); do
    if (( r % 2 )); then
        plain+=("$(run_once plain)"); tenant+=("$(run_once tenant)")
        splain+=("$(start_once plain)"); stenant+=("$(start_once tenant)")
    else
        tenant+=("$(run_once tenant)"); plain+=("$(run_once plain)")
        stenant+=("$(start_once tenant)"); splain+=("$(start_once plain)")
    fi
done
mp=$(printf '%s\n' "${plain[@]}" | median)
mt=$(printf '%s\n' "${tenant[@]}" | median)
diffs=()
for ((r = 0; r < ROUNDS; r++)); do diffs+=($(( tenant[r] - plain[r] ))); done
md=$(printf '%s\n' "${diffs[@]}" | median)
msp=$(printf '%s\n' "${splain[@]}" | median)
mst=$(printf '%s\n' "${stenant[@]}" | median)
sdiffs=()
for ((r = 0; r < ROUNDS; r++)); do sdiffs+=($(( stenant[r] - splain[r] ))); done
msd=$(printf '%s\n' "${sdiffs[@]}" | median)

# sgrun-rootfs' own steps, measured in process (debug log; not in the rounds above).
: > "$work/log"
for ((r = 0; r < 15; r++)); do
    sg --debug --log "$work/log" run --bundle "$work/tenant" bench-tenant >/dev/null 2>&1
done
steps() { grep -o "$1=[0-9]*" "$work/log" | cut -d= -f2 | median; }

echo "| $BACKEND volume, median of $ROUNDS alternating rounds | plain bundle, same user namespace, µs | tenant overlay, µs | added (median of per-round differences), µs |"
echo "|---|---:|---:|---:|"
echo "| start: \`create\` + \`start\` of /bin/true | $msp | $mst | **$msd** |"
echo "| \`run\` of /bin/true (start, exit, delete) | $mp | $mt | $md |"
echo
echo "| sgrun-rootfs in process (debug log, 15 creates), median | µs |"
echo "|---|---:|"
echo "| idmap (userns child + open_tree + mount_setattr) | $(steps idmap_us) |"
echo "| overlay superblock (fsconfig + fsmount) | $(steps overlay_us) |"
echo "| every step of the mount (record, claim, marker, dirs, idmap, overlay, namespace, /srv/site) | $(steps total_us) |"
echo "| return to the host's mount namespace after the build | $(steps leave_us) |"
