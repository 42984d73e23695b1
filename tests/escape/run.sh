#!/bin/bash
# shellcheck disable=SC2317  # the cleanup and signal functions run from traps
# sgrun escape test driver: one peer container and one probe container under RUNTIME, then the
# probe's TAP report of every escape vector (tests/escape/probe, binary escape-probe).
#
#   tests/escape/run.sh --runtime PATH [--config default|tenant] [--weaken KIND] [--keep]
#
#   --runtime PATH   the OCI runtime binary under test (sgrun, runc, crun, ...)
#   --config NAME    default (what `runc spec` gives, plus memory/pids limits) or tenant (user
#                    namespace, limits, read-only root, and sgrun's wordpress profile or Docker's
#                    seccomp profile for runc/crun; for sgrun real tenants and images in a state
#                    dir of the run's own, --state-dir $W/sgstate); default: default
#   --weaken KIND    make the probe's container weaker on purpose, to prove the suite can fail:
#                    all-caps, no-seccomp, shared-namespaces, host-fd
#   --keep           keep the work dir under /var/tmp (containers and cgroups are still removed)
#
# Environment: ESCAPE_PROBE=PATH uses a ready static escape-probe instead of building it;
# CARGO_TARGET_DIR as for cargo; ESCAPE_TIMEOUT (default 300) seconds for the probe.
# Exit status: the probe's (0 = every vector defended); 2 usage or setup error; 3 something was
# left behind after the run. See tests/escape/README.md.
#
# Shape: the outer part (host view) validates, builds the probe, takes a lock and makes the work
# dir, then runs the inner part as a child: for crun on a hybrid cgroup host inside a private
# mount namespace whose /sys/fs/cgroup/unified is hidden under a tmpfs (crun 1.8.1 refuses hybrid
# hosts), otherwise directly. The inner part builds rootfs and bundles, starts the peer, runs the
# probe and deletes both containers in an EXIT trap. The outer part then removes and verifies
# from the host's view: cgroups, mounts, the work dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SELF=$HERE/run.sh
CG_PARENT=sgrun-escape        # every cgroupsPath is /sgrun-escape/<container id>
LOCK=/run/lock/sgrun-escape.lock
TRIPLE=x86_64-unknown-linux-gnu

RUNTIME=
CONFIG=default
WEAKEN=
KEEP=0
INNER=0
PRINT_PROBE=0       # --print-probe: build (or check) the probe, print its path, exit (for
                    # weakened.sh and compare.sh, which run many times on one build)

usage() { awk 'NR > 1 && /^# shellcheck/ { next } NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF"; exit "${1:-0}"; }
die() { echo "escape: $*" >&2; exit 2; }
say() { echo "escape: $*" >&2; }

while [ $# -gt 0 ]; do
    case $1 in
        --runtime) [ $# -ge 2 ] || die "--runtime needs a path"; RUNTIME=$2; shift 2 ;;
        --runtime=*) RUNTIME=${1#*=}; shift ;;
        --config) [ $# -ge 2 ] || die "--config needs default or tenant"; CONFIG=$2; shift 2 ;;
        --config=*) CONFIG=${1#*=}; shift ;;
        --weaken) [ $# -ge 2 ] || die "--weaken needs a kind"; WEAKEN=$2; shift 2 ;;
        --weaken=*) WEAKEN=${1#*=}; shift ;;
        --keep) KEEP=1; shift ;;
        --print-probe) PRINT_PROBE=1; shift ;;
        --inner) INNER=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "escape: unknown argument '$1'" >&2; usage 2 ;;
    esac
done

case $CONFIG in
    default|tenant) ;;
    *) die "unknown --config '$CONFIG': use default or tenant" ;;
esac
case $WEAKEN in
    ''|all-caps|no-seccomp|shared-namespaces|host-fd) ;;
    *) die "unknown --weaken '$WEAKEN': use all-caps, no-seccomp, shared-namespaces or host-fd" ;;
esac
if [ "$PRINT_PROBE" = 1 ]; then RUNTIME=${RUNTIME:-/bin/true}; fi
[ -n "$RUNTIME" ] || die "--runtime PATH is required (e.g. --runtime /usr/sbin/runc, or make escape RUNTIME=...)"
# absolute: the inner part, the state and the probe (ESCAPE_RUNTIME) all need the same file
RUNTIME=$(realpath -e -- "$RUNTIME" 2>/dev/null) || die "--runtime: no such file; build sgrun with 'make build' or name an installed runtime"
{ [ -f "$RUNTIME" ] && [ -x "$RUNTIME" ]; } || die "--runtime $RUNTIME is not an executable file (chmod +x it or name another)"
RT_NAME=$(basename "$RUNTIME")
IS_SGRUN=0; [[ $RT_NAME == sgrun* ]] && IS_SGRUN=1
IS_CRUN=0; [[ $RT_NAME == crun* ]] && IS_CRUN=1

