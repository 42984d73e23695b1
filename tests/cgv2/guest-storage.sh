# shellcheck shell=sh
# The project-quota storage backends (ext4-prjquota, xfs-prjquota), tested in the VM because
# Debian's kernel there has ext4 QFMT_V2 and XFS quota, which our hosts' kernel lacks.
# Sourced by guest-tests.sh (it shares its TAP helpers, $RT, $B, $T, $PARENT, $CMD_TMO) before
# its "nothing left behind" checks, which therefore also cover these containers.
#
# Per filesystem: `sgrun tenant pool create` (a 300M image, mkfs, mount -o prjquota), a tenant
# of 64M and 1024 inodes, then, writing as the tenant the way tenants run (a container in a
# user namespace mapped to the tenant's range, its volume at /data):
#   - the block limit: a 100M write stops at 64M;
#   - the inode limit: empty files stop at 1024 inodes;
#   - re-tagging /data (FS_IOC_FSSETXATTR, project 0) is refused (EINVAL: the kernel allows a
#     project id change only from the initial user namespace);
#   - a host restart (bind, pool and loop device gone) and `mount --all`: data and limits back;
#   - weakened: the same tenant uid WITHOUT a user namespace re-tags /data to project 0 and
#     writes 100M: the hole the user namespace closes, so the test above can fail;
#   - a re-tagged directory is not mounted again; purge and pool rm leave no mount or loop device.
#
# The tests drive sgrun's own `tenant` CLI, so they run only when the runtime is sgrun (against
# runc, as a stand-in, they are reported as skipped, with the reason).

SGRUN=/usr/local/bin/sgrun
PROBE=/cgv2/probes/probe

# st ARGS...: sgrun --state-dir $SD ARGS; sets $rc and $out
st() {
    seq=$((seq + 1)); of=$T/st.$seq
    timeout -s KILL "$CMD_TMO" "$SGRUN" --state-dir "$SD" "$@" > "$of" 2>&1 < /dev/null
    rc=$?; out=$(cat "$of"); return $rc
}
st_ok() {
    d=$1; shift
    if st "$@"; then ok "$d"; else notok "$d" "\$ sgrun --state-dir $SD $* -> exit $rc" "$out"; fi
}
st_fails() {
    d=$1; shift
    if st "$@"; then notok "$d" "\$ sgrun --state-dir $SD $* unexpectedly succeeded" "$out"
    else ok "$d"; diag "  (exit $rc: $(printf '%s' "$out" | tail -n 1))"; fi
}
# json_num KEY: a number field of the JSON in $out
json_num() { flat "$out" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
# expect_has DESC TEXT NEEDLE
expect_has() {
    case $2 in *"$3"*) ok "$1";; *) notok "$1" "wanted '$3' in:" "$2";; esac
}

# pq_bundle ID UID USERNS(yes|no) SCRIPT: a busybox container with the tenant's volume at /data
# and the probe at /probes. With USERNS=yes: a user namespace mapping 0.. to the tenant's range,
# the process is its root. With no: no user namespace, the process is host uid UID itself.
pq_bundle() {
    id=$1; uid=$2; script=$4
    if [ "$3" = yes ]; then
        user='{"uid": 0, "gid": 0}'
        userns=',{"type":"user"}'
        maps="\"uidMappings\":[{\"containerID\":0,\"hostID\":$uid,\"size\":65536}],
    \"gidMappings\":[{\"containerID\":0,\"hostID\":$uid,\"size\":65536}],"
    else
        user="{\"uid\": $uid, \"gid\": $uid}"; userns=""; maps=""
    fi
    mkdir -p "$B/$id"
    cat > "$B/$id/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": $user,
    "args": ["sh", "-c", "$script"],
    "env": ["PATH=/bin:/sbin"],
    "cwd": "/",
    "capabilities": {"bounding": [$CAPS_DEFAULT], "effective": [$CAPS_DEFAULT], "permitted": [$CAPS_DEFAULT]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "$ROOTFS", "readonly": true},
  "hostname": "$id",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/data", "type": "bind", "source": "$VOL", "options": ["rbind", "nosuid", "nodev", "rw"]},
    {"destination": "/probes", "type": "bind", "source": "/cgv2/probes", "options": ["rbind", "nosuid", "nodev", "ro"]}
  ],
  "linux": {
    $maps
    "cgroupsPath": "/$PARENT/$id",
    "resources": {},
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}$userns]
  }
}
JSON
}
# pq_run ID UID USERNS SCRIPT: run it in the foreground; $rc, $out
pq_run() {
    pq_bundle "$@"
    rt run --bundle "$B/$1" "$1"
    "$RT" --root "$ROOT" delete -f "$1" > /dev/null 2>&1 < /dev/null
}
# The quota error each filesystem gives: ext4 EDQUOT; XFS answers a project quota with ENOSPC
# (it treats a project as a directory tree of limited size).
quota_err() { case $1 in xfs) echo "No space left on device";; *) echo "Disk quota exceeded";; esac; }

