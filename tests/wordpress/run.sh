#!/bin/bash
# End-to-end: the real WordPress stack in an sgrun container, driven through its whole flow.
#
#   1. build the image (only when the recipe changed)        sgrun image build images/wordpress
#   2. a new site: data and socket directories, bundle        tests/wordpress/bundle.sh
#   3. cold start with `sgrun run -d`, time to first HTTP 200, the flow  tests/wordpress/flow.sh
#   4. clean stop (`sgrun kill ID TERM`): init exit status 0, MariaDB "Shutdown complete"
#   5. warm start on the same data with a foreground `sgrun run` (its exit status is the
#      container's): front page and uploaded media still served, no InnoDB crash recovery
#   6. clean stop again, delete, and check that nothing is left: state, cgroups, mounts
#
# Usage: tests/wordpress/run.sh       (as root)
# Environment (optional):
#   SGRUN        sgrun binary            default: sgrun on PATH, else target/release/sgrun
#   SGRUN_ROOT   state directory         default: a new temporary directory
#   IMAGE_DIR    image build directory   default: /var/tmp/sgrun-wordpress-image
#   WORK_DIR     site directories        default: a new directory under /var/tmp
#   KEEP_WORK=1  keep WORK_DIR (data, bundle, logs) at the end
#   ANNOTATIONS, EXTRA_JQ, CAPS, USERNS_BASE, MEMORY_LIMIT, PIDS_LIMIT: passed to bundle.sh.
#     With USERNS_BASE (and no TENANT) the rootfs is a copy of the image built by
#     build-image.sh into IMAGE_DIR, shifted to the mapped ids once by shift-rootfs.py.
#   TENANT=NAME  run the site as tenant NAME (created on a loop volume if missing, purged at
#     the end if this script created it) on the image built into sgrun's store with
#     `sgrun image build` (SGRUN_STATE_DIR, default /var/tmp/sgrun-wp-state): the idmapped
#     overlay of docs/rootfs.md instead of a bundle rootfs
#   START_TIMEOUT (60), STOP_TIMEOUT (30): seconds
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "run: error: $*" >&2; exit 1; }
log() { echo "# $*"; }
now_ms() { local s=${EPOCHREALTIME/./}; echo $((s / 1000)); }

[[ $(id -u) -eq 0 ]] || die "must run as root (containers, mounts, cgroups)"
for tool in jq curl python3 findmnt; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install ${tool/findmnt/util-linux})"
done
if [[ -z ${SGRUN:-} ]]; then
    if command -v sgrun >/dev/null; then SGRUN=$(command -v sgrun)
    elif [[ -x $repo/target/release/sgrun ]]; then SGRUN=$repo/target/release/sgrun
    else die "no sgrun binary: build it (cargo build --release) or set SGRUN=/path/to/sgrun"; fi
fi
[[ -x $SGRUN ]] || die "SGRUN=$SGRUN is not an executable"
export SGRUN
start_timeout=${START_TIMEOUT:-60}
stop_timeout=${STOP_TIMEOUT:-30}
image_dir=${IMAGE_DIR:-/var/tmp/sgrun-wordpress-image}
own_root=0 own_tenant=0
if [[ -z ${SGRUN_ROOT:-} ]]; then SGRUN_ROOT=$(mktemp -d /tmp/sgrun-wp-root.XXXXXX); own_root=1; fi
work=${WORK_DIR:-$(mktemp -d /var/tmp/sgrun-wp.XXXXXX)}
mkdir -p "$work"
# mktemp makes 0700: with a user namespace the container's root (a mapped host uid) must
# traverse it to reach the bind-mount sources.
chmod 0755 "$work"
work=$(cd "$work" && pwd)
id=wp-e2e-$$
export SITE_ID=$id
sg() { "$SGRUN" --root "$SGRUN_ROOT" "$@"; }
site_host=blog.example.test
export SITE_HOST=$site_host SITE_TITLE="sgrun e2e site $$"
sock=$work/sock/http.sock
fg_pid=''

