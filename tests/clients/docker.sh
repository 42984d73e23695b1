# shellcheck shell=bash
# Docker 20.10 (Debian docker.io): a private dockerd with the runtime under test registered as
# runtime "sgrun" in its daemon.json. dockerd starts its own containerd (under --exec-root /
# --data-root) and runs containers through the runc shim with the runtime as BinaryName.
# Everything under $T/docker: data-root, exec-root, pidfile, socket; no bridge, no iptables rules;
# containers in the cgroup parent /$RUN_TAG-docker.
# Debian's /usr/bin/docker is called explicitly: a newer CLI elsewhere on PATH may shadow it.

DOCKER=(false) DOCKERD_PID=

dockerd_conf() {  # dockerd_conf DIR WRAPPER
    jq -n --arg d "$1" --arg w "$2" --arg cg "/$RUN_TAG-docker" '{
        "data-root": "\($d)/data", "exec-root": "\($d)/exec", "pidfile": "\($d)/dockerd.pid",
        "hosts": ["unix://\($d)/docker.sock"],
        "deprecated-key-path": "\($d)/key.json",
        "bridge": "none", "iptables": false, "ip6tables": false, "ip-forward": false, "ip-masq": false,
        "storage-driver": "overlay2",
        "exec-opts": ["native.cgroupdriver=cgroupfs"], "cgroup-parent": $cg,
        "log-driver": "json-file",
        "runtimes": { "sgrun": { "path": $w } } }'
}

dk_state() { "${DOCKER[@]}" inspect --format '{{.State.Status}}' "$1" 2>/dev/null; }
dk_state_is() { [ "$(dk_state "$1")" = "$2" ]; }

