#!/usr/bin/env bash
# shellcheck disable=SC2034  # TAP state and settings are read by the sourced files
# End-to-end tests of sgrun under real clients from Debian 12: containerd 1.6 (ctr, runc shim),
# Podman 4.3 (conmon) and Docker 20.10 (dockerd + its own containerd), each started by this
# script with all of its state under a fresh temp dir and stopped by PID at the end.
#
#   tests/clients/run.sh [containerd|podman|docker|all]...      (default: all)
#
# Environment:
#   SGRUN=/abs/path   runtime under test (default <repo>/target/x86_64-unknown-linux-gnu/release/sgrun); any runc-compatible
#                     binary works, e.g. SGRUN=/usr/sbin/runc to check the harness itself
#   KEEP=1            keep the temp dir (logs, daemon state) even when everything passed
#   CMD_TIMEOUT=S     timeout of one client command (default 60)
#   PODMAN_RUN_OPTS, DOCKER_RUN_OPTS  extra `run` options, e.g. "--security-opt seccomp=unconfined"
#                     to look past a failure while debugging (never in CI)
# Output: TAP; the last line is "N passed, M failed". Exit status 0 only if nothing failed.
# Needs root and Debian packages: tests/clients/install-deps.sh (see README.md).
set -uo pipefail            # no -e: a failing client command is a test result
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SGRUN=${SGRUN:-$REPO/target/x86_64-unknown-linux-gnu/release/sgrun}
START_TS=$(date +%s)

# shellcheck source=lib.sh
source "$HERE/lib.sh"
# shellcheck source=image.sh
source "$HERE/image.sh"
# shellcheck source=containerd.sh
source "$HERE/containerd.sh"
# shellcheck source=podman.sh
source "$HERE/podman.sh"
# shellcheck source=docker.sh
source "$HERE/docker.sh"

usage() { sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

SUITES=()
for a in "${@:-all}"; do
    case $a in
        all) SUITES+=(containerd podman docker) ;;
        containerd|podman|docker) SUITES+=("$a") ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown suite '$a'" >&2; usage ;;
    esac
done

# --- prerequisites: a missing one is a failure with its reason, never a silent skip ----------
die() { echo "Bail out! $*"; echo "0 passed, 1 failed"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (daemons, mounts, cgroups)"
case $SGRUN in /*) ;; *) die "SGRUN must be an absolute path (got '$SGRUN')" ;; esac
[ -x "$SGRUN" ] || die "runtime $SGRUN not found: cargo build --release -p sgrun (or set SGRUN)"
need=(jq sha256sum tar timeout setsid script)
for s in "${SUITES[@]}"; do
    case $s in
        containerd) need+=(containerd ctr containerd-shim-runc-v2) ;;
        podman) need+=(podman conmon) ;;
        docker) need+=(dockerd /usr/bin/docker containerd containerd-shim-runc-v2) ;;
    esac
done
missing=()
for c in "${need[@]}"; do command -v "$c" >/dev/null || missing+=("$c"); done
[ ${#missing[@]} = 0 ] || die "missing ${missing[*]}: apt-get install -y containerd podman docker.io jq busybox-static bsdutils"
[ -x /bin/busybox ] || die "missing /bin/busybox: apt-get install -y busybox-static"

# One run at a time on a host: the clients share a few hard-coded host paths (/run/containerd/s,
# /run/docker, see README.md) that a run removes again when it created them.
exec 9>/run/lock/sgrun-clients-tests.lock
flock -w 300 9 || die "another tests/clients/run.sh still holds /run/lock/sgrun-clients-tests.lock after 300 s"

# --- the run's private world ------------------------------------------------------------------
T=$(mktemp -d /tmp/sgclients.XXXXXX)
chmod 755 "$T"              # conmon / container processes traverse it
RUN_TAG=sgclients-${T##*.}   # containerd namespace, cgroup parents, names: unique per run
RUN_TAG=${RUN_TAG,,}         # docker/podman names and containerd namespaces want lower case
IMG_DIR=$T/image
KEEP_DIR=
host_paths_before        # which client-created host paths existed before (docker.sh/podman.sh)

ACTIVE_TEARDOWN=
finish() {
    local rc=$?
    trap - EXIT INT TERM
    # a suite interrupted half-way: stop its daemon and containers first
    if [ -n "$ACTIVE_TEARDOWN" ]; then "$ACTIVE_TEARDOWN"; ACTIVE_TEARDOWN=; fi
    SUITE=
    leftovers_check
    if [ "$TAP_FAIL" -gt 0 ] || [ "${KEEP:-0}" = 1 ]; then
        KEEP_DIR=$T
    else
        rm -rf "$T"
    fi
    tap_summary
    [ "$TAP_FAIL" = 0 ] && [ "$rc" = 0 ] && exit 0
    exit 1
}
trap finish EXIT
trap 'fail "run completed (interrupted by a signal)"; exit 130' INT TERM HUP

echo "# runtime under test: $SGRUN ($("$SGRUN" --version 2>&1 | head -n1))"
echo "# temp dir $T, tag $RUN_TAG, kernel $(uname -r), suites: ${SUITES[*]}"

if build_image "$IMG_DIR" 2>"$T/image.log"; then
    pass "busybox image built (rootfs tarball, OCI layout, docker-archive)"
else
    fail "busybox image built" "$(tail -n 5 "$T/image.log")"
    exit 1
fi

for s in "${SUITES[@]}"; do
    echo "# --- $s"
    # the teardown runs whatever the suite did (also from finish() on ^C): daemons, containers
    ACTIVE_TEARDOWN=teardown_$s
    "suite_$s"
    "$ACTIVE_TEARDOWN"
    ACTIVE_TEARDOWN=
    SUITE=
done