# ---------------------------------------------------------------- cgroups (both parts)
# our_cgroups SKIP_UNIFIED: the /sgrun-escape directories in every hierarchy. Inside the masked
# namespace "unified" is our tmpfs holding crun's fake tree of plain files, not real cgroups:
# skipped there (its cgroup.procs could name anybody's PIDs); it vanishes with the namespace.
our_cgroups() {
    local d
    for d in "/sys/fs/cgroup/$CG_PARENT" /sys/fs/cgroup/*/"$CG_PARENT"; do
        [ -d "$d" ] || continue
        [ "$1" = 1 ] && [ "$d" = /sys/fs/cgroup/unified/$CG_PARENT ] && continue
        printf '%s\n' "$d"
    done
    return 0
}
# remove_cgroups SKIP_UNIFIED: kill by PID what is still inside our cgroups (only containers of
# this driver: the lock makes runs exclusive), thaw frozen ones, then rmdir depth first.
remove_cgroups() {
    local dirs f pid left try
    mapfile -t dirs < <(our_cgroups "$1")
    [ ${#dirs[@]} -gt 0 ] || return 0
    for (( try = 0; try < 20; try++ )); do
        left=0
        while read -r f; do
            case $f in
                */freezer.state) echo THAWED > "$f" 2>/dev/null || true ;;
                */cgroup.freeze) echo 0 > "$f" 2>/dev/null || true ;;
                */cgroup.procs)
                    while read -r pid; do
                        [ -n "$pid" ] || continue
                        left=1
                        kill -KILL "$pid" 2>/dev/null || true
                    done < "$f" ;;
            esac
        done < <(find "${dirs[@]}" \( -name freezer.state -o -name cgroup.freeze -o -name cgroup.procs \) 2>/dev/null)
        [ $left = 0 ] && break
        sleep 0.2
    done
    find "${dirs[@]}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    return 0
}

# =============================================================== outer part (host view)
W=
outer_cleanup() {
    local rc=$? left=""
    # a second Ctrl-C (the whole process group gets it) must not cut the cleanup short
    trap - EXIT
    trap '' INT TERM
    remove_cgroups 0
    [ -z "$(our_cgroups 0)" ] || left+=" cgroups: $(our_cgroups 0 | tr '\n' ' ')"
    if [ -n "$W" ]; then
        # nothing may stay mounted below the work dir (a rootfs the runtime left mounted would
        # keep the host's data reachable and make rm -rf fail)
        if grep -qF " $W/" /proc/self/mountinfo; then
            left+=" mounts under $W"
        fi
        # nor a loop device backed by a file below it (sgrun's tenant volumes; they are
        # AUTOCLEAR and go with their unmount): detach ours, by device, and report them
        local bf dev
        for bf in /sys/block/loop*/loop/backing_file; do
            [ -r "$bf" ] || continue
            case $(cat "$bf" 2>/dev/null) in
                "$W"/*)
                    dev=/dev/$(basename "$(dirname "$(dirname "$bf")")")
                    left+=" loop device $dev"
                    losetup -d "$dev" 2>/dev/null || true ;;
            esac
        done
        if [ "$KEEP" = 1 ]; then
            say "work dir kept: $W"
        elif [ -d "$W" ]; then
            rm -rf --one-file-system -- "$W" 2>/dev/null || true
            [ ! -e "$W" ] || left+=" work dir $W"
        fi
    fi
    if [ -n "$left" ]; then
        echo "escape: ERROR: left behind after the run:$left" >&2
        [ "$rc" = 0 ] && rc=3
    elif [ "$rc" = 3 ]; then
        echo "escape: ERROR: the inner part could not remove everything (see above)" >&2
    else
        say "cleanup verified: no container, no /sys/fs/cgroup/*/$CG_PARENT, no mount under the work dir$([ "$KEEP" = 1 ] || echo ", work dir removed")"
    fi
    exit "$rc"
}

CHILD=
# forward_signal STATUS: TERM to the inner part (unshare passes it on: it execs), wait for its
# cleanup, then exit (the EXIT trap checks and removes what is ours)
forward_signal() {
    if [ -n "$CHILD" ]; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    exit "$1"
}