# --- cleanup: always, and it checks that nothing is left behind -----------------------------
leftovers() {
    local found=0 d
    if sg state "$id" >/dev/null 2>&1; then echo "leftover: container $id still exists in $SGRUN_ROOT"; found=1; fi
    if [[ -e $SGRUN_ROOT/$id ]]; then echo "leftover: state directory $SGRUN_ROOT/$id"; found=1; fi
    for d in /sys/fs/cgroup/*/sgrun/"$id" /sys/fs/cgroup/unified/sgrun/"$id"; do
        if [[ -e $d ]]; then echo "leftover: cgroup $d"; found=1; fi
    done
    if findmnt -rn -o TARGET | grep -qF "$work"; then
        echo "leftover: mounts under $work: $(findmnt -rn -o TARGET | grep -F "$work" | tr '\n' ' ')"; found=1
    fi
    return "$found"
}
cleanup() {
    local rc=$?
    set +e
    if [[ -n $fg_pid ]] && kill -0 "$fg_pid" 2>/dev/null; then
        sg kill "$id" KILL >/dev/null 2>&1
        wait "$fg_pid" 2>/dev/null
    fi
    sg delete -f "$id" >/dev/null 2>&1
    if ! leftovers; then
        echo "not ok - cleanup: something was left behind (above)"
        rc=1
    fi
    if [[ $rc -ne 0 && -d $work ]]; then
        for f in "$work"/console-*.log; do
            [[ -f $f ]] || continue
            echo "# --- last lines of $f"
            tail -n 25 "$f" | sed 's/^/#   /'
        done
    fi
    if [[ ${KEEP_WORK:-0} == 1 ]]; then
        echo "# kept $work"
    elif ! findmnt -rn -o TARGET | grep -qF "$work"; then
        rm -rf --one-file-system "$work"
    fi
    [[ $own_root == 1 ]] && rm -rf --one-file-system "$SGRUN_ROOT"
    if [[ $own_tenant == 1 ]] && ! sg tenant rm --purge "$TENANT" >/dev/null; then
        echo "not ok - cleanup: sgrun tenant rm --purge $TENANT failed"
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT

# wait_status WANT: until `sgrun state` says WANT (or the container is gone, for "stopped").
wait_stopped() {
    local deadline=$(($(now_ms) + stop_timeout * 1000)) st
    while :; do
        st=$(sg state "$id" 2>/dev/null | jq -r .status) || st=gone
        [[ $st == stopped || $st == gone || -z $st ]] && return 0
        (($(now_ms) > deadline)) && return 1
        sleep 0.05
    done
}
# first_200 PATH: ms from $t0 to the first HTTP 200 on PATH; fails at once if the
# container stops meanwhile (its log then tells why).
first_200() {
    local deadline=$(($(now_ms) + start_timeout * 1000)) code n=0 st
    while :; do
        if ((++n % 10 == 0)); then
            st=$(sg state "$id" 2>/dev/null | jq -r .status) || st=gone
            if [[ $st != running && $st != created ]]; then
                echo "run: error: the container is $st before answering HTTP (see its log below)" >&2
                return 1
            fi
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket "$sock" \
            -H "Host: $site_host" "http://$site_host$1" 2>/dev/null) || true
        [[ $code == 200 ]] && { echo $(($(now_ms) - t0)); return 0; }
        (($(now_ms) > deadline)) && return 1
        sleep 0.02
    done
}
# check_clean_stop LOG: the init and MariaDB both stopped cleanly.
check_clean_stop() {
    grep -q 'sgrun-site-init: stopped (exit status 0)' "$1" ||
        die "the init did not report a clean stop in $1 (its last lines follow)"
    grep -q 'mariadbd: Shutdown complete' "$1" ||
        die "MariaDB did not log 'Shutdown complete' in $1: an unclean stop means crash recovery next time"
}

# --- 1. image -------------------------------------------------------------------------------------
t=$(now_ms)
data=$work/data
if [[ -n ${USERNS_BASE:-} && -z ${TENANT:-} ]]; then
    # a user namespace without a tenant: a copy of the image shifted to the mapped ids
    "$here/build-image.sh" "$image_dir" || die "the image build failed (above)"
    rootfs=$image_dir/rootfs
    echo "ok - image $rootfs ($(($(now_ms) - t)) ms, $(du -sm "$rootfs" | cut -f1) MiB)"
    shifted=$image_dir/rootfs-userns-$USERNS_BASE
    python3 "$here/shift-rootfs.py" "$rootfs" "$shifted" "$USERNS_BASE" ||
        die "could not make the id-shifted rootfs $shifted"
    rootfs=$shifted
    echo "ok - rootfs shifted by $USERNS_BASE: $rootfs"
else
    # the image in sgrun's store, built once per recipe change (`sgrun image build` says
    # "up to date" otherwise); without a tenant the container runs on the store's read-only
    # tree itself
    export SGRUN_STATE_DIR=${SGRUN_STATE_DIR:-/var/tmp/sgrun-wp-state}
    sg image build --quiet "$repo/images/wordpress" || die "sgrun image build failed (above)"
    rootfs=$(sg image inspect wordpress | jq -r .rootfs)
    echo "ok - image wordpress in sgrun's store ($(($(now_ms) - t)) ms)"
fi
if [[ -n ${TENANT:-} ]]; then
    if ! sg tenant show "$TENANT" >/dev/null 2>&1; then
        sg tenant create "$TENANT" --storage 2G --inodes 200000 --backend loop >/dev/null ||
            die "sgrun tenant create $TENANT failed (above)"
        own_tenant=1
    fi
    tenant_json=$(sg tenant show --json "$TENANT") || die "sgrun tenant show $TENANT failed"
    export USERNS_BASE TENANT
    USERNS_BASE=$(jq -r .uid_base <<<"$tenant_json")
    data=$(jq -r .mount_path <<<"$tenant_json")/sites/$id
    # the volume's root is the tenant's (0700); sites/ is made here as the tenant's root, as
    # sgrun would make it (a fresh volume: nothing in it can be a planted link yet)
    install -d -o "$USERNS_BASE" -g "$USERNS_BASE" -m 0755 "$(dirname "$data")"
    echo "ok - tenant $TENANT (ids $USERNS_BASE..$((USERNS_BASE + 65535))), site data $data"
fi

# --- 2. site --------------------------------------------------------------------------------------
"$here/bundle.sh" "$rootfs" "$data" "$work/sock" "$work/bundle" || die "bundle.sh failed (above)"
echo "ok - bundle $work/bundle (id $id)"

# --- 3. cold start + flow ------------------------------------------------------------------------
t0=$(now_ms)
sg run -d -b "$work/bundle" "$id" >"$work/console-cold.log" 2>&1 ||
    die "sgrun run -d failed: $(tail -n 5 "$work/console-cold.log")"
run_ms=$(($(now_ms) - t0))
cold_ms=$(first_200 /wp-admin/install.php) ||
    die "no HTTP 200 from /wp-admin/install.php after the cold start (timeout ${start_timeout}s)"
echo "ok - cold start: sgrun run -d $run_ms ms, first HTTP 200 after $cold_ms ms"
t=$(now_ms)
"$here/flow.sh" "$sock" | sed 's/^/    /'
flow_rc=${PIPESTATUS[0]}
flow_ms=$(($(now_ms) - t))
[[ $flow_rc -eq 0 ]] || die "the WordPress flow failed (above)"
echo "ok - flow ($flow_ms ms)"

# --- 4. clean stop ---------------------------------------------------------------------------------
t=$(now_ms)
sg kill "$id" TERM || die "sgrun kill $id TERM failed"
wait_stopped || die "the site did not stop within ${stop_timeout}s of SIGTERM"
stop_ms=$(($(now_ms) - t))
check_clean_stop "$work/console-cold.log"
sg delete "$id" || die "sgrun delete $id failed"
echo "ok - clean stop ($stop_ms ms): init exit status 0, MariaDB shutdown complete"

# --- 5. warm start on the same data ---------------------------------------------------------------
[[ ! -e $sock ]] || echo "# note: nginx left $sock behind; the init removes it at start"
t0=$(now_ms)
sg run -b "$work/bundle" "$id" >"$work/console-warm.log" 2>&1 </dev/null &
fg_pid=$!
warm_ms=$(first_200 /) || die "no HTTP 200 from / after the warm start (timeout ${start_timeout}s)"
echo "ok - warm start: first HTTP 200 after $warm_ms ms"
front=$(curl -sS --max-time 10 --unix-socket "$sock" -H "Host: $site_host" "http://$site_host/") ||
    die "front page after the warm start: curl failed"
grep -qF "$SITE_TITLE" <<<"$front" || die "the front page after the warm start lacks the site title '$SITE_TITLE'"
media=$(curl -sS --max-time 10 --unix-socket "$sock" -H "Host: $site_host" \
    "http://$site_host/wp-json/wp/v2/media") || die "media list after the warm start: curl failed"
url=$(jq -r '.[0].source_url // empty' <<<"$media" 2>/dev/null) || true
[[ -n $url ]] || die "no media after the warm start (uploads did not persist?): ${media:0:200}"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --unix-socket "$sock" -H "Host: $site_host" \
    "http://$site_host/${url#*://*/}") || true