suite_docker() {
    SUITE=docker
    local d=$T/docker W CGP=/$RUN_TAG-docker
    mkdir -p "$d/data" "$d/exec"
    W=$(make_wrapper docker)
    mark_logs
    dockerd_conf "$d" "$W" >"$d/daemon.json"
    DOCKER=(/usr/bin/docker -H "unix://$d/docker.sock")

    # --config-file keeps /etc/docker/daemon.json out; its own session keeps ^C away from it
    setsid dockerd --config-file "$d/daemon.json" >"$d/dockerd.log" 2>&1 </dev/null 9>&- &
    DOCKERD_PID=$!
    if wait_for 30 q "${DOCKER[@]}" version; then
        pass "private dockerd $("${DOCKER[@]}" version --format '{{.Server.Version}}') up (pid $DOCKERD_PID)"
    else
        fail "private dockerd starts" "$(tail -n 20 "$d/dockerd.log")"; return
    fi
    cap "${DOCKER[@]}" info --format '{{json .Runtimes}} {{.CgroupDriver}}'
    check "dockerd lists runtime sgrun -> the wrapper" eval '[ "$RC" = 0 ] && out_has "$W"'

    cap "${DOCKER[@]}" import "$IMG_DIR/rootfs.tar" sgclients/busybox:imported
    check "docker import of the rootfs tarball" rc_is 0
    local img=sgclients/busybox:imported
    local RUN=(run --runtime sgrun --network none ${DOCKER_RUN_OPTS:-})

    cap "${DOCKER[@]}" "${RUN[@]}" --rm "$img" echo hi
    check "docker run --runtime sgrun --rm IMAGE echo hi prints hi" ok_and_out_is hi
    check "the runtime under test was called (create/start in its call log)" \
        grep -q " create --bundle " "$T/logs/docker/calls.log"

    cap "${DOCKER[@]}" "${RUN[@]}" --rm "$img" sh -c 'exit 7'
    check "docker run --rm: exit status 7 of the process is docker's exit status" rc_is 7

    cap "${DOCKER[@]}" "${RUN[@]}" --rm "$img" sh -c 'grep ^Seccomp: /proc/self/status'
    check "docker's default seccomp profile is applied (Seccomp: 2)" ok_and_out_is $'Seccomp:\t2'

    cap "${DOCKER[@]}" "${RUN[@]}" --rm -t "$img" sh -c 'tty; exit 4'
    check "docker run -t: tty is /dev/pts/*, exit status 4" eval '[ "$RC" = 4 ] && [[ $OUT == /dev/pts/* ]]'

    cap "${DOCKER[@]}" "${RUN[@]}" --rm --user 65534 --memory 32m "$img" \
        sh -c 'id -u; cat /sys/fs/cgroup/memory/memory.limit_in_bytes'
    check "docker run --user 65534 --memory 32m: uid 65534, memory.limit_in_bytes 33554432" \
        ok_and_out_is "65534"$'\n'"33554432"

    # docker --read-only adds no tmpfs by itself
    cap "${DOCKER[@]}" "${RUN[@]}" --rm --read-only --tmpfs /tmp "$img" \
        sh -c 'touch /x 2>/dev/null && echo writable || echo read-only; touch /tmp/x && echo tmp-writable'
    check "docker run --read-only --tmpfs /tmp: rootfs read-only, /tmp a writable tmpfs" \
        ok_and_out_is "read-only"$'\n'"tmp-writable"

    # --- a detached container -------------------------------------------------------------
    cap "${DOCKER[@]}" "${RUN[@]}" -d --name d-d "$img" sh -c 'trap "exit 42" TERM; sleep 1000 & wait'
    local id=$OUT
    if rc_is 0 && wait_for 5 dk_state_is d-d running; then
        pass "docker run -d: container running"
    else
        fail "docker run -d: container running" "state: $(dk_state d-d)"; return
    fi
    local pid; pid=$("${DOCKER[@]}" inspect --format '{{.State.Pid}}' d-d)

    cap "${DOCKER[@]}" exec d-d sh -c 'echo in-exec; exit 3'
    check "docker exec: output in-exec and exit status 3" eval '[ "$RC" = 3 ] && [ "$OUT" = in-exec ]'

    cap "${DOCKER[@]}" exec d-d sh -c 'cat /proc/1/comm; grep :memory: /proc/self/cgroup'
    local want; want="sh"$'\n'"$(grep :memory: /proc/"$pid"/cgroup)"
    check "docker exec: joins the container's pid namespace and cgroup ($CGP/<id>)" \
        eval 'ok_and_out_is "$want" && out_has ":memory:$CGP/$id"'

    cap "${DOCKER[@]}" exec -t d-d sh -c 'tty; exit 5'
    check "docker exec -t: tty is /dev/pts/*, exit status 5" eval '[ "$RC" = 5 ] && [[ $OUT == /dev/pts/* ]]'

    cap "${DOCKER[@]}" top d-d
    check "docker top: lists the init pid $pid and the sleep" \
        eval '[ "$RC" = 0 ] && awk "NR > 1 { print \$2 }" <<<"$OUT" | grep -qx "$pid" && out_has "sleep 1000"'

    local frz; frz=$(cgroup_dirs "$CGP/$id" | grep /freezer/ | head -n1)
    cap "${DOCKER[@]}" pause d-d
    check "docker pause: paused, freezer.state FROZEN" \
        eval '[ "$RC" = 0 ] && dk_state_is d-d paused && [ "$(cat "$frz/freezer.state" 2>/dev/null)" = FROZEN ]'
    cap "${DOCKER[@]}" unpause d-d
    check "docker unpause: running, freezer.state THAWED" \
        eval '[ "$RC" = 0 ] && dk_state_is d-d running && [ "$(cat "$frz/freezer.state" 2>/dev/null)" = THAWED ]'

    local mem; mem=$(cgroup_dirs "$CGP/$id" | grep /memory/ | head -n1)
    cap "${DOCKER[@]}" update --memory 64m --memory-swap 64m d-d
    check "docker update --memory 64m: memory.limit_in_bytes = 67108864" \
        eval '[ "$RC" = 0 ] && [ "$(cat "$mem/memory.limit_in_bytes" 2>/dev/null)" = 67108864 ]'

    cap "${DOCKER[@]}" stats --no-stream --format '{{.MemUsage}} {{.PIDs}}' d-d
    check "docker stats: memory usage against the 64MiB limit, 2 pids" \
        eval '[ "$RC" = 0 ] && [[ $OUT == *" / 64MiB 2" ]]'

    local t0=$SECONDS
    cap "${DOCKER[@]}" stop -t 20 d-d
    check "docker stop: SIGTERM ends it at once (trap), well before the 20 s timeout" \
        eval '[ "$RC" = 0 ] && [ $((SECONDS - t0)) -lt 10 ] && dk_state_is d-d exited'
    cap "${DOCKER[@]}" inspect --format '{{.State.ExitCode}}' d-d
    check "docker inspect: exit code 42 of the trap" ok_and_out_is 42

    cap "${DOCKER[@]}" rm d-d
    check "docker rm: container gone" eval '[ "$RC" = 0 ] && ! q "${DOCKER[@]}" inspect d-d'
    # docker 20.10 gives every runc-shim runtime the state root <exec-root>/runtime-runc/moby
    local rroot; rroot=$(awk -v id="$id" '$NF == id && / create / { for (i = 1; i < NF; i++) if ($i == "--root") print $(i + 1) }' \
                         "$T/logs/docker/calls.log" | head -n1)
    check "runtime state of the container removed (${rroot:-?}/$id)" \
        eval '[ -n "$rroot" ] && [ -d "$rroot" ] && [ ! -e "$rroot/$id" ]'
    check "cgroup $CGP/$id removed in every hierarchy" eval '[ -z "$(cgroup_dirs "$CGP/$id")" ]'

    # --- SIGKILL -> 137 -------------------------------------------------------------------
    cap "${DOCKER[@]}" "${RUN[@]}" -d --name d-k "$img" sleep 1000
    if rc_is 0 && wait_for 5 dk_state_is d-k running; then
        cap "${DOCKER[@]}" kill d-k
        cap "${DOCKER[@]}" wait d-k
        check "docker kill (SIGKILL) + docker wait: exit status 137" ok_and_out_is 137
    else
        fail "docker run -d sleep 1000 (for the SIGKILL test)"
    fi
    q "${DOCKER[@]}" rm -f d-k
}