build_probe() {
    if [ -n "${ESCAPE_PROBE:-}" ]; then
        PROBE=$(realpath -e -- "$ESCAPE_PROBE" 2>/dev/null) || die "ESCAPE_PROBE=$ESCAPE_PROBE: no such file"
    else
        [ -f "$REPO/tests/escape/probe/Cargo.toml" ] ||
            die "the probe crate tests/escape/probe is missing; set ESCAPE_PROBE=PATH to a static escape-probe"
        command -v cargo >/dev/null || die "cargo not found: install Rust, or set ESCAPE_PROBE=PATH"
        local tdir=${CARGO_TARGET_DIR:-$REPO/target}
        say "building the probe (cargo build --release -p sgrun-escape-probe --target $TRIPLE)"
        # static, like sgrun's release build: the busybox rootfs has no libc
        (cd "$REPO" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
            cargo build --quiet --release -p sgrun-escape-probe --target "$TRIPLE" >&2) ||
            die "building the probe failed (see cargo's output above)"
        PROBE=$tdir/$TRIPLE/release/escape-probe
    fi
    { [ -f "$PROBE" ] && [ -x "$PROBE" ]; } || die "probe $PROBE is not an executable file"
    # a dynamic probe would fail inside the busybox rootfs with a confusing ENOENT
    if command -v file >/dev/null && file -L "$PROBE" | grep -q 'dynamically linked'; then
        # static-pie binaries print "dynamically linked" in older file(1): trust ldd instead
        ldd "$PROBE" 2>&1 | grep -q -e 'not a dynamic' -e 'statically linked' ||
            die "probe $PROBE is dynamically linked: build it with RUSTFLAGS='-C target-feature=+crt-static'"
    fi
}

