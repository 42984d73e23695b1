# shellcheck shell=bash
# Podman 4.3 (Debian) as root, daemonless: conmon runs the runtime under test given with
# `podman --runtime`. Config, storage, runroot, locks, events and network config all live under
# $T/podman (CONTAINERS_CONF / CONTAINERS_STORAGE_CONF, so /etc/containers is not read);
# containers (and conmon) go under the cgroup parent /$RUN_TAG-podman.

PODMAN=(false)

podman_conf() {  # podman_conf DIR
    # No CAP_SYS_RESOURCE here: podman's default rlimits (nofile 1048576, nproc 4194304) are
    # above the inherited hard limits and setrlimit in the runtime fails with EPERM. podman
    # lowers its own RLIMIT_NPROC to 32768 before it starts conmon, so that is the ceiling.
    local nofile nproc
    nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
    cat <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "none"                  # no CNI bridge, no iptables rules
[network]
network_config_dir = "$1/net"   # not /etc/cni/net.d
[engine]
cgroup_manager = "cgroupfs"     # no systemd here
events_logger = "file"          # no journald here
events_logfile_path = "$1/events.log"
lock_type = "file"              # not the shared-memory lock /dev/shm/libpod_lock
tmp_dir = "$1/tmp"
volume_path = "$1/volumes"
EOF
}

pm_state() { "${PODMAN[@]}" inspect --format '{{.State.Status}}' "$1" 2>/dev/null; }
pm_state_is() { [ "$(pm_state "$1")" = "$2" ]; }

