#!/usr/bin/env bash
# shellcheck disable=SC2034  # TAP state and settings are read by the sourced files
# containerd 1.6 (Debian) driving containerd-shim-sgrun-v1 for real: a private containerd
# started here (config, root, state and sockets in a fresh temp dir), ctr for the Task API,
# and a small CRI client (tests/shim/cri, Python grpcio) for a pod with RuntimeClass handler
# `sgrun`. Everything is stopped by PID and removed at the end, also on failure.
#
#   tests/shim/run.sh [ctr|cri]...        (default: both)
#
# Environment:
#   SHIM=/abs/path    the shim (default <repo>/target/x86_64-unknown-linux-gnu/release/containerd-shim-sgrun-v1)
#   SGRUN=/abs/path   the runtime (default <repo>/target/x86_64-unknown-linux-gnu/release/sgrun)
#   KEEP=1            keep the temp dir (containerd and shim logs) even when everything passed
#   CMD_TIMEOUT=S     timeout of one client command (default 60)
# Output: TAP; the last line is "N passed, M failed". Exit status 0 only if nothing failed.
set -uo pipefail            # no -e: a failing client command is a test result
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SGRUN=${SGRUN:-$REPO/target/x86_64-unknown-linux-gnu/release/sgrun}
SHIM=${SHIM:-$REPO/target/x86_64-unknown-linux-gnu/release/containerd-shim-sgrun-v1}
PY=/usr/bin/python3         # Debian's, with python3-grpcio and python3-grpc-tools
START_TS=$(date +%s)
RUNTIME=io.containerd.sgrun.v1

# shellcheck source=../clients/lib.sh
source "$REPO/tests/clients/lib.sh"
# shellcheck source=../clients/image.sh
source "$REPO/tests/clients/image.sh"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

SUITES=()
for a in "${@:-ctr cri}"; do
    for s in $a; do
        case $s in
            ctr|cri) SUITES+=("$s") ;;
            *) echo "run.sh: unknown suite '$s' (ctr, cri)" >&2; exit 2 ;;
        esac
    done
done

# --- prerequisites: a missing one is a failure with its reason, never a silent skip ----------
die() { echo "Bail out! $*"; echo "0 passed, 1 failed"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (containerd, mounts, cgroups)"
for b in "$SHIM" "$SGRUN"; do
    case $b in /*) ;; *) die "$b must be an absolute path" ;; esac
    [ -x "$b" ] || die "$b not found: make build shim (or set SHIM / SGRUN)"
done
missing=()
for c in containerd ctr jq sha256sum tar timeout setsid script "$PY"; do
    command -v "$c" >/dev/null || missing+=("$c")
done
[ ${#missing[@]} = 0 ] || die "missing ${missing[*]}: scripts/install-deps.sh --for test"
[ -x /bin/busybox ] || die "missing /bin/busybox: apt-get install -y busybox-static"
"$PY" -c 'import grpc, grpc_tools.protoc' 2>/dev/null \
    || die "$PY lacks grpcio / grpc_tools: apt-get install -y python3-grpcio python3-grpc-tools"

# containerd hard-codes /run/containerd/s for shim sockets: one client test run at a time
exec 9>/run/lock/sgrun-clients-tests.lock
flock -w 300 9 || die "another client test run still holds /run/lock/sgrun-clients-tests.lock after 300 s"

T=$(mktemp -d /tmp/sgshim.XXXXXX)
chmod 755 "$T"
RUN_TAG=sgshim-${T##*.}
RUN_TAG=${RUN_TAG,,}
IMG_DIR=$T/image
KEEP_DIR=
host_paths_before

finish() {
    local rc=$?
    trap - EXIT INT TERM HUP
    SUITE=teardown
    shim_teardown
    SUITE=
    leftovers_check
    if [ "$TAP_FAIL" -gt 0 ] || [ "${KEEP:-0}" = 1 ]; then KEEP_DIR=$T; else rm -rf "$T"; fi
    tap_summary
    [ "$TAP_FAIL" = 0 ] && [ "$rc" = 0 ] && exit 0
    exit 1
}
trap finish EXIT
trap 'fail "run completed (interrupted by a signal)"; exit 130' INT TERM HUP

echo "# shim under test: $SHIM"
echo "# runtime: $SGRUN ($("$SGRUN" --version 2>&1 | head -n1)); containerd $(containerd --version | awk '{print $3}')"
echo "# temp dir $T, tag $RUN_TAG, suites: ${SUITES[*]}"

if build_image "$IMG_DIR" 2>"$T/image.log" && build_pause_image "$IMG_DIR" 2>>"$T/image.log"; then
    pass "busybox and pause images built (OCI layouts)"
else
    fail "busybox and pause images built" "$(tail -n 5 "$T/image.log")"
    exit 1
fi

shim_setup || exit 1
for s in "${SUITES[@]}"; do
    echo "# --- $s"
    "suite_$s"
done
