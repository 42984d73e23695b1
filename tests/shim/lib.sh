# shellcheck shell=bash
# shellcheck disable=SC2034  # TAP state (SUITE, LAST_CMD) and variables used inside eval strings
# The shim suites (sourced by run.sh after tests/clients/lib.sh and image.sh): a private
# containerd 1.6 with the CRI plugin on, the runtime io.containerd.sgrun.v1 (the shim on its
# PATH), ctr driving the Task API, and the CRI client for a pod.

PAUSE_NAME=docker.io/sgshim/pause:latest
CTRD_PID='' D='' CTR=(false) NS=''
CRI_NS=k8s.io

# build_pause_image DIR: the CRI sandbox image: the busybox layer of build_image with a command
# that waits for a signal (pid 1 ignores signals it has no handler for)
build_pause_image() {
    local dir=$1 w=$1/pause-work layer cfg cfg_sz man man_sz
    layer=$(_sha "$dir/rootfs.tar")
    rm -rf "$w"; mkdir -p "$w/oci/blobs/sha256"
    jq -cn --arg d "sha256:$layer" '{
        architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
        config: { Env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                  Cmd: ["/bin/sh", "-c", "trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait; done"],
                  WorkingDir: "/" },
        rootfs: { type: "layers", diff_ids: [$d] } }' | tr -d '\n' >"$w/config.json"
    cfg=$(_sha "$w/config.json"); cfg_sz=$(_size "$w/config.json")
    ln "$dir/rootfs.tar" "$w/oci/blobs/sha256/$layer" 2>/dev/null || cp "$dir/rootfs.tar" "$w/oci/blobs/sha256/$layer"
    cp "$w/config.json" "$w/oci/blobs/sha256/$cfg"
    jq -cn --arg c "sha256:$cfg" --argjson cs "$cfg_sz" --arg l "sha256:$layer" --argjson ls "$(_size "$dir/rootfs.tar")" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs },
        layers: [ { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls } ] }' \
        | tr -d '\n' >"$w/manifest.json"
    man=$(_sha "$w/manifest.json"); man_sz=$(_size "$w/manifest.json")
    cp "$w/manifest.json" "$w/oci/blobs/sha256/$man"
    printf '{"imageLayoutVersion":"1.0.0"}\n' >"$w/oci/oci-layout"
    jq -n --arg m "sha256:$man" --argjson ms "$man_sz" --arg n "$PAUSE_NAME" '{
        schemaVersion: 2,
        manifests: [ { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
                       platform: { architecture: "amd64", os: "linux" },
                       annotations: { "io.containerd.image.name": $n,
                                      "org.opencontainers.image.ref.name": "latest" } } ] }' >"$w/oci/index.json"
    _tar_reproducible "$w/oci" "$dir/pause-oci.tar" || return 1
    rm -rf "$w"
}

# shim_options FILE WRAPPER: the file runtimeoptions.v1.Options.ConfigPath names
shim_options() {
    cat >"$1" <<EOF
# read by containerd-shim-sgrun-v1 (docs/shim.md)
BinaryName = "$2"
Root = "$D/sgrun-root"
EOF
}