[[ $code == 200 ]] || die "the uploaded file $url answered $code after the warm start"
echo "ok - data persisted: front page with the site title, uploaded file ${url#*://*/}"
if grep -qiE 'crash recovery|Starting final batch to recover|recovered|InnoDB: Starting recovery' "$work/console-warm.log"; then
    die "InnoDB did crash recovery at the warm start: $(grep -iE 'recover' "$work/console-warm.log" | head -n 3)"
fi
echo "ok - no InnoDB crash recovery at the warm start"

# --- 6. stop, delete, nothing left --------------------------------------------------------------
t=$(now_ms)
sg kill "$id" TERM || die "sgrun kill $id TERM (warm) failed"
deadline=$(($(now_ms) + stop_timeout * 1000))
while kill -0 "$fg_pid" 2>/dev/null; do
    (($(now_ms) > deadline)) && die "the warm site did not stop within ${stop_timeout}s of SIGTERM"
    sleep 0.05
done
warm_rc=0
wait "$fg_pid" || warm_rc=$?
fg_pid=''
warm_stop_ms=$(($(now_ms) - t))
[[ $warm_rc -eq 0 ]] || die "the warm container exited with status $warm_rc, not 0"
check_clean_stop "$work/console-warm.log"
echo "ok - clean stop ($warm_stop_ms ms): exit status 0 (foreground sgrun run), MariaDB shutdown complete"
sg delete -f "$id" >/dev/null 2>&1 || true
leftovers || die "something was left behind after delete (above)"
echo "ok - nothing left: state, cgroups, mounts"
echo "# figures: cold start to first 200 ${cold_ms} ms, warm ${warm_ms} ms, flow ${flow_ms} ms, stop ${stop_ms}/${warm_stop_ms} ms"
