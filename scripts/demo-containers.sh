#!/bin/bash
# The demo of what sgrun does today: two tenants' containers, each in its own user namespace
# range (0 -> 200000 and 0 -> 300000), under Docker's default seccomp profile, with memory and
# pids limits; an SRE's exec into one; proof that neither sees the other; everything removed.
# (The WordPress sites demo is scripts/demo.sh, `make demo`.)
# Usage: scripts/demo-containers.sh [path/to/sgrun]   (make demo-containers)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
sgrun=${1:-$top/target/x86_64-unknown-linux-gnu/release/sgrun}
[ -x "$sgrun" ] || { echo "demo: $sgrun not found; run make build" >&2; exit 1; }
work=$(mktemp -d /tmp/sgrun-demo.XXXXXX)
# The tenants' mapped roots (host uids 200000, 300000) must be able to reach their rootfs.
chmod 755 "$work"
root=$work/state
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
    for t in tenant-a tenant-b; do "$sgrun" --root "$root" delete -f "demo-$t" 2>/dev/null || true; done
    for c in /sys/fs/cgroup/*/sgrun-demo; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

step "building a busybox rootfs"
"$top/tests/rootfs/busybox.sh" "$work/base" >/dev/null
seccomp=$top/runtime/seccomp/tests/fixtures/docker-default.json

make_bundle() { # name hostid
    local b=$work/$1
    mkdir -p "$b/data"
    cp -a "$work/base/rootfs" "$b/rootfs"
    chown -R "$2:$2" "$b/rootfs" "$b/data"
    echo "secret of $1" > "$b/data/secret.txt"
    chown "$2:$2" "$b/data/secret.txt"; chmod 600 "$b/data/secret.txt"
    (cd "$b" && "$sgrun" spec --bundle .)
    jq --arg id "$1" --argjson h "$2" --slurpfile sc "$seccomp" '
        .process.terminal=false | .process.args=["/bin/sh","-c","echo $$ > /tmp/pid; exec sleep 1000"]
        | .hostname=$id
        | .linux.cgroupsPath="/sgrun-demo/"+$id
        | .linux.namespaces += [{"type":"user"}]
        | .linux.uidMappings=[{"containerID":0,"hostID":$h,"size":65536}]
        | .linux.gidMappings=[{"containerID":0,"hostID":$h,"size":65536}]
        | .linux.resources={"memory":{"limit":67108864},"pids":{"limit":64}}
        | .linux.seccomp=$sc[0]
        | .mounts += [{"destination":"/data","type":"bind","source":($ENV.B+"/data"),"options":["rbind","rw"]},
                      {"destination":"/tmp","type":"tmpfs","source":"tmpfs","options":["nosuid","nodev","size=16m"]}]
    ' "$b/config.json" | B=$b jq . > "$b/config.json.new"
    B=$b jq --arg src "$b/data" '(.mounts[] | select(.destination=="/data") | .source) = $src' "$b/config.json.new" > "$b/config.json"
    rm "$b/config.json.new"
}
make_bundle tenant-a 200000
make_bundle tenant-b 300000

step "starting both tenants' containers (user namespace, seccomp, 64 MiB, 64 pids)"
for t in tenant-a tenant-b; do
    "$sgrun" --root "$root" run -d --bundle "$work/$t" "demo-$t"
done
"$sgrun" --root "$root" list

step "an SRE looks into tenant-a with sgrun exec"
"$sgrun" --root "$root" exec demo-tenant-a sh -c 'echo "hostname: $(hostname)"; echo "uid_map: $(cat /proc/self/uid_map | tr -s " ")"; grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status; echo "processes:"; ps -o pid,user,args'

step "tenant-a reads its own data, and cannot reach tenant-b's"
"$sgrun" --root "$root" exec demo-tenant-a cat /data/secret.txt
b_pid=$("$sgrun" --root "$root" state demo-tenant-b | jq .pid)
"$sgrun" --root "$root" exec demo-tenant-a sh -c "ls /proc/$b_pid 2>&1 | head -1 || true; cat $work/tenant-b/data/secret.txt 2>&1 || true"

step "denied by the seccomp profile inside a tenant"
"$sgrun" --root "$root" exec demo-tenant-a sh -c 'unshare -U true 2>&1; mount -t tmpfs x /mnt 2>&1' || true

step "resource statistics (runc events --stats shape)"
"$sgrun" --root "$root" events --stats demo-tenant-a | jq -c '{memory: .data.memory.usage.usage, limit: .data.memory.usage.limit, pids: .data.pids}'

step "stopping and deleting; nothing is left"
for t in tenant-a tenant-b; do "$sgrun" --root "$root" delete -f "demo-$t"; done
"$sgrun" --root "$root" list
echo "demo done"