shim_ctrd_config() {
    cat <<EOF
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$D/c.sock"
[ttrpc]
  address = "$D/c.sock.ttrpc"
[debug]
  address = "$D/c-debug.sock"
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_NAME"
  # no CAP_SYS_RESOURCE here: the sandbox's oom_score_adj -998 cannot be set
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # the pod's network namespace is pinned under containerd's state dir (removed with it)
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    # tests/shim/cni-noop.sh: lo up, no bridge, no rule on this host
    conf_dir = "$D/cni/net.d"
    bin_dir = "$D/cni/bin"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "sgrun"
    # RuntimeClass handler "sgrun"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.sgrun]
      runtime_type = "$RUNTIME"
      pod_annotations = ["io.sgrun.*"]
      container_annotations = ["io.sgrun.*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.sgrun.options]
        ConfigPath = "$D/shim-cri.toml"
EOF
}

# our shims: their command line names this containerd's socket
shim_pids() { pgrep -f -- "containerd-shim-sgrun-v1 .*-address $D/c.sock( |$)"; }
shim_count() { shim_pids | wc -l; }

shim_setup() {
    SUITE=setup
    D=$T/containerd NS=$RUN_TAG-ctr
    mkdir -p "$D/cni/net.d" "$D/cni/bin" "$T/bin"
    cp "$REPO/tests/shim/cni-noop.sh" "$D/cni/bin/sgshim-noop"
    cp "$REPO/tests/shim/cni-noop.sh" "$D/cni/bin/loopback"
    printf '{"cniVersion":"0.4.0","name":"sgshim","plugins":[{"type":"sgshim-noop"}]}\n' >"$D/cni/net.d/10-sgshim.conflist"
    ln -s "$SHIM" "$T/bin/containerd-shim-sgrun-v1"
    ln -s "$SGRUN" "$T/bin/sgrun"
    WRAP_CTR=$(make_wrapper ctr) WRAP_CRI=$(make_wrapper cri)
    shim_options "$D/shim-ctr.toml" "$WRAP_CTR"
    shim_options "$D/shim-cri.toml" "$WRAP_CRI"
    shim_ctrd_config >"$D/config.toml"
    CTR=(ctr -a "$D/c.sock" -n "$NS")
    # containerd finds containerd-shim-sgrun-v1 on its PATH; setsid: a ^C on the test does not
    # reach it before the cleanup
    PATH="$T/bin:$PATH" setsid containerd --config "$D/config.toml" >"$D/containerd.log" 2>&1 </dev/null 9>&- &
    CTRD_PID=$!
    if wait_for 30 q ctr -a "$D/c.sock" version; then
        pass "private containerd $(containerd --version | awk '{print $3}') up (pid $CTRD_PID), CRI plugin on"
    else
        fail "private containerd starts" "$(tail -n 20 "$D/containerd.log")"
        return 1
    fi
    cap "${CTR[@]}" image import "$IMG_DIR/busybox-oci.tar"
    check "ctr image import of the busybox OCI archive -> $IMAGE_NAME" \
        eval '[ "$RC" = 0 ] && "${CTR[@]}" image ls -q | grep -qx "$IMAGE_NAME"'
}

# the shim's own log lines (containerd copies them into its log)
shim_log() { grep 'runtime=io.containerd.sgrun.v1' "$D/containerd.log"; }

ctr_task_status() { "${CTR[@]}" task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'; }
ctr_task_pid() { "${CTR[@]}" task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }'; }
# alive PID: running (a zombie left to whoever reaps orphans here does not count)
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
ctr_status_is() { [ "$(ctr_task_status "$1")" = "$2" ]; }

suite_ctr() {
    SUITE=ctr
    mark_logs
    # --fifo-dir: ctr's stdio FIFOs stay in the temp dir even when a test leaves them behind
    local R=(--runtime "$RUNTIME" --runtime-config-path "$D/shim-ctr.toml" --fifo-dir "$D/fifo") cmd pid
    local ns_root=$D/sgrun-root/$NS

    cap "${CTR[@]}" run --rm "${R[@]}" "$IMAGE_NAME" c-hi echo hi
    check "ctr run --rm --runtime $RUNTIME IMAGE echo hi prints hi" ok_and_out_is hi
    check "the shim drove sgrun (create/start/delete of c-hi in its call log)" \
        eval 'grep -q " create .*c-hi" "$T/logs/ctr/calls.log" && grep -q " start c-hi" "$T/logs/ctr/calls.log" && grep -q " delete --force c-hi" "$T/logs/ctr/calls.log"'

    # no runtime options at all: sgrun is found beside the shim or on containerd's PATH, and
    # its state goes to /run/containerd/sgrun/<namespace>
    cap "${CTR[@]}" run --rm --runtime "$RUNTIME" --fifo-dir "$D/fifo" "$IMAGE_NAME" c-noopt \
        sh -c 'echo no-options'
    check "ctr run without runtime options: default sgrun and state root /run/containerd/sgrun/$NS" \
        eval '[ "$RC" = 0 ] && [ "$OUT" = no-options ] && [ -d "/run/containerd/sgrun/$NS" ]'
    rm -rf "/run/containerd/sgrun/$NS"
    rmdir /run/containerd/sgrun 2>/dev/null

    cap "${CTR[@]}" run --rm "${R[@]}" "$IMAGE_NAME" c-exit sh -c 'exit 7'
    check "ctr run: the exit status 7 of the process is ctr's" rc_is 7

    cap "${CTR[@]}" run --rm "${R[@]}" "$IMAGE_NAME" c-ns \
        sh -c 'echo pid=$$; grep -E ":(memory|pids):" /proc/self/cgroup | cut -d: -f2,3 | sort'
    check "ctr run: pid 1 in its pid namespace, in cgroup /$NS/c-ns" \
        ok_and_out_is "pid=1"$'\n'"memory:/$NS/c-ns"$'\n'"pids:/$NS/c-ns"

    cap "${CTR[@]}" run --rm "${R[@]}" --annotation io.sgrun.profile.deny=mkdir "$IMAGE_NAME" c-deny \
        sh -c 'mkdir /tmp/x 2>&1; touch /tmp/y && echo touch-ok'
    check "annotation io.sgrun.profile.deny=mkdir reaches sgrun through the shim: mkdir EPERM, touch works" \
        eval '[ "$RC" = 0 ] && out_has "Operation not permitted" && out_has touch-ok'

    # cap reads stdin from /dev/null: this one is piped by hand
    OUT=$(printf 'from-stdin\n' | timeout -k 5 "${CMD_TIMEOUT:-60}" "${CTR[@]}" run --rm "${R[@]}" \
              "$IMAGE_NAME" c-in2 sh -c 'cat; echo after-eof' 2>&1 9>&-); RC=$?
    LAST_CMD="printf from-stdin | ctr run --rm ... cat"
    check "ctr run with stdin: it reaches the process, and CloseIO gives it EOF" \
        ok_and_out_is "from-stdin"$'\n'"after-eof"

    cap "${CTR[@]}" run --rm "${R[@]}" --log-uri "file://$T/c-log/out.log" "$IMAGE_NAME" c-log sh -c 'echo to-file; echo err-file >&2'
    check "ctr run --log-uri file://: stdout and stderr in the file" \
        eval '[ "$RC" = 0 ] && grep -qx to-file "$T/c-log/out.log" && grep -qx err-file "$T/c-log/out.log"'

    printf -v cmd '%q ' "${CTR[@]}" run --rm -t "${R[@]}" "$IMAGE_NAME" c-tty sh -c 'tty; exit 4'
    cap script -qec "$cmd" /dev/null
    check "ctr run -t (through script's pty): tty is /dev/pts/*, exit status 4" \
        eval '[ "$RC" = 4 ] && [[ $OUT == */dev/pts/* ]]'

    # --- a detached task -------------------------------------------------------------------
    cap "${CTR[@]}" run -d "${R[@]}" "$IMAGE_NAME" c-d sh -c 'trap "exit 42" TERM; sleep 1000 & wait'
    if rc_is 0 && wait_for 5 ctr_status_is c-d RUNNING; then
        pass "ctr run -d: task RUNNING"
    else
        fail "ctr run -d: task RUNNING" "task ls: $("${CTR[@]}" task ls 2>&1 | tr '\n' ';')"
        return
    fi
    pid=$(ctr_task_pid c-d)
    check "one shim serves c-d, and it is the sgrun shim (subreaper parent of the init $pid)" \
        eval '[ "$(shim_count)" = 1 ] && [ "$(ps -o ppid= -p "$pid" | tr -d " ")" = "$(shim_pids)" ]'

    cap "${CTR[@]}" task exec --exec-id e1 c-d sh -c 'echo in-exec; exit 3'
    check "ctr task exec: output in-exec and exit status 3" eval '[ "$RC" = 3 ] && [ "$OUT" = in-exec ]'

    cap "${CTR[@]}" task exec --exec-id e2 c-d sh -c 'cat /proc/1/comm; grep :memory: /proc/self/cgroup'
    check "ctr task exec: joins the task's pid namespace and cgroup" \
        ok_and_out_is "sh"$'\n'"$(grep :memory: /proc/"$pid"/cgroup)"

    # ctr sends ResizePty once Start has returned (and sgrun ignores process.consoleSize):
    # the process reads its size a little later
    printf -v cmd '%q ' "${CTR[@]}" task exec -t --exec-id e3 c-d sh -c 'tty; sleep 1; stty size; exit 5'
    cap script -qec "stty rows 33 cols 77; $cmd" /dev/null
    check "ctr task exec -t: a pty, ResizePty applied (33 77), exit status 5" \
        eval '[ "$RC" = 5 ] && [[ $OUT == */dev/pts/* ]] && out_has "33 77"'

    cap "${CTR[@]}" task exec --exec-id e4 c-d /no/such/binary
    check "ctr task exec of a missing binary fails with a message" eval '[ "$RC" != 0 ] && [ -n "$OUT" ]'

    cap "${CTR[@]}" task ps c-d
    check "ctr task ps: lists the init $pid and the sleep" \
        eval '[ "$RC" = 0 ] && awk "NR > 1 { print \$1 }" <<<"$OUT" | grep -qx "$pid" && [ "$(awk "NR > 1" <<<"$OUT" | wc -l)" -ge 2 ]'

    local frz; frz=$(cgroup_dirs "/$NS/c-d" | grep /freezer/ | head -n1)
    cap "${CTR[@]}" task pause c-d
    check "ctr task pause: PAUSED, freezer.state FROZEN" \
        eval '[ "$RC" = 0 ] && ctr_status_is c-d PAUSED && [ "$(cat "$frz/freezer.state" 2>/dev/null)" = FROZEN ]'
    cap "${CTR[@]}" task resume c-d
    check "ctr task resume: RUNNING, freezer.state THAWED" \
        eval '[ "$RC" = 0 ] && ctr_status_is c-d RUNNING && [ "$(cat "$frz/freezer.state" 2>/dev/null)" = THAWED ]'

    cap "${CTR[@]}" task metrics --format json c-d
    check "ctr task metrics (Stats): cgroup v1 Metrics, pids.current >= 2, memory usage > 0" \
        eval '[ "$RC" = 0 ] && jq -e "(.pids.current >= 2) and (.memory.usage.usage > 0)" <<<"$OUT" >/dev/null'

    # a lone shim counts its code pages as private (nobody shares them yet): see tests/bench/shim.sh
    echo "# private memory of this one shim (Private_Clean+Private_Dirty, code pages included): $(shim_uss_kb "$(shim_pids)") kB"

    cap "${CTR[@]}" task kill -s SIGTERM c-d
    if rc_is 0 && wait_for 10 ctr_status_is c-d STOPPED; then
        pass "ctr task kill -s SIGTERM: the trap runs, task STOPPED"
    else
        fail "ctr task kill -s SIGTERM: task STOPPED" "status: $(ctr_task_status c-d)"
    fi
    cap "${CTR[@]}" task exec --exec-id e5 c-d true
    check "ctr task exec into a stopped task is refused" eval '[ "$RC" != 0 ]'
    cap "${CTR[@]}" task kill -s SIGTERM c-d
    check "ctr task kill of a stopped task: not found (process already finished)" \
        eval '[ "$RC" != 0 ] && out_has "already finished"'
    cap "${CTR[@]}" task delete c-d
    check "ctr task delete: reports the exit status 42 of the trap" \
        eval '[ "$RC" = 0 ] && out_has "exit code 42"'
    cap "${CTR[@]}" container rm c-d
    check "ctr container rm: container gone, sgrun state $ns_root/c-d and cgroup /$NS/c-d removed" \
        eval '[ "$RC" = 0 ] && ! "${CTR[@]}" container ls -q | grep -qx c-d && [ ! -e "$ns_root/c-d" ] && [ -z "$(cgroup_dirs "/$NS/c-d")" ]'
    check "the shim of c-d exited after the delete (Shutdown)" wait_for 5 eval '[ "$(shim_count)" = 0 ]'

    # --- SIGKILL -> 137: a foreground `ctr run` exits with the task's status -------------------
    timeout -k 5 "${CMD_TIMEOUT:-60}" "${CTR[@]}" run "${R[@]}" "$IMAGE_NAME" c-k sleep 1000 \
        </dev/null >"$T/c-k.out" 2>&1 9>&- &
    local fg=$!
    if wait_for 10 ctr_status_is c-k RUNNING; then
        cap "${CTR[@]}" task kill -s SIGKILL c-k
        wait "$fg"; RC=$?
        OUT=$(cat "$T/c-k.out"); LAST_CMD="ctr run ... c-k sleep 1000; ctr task kill -s SIGKILL c-k"
        check "ctr run of a task killed by SIGKILL exits with status 137 (128+9)" rc_is 137
    else
        wait "$fg"; RC=$?; OUT=$(cat "$T/c-k.out"); LAST_CMD="ctr run ... c-k sleep 1000"
        fail "ctr run sleep 1000 (for the SIGKILL test): task RUNNING"
    fi
    q "${CTR[@]}" container rm c-k

    # --- a shim that dies: containerd runs `containerd-shim-sgrun-v1 delete`, which removes
    # the container with sgrun and unmounts its rootfs ------------------------------------------
    cap "${CTR[@]}" run -d "${R[@]}" "$IMAGE_NAME" c-dead sleep 1000
    if rc_is 0 && wait_for 5 ctr_status_is c-dead RUNNING; then
        local dpid spid sock; dpid=$(ctr_task_pid c-dead); spid=$(shim_pids)
        sock=$(tr '\0' '\n' <"/proc/$spid/cmdline" | awk 'prev == "-socket" { sub("^unix://", ""); print } { prev = $0 }')
        kill -KILL "$spid"
        check "a killed shim: containerd's cleanup (shim delete) kills the init, removes its sgrun state and rootfs mount" \
            wait_for 15 eval '! alive "$dpid" && [ ! -e "$ns_root/c-dead" ] && [ -z "$(mounts_under "$D/state/io.containerd.runtime.v2.task/$NS/c-dead")" ]'
        q "${CTR[@]}" task delete -f c-dead
        cap "${CTR[@]}" container rm c-dead
        check "after a dead shim: ctr container rm works, no shim left, its socket removed by shim delete" \
            eval '[ "$RC" = 0 ] && [ "$(shim_count)" = 0 ] && [ ! -S "$sock" ]'
    else
        fail "ctr run -d c-dead (for the dead-shim test): task RUNNING"
    fi

    # --- OOM: a 16 MiB limit and a 64 MiB buffer; the shim publishes /tasks/oom --------------
    timeout 60 ctr -a "$D/c.sock" events >"$T/events.txt" 2>&1 </dev/null 9>&- &
    local ev=$!
    sleep 0.3
    cap "${CTR[@]}" run --rm "${R[@]}" --memory-limit 16777216 "$IMAGE_NAME" c-oom \
        dd if=/dev/zero of=/dev/null bs=64M count=1
    check "an OOM-killed task exits 137 and the shim publishes TaskOOM (/tasks/oom in ctr events)" \
        eval '[ "$RC" = 137 ] && wait_for 5 grep -q "/tasks/oom .*c-oom" "$T/events.txt"'
    kill "$ev" 2>/dev/null; wait "$ev" 2>/dev/null

    # --- options: decoded, and never loosening --------------------------------------------------
    printf 'BinaryName = "%s"\nDefaultProfile = "none"\n' "$WRAP_CTR" >"$D/shim-loose.toml"
    cap "${CTR[@]}" run --rm --runtime "$RUNTIME" --runtime-config-path "$D/shim-loose.toml" "$IMAGE_NAME" c-loose true
    check "runtime options DefaultProfile = \"none\" are refused, naming the option" \
        eval '[ "$RC" != 0 ] && out_has DefaultProfile'
    q "${CTR[@]}" container rm c-loose
    printf 'BinaryName = "/no/such/sgrun"\n' >"$D/shim-nobin.toml"
    cap "${CTR[@]}" run --rm --runtime "$RUNTIME" --runtime-config-path "$D/shim-nobin.toml" "$IMAGE_NAME" c-nobin true
    check "a BinaryName that does not exist: the create fails naming it" \
        eval '[ "$RC" != 0 ] && out_has /no/such/sgrun'
    q "${CTR[@]}" container rm c-nobin
    check "no shim left once every task is deleted" wait_for 5 eval '[ "$(shim_count)" = 0 ]'
}

ok_rc_out() { [ "$RC" = "$1" ] && [ "$OUT" = "$2" ]; }
cri() { timeout -k 5 "${CMD_TIMEOUT:-60}" "$PY" "$HERE/cri/client.py" "$D/c.sock" "$T/cri-stubs" "$@" </dev/null 9>&-; }
ccap() { LAST_CMD="cri $*"; OUT=$(cri "$@" 2>&1); RC=$?; }

suite_cri() {
    SUITE=cri
    mark_logs
    local CG=/$RUN_TAG-cri logs=$T/cri-logs pod ctr
    mkdir -p "$T/cri-stubs" "$logs"
    cap "$PY" -m grpc_tools.protoc -I "$HERE/cri" --python_out="$T/cri-stubs" --grpc_python_out="$T/cri-stubs" "$HERE/cri/api.proto"
    check "CRI client stubs generated from tests/shim/cri/api.proto" rc_is 0 || return
    cap ctr -a "$D/c.sock" -n "$CRI_NS" image import "$IMG_DIR/busybox-oci.tar"
    cap ctr -a "$D/c.sock" -n "$CRI_NS" image import "$IMG_DIR/pause-oci.tar"
    check "busybox and pause images imported into namespace $CRI_NS" \
        eval '[ "$RC" = 0 ] && ctr -a "$D/c.sock" -n "$CRI_NS" image ls -q | grep -qx "$PAUSE_NAME"'

    ccap version
    check "CRI Version answers (containerd's CRI plugin)" eval '[ "$RC" = 0 ] && out_has containerd'

    # io.sgrun.profile, not io.sgrun.tenant: a tenant's container runs on an image from sgrun's
    # store (docs/rootfs.md), which the pause image of a CRI pod is not
    ccap runp site-a sgrun "$CG" "$logs" io.sgrun.profile=oci-default
    pod=$OUT
    if [ "$RC" = 0 ] && [ -n "$pod" ]; then
        pass "RunPodSandbox with RuntimeClass handler sgrun (pause container under the sgrun shim)"
    else
        fail "RunPodSandbox with RuntimeClass handler sgrun" "$(grep -i error "$D/containerd.log" | tail -n 5)"
        return
    fi
    check "the sandbox runs under containerd-shim-sgrun-v1 (one shim), not the runc shim" \
        eval '[ "$(shim_count)" = 1 ] && ! pgrep -f "containerd-shim-runc-v2 .*-address $D/c.sock" >/dev/null'

    ccap create "$pod" site-a "$CG" "$logs" web "$IMAGE_NAME" web.log io.sgrun.profile.deny=mkdir -- \
        sh -c 'echo started; mkdir /tmp/x 2>&1; trap "exit 0" TERM; while :; do sleep 1 & wait; done'
    ctr=$OUT
    check "CreateContainer in the pod" eval '[ "$RC" = 0 ] && [ -n "$ctr" ]' || return
    ccap start "$ctr"
    check "StartContainer" rc_is 0
    ccap status "$ctr"
    check "ContainerStatus: CONTAINER_RUNNING" eval '[ "$RC" = 0 ] && jq -e ".state == \"CONTAINER_RUNNING\"" <<<"$OUT" >/dev/null'
    check "the pod's containers share one shim (one shim per site)" eval '[ "$(shim_count)" = 1 ]'
    check "container output reaches the CRI log file, with the container annotation applied (mkdir EPERM)" \
        wait_for 5 eval 'grep -q " stdout F started" "$logs/web.log" && grep -q "Operation not permitted" "$logs/web.log"'
    check "the shim's log names the sandbox's profile from io.sgrun.profile" \
        eval 'shim_log | grep -q "profile=\"oci-default\""'

    ccap exec "$ctr" 10 -- sh -c 'echo in-pod; hostname; exit 3'
    check "ExecSync: output (in the pod's uts namespace: hostname site-a) and exit status 3" \
        ok_rc_out 3 "in-pod"$'\n'"site-a"

    ccap stats "$ctr"
    check "ContainerStats (Stats through CRI): memory working set > 0" \
        eval '[ "$RC" = 0 ] && jq -e ".memory_working_set > 0" <<<"$OUT" >/dev/null'

    # Update: containerd sends the runtime-spec LinuxResources; sgrun writes the cgroup
    local mem; mem=$(cgroup_dirs "$CG/$ctr" | grep /memory/ | head -n1)
    ccap update "$ctr" 123731968
    check "UpdateContainerResources (Update): memory.limit_in_bytes of the container = 123731968" \
        eval '[ "$RC" = 0 ] && [ "$(cat "$mem/memory.limit_in_bytes" 2>/dev/null)" = 123731968 ]'

    ccap stop "$ctr" 10
    check "StopContainer (SIGTERM, the trap exits 0)" rc_is 0
    ccap status "$ctr"
    check "ContainerStatus: CONTAINER_EXITED with exit code 0" \
        eval '[ "$RC" = 0 ] && jq -e "(.state == \"CONTAINER_EXITED\") and (.exit_code == 0)" <<<"$OUT" >/dev/null'
    ccap rm "$ctr"
    check "RemoveContainer" rc_is 0
    ccap stopp "$pod"
    check "StopPodSandbox" rc_is 0
    ccap rmp "$pod"
    check "RemovePodSandbox" rc_is 0
    check "the pod's shim exited with its last container" wait_for 10 eval '[ "$(shim_count)" = 0 ]'
    check "no sgrun state left for the pod ($D/sgrun-root/$CRI_NS)" \
        eval '[ -z "$(ls "$D/sgrun-root/$CRI_NS" 2>/dev/null)" ]'
}

# shim_uss_kb PID: private memory (what one more shim costs)
shim_uss_kb() { awk '/^Private_(Clean|Dirty):/ { s += $2 } END { print s }' "/proc/$1/smaps_rollup" 2>/dev/null; }

shim_teardown() {
    [ -n "$D" ] || return 0
    local ns id p sock
    if [ -n "$CTRD_PID" ] && q ctr -a "$D/c.sock" version; then
        for ns in $(ctr -a "$D/c.sock" namespaces ls -q 2>/dev/null); do
            for id in $(ctr -a "$D/c.sock" -n "$ns" task ls -q 2>/dev/null); do
                q ctr -a "$D/c.sock" -n "$ns" task kill -s SIGKILL "$id"
            done
            for id in $(ctr -a "$D/c.sock" -n "$ns" task ls -q 2>/dev/null); do
                wait_for 5 eval "! ctr -a $D/c.sock -n $ns task ls 2>/dev/null | awk '\$1 == \"$id\" { print \$3 }' | grep -q RUNNING"
                q ctr -a "$D/c.sock" -n "$ns" task delete -f "$id"
            done
            for id in $(ctr -a "$D/c.sock" -n "$ns" container ls -q 2>/dev/null); do
                q ctr -a "$D/c.sock" -n "$ns" container rm "$id"
            done
        done
    fi
    stop_pid "$CTRD_PID" 15
    if ! wait_for 5 eval '[ "$(shim_count)" = 0 ]'; then
        fail "every shim exited with its tasks" "left: $(shim_pids | tr '\n' ' ')"
        for p in $(shim_pids); do
            # a killed shim cannot remove its socket (/run/containerd/s/<hash>): we do
            sock=$(tr '\0' '\n' <"/proc/$p/cmdline" | awk 'prev == "-socket" { sub("^unix://", ""); print } { prev = $0 }')
            stop_pid "$p" 5
            [ -S "$sock" ] && rm -f "$sock"
        done
    fi
    # containers a dead shim could not delete
    for ns in "$D"/sgrun-root/*; do
        [ -d "$ns" ] || continue
        for id in "$ns"/*; do
            [ -d "$id" ] && q "$SGRUN" --root "$ns" delete --force "${id##*/}"
        done
    done
    rm -rf "/run/containerd/sgrun/$NS"
    rmdir /run/containerd/sgrun 2>/dev/null
    unmount_under "$T"
    rm_cgroup "/$RUN_TAG-ctr"
    rm_cgroup "/$RUN_TAG-cri"
    if [ "$TAP_FAIL" -gt 0 ]; then
        echo "# the shim's log (from $D/containerd.log):"
        shim_log | tail -n 30 | sed 's/^/#   /'
    fi
}