# storage_tests BACKEND FS
storage_tests() {
    K=$1; fs=$2; name=pq-$fs
    SD=/tmp/cgv2/st-$fs
    VOL=$SD/tenants/$name/volume
    err=$(quota_err "$fs")
    diag "---- $K: project quota on $fs ----"

    if st tenant pool create "$K" --size 300M; then ok "$K: pool create --size 300M (mkfs, mount -o prjquota)"
    else notok "$K: pool create --size 300M" "exit $rc" "$out" "$(dmesg | tail -n 5)"; return; fi
    diag "  $(grep " $SD/pools/$K " /proc/mounts)"
    if st tenant create $name --storage 64M --inodes 1024 --backend "$K"; then ok "$K: create $name --storage 64M --inodes 1024"
    else
        notok "$K: create $name --storage 64M --inodes 1024" "exit $rc" "$out"
        st tenant pool rm "$K"; rm -rf "$SD"; return
    fi
    st tenant show $name --json
    uid=$(json_num uid_base); proj=$(json_num project_id)
    expect_eq "$K: project id is the range index (uid_base / 65536)" "$proj" "$((uid / 65536))"
    expect_eq "$K: the volume directory carries the project id" "$($PROBE projid "$VOL")" "ok $proj"

    pq_run pq-blk-$fs "$uid" yes "dd if=/dev/zero of=/data/big bs=1M count=100; stat -c size=%s /data/big"
    expect_has "$K: a tenant (user namespace) writing 100M into 64M gets '$err'" "$out" "$err"
    st tenant usage $name --json
    used=$(json_num bytes_used); lim=$(json_num bytes_limit)
    expect_eq "$K: usage reports the 64M block limit" "$lim" $((64 * MiB))
    if [ -n "$used" ] && [ "$used" -le "$lim" ] && [ "$used" -ge $((60 * MiB)) ]; then ok "$K: usage is at the limit ($used bytes)"
    else notok "$K: usage is at the limit" "used '$used', limit '$lim'"; fi
    rm -f "$VOL/big"

    pq_run pq-ino-$fs "$uid" yes "mkdir /data/many; i=0; while true > /data/many/f\$i; do i=\$((i+1)); done; echo made=\$i"
    expect_has "$K: empty files stop with '$err' at the inode limit" "$out" "$err"
    made=$(printf '%s' "$out" | sed -n 's/^made=//p')
    if [ -n "$made" ] && [ "$made" -ge 1000 ] && [ "$made" -le 1023 ]; then ok "$K: $made files fit in 1024 inodes (with / and many/)"
    else notok "$K: about 1022 files fit in 1024 inodes" "made '$made'" "$out"; fi
    st tenant usage $name --json
    expect_eq "$K: usage: inodes used = the limit" "$(json_num inodes_used)" "$(json_num inodes_limit)"
    rm -rf "$VOL/many"

    pq_run pq-tag-$fs "$uid" yes "mkdir /data/d; /probes/probe projid /data 0; /probes/probe projid /data/d 0; /probes/probe projid /data/d"
    expect_eq "$K: re-tagging from the tenant's user namespace is refused (EINVAL), the id stays" \
        "$(printf '%s' "$out" | cut -d' ' -f1-2 | tr '\n' ' ')" "errno 22 errno 22 ok $proj "

    # A host restart: the bind, the pool and its loop device go; `mount --all` brings them back.
    echo kept > "$VOL/keep"
    umount "$VOL" && umount "$SD/pools/$K"
    i=0; while [ $i -lt 50 ] && grep -q "$SD" /sys/block/loop*/loop/backing_file 2>/dev/null; do sleep 0.1; i=$((i+1)); done
    if grep -q "$SD" /proc/mounts /sys/block/loop*/loop/backing_file 2>/dev/null; then notok "$K: restart simulated: nothing mounted or attached" "$(grep "$SD" /proc/mounts)"
    else ok "$K: restart simulated: nothing mounted or attached"; fi
    st_ok "$K: mount --all" tenant mount --all
    expect_has "$K: mount --all mounted the pool first" "$out" "pool $K: mounted"
    expect_eq "$K: data survived the restart" "$(cat "$VOL/keep" 2>&1)" kept
    pq_run pq-blk2-$fs "$uid" yes "dd if=/dev/zero of=/data/big bs=1M count=100"
    expect_has "$K: the block limit holds after the restart" "$out" "$err"
    rm -f "$VOL/big"

    # Weakened: the same uid without a user namespace. As the owner it may re-tag its own
    # directory to project 0, and the write then escapes the limit.
    pq_run pq-weak-$fs "$uid" no "/probes/probe projid /data 0 && dd if=/dev/zero of=/data/esc bs=1M count=100 && stat -c size=%s /data/esc"
    expect_has "$K: WEAKENED (no user namespace): the tenant re-tags /data to project 0" "$out" "ok 0"
    expect_has "$K: WEAKENED: ... and writes 100M past its 64M limit" "$out" "size=104857600"
    st_ok "$K: rm $name" tenant rm $name
    st_fails "$K: mount refuses a directory that lost its project id" tenant mount $name
    expect_has "$K: ... and says which id it carries" "$out" "project id 0"

    st_ok "$K: rm --purge $name" tenant rm --purge $name
    if [ -e "$SD/pools/$K/tenants/$name" ]; then notok "$K: purge deleted the project directory"; else ok "$K: purge deleted the project directory"; fi
    st_ok "$K: pool rm" tenant pool rm "$K"
    left=$(grep "$SD" /proc/mounts; grep -l "$SD" /sys/block/loop*/loop/backing_file 2>/dev/null)
    expect_eq "$K: no mount or loop device left" "$left" ""
    rm -rf "$SD"
}

# ---- project-quota storage backends ----------------------------------------------------------
if "$RT" --version 2>&1 | grep -q sgrun; then
    storage_tests ext4-prjquota ext4
    storage_tests xfs-prjquota xfs
else
    n=$((n + 1)); passed=$((passed + 1))
    echo "ok $n - # SKIP project-quota storage tests: they drive sgrun's tenant CLI, the runtime is $RT"
fi
