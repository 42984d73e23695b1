#!/bin/bash
# Sites (issue 5): a WordPress site under `sgrun site` against the same stack started on the
# host without any container runtime, in one run, side by side, with ratios:
#
#   1. start to the first HTTP 200, warm (installed site) and cold (first start: database
#      created), from the launch until a poller on the site's unix socket gets 200;
#   2. requests per second of the front page, and CPU time per request (cgroup cpuacct),
#      same keep-alive curl clients for both, both stacks up: (a) both loaded at the same
#      time, each in a cpu cgroup of the same weight and quota (the ratio against the
#      target); (b) each alone, in short interleaved bursts (ABBA);
#      once through `sgrun proxy` (informational);
#   3. the shim's private memory (Private_Clean + Private_Dirty of smaps_rollup) and RSS;
#   4. N sites (default 50) created, started one after the other, checked, measured (memory
#      cgroup, shim, the host's MemAvailable), then removed, checking nothing is left.
#
# The host stack is the image's own tree (the store's rootfs, read-only bind) in a private
# mount namespace only: tmpfs at /tmp, /run, /run/mysqld, /var/log, /var/lib/nginx,
# /var/lib/php/sessions as the site's bundle has them, the data directory at /srv/site, the
# socket directory at /run/sgrun-http, /proc, /sys, /dev; then chroot and
# `tini -s -g -- /usr/local/sbin/sgrun-site-init` as real host root (-s: tini is not PID 1
# here, so it registers as the subreaper that PID 1 is in the container). Its data lives on
# a tenant volume of its own (same backend, size and filesystem as the site's) in plain host
# ids; its processes run in a cpuacct and a memory cgroup that this script makes and removes.
#
# Rounds alternate (sgrun, host; host, sgrun; ...). Figures are medians with min–max.
# Prints Markdown on stdout; progress on stderr. No timed asserts: exit 0 when every step
# worked and nothing was left behind, 1 otherwise, 2 for usage.
#
# Usage: tests/bench/sites.sh [--rounds N] [--cold-rounds N] [--requests N] [--bursts N]
#                             [--windows N] [--window-s S] [--clients N] [--sites N]
#                             [--per-tenant N] [--skip-cold] [--skip-proxy] [--skip-scale]
#                                                                          (as root)
# --requests is per stack, over --bursts bursts (default 600 over 12); --windows of
# --window-s seconds with both stacks loaded at once (default 6 of 10 s).
# Environment: SGRUN (default target/x86_64-unknown-linux-gnu/release/sgrun), SGRUN_SHIM
# (default: beside SGRUN), SGRUN_STATE_DIR (default /var/tmp/sgrun-wp-state, shared with the
# tests so that the image is built once), START_TIMEOUT (s, default 180), PERF_DIR (a
# directory: each burst of item 2 is recorded there with `perf record -a -g`, as
# <sgrun|host>-<burst>.data, to see where the CPU time goes; off by default).
set -euo pipefail
export LC_ALL=C

ROUNDS=5 COLD_ROUNDS=3 REQUESTS=600 BURSTS=12 WINDOWS=6 WINDOW_S=10 CLIENTS=2 SITES=50 PER_TENANT=5
SKIP_COLD=0 SKIP_PROXY=0 SKIP_SCALE=0
usage() {
    echo "usage: $0 [--rounds N] [--cold-rounds N] [--requests N] [--bursts N] [--windows N] [--window-s S] [--clients N] [--sites N]" \
        "[--per-tenant N] [--skip-cold] [--skip-proxy] [--skip-scale]" >&2
    exit 2
}
num() { [[ ${2:-} =~ ^[0-9]+$ ]] && (($2 > 0)) || { echo "$1 needs a positive number" >&2; usage; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) num "$1" "${2:-}"; ROUNDS=$2; shift 2 ;;
        --cold-rounds) num "$1" "${2:-}"; COLD_ROUNDS=$2; shift 2 ;;
        --requests) num "$1" "${2:-}"; REQUESTS=$2; shift 2 ;;
        --bursts) num "$1" "${2:-}"; BURSTS=$2; shift 2 ;;
        --windows) num "$1" "${2:-}"; WINDOWS=$2; shift 2 ;;
        --window-s) num "$1" "${2:-}"; WINDOW_S=$2; shift 2 ;;
        --clients) num "$1" "${2:-}"; CLIENTS=$2; shift 2 ;;
        --sites) num "$1" "${2:-}"; SITES=$2; shift 2 ;;
        --per-tenant) num "$1" "${2:-}"; PER_TENANT=$2; shift 2 ;;
        --skip-cold) SKIP_COLD=1; shift ;;
        --skip-proxy) SKIP_PROXY=1; shift ;;
        --skip-scale) SKIP_SCALE=1; shift ;;
        *) usage ;;
    esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