teardown_docker() {
    SUITE=docker
    local d=$T/docker CGP=/$RUN_TAG-docker ids left cg mnt
    if [ -n "$DOCKERD_PID" ] && q "${DOCKER[@]}" version; then
        ids=$("${DOCKER[@]}" ps -aq)
        # shellcheck disable=SC2086
        [ -n "$ids" ] && q "${DOCKER[@]}" rm -f $ids
        q "${DOCKER[@]}" image prune -af
    fi
    # dockerd stops the containerd it started, and that one's shims end with their tasks
    stop_pid "$DOCKERD_PID" 20
    wait_for 10 eval '! pgrep -f -- "$d/" >/dev/null'
    left=$(pgrep -af -- "$d/")
    cg=$(cgroup_dirs "$CGP" | xargs -r -I{} find {} -mindepth 1 -type d 2>/dev/null)
    mnt=$(mounts_under "$d")
    if [ -z "$left$cg$mnt" ]; then
        pass "dockerd stopped; no containerd, shim, mount or container cgroup left"
    else
        fail "dockerd stopped; no containerd, shim, mount or container cgroup left" \
            ${left:+"processes: $left"} ${cg:+"cgroups: $cg"} ${mnt:+"mounts: $mnt"}
        local p; for p in $(pgrep -f -- "$d/"); do stop_pid "$p" 5; done
        unmount_under "$d"
    fi
    rm_cgroup "$CGP"
}
