#!/bin/sh
# PID 1 of the cgroup-v2 test VM (busybox sh). run.sh packs it as /init into the initramfs.
#
# Stage 1 runs on the initramfs itself ("rootfs", a ramfs that can never be unmounted).
# pivot_root(2) refuses to move such a root away, and every OCI runtime (runc, youki's
# libcontainer, hence sgrun) pivot_roots into the container rootfs. So stage 1 copies the
# initramfs into a tmpfs and switch_roots into it: the runtime then sees the same kind of root as
# on a real host.
#
# Stage 2 prepares a host as systemd would leave it on a cgroup-v2-only machine (cgroup2 at
# /sys/fs/cgroup with nsdelegate, controllers enabled in the root's subtree_control), runs
# /cgv2/guest-tests.sh, reports "SGRUN-VM-RESULT: exit=N" on the serial console for run.sh, and
# powers the VM off. Console lines for run.sh start with "SGRUN-VM".
export PATH=/bin:/usr/local/bin

if [ "${SGRUN_CGV2_STAGE:-1}" = 1 ]; then
    mount -t tmpfs -o mode=0755 newroot /newroot || { echo "SGRUN-VM-RESULT: exit=stage1-tmpfs"; poweroff -f; }
    for e in /*; do
        case $e in /newroot|/proc|/sys|/dev) continue;; esac
        cp -a "$e" /newroot/
    done
    mkdir -p /newroot/proc /newroot/sys /newroot/dev
    export SGRUN_CGV2_STAGE=2
    # switch_root empties the old root (frees the initramfs memory) and execs /init in /newroot.
    # shellcheck disable=SC2093 # the lines after it run only if switch_root itself fails
    exec switch_root /newroot /init
    echo "SGRUN-VM-RESULT: exit=stage1-switch_root"; poweroff -f
fi

# ---- stage 2 -----------------------------------------------------------------------------------
# shellcheck disable=SC1091
[ -f /cgv2/env ] && . /cgv2/env
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs -o mode=1777 tmp /tmp
hostname sgrun-cgv2
info() { echo "SGRUN-VM: $*"; }
info "kernel $(uname -r), init at uptime $(cut -d' ' -f1 /proc/uptime)s, $(grep -c ^processor /proc/cpuinfo) vCPUs, $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) MiB"

# The mount options systemd uses for the unified hierarchy. cgroup_no_v1=all on the kernel command
# line keeps every controller free for v2.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup ||
    info "mounting cgroup2 on /sys/fs/cgroup FAILED"
info "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
for c in cpuset cpu io memory pids; do
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || info "enabling controller $c FAILED"
done
info "root cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null)"

# The storage tests' kernel modules (run.sh packs them, in dependency order): loop devices for
# the pool images, ext4's quota format, XFS.
if [ -f /cgv2/modules/order ]; then
    for m in $(cat /cgv2/modules/order); do
        insmod "/cgv2/modules/$m" || info "insmod $m FAILED"
    done
    info "modules: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
fi

info "running /cgv2/guest-tests.sh (guest timeout ${SGRUN_CGV2_GUEST_TIMEOUT:-600}s)"
echo "SGRUN-VM-BEGIN"
# The guest-side timeout turns a hung test into a reported failure (137) instead of a VM that
# the host has to kill without any result.
timeout -s KILL "${SGRUN_CGV2_GUEST_TIMEOUT:-600}" sh /cgv2/guest-tests.sh 2>&1
rc=$?
echo "SGRUN-VM-RESULT: exit=$rc"
info "end at uptime $(cut -d' ' -f1 /proc/uptime)s"
# Kernel messages (OOM reports, warnings) are kept off the console by loglevel=1 so they cannot
# tear TAP lines apart; print them here, after the result, for whoever reads the console log.
echo "SGRUN-VM-DMESG-BEGIN"
dmesg | tail -n "${SGRUN_CGV2_DMESG_LINES:-300}"
echo "SGRUN-VM-DMESG-END"
sync
poweroff -f
