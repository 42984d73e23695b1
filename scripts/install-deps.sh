#!/bin/bash
# Install every Debian 12 package that building, testing, benchmarking and the demo need.
# Idempotent; run as root. Usage: scripts/install-deps.sh [--for build|test|bench|demo|all]
set -euo pipefail
what=${2:-all}
[ "${1:-}" = "--for" ] || what=all
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: run as root (apt-get install)" >&2; exit 1; }

# libelf-dev and zlib1g-dev: libbpf (vendored by libbpf-sys) for the cgroup-v2 device filter.
build=(gcc libc6-dev pkg-config make jq file libelf-dev zlib1g-dev)
# busybox-static: the test rootfs. runc/crun: reference runtimes for comparisons.
# e2fsprogs, btrfs-progs, xfsprogs: mkfs of tenant volumes and pools (loop, btrfs,
# xfs-prjquota); btrfs-progs also lets the tests read qgroups and weaken a limit by hand.
# erofs-utils: mkfs.erofs packs an image for read-only tenant roots (docs/rootfs.md).
runtime=(busybox-static runc crun iproute2 procps util-linux tmux e2fsprogs btrfs-progs xfsprogs erofs-utils)
# The real clients that drive sgrun end to end.
clients=(containerd podman docker.io)
# The shim's CRI test client (tests/shim/cri): gRPC stubs generated from the CRI proto.
shim=(python3-grpcio python3-grpc-tools bsdutils)
# The cgroup-v2 VM: QEMU TCG boots Debian's cloud kernel (fetched with apt-get download).
# e2fsprogs/xfsprogs: mkfs.ext4 and mkfs.xfs are copied into the guest for the project-quota tests.
vm=(qemu-system-x86 cpio lz4 e2fsprogs xfsprogs)
bench=(hyperfine time)
# The WordPress sites: their image (mmdebstrap from deb.debian.org), the front proxy (nginx-light: `sgrun proxy`), their tests (curl over the
# site's unix socket, python3 for the id-shifted copy and the audit listener).
wordpress=(mmdebstrap curl python3 linux-libc-dev nginx-light)

pkgs=("${build[@]}")
case $what in
    build) ;;
    test) pkgs+=("${runtime[@]}" "${clients[@]}" "${shim[@]}" "${vm[@]}" "${wordpress[@]}") ;;
    bench) pkgs+=("${runtime[@]}" "${clients[@]}" "${bench[@]}" "${wordpress[@]}") ;;
    demo) pkgs+=("${wordpress[@]}" e2fsprogs util-linux erofs-utils) ;;
    all) pkgs+=("${runtime[@]}" "${clients[@]}" "${shim[@]}" "${vm[@]}" "${bench[@]}" "${wordpress[@]}") ;;
    *) echo "install-deps.sh: unknown --for $what (build, test, bench, demo, all)" >&2; exit 1 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "install-deps.sh: cargo not found; install Rust (rustup) first" >&2; exit 1; }