suite_podman() {
    SUITE=podman
    local d=$T/podman W CGP=/$RUN_TAG-podman
    mkdir -p "$d"
    W=$(make_wrapper podman "$d/runtime-root")
    mark_logs
    podman_conf "$d" >"$d/containers.conf"
    printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$d/root" "$d/runroot" >"$d/storage.conf"
    export CONTAINERS_CONF=$d/containers.conf CONTAINERS_STORAGE_CONF=$d/storage.conf
    PODMAN=(podman --runtime "$W" --root "$d/root" --runroot "$d/runroot")
    # PODMAN_RUN_OPTS: extra `podman run` options, e.g. "--security-opt seccomp=unconfined" to
    # look past a seccomp failure while debugging (not for CI)
    local RUN=(run --cgroup-parent "$CGP" ${PODMAN_RUN_OPTS:-})

    cap "${PODMAN[@]}" info --format '{{.Version.Version}} {{.Host.CgroupManager}} {{.Host.CgroupsVersion}} {{.Host.OCIRuntime.Path}}'
    if rc_is 0; then
        pass "podman info ($OUT)"
    else
        fail "podman info"; return
    fi

    cap "${PODMAN[@]}" "${RUN[@]}" --rm --rootfs "$IMG_DIR/rootfs" echo hi
    check "podman run --rm --rootfs ROOTFS echo hi prints hi" ok_and_out_is hi
    check "the runtime under test was called (create/start in its call log)" \
        grep -q " create --bundle " "$T/logs/podman/calls.log"

    cap "${PODMAN[@]}" "${RUN[@]}" --rm --rootfs "$IMG_DIR/rootfs" sh -c 'exit 7'
    check "podman run --rm: exit status 7 of the process is podman's exit status" rc_is 7

    cap "${PODMAN[@]}" load -i "$IMG_DIR/busybox-docker.tar"
    local img; img=$(sed -n 's/^Loaded image[^:]*: *//p' <<<"$OUT" | tail -n1)
    if rc_is 0 && [ -n "$img" ]; then
        pass "podman load (docker-archive) -> $img"
    else
        fail "podman load (docker-archive)"; return
    fi

    cap "${PODMAN[@]}" "${RUN[@]}" --rm "$img" sh -c 'echo hi; echo pid=$$'
    check "podman run --rm IMAGE echo hi: prints hi, as pid 1" ok_and_out_is "hi"$'\n'"pid=1"

    cap "${PODMAN[@]}" "${RUN[@]}" --rm "$img" sh -c 'grep ^Seccomp: /proc/self/status'
    check "podman's default seccomp profile is applied (Seccomp: 2)" ok_and_out_is $'Seccomp:\t2'

    cap "${PODMAN[@]}" "${RUN[@]}" --rm -t "$img" sh -c 'tty; exit 4'
    check "podman run -t: tty is /dev/pts/*, exit status 4" eval '[ "$RC" = 4 ] && [[ $OUT == /dev/pts/* ]]'

    cap "${PODMAN[@]}" "${RUN[@]}" --rm --user 65534 --memory 32m "$img" \
        sh -c 'id -u; cat /sys/fs/cgroup/memory/memory.limit_in_bytes'
    check "podman run --user 65534 --memory 32m: uid 65534, memory.limit_in_bytes 33554432" \
        ok_and_out_is "65534"$'\n'"33554432"

    # podman --read-only mounts tmpfs on /tmp, /var/tmp and /run with the `tmpcopyup` option
    cap "${PODMAN[@]}" "${RUN[@]}" --rm --read-only "$img" \
        sh -c 'touch /x 2>/dev/null && echo writable || echo read-only; touch /tmp/x && echo tmp-writable'
    check "podman run --read-only: rootfs read-only, /tmp a writable tmpfs (tmpcopyup)" \
        ok_and_out_is "read-only"$'\n'"tmp-writable"

    # --- a detached container -------------------------------------------------------------
    cap "${PODMAN[@]}" "${RUN[@]}" -d --name p-d "$img" sh -c 'trap "exit 42" TERM; sleep 1000 & wait'
    local id=${OUT##*$'\n'}
    if rc_is 0 && wait_for 5 pm_state_is p-d running; then
        pass "podman run -d: container running"
    else
        fail "podman run -d: container running" "state: $(pm_state p-d)"; return
    fi
    local pid; pid=$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' p-d)

    cap "${PODMAN[@]}" exec p-d sh -c 'echo in-exec; exit 3'
    check "podman exec: output in-exec and exit status 3" eval '[ "$RC" = 3 ] && [ "$OUT" = in-exec ]'

    cap "${PODMAN[@]}" exec p-d sh -c 'cat /proc/1/comm; grep :memory: /proc/self/cgroup'
    check "podman exec: joins the container's pid namespace and cgroup" \
        ok_and_out_is "sh"$'\n'"$(grep :memory: /proc/"$pid"/cgroup)"

    cap "${PODMAN[@]}" exec -t p-d sh -c 'tty; exit 5'
    check "podman exec -t: tty is /dev/pts/*, exit status 5" eval '[ "$RC" = 5 ] && [[ $OUT == /dev/pts/* ]]'

    local frz; frz=$(cgroup_dirs "$CGP/libpod-$id" | grep /freezer/ | head -n1)
    cap "${PODMAN[@]}" pause p-d
    check "podman pause: paused, freezer.state FROZEN" \
        eval '[ "$RC" = 0 ] && pm_state_is p-d paused && [ "$(cat "$frz/freezer.state" 2>/dev/null)" = FROZEN ]'
    cap "${PODMAN[@]}" unpause p-d
    check "podman unpause: running, freezer.state THAWED" \
        eval '[ "$RC" = 0 ] && pm_state_is p-d running && [ "$(cat "$frz/freezer.state" 2>/dev/null)" = THAWED ]'

    local t0=$SECONDS
    cap "${PODMAN[@]}" stop -t 20 p-d
    check "podman stop: SIGTERM ends it at once (trap), well before the 20 s timeout" \
        eval '[ "$RC" = 0 ] && [ $((SECONDS - t0)) -lt 10 ] && pm_state_is p-d exited'
    cap "${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' p-d
    check "podman inspect: exit code 42 of the trap" ok_and_out_is 42

    cap "${PODMAN[@]}" rm p-d
    check "podman rm: container gone" eval '[ "$RC" = 0 ] && ! "${PODMAN[@]}" container exists p-d'
    check "runtime state of the container removed ($d/runtime-root/$id)" eval '[ ! -e "$d/runtime-root/$id" ]'
    check "cgroup $CGP/libpod-$id removed in every hierarchy" eval '[ -z "$(cgroup_dirs "$CGP/libpod-$id")" ]'

    # --- SIGKILL -> 137 -------------------------------------------------------------------
    cap "${PODMAN[@]}" "${RUN[@]}" -d --name p-k "$img" sleep 1000
    if rc_is 0 && wait_for 5 pm_state_is p-k running; then
        cap "${PODMAN[@]}" kill p-k
        cap "${PODMAN[@]}" wait p-k
        check "podman kill (SIGKILL) + podman wait: exit status 137" ok_and_out_is 137
    else
        fail "podman run -d sleep 1000 (for the SIGKILL test)"
    fi
    q "${PODMAN[@]}" rm -f -t 0 p-k
}

teardown_podman() {
    SUITE=podman
    local d=$T/podman CGP=/$RUN_TAG-podman left cg mnt
    if [ "${PODMAN[0]}" = podman ]; then
        q "${PODMAN[@]}" rm -a -f -t 0
        q "${PODMAN[@]}" rmi -a -f
        q "${PODMAN[@]}" system reset -f
    fi
    # conmon exits with its container; its command line names the container's bundle under $d
    wait_for 5 eval '! pgrep -f -- "$d/" >/dev/null'
    left=$(pgrep -af -- "$d/")
    # podman leaves the (empty) conmon cgroup; anything else is a container cgroup left behind
    cg=$(cgroup_dirs "$CGP" | xargs -r -I{} find {} -mindepth 1 -type d ! -name conmon 2>/dev/null)
    mnt=$(mounts_under "$d")
    if [ -z "$left$cg$mnt" ]; then
        pass "podman cleaned up; no conmon, mount or container cgroup left"
    else
        fail "podman cleaned up; no conmon, mount or container cgroup left" \
            ${left:+"processes: $left"} ${cg:+"cgroups: $cg"} ${mnt:+"mounts: $mnt"}
        local p; for p in $(pgrep -f -- "$d/"); do stop_pid "$p" 5; done
        unmount_under "$d"
    fi
    rm_cgroup "$CGP"
    unset CONTAINERS_CONF CONTAINERS_STORAGE_CONF
}
