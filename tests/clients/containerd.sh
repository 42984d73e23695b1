# shellcheck shell=bash
# containerd 1.6 (Debian) driving the runtime under test through the stock runc shim
# (io.containerd.runc.v2, runtime binary given with `ctr run --runc-binary`).
# A private containerd: config, root, state, sockets and the runc-shim state root under
# $T/containerd; the containerd namespace (and so the cgroup parent) is $RUN_TAG-ctr.

CTR=(false) CTRD_PID=

ctrd_config() {  # ctrd_config DIR
    cat <<EOF
version = 2
root = "$1/root"
state = "$1/state"
# CRI would want CNI and a stream server; ctr needs neither. Snapshotters that cannot work on
# this host are off to keep the log readable.
disabled_plugins = ["io.containerd.grpc.v1.cri",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$1/c.sock"
[ttrpc]
  address = "$1/c.sock.ttrpc"
[debug]
  address = "$1/c-debug.sock"
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$1/opt"
EOF
}

ctrd_task_status() {  # ctrd_task_status ID -> RUNNING / PAUSED / STOPPED / "" (no task)
    "${CTR[@]}" task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'
}
ctrd_task_pid() { "${CTR[@]}" task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }'; }
ctrd_status_is() { [ "$(ctrd_task_status "$1")" = "$2" ]; }

# ctrd_rm ID...: best-effort removal of tasks and containers (cleanup between steps)
ctrd_rm() {
    local id
    for id in "$@"; do q "${CTR[@]}" task kill -s SIGKILL "$id"; done
    for id in "$@"; do
        wait_for 5 eval "! ctrd_status_is $id RUNNING"
        q "${CTR[@]}" task delete -f "$id"
        q "${CTR[@]}" container rm "$id"
    done
}

suite_containerd() {
    SUITE=containerd
    local d=$T/containerd W NS=$RUN_TAG-ctr
    W=$(make_wrapper containerd)
    mark_logs
    mkdir -p "$d/fifo" "$d/runc-root"
    ctrd_config "$d" >"$d/config.toml"
    CTR=(ctr -a "$d/c.sock" -n "$NS")
    RUNOPTS=(--runc-binary "$W" --runc-root "$d/runc-root" --fifo-dir "$d/fifo")

    # the daemon: in its own session so a ^C on the test does not reach it before the cleanup
    setsid containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 </dev/null 9>&- &
    CTRD_PID=$!
    if wait_for 20 q ctr -a "$d/c.sock" version; then
        pass "private containerd $(containerd --version | awk '{print $3}') up (pid $CTRD_PID)"
    else
        fail "private containerd starts" "$(tail -n 20 "$d/containerd.log")"
        return
    fi

    cap "${CTR[@]}" image import "$IMG_DIR/busybox-oci.tar"
    if rc_is 0 && "${CTR[@]}" image ls -q | grep -qx "$IMAGE_NAME"; then
        pass "ctr image import (OCI layout archive) -> $IMAGE_NAME"
    else
        fail "ctr image import"; return
    fi

    # --- foreground runs ------------------------------------------------------------------
    cap "${CTR[@]}" run --rm "${RUNOPTS[@]}" "$IMAGE_NAME" c-hi echo hi
    check "ctr run --rm IMAGE echo hi prints hi" ok_and_out_is hi
    check "the runtime under test was called (create/start/delete in its call log)" \
        grep -q " create .*c-hi" "$T/logs/containerd/calls.log"

    cap "${CTR[@]}" run --rm "${RUNOPTS[@]}" "$IMAGE_NAME" c-exit sh -c 'exit 7'
    check "ctr run --rm: exit status 7 of the process is ctr's exit status" rc_is 7

    cap "${CTR[@]}" run --rm "${RUNOPTS[@]}" "$IMAGE_NAME" c-ns \
        sh -c 'echo pid=$$; grep -E ":(memory|pids):" /proc/self/cgroup | cut -d: -f2,3 | sort'
    check "ctr run: process is pid 1 in its pid namespace, in cgroup /$NS/c-ns" \
        ok_and_out_is "pid=1"$'\n'"memory:/$NS/c-ns"$'\n'"pids:/$NS/c-ns"

    cap "${CTR[@]}" run --rm --read-only "${RUNOPTS[@]}" "$IMAGE_NAME" c-ro \
        sh -c 'touch /x 2>/dev/null && echo writable || echo read-only'
    check "ctr run --read-only: rootfs read-only" ok_and_out_is read-only

    # ctr applies no seccomp profile unless --seccomp (containerd's default profile) is given
    cap "${CTR[@]}" run --rm --seccomp "${RUNOPTS[@]}" "$IMAGE_NAME" c-sc sh -c 'grep ^Seccomp: /proc/self/status'
    check "ctr run --seccomp: the process runs under a seccomp filter (Seccomp: 2)" ok_and_out_is $'Seccomp:\t2'

    # a terminal for the init process: the shim passes --console-socket on create
    local cmd
    printf -v cmd '%q ' "${CTR[@]}" run --rm -t "${RUNOPTS[@]}" "$IMAGE_NAME" c-tty sh -c 'tty; exit 4'
    cap script -qec "$cmd" /dev/null
    check "ctr run -t (through script's pty): tty is /dev/pts/*, exit status 4" \
        eval '[ "$RC" = 4 ] && [[ $OUT == */dev/pts/* ]]'

    # --- a detached task -----------------------------------------------------------------
    # sh as pid 1 with a TERM trap: pid 1 ignores signals it has no handler for, so a plain
    # `sleep` would not react to SIGTERM. `wait` returns as soon as the trapped signal arrives.
    cap "${CTR[@]}" run -d "${RUNOPTS[@]}" "$IMAGE_NAME" c-d \
        sh -c 'trap "exit 42" TERM; sleep 1000 & wait'
    if rc_is 0 && wait_for 5 ctrd_status_is c-d RUNNING; then
        pass "ctr run -d: task RUNNING"
    else
        fail "ctr run -d: task RUNNING" "task ls: $("${CTR[@]}" task ls 2>&1 | tr '\n' ';')"
        return
    fi
    local pid; pid=$(ctrd_task_pid c-d)

    cap "${CTR[@]}" task exec --exec-id e1 c-d sh -c 'echo in-exec; exit 3'
    check "ctr task exec: output in-exec and exit status 3" eval '[ "$RC" = 3 ] && [ "$OUT" = in-exec ]'

    cap "${CTR[@]}" task exec --exec-id e2 c-d sh -c 'cat /proc/1/comm; grep :memory: /proc/self/cgroup'
    check "ctr task exec: joins the task's pid namespace and cgroup" \
        ok_and_out_is "sh"$'\n'"$(grep :memory: /proc/"$pid"/cgroup)"

    cap "${CTR[@]}" task exec --exec-id e4 --user 65534 c-d sh -c 'id -u; id -g'
    check "ctr task exec --user 65534: runs as uid/gid 65534" ok_and_out_is "65534"$'\n'"65534"

    # An SRE's toolbox straight on the task containerd created, through the shim's --root
    local R=$d/runc-root/$NS
    cap "$SGRUN" --root "$R" exec -u nobody c-d sh -c 'cat /proc/1/comm; id -u'
    check "sgrun --root (containerd's) exec -u nobody c-d: task's pid namespace, uid 65534" \
        ok_and_out_is "sh"$'\n'"65534"
    cap "$SGRUN" --root "$R" ps --format json c-d
    check "sgrun --root (containerd's) ps c-d: lists the init $pid" \
        eval '[ "$RC" = 0 ] && tr "[]," "\n\n\n" <<<"$OUT" | grep -qx "$pid"'
    cap "$SGRUN" --root "$R" stats --no-stream --json c-d
    check "sgrun --root (containerd's) stats c-d: one reading with its pids" \
        eval '[ "$RC" = 0 ] && jq -e ".[0].pids >= 2" <<<"$OUT" >/dev/null'
    cap "$SGRUN" --root "$R" inspect c-d
    check "sgrun --root (containerd's) inspect c-d: its bundle and cgroup path" \
        eval '[ "$RC" = 0 ] && jq -e ".cgroup_path | contains(\"c-d\")" <<<"$OUT" >/dev/null'

    # -t needs ctr's stdin to be a terminal: script(1) gives it a pty without one of ours
    printf -v cmd '%q ' "${CTR[@]}" task exec -t --exec-id e3 c-d sh -c 'tty; exit 5'
    cap script -qec "$cmd" /dev/null
    check "ctr task exec -t (through script's pty): tty is /dev/pts/*, exit status 5" \
        eval '[ "$RC" = 5 ] && [[ $OUT == */dev/pts/* ]]'

    cap "${CTR[@]}" task ps c-d
    check "ctr task ps: lists the init pid $pid and the sleep" \
        eval '[ "$RC" = 0 ] && awk "NR > 1 { print \$1 }" <<<"$OUT" | grep -qx "$pid" && [ "$(awk "NR > 1" <<<"$OUT" | wc -l)" -ge 2 ]'

    local frz; frz=$(cgroup_dirs "/$NS/c-d" | grep /freezer/ | head -n1)
    cap "${CTR[@]}" task pause c-d
    check "ctr task pause: PAUSED, freezer.state FROZEN" \
        eval '[ "$RC" = 0 ] && ctrd_status_is c-d PAUSED && [ "$(cat "$frz/freezer.state" 2>/dev/null)" = FROZEN ]'
    cap "${CTR[@]}" task resume c-d
    check "ctr task resume: RUNNING, freezer.state THAWED" \
        eval '[ "$RC" = 0 ] && ctrd_status_is c-d RUNNING && [ "$(cat "$frz/freezer.state" 2>/dev/null)" = THAWED ]'

    cap "${CTR[@]}" task metrics --format json c-d
    check "ctr task metrics: cgroup stats (pids.current >= 2, memory usage > 0)" \
        eval '[ "$RC" = 0 ] && jq -e "(.pids.current >= 2) and (.memory.usage.usage > 0)" <<<"$OUT" >/dev/null'

    cap "${CTR[@]}" task kill -s SIGTERM c-d
    if rc_is 0 && wait_for 10 ctrd_status_is c-d STOPPED; then
        pass "ctr task kill -s SIGTERM: the trap runs, task STOPPED"
    else
        fail "ctr task kill -s SIGTERM: task STOPPED" "status: $(ctrd_task_status c-d)"
    fi
    cap "${CTR[@]}" task delete c-d
    # ctr 1.6 reports a non-zero exit code of the deleted task as a warning, exiting 0
    check "ctr task delete: reports the exit status 42 of the trap" \
        eval '[ "$RC" = 0 ] && out_has "exit code 42"'
    cap "${CTR[@]}" container rm c-d
    check "ctr container rm: container gone" eval '[ "$RC" = 0 ] && ! "${CTR[@]}" container ls -q | grep -qx c-d'
    check "runtime state of c-d removed ($d/runc-root/$NS/c-d)" eval '[ ! -e "$d/runc-root/$NS/c-d" ]'
    check "cgroup /$NS/c-d removed in every hierarchy" eval '[ -z "$(cgroup_dirs "/$NS/c-d")" ]'

    # --- SIGKILL -> 137: a foreground `ctr run` exits with the task's status ------------------
    timeout -k 5 "${CMD_TIMEOUT:-60}" "${CTR[@]}" run "${RUNOPTS[@]}" "$IMAGE_NAME" c-k sleep 1000 \
        </dev/null >"$d/c-k.out" 2>&1 9>&- &
    local fg=$!
    if wait_for 10 ctrd_status_is c-k RUNNING; then
        cap "${CTR[@]}" task kill -s SIGKILL c-k
        wait "$fg"; RC=$?
        OUT=$(cat "$d/c-k.out"); LAST_CMD="ctr run ... c-k sleep 1000; ctr task kill -s SIGKILL c-k"
        check "ctr run of a task killed by SIGKILL exits with status 137" rc_is 137
    else
        wait "$fg"; RC=$?; OUT=$(cat "$d/c-k.out"); LAST_CMD="ctr run ... c-k sleep 1000"
        fail "ctr run sleep 1000 (for the SIGKILL test): task RUNNING"
    fi
    q "${CTR[@]}" container rm c-k
}

teardown_containerd() {
    SUITE=containerd
    local d=$T/containerd NS=$RUN_TAG-ctr ids left
    if q "${CTR[@]}" version; then
        ids=$("${CTR[@]}" container ls -q 2>/dev/null)
        # shellcheck disable=SC2086
        [ -n "$ids" ] && ctrd_rm $ids
        q "${CTR[@]}" image rm "$IMAGE_NAME"
    fi
    stop_pid "$CTRD_PID" 15
    # shims of this containerd (their command line names its socket) exit with their last task
    wait_for 5 eval '! pgrep -f -- "-address $d/c.sock" >/dev/null'
    left=$(pgrep -af -- "-address $d/c.sock")
    local cg; cg=$(cgroup_dirs "/$NS" | xargs -r -I{} find {} -mindepth 1 -type d 2>/dev/null)
    local mnt; mnt=$(mounts_under "$d")
    if [ -z "$left$cg$mnt" ]; then
        pass "containerd stopped; no shim, mount or container cgroup left"
    else
        fail "containerd stopped; no shim, mount or container cgroup left" \
            ${left:+"shims: $left"} ${cg:+"cgroups: $cg"} ${mnt:+"mounts: $mnt"}
        local p; for p in $(pgrep -f -- "-address $d/c.sock"); do stop_pid "$p" 5; done
        unmount_under "$d"
    fi
    rm_cgroup "/$NS"
}