outer() {
    [ "$(id -u)" = 0 ] || die "must run as root (it creates containers, cgroups and user-namespace rootfs copies)"
    local t
    for t in jq unshare mount flock find timeout chown; do
        command -v "$t" >/dev/null || die "missing '$t' (apt-get install -y jq util-linux findutils coreutils)"
    done
    [ -x "$REPO/tests/rootfs/busybox.sh" ] || die "missing rootfs builder $REPO/tests/rootfs/busybox.sh"
    [ -f "$REPO/runtime/seccomp/tests/fixtures/docker-default.json" ] ||
        die "missing runtime/seccomp/tests/fixtures/docker-default.json (the runc/crun tenant seccomp profile)"
    build_probe
    if [ "$PRINT_PROBE" = 1 ]; then printf '%s\n' "$PROBE"; exit 0; fi

    # one run at a time: runs share the /sgrun-escape cgroup parent and remove what is in it
    mkdir -p "$(dirname "$LOCK")"
    exec 9> "$LOCK"
    flock -n 9 || die "another escape run holds $LOCK; wait for it"
    if [ -n "$(our_cgroups 0)" ]; then
        say "removing cgroups an earlier run left: $(our_cgroups 0 | tr '\n' ' ')"
        remove_cgroups 0
        [ -z "$(our_cgroups 0)" ] || die "cannot remove old cgroups: $(our_cgroups 0 | tr '\n' ' ')"
    fi

    # /var/tmp, not /root (0700): the tenant's mapped root (200000) must be able to reach its rootfs
    W=$(mktemp -d /var/tmp/sgrun-escape.XXXXXX)
    chmod 0755 "$W"
    trap outer_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    local mask=0
    if [ "$IS_CRUN" = 1 ] && [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ] &&
       [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
        mask=1
    fi
    local args=(--inner --runtime "$RUNTIME" --config "$CONFIG")
    [ -n "$WEAKEN" ] && args+=(--weaken "$WEAKEN")
    local rc=0
    # The inner part runs as a background child and we wait for it: bash runs a trap only
    # between commands, so with a foreground child a TERM would wait for the whole probe. On
    # INT/TERM the child gets TERM and cleans up its containers; we wait for that before
    # removing the work dir. fd 9 (the lock) is closed for it: no container may inherit it.
    trap 'forward_signal 130' INT
    trap 'forward_signal 143' TERM
    if [ $mask = 1 ]; then
        # crun 1.8.1 refuses a hybrid host; in a private mount namespace a 16 MiB tmpfs over
        # /sys/fs/cgroup/unified makes it see pure v1 (crun writes a small fake unified tree
        # there, hence not a token size). The host's mounts are not touched.
        ESCAPE_WORK=$W ESCAPE_PROBE_BIN=$PROBE ESCAPE_MASKED=1 \
            unshare -m --propagation private sh -c \
            'mount -t tmpfs -o size=16m,mode=755 sgrun-escape-mask /sys/fs/cgroup/unified && exec "$@"' \
            sgrun-escape-masked bash "$SELF" "${args[@]}" 9>&- &
    else
        ESCAPE_WORK=$W ESCAPE_PROBE_BIN=$PROBE ESCAPE_MASKED=0 bash "$SELF" "${args[@]}" 9>&- &
    fi
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    exit "$rc"
}

# =============================================================== inner part
declare -a LIVE=()      # container ids to delete on exit
PROBE_JOB=              # pid of the background probe pipeline while it runs
SYSV_KEY=               # the peer's SysV shm key (checked for on the host at the end)
ST=                     # --root state dir
# sgrun's tenant config (TENANTS=1): real tenants and images in a state dir of our own
TENANTS=0
SGSTATE=                # sgrun --state-dir: $W/sgstate (tenants, image store, overlay mount points)
declare -a RTFLAGS=()   # global flags for every runtime call: --state-dir for sgrun's tenant config
declare -a MY_TENANTS=() MY_IMAGES=()   # to remove on exit (tenant rm --purge, image rm)
# Tenant ranges are searched first-fit from here, not from sgrun's default 2^30, which the
# other sgrun state dirs on a test host hand out first: our tenants' ids stay our own.
TENANT_UID_BASE=$(( 0x50000000 ))

rt() { "$RUNTIME" --root "$ST" "${RTFLAGS[@]}" "$@"; }
sg() { "$RUNTIME" --state-dir "$SGSTATE" "$@"; }

inner_cleanup() {
    local rc=$? id
    # a second Ctrl-C (the whole process group gets it) must not cut the cleanup short
    trap - EXIT
    trap '' INT TERM
    [ -n "$ST" ] || exit "$rc"
    for id in "${LIVE[@]}"; do
        # TERM first, for up to 3 s: the peer removes its SysV segment and POSIX shm file on
        # SIGTERM. That matters with shared-namespaces, where the segment lives in the host's
        # IPC namespace and a KILLed peer would leave it there.
        if rt kill "$id" TERM >/dev/null 2>&1; then
            local i
            for (( i = 0; i < 30; i++ )); do
                [ "$(rt state "$id" 2>/dev/null | jq -r .status 2>/dev/null)" = running ] || break
                sleep 0.1
            done
        fi
        rt kill "$id" KILL >/dev/null 2>&1 || true
        # runc and crun need the process gone before a plain delete; --force does both
        if ! rt delete --force "$id" >/dev/null 2>"$W/delete.err"; then
            # "does not exist" is fine (a foreground run deletes its container itself)
            if rt state "$id" >/dev/null 2>&1; then
                echo "escape: ERROR: could not delete container $id: $(head -c 300 "$W/delete.err")" >&2
                [ "$rc" = 0 ] && rc=3
            fi
        fi
    done
    # the foreground `run` returns once its container is gone (killed above)
    if [ -n "$PROBE_JOB" ]; then wait "$PROBE_JOB" 2>/dev/null || true; fi
    # what the runtime did not remove (containers killed mid-start)
    remove_cgroups "$MASKED"
    if [ -n "$(our_cgroups "$MASKED")" ]; then
        echo "escape: ERROR: cgroups left: $(our_cgroups "$MASKED" | tr '\n' ' ')" >&2
        [ "$rc" = 0 ] && rc=3
    fi
    # our SysV segment in the host's IPC namespace (only a peer sharing it can put it there)
    if [ -n "$SYSV_KEY" ] && command -v ipcs >/dev/null &&
       ipcs -m | awk '{print $1}' | grep -qix "$(printf '0x%08x' "$SYSV_KEY")"; then
        echo "escape: ERROR: the peer's SysV segment $(printf '0x%08x' "$SYSV_KEY") was left in the host's IPC namespace; removed" >&2
        ipcrm -M "$SYSV_KEY" 2>/dev/null || true
        [ "$rc" = 0 ] && rc=3
    fi
    # the runtime's own word that no container is left in our state root (sgrun keeps a
    # compiled-profile cache there, which is not a container: hence list, not ls)
    local ids
    ids=$(rt list -q 2>&1) || ids="(list failed: $ids)"
    if [ -n "$ids" ]; then
        echo "escape: ERROR: containers left in $ST: $(echo "$ids" | tr '\n' ' ')" >&2
        [ "$rc" = 0 ] && rc=3
    fi
    # sgrun's tenant config: the tenants (unmount, detach the loop device, delete the volume,
    # free the range), then the images (their in-use markers went with the containers)
    local t
    for t in "${MY_TENANTS[@]}"; do
        if ! sg tenant rm --purge "$t" >/dev/null 2>"$W/tenant-rm.err"; then
            # a tenant whose create failed has no record left: nothing to remove
            if sg tenant show "$t" >/dev/null 2>&1; then
                echo "escape: ERROR: could not purge tenant $t: $(head -c 300 "$W/tenant-rm.err")" >&2
                [ "$rc" = 0 ] && rc=3
            fi
        fi
    done
    for t in "${MY_IMAGES[@]}"; do
        if ! sg image rm "$t" >/dev/null 2>"$W/image-rm.err"; then
            if sg image inspect "$t" >/dev/null 2>&1; then
                echo "escape: ERROR: could not remove image $t: $(head -c 300 "$W/image-rm.err")" >&2
                [ "$rc" = 0 ] && rc=3
            fi
        fi
    done
    exit "$rc"
}

# The bundle template mirrors `runc spec` (runc 1.1.5): the same namespaces, mounts, 3
# capabilities, masked and read-only paths, no seccomp section, no user namespace. It is the
# same for every runtime; configs and weakenings are jq edits of it (make_config).
template() {
    cat <<'JSON'
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["/escape-probe"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {
      "bounding":  ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient":   ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "escape",
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
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
JSON
}

# Capability names by number (linux/capability.h, 0..40).
CAP_NAMES=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
    LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE
    SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME
    SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG
    WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE)
# all_caps: JSON list of every capability in our own bounding set. Not simply all 41: a runtime
# cannot grant what it does not hold (the host this was written on runs us without
# CAP_SYS_RESOURCE, and then runc, crun and sgrun all fail with capset EPERM).
all_caps() {
    local bnd i out=()
    bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
    for (( i = 0; i < ${#CAP_NAMES[@]}; i++ )); do
        (( (16#$bnd >> i) & 1 )) && out+=("CAP_${CAP_NAMES[i]}")
    done
    printf '%s\n' "${out[@]}" | jq -R . | jq -sc .
}

# make_config ROLE(probe|peer) HOSTID ARGS_JSON ENV_JSON > config.json
make_config() {
    local role=$1 hostid=$2 argv=$3 envs=$4 weaken=""
    # Weakenings change the probe's container only, except shared-namespaces: a probe in the
    # host's namespaces beside a peer in its own would only find the host, not the peer.
    [ "$role" = probe ] && weaken=$WEAKEN
    [ "$WEAKEN" = shared-namespaces ] && weaken=$WEAKEN
    template | jq \
        --arg role "$role" --arg config "$CONFIG" --arg weaken "$weaken" --argjson sgrun "$IS_SGRUN" \
        --argjson tenants "$TENANTS" --arg tenant "esc-$role-$$" \
        --argjson hostid "$hostid" --argjson args "$argv" --argjson envs "$envs" \
        --arg cg "/$CG_PARENT/$ID_PREFIX-$role" --argjson allcaps "$(all_caps)" \
        --slurpfile docker "$REPO/runtime/seccomp/tests/fixtures/docker-default.json" '
        .process.args = $args
        | .process.env += $envs
        | .linux.cgroupsPath = $cg
        # both configs: a tenant-sized memory and pids limit (no swap beyond it)
        | .linux.resources.memory = {"limit": 268435456, "swap": 268435456}
        | .linux.resources.pids = {"limit": 128}
        | if $config == "tenant" then
            # A tenant gets its own user and cgroup namespaces: with the cgroup namespace its
            # cgroup is the root of what it sees, and no host cgroup path shows anywhere.
            .linux.namespaces += [{"type": "user"}, {"type": "cgroup"}]
            | .linux.uidMappings = [{"containerID": 0, "hostID": $hostid, "size": 65536}]
            | .linux.gidMappings = [{"containerID": 0, "hostID": $hostid, "size": 65536}]
            # a read-only root with a small writable /tmp, as a site container gets
            | .mounts += [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]}]
            # The probe (the attacker) runs as a WordPress tenant. The peer (the victim) runs
            # under the Docker default filter with every runtime (sgrun: oci-default, which is
            # the Docker default tightened): the wordpress class answers shmget with ENOSYS, and
            # a peer that cannot create its SysV segment would leave peer-sysv-ipc nothing to
            # attack.
            | if $sgrun == 1 then
                .annotations = {"io.sgrun.profile": (if $role == "probe" then "wordpress" else "oci-default" end)}
              else .linux.seccomp = $docker[0] end
            # sgrun: a real tenant container. Its root is the image (the overlay of the tenant
            # on its own volume; root.path is ignored), /srv/site its site data; sgrun maps
            # the range of the tenant itself and refuses any other mapping, so none is given.
            | if $tenants == 1 then
                .annotations += {"io.sgrun.tenant": $tenant, "io.sgrun.image": $tenant,
                                 "io.sgrun.site": $role}
                | del(.linux.uidMappings, .linux.gidMappings)
              else . end
          else . end
        | if $weaken == "all-caps" then
            .process.capabilities = {"bounding": $allcaps, "effective": $allcaps,
                "permitted": $allcaps, "inheritable": $allcaps, "ambient": $allcaps}
            # sgrun intersects the capabilities with its profile, which would undo the
            # weakening: it runs without one (--default-profile none) and gets the Docker
            # default filter as linux.seccomp instead, the nearest a config can say to its
            # profiles (oci-default is that filter tightened, wordpress is tighter still), so
            # that mainly the capabilities change
            | if $sgrun == 1 then del(.annotations["io.sgrun.profile"]) | .linux.seccomp = $docker[0] else . end
          elif $weaken == "no-seccomp" then
            del(.linux.seccomp) | del(.annotations["io.sgrun.profile"])
          elif $weaken == "shared-namespaces" then
            .linux.namespaces |= map(select(.type != "pid" and .type != "ipc" and .type != "network"))
            # In a user namespace the kernel mounts no proc, sysfs or mqueue for pid, network or
            # ipc namespaces the container does not own: bind the host ones instead (what a
            # rootless runtime does for /sys)
            | if $config == "tenant" then
                .mounts |= map(
                  if .type == "proc" then {"destination": "/proc", "type": "bind", "source": "/proc",
                                           "options": ["rbind", "nosuid", "nodev", "noexec"]}
                  elif .type == "sysfs" then {"destination": "/sys", "type": "bind", "source": "/sys",
                                              "options": ["rbind", "nosuid", "nodev", "noexec", "ro"]}
                  else . end)
                # no mqueue at all: the host may have none mounted to bind (this one has not)
                | .mounts |= map(select(.type != "mqueue"))
                # the v1 cgroup mount is built from /sys/fs/cgroup, already inside the /sys bind
                | .mounts |= map(select(.type != "cgroup"))
              else . end
          else . end
        '
}

start_peer() {
    local id=$ID_PREFIX-peer i
    LIVE+=("$id")
    # stdout of a detached container with terminal=false is the runtime's stdout: the file
    rt run -d --bundle "$W/peer" "$id" > "$W/peer.out" 2> "$W/peer.err" < /dev/null 9>&- ||
        die "$RT_NAME could not start the peer container: $(head -c 2000 "$W/peer.err")"
    for (( i = 0; i < 200; i++ )); do
        grep -qx 'peer ready' "$W/peer.out" 2>/dev/null && break
        # a peer that died (e.g. its setup failed) will never be ready: say so at once
        if (( i % 10 == 9 )) && [ "$(rt state "$id" 2>/dev/null | jq -r .status)" = stopped ]; then
            die "the peer exited before 'peer ready'; its stdout: $(head -c 1000 "$W/peer.out"); stderr: $(head -c 1000 "$W/peer.err")"
        fi
        sleep 0.1
    done
    grep -qx 'peer ready' "$W/peer.out" ||
        die "the peer did not print 'peer ready' within 20 s; its stdout: $(head -c 1000 "$W/peer.out"); stderr: $(head -c 1000 "$W/peer.err")"
    PEER_PID=$(rt state "$id" | jq -r .pid)
    { [[ $PEER_PID =~ ^[1-9][0-9]*$ ]] && [ -d "/proc/$PEER_PID" ]; } ||
        die "no live pid for the peer in '$RT_NAME state $id' (got '$PEER_PID')"
}

# docker_archive ROLE: $W/ROLE-image.tar, a `docker save` archive of $W/ROLE/rootfs in one
# uncompressed layer (the layout tests/integration/images.rs `docker_archive` builds):
# manifest.json, <sha256 of the config>.json with the layer's diff_id, l0/layer.tar.
docker_archive() {
    local role=$1 d=$W/image-$1 diff cfg
    mkdir -p "$d/l0"
    tar --numeric-owner -C "$W/$role/rootfs" -cf "$d/l0/layer.tar" .
    diff=$(sha256sum "$d/l0/layer.tar" | cut -d' ' -f1)
    jq -nc --arg d "sha256:$diff" '{"architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [$d]}}' > "$d/config.json"
    cfg=$(sha256sum "$d/config.json" | cut -d' ' -f1).json
    mv "$d/config.json" "$d/$cfg"
    jq -nc --arg c "$cfg" --arg t "esc-$role-$$:1" \
        '[{"Config": $c, "RepoTags": [$t], "Layers": ["l0/layer.tar"]}]' > "$d/manifest.json"
    tar -C "$d" -cf "$W/$role-image.tar" "$cfg" l0/layer.tar manifest.json
    rm -rf "$d"
}

# setup_tenants: sgrun's tenant config. Per role a tenant esc-ROLE-$$ (loop volume: a filesystem
# of its own, so that its /srv/site shows no host path; 64M, 4096 inodes) and an image
# esc-ROLE-$$ (the peer's holds /canary). Sets PEER_ROOT, where the peer's canaries lie on the
# host (its image's rootfs in the store, its tenant's volume), and OWN_VOLUME, the device of the
# probe tenant's volume, which the probe's mountinfo-host-paths and disk-limit recognise as its
# own (by device number: a mount of that filesystem names nothing of the host).
setup_tenants() {
    local role name out mp line
    for role in probe peer; do
        name=esc-$role-$$
        docker_archive "$role"
        MY_IMAGES+=("$name")
        out=$(sg image import "$W/$role-image.tar" --name "$name" --quiet 2>&1) ||
            die "sgrun image import of the $role's image failed: $out"
        rm -f "$W/$role-image.tar"
        MY_TENANTS+=("$name")
        out=$(sg tenant create "$name" --backend loop --storage 64M --inodes 4096 \
            --uid-base "$TENANT_UID_BASE" 2>&1) || die "sgrun tenant create $name failed: $out"
    done
    # The peer's files on the host: its image in the store (/canary, root's, 0600) and its own
    # volume, where a second canary lies, owned by the peer tenant's mapped root, 0600
    local img vol base
    img=$(sg image inspect "esc-peer-$$" | jq -r .rootfs)
    [ -f "$img/canary" ] || die "the peer's image has no /canary at $img"
    out=$(sg tenant show "esc-peer-$$" --json) || die "sgrun tenant show esc-peer-$$ failed: $out"
    vol=$(jq -r .mount_path <<< "$out")
    base=$(jq -r .uid_base <<< "$out")
    { [[ $base =~ ^[0-9]+$ ]] && [ -d "$vol" ]; } || die "sgrun tenant show esc-peer-$$: no uid_base or mount_path in $out"
    printf 'peer-canary' > "$vol/canary"
    chown "$base:$base" "$vol/canary"
    chmod 0600 "$vol/canary"
    PEER_ROOT=$img:$vol
    # the probe tenant's volume: a whole filesystem (root field /) mounted at its mount path
    mp=$(sg tenant show "esc-probe-$$" --json | jq -r .mount_path)
    line=$(awk -v p="$mp" '$5 == p && $4 == "/" { print $3 }' /proc/self/mountinfo)
    [[ $line =~ ^[0-9]+:[0-9]+$ ]] ||
        die "the probe tenant's volume $mp is not a filesystem of its own in /proc/self/mountinfo (got '$line')"
    OWN_VOLUME=$line
}

inner() {
    W=${ESCAPE_WORK:?inner part without ESCAPE_WORK}
    PROBE=${ESCAPE_PROBE_BIN:?inner part without ESCAPE_PROBE_BIN}
    PEER_ROOT=$W/peer/rootfs OWN_VOLUME=
    MASKED=${ESCAPE_MASKED:-0}
    ST=$W/state
    ID_PREFIX=esc-$$
    mkdir -p "$ST"
    trap inner_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    local probe_id=$ID_PREFIX-probe probe_uid=0 peer_uid=0
    if [ "$CONFIG" = tenant ]; then probe_uid=200000; peer_uid=300000; fi
    if [ "$IS_SGRUN" = 1 ] && [ "$CONFIG" = tenant ]; then
        TENANTS=1
        SGSTATE=$W/sgstate
        RTFLAGS=(--state-dir "$SGSTATE")
    fi

    # rootfs: one busybox build, a private copy per container (the tenant copies are chowned to
    # their own mapped range, so neither tenant owns the other's files)
    "$REPO/tests/rootfs/busybox.sh" "$W/base" >&2 || die "tests/rootfs/busybox.sh failed"
    local role
    for role in probe peer; do
        mkdir -p "$W/$role"
        cp -a "$W/base/rootfs" "$W/$role/rootfs"
        # the mount point of the site's data: sgrun's read-only tenant root (the image's
        # EROFS) cannot make it, a site image has it
        mkdir -p "$W/$role/rootfs/srv/site"
        install -m 0755 "$PROBE" "$W/$role/rootfs/escape-probe"
    done
    printf 'peer-canary' > "$W/peer/rootfs/canary"
    chmod 0600 "$W/peer/rootfs/canary"
    if [ "$TENANTS" = 1 ]; then
        # sgrun: the copies become images in the store (host root's files, shared read-only,
        # idmapped per tenant) and each container runs on its tenant's overlay of its image
        setup_tenants
    elif [ "$CONFIG" = tenant ]; then
        chown -R "$probe_uid:$probe_uid" "$W/probe/rootfs"
        chown -R "$peer_uid:$peer_uid" "$W/peer/rootfs"
    fi
    # the host's secret: root's, 0600, outside both rootfs
    printf 'host-secret' > "$W/host-secret"
    chmod 0600 "$W/host-secret"

    # the peer's resources: names carry our pid, so that nothing on the host matches by chance
    local port=$(( 20000 + $$ % 20000 ))
    local abstract=sgrun-escape-peer-$$
    SYSV_KEY=$(( 0x5e5c0000 + $$ % 65536 ))
    local sysv_key=$SYSV_KEY
    local posix_shm=sgrun-escape-peer-$$
    local peer_env
    peer_env=$(jq -nc --arg p "$port" --arg a "$abstract" --arg k "$sysv_key" --arg s "$posix_shm" \
        '["ESCAPE_PEER_PORT=\($p)", "ESCAPE_PEER_ABSTRACT=\($a)", "ESCAPE_PEER_SYSV_KEY=\($k)", "ESCAPE_PEER_POSIX_SHM=\($s)"]')
    make_config peer "$peer_uid" '["/escape-probe", "--peer"]' "$peer_env" > "$W/peer/config.json"

    start_peer

    local probe_env
    probe_env=$(jq -nc --argjson pe "$peer_env" --arg c "$CONFIG" --arg pid "$PEER_PID" \
        --arg root "$PEER_ROOT" --arg sec "$W/host-secret" --arg rt "$RUNTIME" --arg vol "$OWN_VOLUME" \
        '$pe + ["ESCAPE_CONFIG=\($c)", "ESCAPE_PEER_PID=\($pid)", "ESCAPE_PEER_ROOT=\($root)",
                "ESCAPE_HOST_SECRET=\($sec)", "ESCAPE_RUNTIME=\($rt)"]
         + (if $vol == "" then [] else ["ESCAPE_OWN_VOLUME=\($vol)"] end)')
    make_config probe "$probe_uid" '["/escape-probe"]' "$probe_env" > "$W/probe/config.json"

    local sgflags=() fdargs=()
    # sgrun without a profile: exactly the config, as runc runs it
    [ "$IS_SGRUN" = 1 ] && { [ "$WEAKEN" = no-seccomp ] || [ "$WEAKEN" = all-caps ]; } && sgflags=(--default-profile none)
    [ "$WEAKEN" = host-fd ] && fdargs=(--preserve-fds 1)

    echo "# runtime: $RUNTIME ($("$RUNTIME" --version 2>/dev/null | head -n1)), config: $CONFIG, weaken: ${WEAKEN:-none}$([ "$MASKED" = 1 ] && echo ", cgroup2 masked (crun)")"
    LIVE+=("$probe_id")
    local rc=0
    # In the background, so that a TERM reaches our trap at once (see outer); the status of
    # the runtime (= the probe's) comes back through a file.
    (
        set +e
        if [ "$WEAKEN" = host-fd ]; then
            # fd 3: the work dir's parent (/var/tmp), a host directory the container must never get
            timeout -k 5 "${ESCAPE_TIMEOUT:-300}" "$RUNTIME" --root "$ST" "${RTFLAGS[@]}" "${sgflags[@]}" run "${fdargs[@]}" \
                --bundle "$W/probe" "$probe_id" < /dev/null 3< "$(dirname "$W")" 9>&- | tee "$W/probe.tap"
        else
            timeout -k 5 "${ESCAPE_TIMEOUT:-300}" "$RUNTIME" --root "$ST" "${RTFLAGS[@]}" "${sgflags[@]}" run \
                --bundle "$W/probe" "$probe_id" < /dev/null 9>&- | tee "$W/probe.tap"
        fi
        echo "${PIPESTATUS[0]}" > "$W/probe.rc"
    ) &
    PROBE_JOB=$!
    wait "$PROBE_JOB" || true
    PROBE_JOB=
    rc=$(cat "$W/probe.rc" 2>/dev/null || echo 1)
    [ "$rc" = 124 ] && echo "escape: the probe did not finish within ${ESCAPE_TIMEOUT:-300} s: killed" >&2
    if ! tail -n 1 "$W/probe.tap" | grep -qE '^[0-9]+ passed, [0-9]+ failed$'; then
        echo "escape: the probe's output has no final '<P> passed, <F> failed' line (exit status $rc)" >&2
        [ "$rc" = 0 ] && rc=1
    fi
    exit "$rc"
}

if [ "$INNER" = 1 ]; then inner; else outer; fi
