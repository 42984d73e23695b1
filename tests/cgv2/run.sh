#!/bin/bash
# Run sgrun's cgroup-v2 tests in a throw-away QEMU VM and exit with their result.
#
#   tests/cgv2/run.sh SGRUN_STATIC_BINARY
#
# Our hosts are cgroup-v1 hybrid, so cgroup v2 exists only in a VM: Debian's cloud kernel (fetched
# by fetch-kernel.sh) booted by QEMU with TCG (KVM is unusable on these hosts), cgroup_no_v1=all,
# and an initramfs holding busybox-static, guest-init.sh as /init, the runtime binary as
# /usr/local/bin/sgrun, a busybox container rootfs (tests/rootfs/busybox.sh) and guest-tests.sh.
# Everything runs in ONE boot. The guest prints TAP on the serial console, then
# "SGRUN-VM-RESULT: exit=N"; this script prints the TAP and exits with N.
#
# Exit status: the tests' (0 = all passed, 1 = some failed, 137 = killed by the guest timeout),
#              2  = bad usage or a missing host prerequisite (named on stderr),
#              125 = the VM gave no result (did not boot, hung, crashed): see the console log.
#
# The binary should be static (ci.sh builds it with +crt-static). A dynamic one is accepted, with
# the libraries ldd names copied along: that is how Debian's runc serves as a stand-in.
#
# Environment (all optional):
#   SGRUN_CGV2_DIR            cache + work dir (default <repo>/build/cgv2; see fetch-kernel.sh)
#   SGRUN_CGV2_TIMEOUT        host-side limit for the whole VM run, seconds (default 600)
#   SGRUN_CGV2_GUEST_TIMEOUT  guest-side limit for the test script (default: TIMEOUT - 60)
#   SGRUN_CGV2_MEM, _SMP      VM memory in MiB (1024) and vCPUs (2)
#   SGRUN_CGV2_KERNEL         kernel image to boot (default: the vmlinux, else vmlinuz, of kernel.env)
#   SGRUN_CGV2_APPEND         extra kernel command line
#   SGRUN_CGV2_DEBUG=1        kernel messages on the console (they may interleave with TAP lines)
#   SGRUN_CGV2_VERBOSE=1      stream the serial console to stderr while the VM runs
#   SGRUN_CGV2_KEEP=1         keep the work dir (initramfs tree, cpio) for inspection
#   SGRUN_CGV2_WEAKEN=1       self-test: bundles lose their limits, the limit tests must fail
#   SGRUN_CGV2_LOG            where to keep the console log (default $SGRUN_CGV2_DIR/last-console.log)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
say() { echo "cgv2: $*" >&2; }
die() { say "error: $*"; exit 2; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

[ $# = 1 ] || die "usage: $0 SGRUN_STATIC_BINARY"
bin=$1
{ [ -f "$bin" ] && [ -x "$bin" ]; } || die "runtime binary '$bin' is not an executable file"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

dir=${SGRUN_CGV2_DIR:-$repo/build/cgv2}
tmo=${SGRUN_CGV2_TIMEOUT:-600}
gtmo=${SGRUN_CGV2_GUEST_TIMEOUT:-$((tmo > 120 ? tmo - 60 : tmo / 2))}
mem=${SGRUN_CGV2_MEM:-1024}
smp=${SGRUN_CGV2_SMP:-2}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
log=${SGRUN_CGV2_LOG:-$dir/last-console.log}
tapf=$dir/last-tap.txt

# ---- host prerequisites: a missing one is an error with its fix, never a skip ---------------------
need_pkgs=""
command -v qemu-system-x86_64 > /dev/null || need_pkgs="$need_pkgs qemu-system-x86"
command -v cpio > /dev/null || need_pkgs="$need_pkgs cpio"
command -v dpkg-deb > /dev/null || need_pkgs="$need_pkgs dpkg"
# the guest has no libc: busybox must be the static build
if [ ! -x /bin/busybox ] || ldd /bin/busybox 2>/dev/null | grep -q '=>'; then need_pkgs="$need_pkgs busybox-static"; fi
# the storage tests (guest-storage.sh): mkfs for the project-quota pools, and cc -static for the
# syscall probe that re-tags a directory's project id
[ -x /usr/sbin/mkfs.ext4 ] || need_pkgs="$need_pkgs e2fsprogs"
[ -x /usr/sbin/mkfs.xfs ] || need_pkgs="$need_pkgs xfsprogs"
command -v cc > /dev/null || need_pkgs="$need_pkgs gcc libc6-dev"
[ -z "$need_pkgs" ] ||
    die "missing host packages:$need_pkgs -- apt-get install -y --no-install-recommends$need_pkgs"

# One VM at a time per cache dir: the rootfs and kernel caches are shared, and two TCG VMs on a
# 2-core host would only slow each other down.
exec 9> "$dir/.run.lock"
flock 9

t0=$(now)
# ---- kernel -----------------------------------------------------------------------------------------
[ -f "$dir/kernel.env" ] || "$here/fetch-kernel.sh" "$dir" || die "fetch-kernel.sh failed"
# shellcheck disable=SC1091
. "$dir/kernel.env"
kernel=${SGRUN_CGV2_KERNEL:-${KERNEL_VMLINUX:-$KERNEL_VMLINUZ}}
[ -f "$kernel" ] || die "kernel image '$kernel' is missing: rerun tests/cgv2/fetch-kernel.sh $dir"

# ---- container rootfs (cached by busybox.sh's stamp file) ---------------------------------------------
"$repo/tests/rootfs/busybox.sh" "$dir/ctr" || die "tests/rootfs/busybox.sh failed"

# ---- initramfs -------------------------------------------------------------------------------------
work=$(mktemp -d "$dir/run.XXXXXX")
if [ -n "${SGRUN_CGV2_KEEP:-}" ]; then say "keeping work dir $work"; else trap 'rm -rf "$work"' EXIT; fi
st=$work/initramfs
mkdir -p "$st"/{bin,dev,proc,sys,tmp,run,newroot,etc,usr/local/bin,cgv2}
chmod 755 "$st"                          # becomes the mode of the guest's /
cp /bin/busybox "$st/bin/busybox"
for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -s busybox "$st/bin/$a"
done
# The kernel opens /dev/console for /init's stdio before anything is mounted.
mknod -m 600 "$st/dev/console" c 5 1
install -m 755 "$here/guest-init.sh" "$st/init"
install -m 755 "$here/guest-tests.sh" "$st/cgv2/guest-tests.sh"
install -m 755 "$here/guest-storage.sh" "$st/cgv2/guest-storage.sh"
install -m 755 "$bin" "$st/usr/local/bin/sgrun"
# A dynamic binary gets the libraries (and loader) ldd names, at the same paths.
copy_libs() {
    libs=$(ldd "$1" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' || true)
    for l in $libs; do
        [ -e "$st$l" ] && continue
        mkdir -p "$st$(dirname "$l")"; cp -L "$l" "$st$l"
    done
}
if ldd "$bin" 2>/dev/null | grep -q '=>'; then
    say "$(basename "$bin") is dynamically linked: copying its libraries into the guest"
    copy_libs "$bin"
fi
# ---- storage tests: project quota (guest-storage.sh) --------------------------------------------
# This host's kernel has no ext4/xfs project quota; Debian's kernel in the VM has it, but as
# modules, which the initramfs carries (there is no module tree to modprobe from): loop for
# the pool images, quota_tree + quota_v2 for ext4's quota files, libcrc32c + xfs for XFS, in
# that (dependency) order, which guest-init.sh insmods. mkfs.ext4 and mkfs.xfs go in with their
# libraries, and the static syscall probe re-tags project ids from inside containers.
moddir=$KERNEL_ROOT/lib/modules/$KERNEL_RELEASE/kernel
mkdir -p "$st/cgv2/modules" "$st/usr/sbin" "$st/cgv2/probes"
for m in drivers/block/loop fs/quota/quota_tree fs/quota/quota_v2 lib/libcrc32c fs/xfs/xfs; do
    [ -f "$moddir/$m.ko" ] || die "kernel module $moddir/$m.ko is missing (rerun tests/cgv2/fetch-kernel.sh $dir)"
    cp "$moddir/$m.ko" "$st/cgv2/modules/"
    basename "$m.ko" >> "$st/cgv2/modules/order"
done
for t in mkfs.ext4 mkfs.xfs; do
    install -m 755 "/usr/sbin/$t" "$st/usr/sbin/$t"
    copy_libs "/usr/sbin/$t"
done
[ -f /etc/mke2fs.conf ] && install -m 644 /etc/mke2fs.conf "$st/etc/mke2fs.conf"
cc -static -O2 -o "$st/cgv2/probes/probe" "$repo/tests/integration/probes/probe.c" ||
    die "cc -static tests/integration/probes/probe.c failed (install gcc and libc6-dev)"
chmod 755 "$st/cgv2/probes"
cp -a "$dir/ctr/rootfs" "$st/cgv2/rootfs"
# Mount points for the storage tests' binds: a container in a user namespace cannot make them
# in a rootfs owned by the host's root.
mkdir -p "$st/cgv2/rootfs/data" "$st/cgv2/rootfs/probes"
{
    printf 'SGRUN_CGV2_GUEST_TIMEOUT=%s\n' "$gtmo"
    [ -z "${SGRUN_CGV2_WEAKEN:-}" ] || echo "export SGRUN_CGV2_WEAKEN=1"
} > "$st/cgv2/env"
# Uncompressed cpio: decompressing in the guest is slow under TCG, loading bytes is not.
(cd "$st" && find . | cpio -o -H newc -R 0:0 --quiet) > "$work/initrd.cpio"
t1=$(now)
say "initramfs $(du -m "$work/initrd.cpio" | cut -f1) MiB built in $(secs "$t0" "$t1")s; booting $KERNEL_RELEASE ($(basename "$kernel")) under TCG, timeout ${tmo}s"

# ---- boot -------------------------------------------------------------------------------------------
# loglevel=1 keeps kernel messages (e.g. OOM reports, which this test provokes) off the console so
# they cannot split TAP lines; guest-init.sh prints dmesg after the result instead.
# cgroup_no_v1=all is what makes the host v2-only; systemd.unified_cgroup_hierarchy=1 only tells
# a systemd (there is none here) the same, and documents the intent.
# mitigations=off: speculative-execution mitigations only cost emulation time in a throw-away VM.
loglevel=1; [ -n "${SGRUN_CGV2_DEBUG:-}" ] && loglevel=7
append="console=ttyS0 loglevel=$loglevel panic=-1 mitigations=off systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all ${SGRUN_CGV2_APPEND:-}"
qemu=(qemu-system-x86_64 -accel tcg -cpu max -smp "$smp" -m "$mem"
      -nodefaults -no-reboot -display none -serial stdio
      -kernel "$kernel" -initrd "$work/initrd.cpio" -append "$append")
raw=$work/console.raw
set +e
if [ -n "${SGRUN_CGV2_VERBOSE:-}" ]; then
    timeout -k 10 "$tmo" "${qemu[@]}" < /dev/null 2>&1 | tee "$raw" >&2
    qrc=${PIPESTATUS[0]}
else
    timeout -k 10 "$tmo" "${qemu[@]}" < /dev/null > "$raw" 2>&1
    qrc=$?
fi
set -e
t2=$(now)
tr -d '\r' < "$raw" > "$log"
[ "$qrc" = 0 ] || say "qemu exited with status $qrc$([ "$qrc" = 124 ] && echo " (host timeout ${tmo}s)")"

# ---- result -------------------------------------------------------------------------------------------
# VM info lines, then the TAP between the BEGIN and RESULT markers, minus any kernel printk lines.
awk '/^SGRUN-VM-RESULT:/ { exit }
     /^SGRUN-VM: / && !on { sub(/^SGRUN-VM: /, "# vm: "); print; next }
     /^SGRUN-VM-BEGIN/ { on = 1; next }
     on && !/^\[ *[0-9]+\.[0-9]+\]/ { print }' "$log" | tee "$tapf"
result=$(sed -n 's/^SGRUN-VM-RESULT: exit=//p' "$log" | tail -n 1)
say "VM ran $(secs "$t1" "$t2")s (boot to power-off); total $(secs "$t0" "$t2")s; console log: $log"
case $result in
    '' | *[!0-9]*)
        say "the VM gave no result (${result:-no SGRUN-VM-RESULT line}). Last console lines:"
        tail -n 60 "$log" | sed 's/^/  | /' >&2
        exit 125;;
esac
if [ "$result" != 0 ]; then
    say "guest tests exited with $result. Last console lines (dmesg follows the result):"
    tail -n 40 "$log" | sed 's/^/  | /' >&2
fi
exit "$result"