say() { echo "sites.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }
[[ $(id -u) -eq 0 ]] || { say "needs root"; exit 2; }
PY=/usr/bin/python3 # not a pyenv shim: its start would be timed
for t in jq curl "$PY" unshare chroot flock findmnt nginx; do
    command -v "$t" >/dev/null || { say "$t is missing (scripts/install-deps.sh --for test)"; exit 2; }
done
SGRUN=${SGRUN:-$repo/target/x86_64-unknown-linux-gnu/release/sgrun}
[[ -x $SGRUN ]] || { say "no sgrun at $SGRUN: make build, or set SGRUN"; exit 2; }
export SGRUN_SHIM=${SGRUN_SHIM:-$(dirname "$SGRUN")/containerd-shim-sgrun-v1}
[[ -x $SGRUN_SHIM ]] || { say "no shim at $SGRUN_SHIM: make shim, or set SGRUN_SHIM"; exit 2; }
export SGRUN_STATE_DIR=${SGRUN_STATE_DIR:-/var/tmp/sgrun-wp-state}
start_timeout=${START_TIMEOUT:-180}
ncpu=$(nproc)
cpuacct=/sys/fs/cgroup/cpuacct
[[ -d $cpuacct ]] || cpuacct=/sys/fs/cgroup/cpu,cpuacct
memcg=/sys/fs/cgroup/memory
cpucg=/sys/fs/cgroup/cpu
[[ -f $cpucg/cpu.cfs_quota_us ]] || cpucg=$cpuacct
[[ -f $cpuacct/cpuacct.usage && -d $memcg ]] || { say "needs the cgroup v1 cpuacct and memory controllers"; exit 2; }

exec 9>/run/lock/sgrun-bench-sites.lock
flock -n 9 || { say "another run holds /run/lock/sgrun-bench-sites.lock"; exit 2; }

run_start=$(date +%s)
tag=$$
root=$(mktemp -d /run/sgrun-bench-sites.XXXXXX)
work=$(mktemp -d /var/tmp/sgrun-bench-sites.XXXXXX)
chmod 0755 "$work"
sg() { "$SGRUN" --root "$root" "$@"; }
now() { echo "$EPOCHREALTIME"; }
# what the run made, for the cleanup
sites=() tenants=() shim_pids=() proxy_started=0
host_pid='' host_cg=sgrun-bench-sites-$tag
ts=bench-s$tag th=bench-h$tag # the sgrun site's tenant; the host stack's data volume
warm=$ts/warm
domain=warm.$ts.localhost

# --- cleanup: always, by pid and by name; fails the run if anything is left ---------------------
stop_host() { # SIGTERM to tini, wait; SIGKILL to whatever is left in the host cgroup. Sets HOST_RC.
    local p tini
    HOST_RC=0
    [[ -n $host_pid ]] || return 0
    tini=$(cat "/proc/$host_pid/task/$host_pid/children" 2>/dev/null || true)
    for p in $tini; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 600); do kill -0 "$host_pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$host_pid" 2>/dev/null; then
        say "the host stack did not stop within 30 s: SIGKILL"
        for p in $(cat "$cpuacct/$host_cg/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    fi
    wait "$host_pid" 2>/dev/null || HOST_RC=$?
    host_pid=''
}
cleanup() {
    local rc=$? found=0 s t p d id
    set +e
    trap '' INT TERM
    stop_host
    for p in $(cat "$cpuacct/$host_cg/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    [[ $proxy_started == 1 ]] && sg proxy stop >/dev/null 2>&1
    for s in "${sites[@]}"; do
        sg site status "$s" >/dev/null 2>&1 || continue
        sg site rm --force --purge "$s" 2>&1 >/dev/null | sed 's/^/# cleanup: /' >&2
    done
    for t in "${tenants[@]}"; do
        sg tenant show "$t" >/dev/null 2>&1 || continue
        sg tenant rm --purge "$t" 2>&1 >/dev/null | sed 's/^/# cleanup: /' >&2
    done
    for d in "$cpuacct/$host_cg" "$memcg/$host_cg" "$cpucg/$host_cg"; do
        [[ -d $d ]] || continue
        for _ in $(seq 100); do rmdir "$d" 2>/dev/null && break; sleep 0.05; done
        [[ -d $d ]] && { say "leftover: cgroup $d"; found=1; }
    done
    for s in "${sites[@]}"; do
        id=${s/\//.}
        for d in /sys/fs/cgroup/*/sgrun/"$id"; do
            [[ -e $d ]] && { say "leftover: cgroup $d"; found=1; }
        done
    done
    for p in "${shim_pids[@]}"; do
        # a zombie is not running: here PID 1 does not reap the shims it inherits
        if [[ $(cat "/proc/$p/comm" 2>/dev/null) == containerd-shim* ]] &&
            [[ $(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null) != Z ]]; then
            say "leftover: shim pid $p"; found=1; kill -KILL "$p"
        fi
    done
    if [[ -n $(sg list -q 2>/dev/null) ]]; then say "leftover: containers in $root: $(sg list -q | tr '\n' ' ')"; found=1; fi
    if findmnt -rn -o TARGET | grep -qE "/tenants/bench-[shn]$tag|$root|$work"; then
        say "leftover: mounts $(findmnt -rn -o TARGET | grep -E "/tenants/bench-[shn]$tag|$root|$work" | tr '\n' ' ')"; found=1
    fi
    for t in "${tenants[@]}"; do
        sg tenant show "$t" >/dev/null 2>&1 && { say "leftover: tenant $t"; found=1; }
    done
    if [[ $found == 1 ]]; then say "cleanup: something was left behind"; rc=1
    else say "cleanup verified: no site, tenant, shim, container, cgroup or mount of this run is left"; fi
    rm -rf --one-file-system "$work"
    rmdir "$root/.sites/.locks" "$root/.sites" "$root/.proxy" 2>/dev/null
    rmdir "$root" 2>/dev/null || rm -rf --one-file-system "$root"
    say "took $(($(date +%s) - run_start)) s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ---------------------------------------------------------------------------------
# poll.py SOCKET HOST PATH TIMEOUT_S: GET PATH every 10 ms until it answers 200; prints the
# wall-clock time (same clock as bash EPOCHREALTIME) of that answer and the number of tries.
cat >"$work/poll.py" <<'EOF'
import socket, sys, time
sock, host, path, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
req = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode()
deadline = time.time() + timeout
tries, last = 0, "no answer"
while True:
    tries += 1
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    try:
        s.connect(sock)
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "?"
        if status == "200":
            print("%.6f %d" % (time.time(), tries))
            sys.exit(0)
        last = "HTTP " + status
    except (OSError, IndexError) as e:
        last = str(e)
    finally:
        s.close()
    if time.time() > deadline:
        sys.stderr.write("no 200 from %s%s within %s s (last: %s)\n" % (sock, path, timeout, last))
        sys.exit(1)
    time.sleep(0.01)
EOF

median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.6g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
range() { tr ' ' '\n' | grep . | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }
cell() { # "median (min–max)" of the samples in $1, each formatted with %.Nf ($2)
    local m r
    m=$(median <<<"$1") r=$(range <<<"$1")
    awk -v m="$m" -v r="$r" -v f="%.${2}f" 'BEGIN { split(r, x, "–"); printf f " (" f "–" f ")", m, x[1], x[2] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "–" }'; }
fmt() { awk -v v="$1" -v f="%.${2}f" 'BEGIN { printf f, v }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
mem_avail_kb() { awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo; }
uss_kb() { awk '/^Private_(Clean|Dirty):/ { s += $2 } END { print s + 0 }' "/proc/$1/smaps_rollup"; }
rss_kb() { awk '$1 == "Rss:" { print $2 }' "/proc/$1/smaps_rollup"; }
memstat() { awk -v k="$2" '$1 == k { print $2 }' "$1/memory.stat"; } # DIR KEY: bytes
load_now() { cut -d' ' -f1-3 /proc/loadavg; }

# http SOCK PATH [curl args]: the status code; the body in $work/body
http() {
    local sock=$1 path=$2
    shift 2
    curl -s --max-time 60 --unix-socket "$sock" -H "Host: $domain" -o "$work/body" -w '%{http_code}' \
        "$@" "http://$domain$path" || true
}

wp_install() { # SOCK WHO: WordPress's install over HTTP, as tests/sites/run.sh does it
    local code
    code=$(http "$1" /wp-admin/install.php)
    [[ $code == 200 ]] || die "install form of the $2 stack: HTTP $code"
    code=$(http "$1" '/wp-admin/install.php?step=2' \
        --data-urlencode "weblog_title=Bench $tag" --data-urlencode "user_name=admin" \
        --data-urlencode "admin_password=bench-$tag-pw" --data-urlencode "admin_password2=bench-$tag-pw" \
        --data-urlencode "pw_weak=on" --data-urlencode "admin_email=admin@$domain" \
        --data-urlencode "blog_public=0" --data-urlencode "Submit=Install WordPress")
    [[ $code == 200 ]] && grep -q 'Success!' "$work/body" || die "install of the $2 stack: HTTP $code"
    [[ $(http "$1" /) == 200 ]] || die "front page of the $2 stack after the install: not 200"
}

# load SOCK|URL N: CLIENTS curl processes, N/CLIENTS front pages each on one keep-alive
# connection; prints requests per second; fails unless every answer was 200.
load() {
    local target=$1 per=$(($2 / CLIENTS)) pids=() t0 t1 i p bad
    t0=$(now)
    for ((i = 0; i < CLIENTS; i++)); do
        if [[ $target == http://* ]]; then
            curl -s -H "Host: $domain" -o /dev/null -w '%{http_code}\n' "$target/?bench=[1-$per]" >"$work/codes.$i" &
        else
            curl -s --unix-socket "$target" -o /dev/null -w '%{http_code}\n' "http://$domain/?bench=[1-$per]" \
                >"$work/codes.$i" &
        fi
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    t1=$(now)
    bad=$(cat "$work"/codes.* | grep -vc '^200$' || true)
    rm -f "$work"/codes.*
    [[ $bad == 0 ]] || { say "$bad of $((per * CLIENTS)) answers were not 200"; return 1; }
    awk -v n=$((per * CLIENTS)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }'
}

# --- setup -----------------------------------------------------------------------------------
say "state $SGRUN_STATE_DIR, root $root, work $work; load $(load_now)"
t=$(now)
sg image build --quiet "$repo/images/wordpress" >/dev/null || die "sgrun image build images/wordpress failed"
rootfs=$(sg image inspect wordpress | jq -r .rootfs)
[[ -x $rootfs/usr/bin/tini && -x $rootfs/usr/local/sbin/sgrun-site-init ]] || die "no site image at $rootfs"
mysql_uid=$(awk -F: '$1 == "mysql" { print $3 }' "$rootfs/etc/passwd")
mysql_gid=$(awk -F: '$1 == "mysql" { print $4 }' "$rootfs/etc/passwd")
[[ -n $mysql_uid && -n $mysql_gid ]] || die "no mysql user in $rootfs/etc/passwd"
say "image wordpress ready ($(elapsed "$t" "$(now)") s): $rootfs"

tenants+=("$ts" "$th")
sg tenant create "$ts" --storage 2G --inodes 200000 >/dev/null || die "tenant create $ts"
sg tenant create "$th" --storage 2G --inodes 200000 >/dev/null || die "tenant create $th"
hvol=$(sg tenant show --json "$th" | jq -r .mount_path)
[[ -d $hvol ]] || die "the volume of $th is not at $hvol"
sites+=("$warm")
# --cpus = every CPU: the host stack has no quota either
sg site create "$warm" --domain "$domain" --memory 512M --cpus "$ncpu" --pids 256 >/dev/null || die "site create $warm"
sock_s=$(sg site status --json "$warm" | jq -r .http_socket)
cg_s=${warm/\//.}

# The host stack's cpu cgroup is the site's twin: same weight (1024), same quota (all CPUs),
# so that loaded at the same time each gets the same share of the machine.
mkdir "$cpuacct/$host_cg" "$memcg/$host_cg"
[[ -d $cpucg/$host_cg ]] || mkdir "$cpucg/$host_cg" # cpu and cpuacct may be one hierarchy
echo $((ncpu * 100000)) >"$cpucg/$host_cg/cpu.cfs_quota_us"
mkdir -p "$work/mnt"
# The host stack: runs in a private mount namespace (unshare), as host root.
cat >"$work/host-stack.sh" <<'EOF'
#!/bin/bash
# host-stack.sh ROOTFS DATA SOCKDIR MNT MYSQL_UID MYSQL_GID: the site's mounts, then its init
set -euo pipefail
rootfs=$1 data=$2 sockdir=$3 mnt=$4 muid=$5 mgid=$6
mount --bind "$rootfs" "$mnt"
mount -o remount,bind,ro "$mnt"
mount -t proc -o nosuid,nodev,noexec proc "$mnt/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$mnt/sys"
mount --rbind /dev "$mnt/dev"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=128m tmpfs "$mnt/tmp"
mount -t tmpfs -o nosuid,nodev,noexec,mode=755,size=16m tmpfs "$mnt/run"
mkdir "$mnt/run/mysqld" "$mnt/run/sgrun-http"
mount -t tmpfs -o "nosuid,nodev,noexec,mode=755,size=1m,uid=$muid,gid=$mgid" tmpfs "$mnt/run/mysqld"
mount --bind -o nosuid,nodev,noexec "$sockdir" "$mnt/run/sgrun-http"
mount -t tmpfs -o nosuid,nodev,noexec,mode=755,size=16m tmpfs "$mnt/var/log"
mount -t tmpfs -o nosuid,nodev,noexec,mode=755,size=128m,uid=33,gid=33 tmpfs "$mnt/var/lib/nginx"
mount -t tmpfs -o nosuid,nodev,noexec,mode=1733,size=16m tmpfs "$mnt/var/lib/php/sessions"
mount --bind "$data" "$mnt/srv/site"
ulimit -n 4096
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    chroot "$mnt" /usr/bin/tini -s -g -- /usr/local/sbin/sgrun-site-init
EOF
for d in proc sys dev tmp run var/log var/lib/nginx var/lib/php/sessions srv/site; do
    [[ -d $rootfs/$d ]] || die "the image has no /$d to mount on (host stack)"
done

host_data() { # NAME: a data directory on the host tenant's volume, owners as sgrun makes them
    local d=$hvol/host/$1
    install -d -o 0 -g 0 -m 0755 "$hvol/host" "$d"
    install -d -o "$mysql_uid" -g "$mysql_gid" -m 0700 "$d/mysql"
    install -d -o 33 -g 33 -m 0755 "$d/wp-content"
    echo "$d"
}
hsock_dir=$work/host-http
install -d -m 0755 "$hsock_dir"
sock_h=$hsock_dir/http.sock

# launch_host DATA: starts the host stack in the background (its pid in host_pid)
launch_host() {
    (
        echo "$BASHPID" >"$cpuacct/$host_cg/cgroup.procs"
        echo "$BASHPID" >"$memcg/$host_cg/cgroup.procs"
        echo "$BASHPID" >"$cpucg/$host_cg/cgroup.procs"
        exec unshare --mount --propagation private --fork /bin/bash "$work/host-stack.sh" \
            "$rootfs" "$1" "$hsock_dir" "$work/mnt" "$mysql_uid" "$mysql_gid"
    ) </dev/null >>"$work/host-console.log" 2>&1 &
    host_pid=$!
}

# timed_start MODE PATH [DATA]: launch (the host stack on DATA), then poll PATH on the socket
# until it answers 200. Sets T200 (s from the launch to that answer) and TCMD (s until
# `sgrun site start` returned; "-" for the host stack, which has no such command).
# In the main shell (not in $(...)): launch_host sets host_pid.
timed_start() {
    local mode=$1 path=$2 t0 got spid rc end
    TCMD=-
    if [[ $mode == sgrun ]]; then
        t0=$(now)
        { sg site start --timeout "$start_timeout" "$warm" >/dev/null 2>"$work/start.err"; echo "$? $EPOCHREALTIME" >"$work/start.rc"; } &
        spid=$!
        if ! got=$("$PY" "$work/poll.py" "$sock_s" "$domain" "$path" "$start_timeout"); then
            wait "$spid" || true
            die "sgrun site $warm: no 200 on $path: $(cat "$work/start.err")"
        fi
        wait "$spid" || true
        read -r rc end <"$work/start.rc"
        [[ $rc == 0 ]] || die "sgrun site start $warm failed: $(cat "$work/start.err")"
        TCMD=$(elapsed "$t0" "$end")
    else
        rm -f "$sock_h"
        t0=$(now)
        launch_host "$3"
        got=$("$PY" "$work/poll.py" "$sock_h" "$domain" "$path" "$start_timeout") ||
            die "host stack: no 200 on $path: $(tail -n 5 "$work/host-console.log")"
    fi
    T200=$(elapsed "$t0" "${got% *}")
    # the stack's own start, from its init's log line: from the init's first instruction
    # until nginx's socket exists ("site ready in N ms"); the rest of T200 is the runtime's
    # launch before the init plus the first 200 after the socket
    local log=$work/host-console.log
    [[ $mode == sgrun ]] && log=$SGRUN_STATE_DIR/sites/$warm/console.log
    TREADY=$(grep -o 'site ready in [0-9]* ms' "$log" | tail -n 1 | awk '{ printf "%.3f", $4 / 1000 }')
}
# timed_stop MODE: sets TSTOP (s)
timed_stop() {
    local t0
    t0=$(now)
    if [[ $1 == sgrun ]]; then sg site stop "$warm" >/dev/null || die "site stop $warm"
    else stop_host; fi
    TSTOP=$(elapsed "$t0" "$(now)")
    # both stacks must have stopped cleanly (MariaDB shut down, init exit 0), untimed
    if [[ $1 == sgrun ]]; then
        grep 'sgrun-site-init: stopped (exit status' "$SGRUN_STATE_DIR/sites/$warm/console.log" | tail -n 1 |
            grep -q 'status 0)' || die "the stack of $warm did not stop cleanly: $(tail -n 5 "$SGRUN_STATE_DIR/sites/$warm/console.log")"
    else
        [[ $HOST_RC == 0 ]] || die "the host stack exited with status $HOST_RC: $(tail -n 5 "$work/host-console.log")"
    fi
}
cpu_us() { # MODE: CPU time of the stack's cgroup so far, µs
    local cg=$host_cg
    [[ $1 == sgrun ]] && cg=sgrun/$cg_s
    echo $(($(cat "$cpuacct/$cg/cpuacct.usage") / 1000))
}
memcg_of() { if [[ $1 == sgrun ]]; then echo "$memcg/sgrun/$cg_s"; else echo "$memcg/$host_cg"; fi; }
sock_of() { if [[ $1 == sgrun ]]; then echo "$sock_s"; else echo "$sock_h"; fi; }

# --- 1 + 2. install both, then warm rounds: start → 200, load, stop ----------------------------
declare -A S
hwarm=$(host_data warm)
say "first start and WordPress install of both stacks"
timed_start sgrun /wp-admin/install.php
a=$T200
wp_install "$sock_s" sgrun
shim_pids+=("$(sg site status --json "$warm" | jq -r .shim_pid)")
timed_stop sgrun
timed_start host /wp-admin/install.php "$hwarm"
b=$T200
wp_install "$sock_h" host
timed_stop host
say "installed (first starts: sgrun $a s, host $b s)"

for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order=(sgrun host); else order=(host sgrun); fi
    for m in "${order[@]}"; do
        timed_start "$m" / "$hwarm"
        S[$m-warm]+="$T200 " S[$m-ready]+="$TREADY " S[$m-rest]+="$(elapsed "$TREADY" "$T200") "
        [[ $TCMD != - ]] && S[$m-cmd]+="$TCMD "
        [[ $m == sgrun ]] && shim_pids+=("$(sg site status --json "$warm" | jq -r .shim_pid)")
        # one page before the stop, so that the stop has a stack that served to shut down
        [[ $(http "$(sock_of "$m")" /) == 200 ]] || die "front page of the $m stack: not 200"
        timed_stop "$m"
        S[$m-stop]+="$TSTOP "
        say "round $r $m: 200 after $T200 s (start command: $TCMD s), stop $TSTOP s"
    done
done

# --- 2. throughput: both stacks up at once, short bursts interleaved --------------------------
# This machine's speed drifts by 10-20% within minutes (a VM: CPU ms per request varied from
# 35 to 50 between runs). Bursts of a few seconds, sgrun and host back to back in ABBA order,
# put both stacks under the same drift; the ratio is the median of the per-pair ratios.
timed_start sgrun /
shim_pids+=("$(sg site status --json "$warm" | jq -r .shim_pid)")
timed_start host / "$hwarm"
per_burst=$(((REQUESTS + BURSTS - 1) / BURSTS))
per_burst=$((per_burst < CLIENTS ? CLIENTS : per_burst))
for m in sgrun host; do load "$(sock_of "$m")" 40 >/dev/null || die "warm-up of the $m stack failed"; done
for ((b = 1; b <= BURSTS; b++)); do
    if ((b % 2)); then order=(sgrun host); else order=(host sgrun); fi
    declare -A B=()
    for m in "${order[@]}"; do
        c0=$(cpu_us "$m")
        perf_pid=''
        if [[ -n ${PERF_DIR:-} ]]; then # profiling aid, see the header
            perf record -q -a -g -o "$PERF_DIR/$m-$b.data" >/dev/null 2>&1 &
            perf_pid=$!
        fi
        B[$m-rps]=$(load "$(sock_of "$m")" "$per_burst") || die "load on the $m stack failed"
        c1=$(cpu_us "$m")
        if [[ -n $perf_pid ]]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
        B[$m-cpu]=$(awk -v d=$((c1 - c0)) -v n="$per_burst" 'BEGIN { printf "%.2f", d / n / 1000 }')
        S[$m-rps]+="${B[$m-rps]} " S[$m-cpu]+="${B[$m-cpu]} "
    done
    S[pair-rps]+="$(ratio "${B[sgrun-rps]}" "${B[host-rps]}") "
    S[pair-cpu]+="$(ratio "${B[sgrun-cpu]}" "${B[host-cpu]}") "
    say "burst $b: req/s sgrun ${B[sgrun-rps]}, host ${B[host-rps]}; CPU ms/request sgrun ${B[sgrun-cpu]}, host ${B[host-cpu]}"
done

# 2'. Both stacks loaded at the same time ($CLIENTS clients each), in windows of WINDOW_S
# seconds: whatever the machine's speed does, it does to both at once. Each is in a cpu cgroup
# of the same weight and quota, so with the machine saturated each gets half of it, and the
# ratio of requests per second is the inverse ratio of the CPU each spends per request.
for ((w = 1; w <= WINDOWS; w++)); do
    declare -A CNT0=() CNT1=() CPU0=() CPU1=()
    cpids=()
    for m in sgrun host; do
        for ((i = 0; i < CLIENTS; i++)); do
            # -w to stderr, which is unbuffered: the count is read while curl runs
            curl -s --unix-socket "$(sock_of "$m")" -o /dev/null -w '%{stderr}%{http_code}\n' \
                "http://$domain/?both=[1-1000000]" 2>"$work/both.$m.$i" &
            cpids+=($!)
        done
    done
    sleep 2 # both saturated before the window opens
    count() { cat "$work"/both."$1".* | wc -l; }
    for m in sgrun host; do CNT0[$m]=$(count "$m") CPU0[$m]=$(cpu_us "$m"); done
    t0=$(now)
    sleep "$WINDOW_S"
    for m in sgrun host; do CNT1[$m]=$(count "$m") CPU1[$m]=$(cpu_us "$m"); done
    t1=$(now)
    kill "${cpids[@]}" 2>/dev/null
    wait "${cpids[@]}" 2>/dev/null || true
    bad=$(cat "$work"/both.* | grep -vc '^200$' || true)
    [[ $bad -le $((2 * CLIENTS)) ]] || die "$bad answers of the concurrent load were not 200" # the killed ones
    rm -f "$work"/both.*
    for m in sgrun host; do
        n=$((CNT1[$m] - CNT0[$m]))
        ((n > 0)) || die "no request of the $m stack completed in a $WINDOW_S s window"
        B[$m-rps]=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
        B[$m-cpu]=$(awk -v d=$((CPU1[$m] - CPU0[$m])) -v n="$n" 'BEGIN { printf "%.2f", d / n / 1000 }')
        S[$m-both-rps]+="${B[$m-rps]} " S[$m-both-cpu]+="${B[$m-cpu]} "
    done
    S[both-rps]+="$(ratio "${B[sgrun-rps]}" "${B[host-rps]}") "
    S[both-cpu]+="$(ratio "${B[sgrun-cpu]}" "${B[host-cpu]}") "
    say "window $w (both at once): req/s sgrun ${B[sgrun-rps]}, host ${B[host-rps]}; CPU ms/request sgrun ${B[sgrun-cpu]}, host ${B[host-cpu]}"
done

for m in sgrun host; do
    d=$(memcg_of "$m")
    S[$m-rss]+="$(($(memstat "$d" total_rss) >> 10)) "
    S[$m-cache]+="$(($(memstat "$d" total_cache) >> 10)) "
done
p=$(sg site status --json "$warm" | jq -r .shim_pid)
S[shim1-uss]+="$(uss_kb "$p") " S[shim1-rss]+="$(rss_kb "$p") "
timed_stop sgrun
timed_stop host

# --- 2b. once through the front proxy (informational) ------------------------------------------
proxy_note=''
if [[ $SKIP_PROXY == 0 ]]; then
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    timed_start sgrun /
    if sg proxy start --listen "127.0.0.1:$port" >"$work/proxy.out" 2>&1; then
        proxy_started=1
        load "$sock_s" 40 >/dev/null
        S[proxy-direct]=$(load "$sock_s" "$REQUESTS") || die "load on the site failed"
        load "http://127.0.0.1:$port" 40 >/dev/null || die "warm-up through the proxy failed"
        S[proxy]=$(load "http://127.0.0.1:$port" "$REQUESTS") || die "load through the proxy failed"
        sg proxy stop >/dev/null || die "proxy stop"
        proxy_started=0
        say "proxy: ${S[proxy]} req/s, direct ${S[proxy-direct]}"
    else
        proxy_note="proxy not measured: $(head -n 1 "$work/proxy.out")"
        say "$proxy_note"
    fi
    timed_stop sgrun
fi

# --- 1b. cold rounds: first start of a new site / an empty data directory ----------------------
if [[ $SKIP_COLD == 0 ]]; then
    for ((r = 1; r <= COLD_ROUNDS; r++)); do
        if ((r % 2)); then order=(sgrun host); else order=(host sgrun); fi
        for m in "${order[@]}"; do
            if [[ $m == sgrun ]]; then
                # a new site of the same tenant, same limits; the timed functions use $warm
                warm=$ts/cold$r
                sites+=("$warm")
                sg site create "$warm" --domain "cold$r.$ts.localhost" --memory 512M --cpus "$ncpu" --pids 256 \
                    >/dev/null || die "site create $warm"
                sock_s=$(sg site status --json "$warm" | jq -r .http_socket)
                timed_start sgrun /wp-admin/install.php
                shim_pids+=("$(sg site status --json "$warm" | jq -r .shim_pid)")
                S[sgrun-coldcmd]+="$TCMD "
                timed_stop sgrun
                sg site rm --purge "$warm" >/dev/null || die "site rm --purge $warm"
            else
                hcold=$(host_data "cold$r")
                timed_start host /wp-admin/install.php "$hcold"
                timed_stop host
                rm -rf --one-file-system "$hcold"
            fi
            S[$m-cold]+="$T200 " S[$m-coldready]+="$TREADY "
            say "cold round $r $m: 200 (install page) after $T200 s"
        done
    done
    warm=$ts/warm
    sock_s=$(sg site status --json "$warm" | jq -r .http_socket)
fi

# --- 4. N sites started on this machine ----------------------------------------------------------
pct() { # P: the P-th percentile (nearest rank) of the samples on stdin
    tr ' ' '\n' | grep . | sort -g | awk -v p="$1" '{ a[NR] = $1 } END { i = int((p * NR + 99) / 100); if (i < 1) i = 1; print a[i] }'
}
sum() { tr ' ' '\n' | grep . | awk '{ s += $1 } END { printf "%.3f", s }'; }
if [[ $SKIP_SCALE == 0 ]]; then
    nt=$(((SITES + PER_TENANT - 1) / PER_TENANT))
    scale=()
    avail_before_tenants=$(mem_avail_kb)
    t=$(now)
    for ((k = 1; k <= nt; k++)); do
        tenants+=("bench-n$tag-$k")
        sg tenant create "bench-n$tag-$k" --storage 1G --inodes 100000 >/dev/null || die "tenant create bench-n$tag-$k"
    done
    backend=$(sg tenant show --json "bench-n$tag-1" | jq -r .backend)
    for ((i = 1; i <= SITES; i++)); do
        k=$(((i - 1) / PER_TENANT + 1))
        s=bench-n$tag-$k/s$i
        sites+=("$s")
        scale+=("$s")
        sg site create "$s" --domain "s$i.bench-n$tag-$k.localhost" --memory 256M --cpus 0.5 --pids 128 >/dev/null ||
            die "site create $s"
    done
    S[scale-create]=$(elapsed "$t" "$(now)")
    say "$nt tenants and $SITES sites created in ${S[scale-create]} s; starting them one after the other"
    sync
    sleep 2
    avail0=$(mem_avail_kb)
    t=$(now)
    for s in "${scale[@]}"; do
        t1=$(now)
        sg site start --timeout "$start_timeout" "$s" >/dev/null 2>"$work/start.err" || die "site start $s: $(cat "$work/start.err")"
        S[scale-start]+="$(elapsed "$t1" "$(now)") "
        shim_pids+=("$(sg site status --json "$s" | jq -r .shim_pid)")
    done
    S[scale-wall]=$(elapsed "$t" "$(now)")
    say "$SITES sites started in ${S[scale-wall]} s; 12 s for the shims' idle threads to end, then the checks"
    sleep 12
    ok=0
    for s in "${scale[@]}"; do
        sock=$(sg site status --json "$s" | jq -r .http_socket)
        code=$(curl -s --max-time 60 --unix-socket "$sock" -o /dev/null -w '%{http_code}' http://localhost/wp-admin/install.php || true)
        if [[ $code == 200 ]]; then ok=$((ok + 1)); else say "$s answered $code on /wp-admin/install.php"; fi
    done
    S[scale-ok]=$ok
    sleep 1
    for s in "${scale[@]}"; do
        d=$memcg/sgrun/${s/\//.}
        S[scale-usage]+="$(($(cat "$d/memory.usage_in_bytes") >> 10)) "
        S[scale-rss]+="$(($(memstat "$d" rss) >> 10)) "
        S[scale-cache]+="$(($(memstat "$d" cache) >> 10)) "
        S[scale-trss]+="$(($(memstat "$d" total_rss) >> 10)) "
        p=$(sg site status --json "$s" | jq -r .shim_pid)
        S[shim-uss]+="$(uss_kb "$p") " S[shim-rss]+="$(rss_kb "$p") "
        S[shim-thr]+="$(awk '/^Threads:/ { print $2 }' "/proc/$p/status") "
    done
    avail1=$(mem_avail_kb)
    S[scale-drop]=$(((avail0 - avail1) / SITES))
    S[scale-drop-all]=$(((avail_before_tenants - avail1) / SITES))
    say "memory measured; removing the $SITES sites and $nt tenants"
    t=$(now)
    for s in "${scale[@]}"; do
        sg site rm --force --purge "$s" >/dev/null || die "site rm --force --purge $s"
    done
    S[scale-rm]=$(elapsed "$t" "$(now)")
    t=$(now)
    for ((k = 1; k <= nt; k++)); do sg tenant rm --purge "bench-n$tag-$k" >/dev/null || die "tenant rm --purge bench-n$tag-$k"; done
    S[scale-trm]=$(elapsed "$t" "$(now)")
    # nothing of the N may be left: shims (zombies excepted), containers, cgroups, records
    left=()
    for p in "${shim_pids[@]}"; do
        [[ $(cat "/proc/$p/comm" 2>/dev/null) == containerd-shim* ]] &&
            [[ $(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null) != Z ]] && left+=("shim $p")
    done
    for s in "${scale[@]}"; do
        for d in /sys/fs/cgroup/*/sgrun/"${s/\//.}"; do [[ -e $d ]] && left+=("$d"); done
        sg site status "$s" >/dev/null 2>&1 && left+=("site $s")
    done
    for ((k = 1; k <= nt; k++)); do sg tenant show "bench-n$tag-$k" >/dev/null 2>&1 && left+=("tenant bench-n$tag-$k"); done
    c=$(sg list -q | grep -c "^bench-n$tag-" || true)
    ((c == 0)) || left+=("$c containers")
    S[scale-left]=${left[*]:-nothing}
    say "removed in ${S[scale-rm]} s (+ tenants ${S[scale-trm]} s); left: ${S[scale-left]}"
    [[ ${#left[@]} == 0 ]] || die "left behind after removing the $SITES sites: ${left[*]}"
fi

# --- report ----------------------------------------------------------------------------------
kb_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
m() { median <<<"${S[$1]}"; }
echo "## Sites (issue 5): sgrun site against the same stack on the host"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n), kernel $(uname -r), $ncpu CPUs," \
    "load $(load_now) at the end (started at $(date -u -d "@$run_start" '+%H:%M')), sgrun $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "($SGRUN), WordPress image ${rootfs#"$SGRUN_STATE_DIR"/}. Cells: median (min–max)."
echo
echo "| $ROUNDS warm rounds, alternating | sgrun site | host stack | sgrun/host | target |"
echo "|---|---:|---:|---:|---|"
echo "| start → first 200 on GET /, warm (installed), s | $(cell "${S[sgrun-warm]}" 3) | $(cell "${S[host-warm]}" 3) | $(ratio "$(m sgrun-warm)" "$(m host-warm)") | ≤ 1.0 |"
if [[ $SKIP_COLD == 0 ]]; then
    echo "| start → first 200 on /wp-admin/install.php, cold (database created; $COLD_ROUNDS rounds), s | $(cell "${S[sgrun-cold]}" 3) | $(cell "${S[host-cold]}" 3) | $(ratio "$(m sgrun-cold)" "$(m host-cold)") | ≤ 1.0 |"
fi
echo "| of which the stack's own start (its init's \"site ready in\": init start → nginx socket), warm, s | $(cell "${S[sgrun-ready]}" 3) | $(cell "${S[host-ready]}" 3) | $(ratio "$(m sgrun-ready)" "$(m host-ready)") | |"
echo "| the rest: launch → init, and nginx's socket → first 200, warm, s | $(cell "${S[sgrun-rest]}" 3) | $(cell "${S[host-rest]}" 3) | $(ratio "$(m sgrun-rest)" "$(m host-rest)") | |"
if [[ $SKIP_COLD == 0 ]]; then
    echo "| of which the stack's own start, cold (database created), s | $(cell "${S[sgrun-coldready]}" 3) | $(cell "${S[host-coldready]}" 3) | $(ratio "$(m sgrun-coldready)" "$(m host-coldready)") | |"
fi
echo "| \`sgrun site start\` returned, warm, s | $(cell "${S[sgrun-cmd]}" 3) | | | |"
[[ $SKIP_COLD == 0 ]] && echo "| \`sgrun site start\` returned, cold, s | $(cell "${S[sgrun-coldcmd]}" 3) | | | |"
echo "| stop (\`site stop\`; SIGTERM to tini and wait), s | $(cell "${S[sgrun-stop]}" 3) | $(cell "${S[host-stop]}" 3) | $(ratio "$(m sgrun-stop)" "$(m host-stop)") | |"
echo "| front page, req/s, both stacks loaded at once ($CLIENTS keep-alive curl clients each, $WINDOWS windows of $WINDOW_S s; ratio: median of the per-window ratios) | $(cell "${S[sgrun-both-rps]}" 1) | $(cell "${S[host-both-rps]}" 1) | $(fmt "$(m both-rps)" 3) ($(range <<<"${S[both-rps]}")) | ≥ 0.98 |"
echo "| CPU ms per request, both at once (cgroup cpuacct of the stack; ratio as above) | $(cell "${S[sgrun-both-cpu]}" 2) | $(cell "${S[host-both-cpu]}" 2) | $(fmt "$(m both-cpu)" 3) ($(range <<<"${S[both-cpu]}")) | |"
echo "| front page, req/s, each alone ($CLIENTS clients; $BURSTS interleaved bursts of $per_burst requests, ABBA; ratio: median of the per-pair ratios) | $(cell "${S[sgrun-rps]}" 1) | $(cell "${S[host-rps]}" 1) | $(fmt "$(m pair-rps)" 3) ($(range <<<"${S[pair-rps]}")) | |"
echo "| CPU ms per request, each alone (ratio as above) | $(cell "${S[sgrun-cpu]}" 2) | $(cell "${S[host-cpu]}" 2) | $(fmt "$(m pair-cpu)" 3) ($(range <<<"${S[pair-cpu]}")) | |"
echo "| stack memory after the load: total_rss, MiB | $(kb_mb "$(m sgrun-rss)") | $(kb_mb "$(m host-rss)") | $(ratio "$(m sgrun-rss)" "$(m host-rss)") | |"
echo "| stack memory after the load: total_cache, MiB | $(kb_mb "$(m sgrun-cache)") | $(kb_mb "$(m host-cache)") | | |"
if [[ -n ${S[proxy]:-} ]]; then
    echo "| through \`sgrun proxy\` (TCP 127.0.0.1, 1 round), req/s; direct in the same round | ${S[proxy]} | | $(ratio "${S[proxy]}" "${S[proxy-direct]}") (proxy/direct ${S[proxy-direct]}) | informational |"
fi
echo
echo "samples: warm start s: sgrun ${S[sgrun-warm]}; host ${S[host-warm]}"
[[ $SKIP_COLD == 0 ]] && echo "samples: cold start s: sgrun ${S[sgrun-cold]}; host ${S[host-cold]}"
echo "samples: req/s: sgrun ${S[sgrun-rps]}; host ${S[host-rps]}; per-pair ratio ${S[pair-rps]}"
echo "samples: CPU ms/request: sgrun ${S[sgrun-cpu]}; host ${S[host-cpu]}; per-pair ratio ${S[pair-cpu]}"
echo "samples, both at once: req/s: sgrun ${S[sgrun-both-rps]}; host ${S[host-both-rps]}; per-window ratio ${S[both-rps]}; CPU ms/request ratio ${S[both-cpu]}"
[[ -n $proxy_note ]] && echo "$proxy_note"
echo
echo "| shim of a site | private (Private_Clean+Private_Dirty) | RSS | threads |"
echo "|---|---:|---:|---:|"
echo "| the warm site's shim, alone (its binary mapped by no other process), kB | $(m shim1-uss) | $(m shim1-rss) | |"
if [[ $SKIP_SCALE == 0 ]]; then
    echo "| median of the $SITES sites' shims, kB (target ≤ 1024 private) | $(m shim-uss) ($(range <<<"${S[shim-uss]}")) | $(m shim-rss) | $(m shim-thr) |"
fi
echo "| containerd-shim-runc-v2 (runc 1.1.5), 10 idle, cited from tests/bench/shim.sh 2026-11-27 | 2462 | 13248 | 12 |"
if [[ $SKIP_SCALE == 0 ]]; then
    echo
    echo "| $SITES WordPress sites (over $nt tenants, at most $PER_TENANT each, $backend backend; --memory 256M --cpus 0.5 --pids 128; first start: databases created) | |"
    echo "|---|---:|"
    echo "| create: $nt tenants (1G, 100000 inodes) + $SITES sites, s | ${S[scale-create]} |"
    echo "| \`sgrun site start\` of one site, s: median (p90, max) | $(fmt "$(m scale-start)" 2) ($(fmt "$(pct 90 <<<"${S[scale-start]}")" 2), $(fmt "$(pct 100 <<<"${S[scale-start]}")" 2)) |"
    echo "| all $SITES, one after the other: sum of the starts; wall clock, s | $(fmt "$(sum <<<"${S[scale-start]}")" 1); ${S[scale-wall]} |"
    echo "| answering 200 on /wp-admin/install.php over their sockets | ${S[scale-ok]}/$SITES |"
    echo "| per site: memory.usage_in_bytes, MiB, median (min–max) | $(kb_mb "$(m scale-usage)") ($(kb_mb "$(pct 0 <<<"${S[scale-usage]}")")–$(kb_mb "$(pct 100 <<<"${S[scale-usage]}")")) |"
    echo "| per site: memory.stat rss / cache / total_rss, MiB, median | $(kb_mb "$(m scale-rss)") / $(kb_mb "$(m scale-cache)") / $(kb_mb "$(m scale-trss)") |"
    echo "| per site: its shim, private / RSS, MiB, median | $(kb_mb "$(m shim-uss)") / $(kb_mb "$(m shim-rss)") |"
    echo "| host MemAvailable drop ÷ $SITES, MiB: from before the starts; from before the tenants | $(kb_mb "${S[scale-drop]}"); $(kb_mb "${S[scale-drop-all]}") |"
    echo "| all $SITES sites: memory.usage_in_bytes summed, MiB | $(kb_mb "$(sum <<<"${S[scale-usage]}")") |"
    echo "| \`site rm --force --purge\` of the $SITES, s; then \`tenant rm --purge\` of the $nt, s | ${S[scale-rm]}; ${S[scale-trm]} |"
    echo "| left behind (shims that are not zombies, containers, cgroups, records) | ${S[scale-left]} |"
    echo
    echo "samples: start s: ${S[scale-start]}"
fi
