#!/bin/bash
# Fetch the Debian cloud kernel that the cgroup-v2 test VM boots, without installing it on the host.
#
#   tests/cgv2/fetch-kernel.sh [DIR]
#
# DIR (default: $SGRUN_CGV2_DIR, else <repo>/build/cgv2, which .gitignore's /build keeps out of git)
# is a cache that survives between runs:
#   DIR/debs/<pkg>_<ver>_amd64.deb   the downloaded package (not downloaded again while present)
#   DIR/kernel/<pkg>_<ver>/          its contents, unpacked with dpkg-deb -x (nothing is installed)
#   DIR/kernel/<pkg>_<ver>/vmlinux   the uncompressed kernel, when it could be extracted (see below)
#   DIR/kernel.env                   KERNEL_* variables for run.sh: which kernel to boot
#
# Which package: the metapackage linux-image-cloud-amd64 is resolved with apt-cache to the concrete
# linux-image-<abi>-cloud-amd64 of the moment (it moves with Debian security updates). Pin one with
# SGRUN_CGV2_KERNEL_PKG=linux-image-6.1.0-56-cloud-amd64. Without apt lists (offline CI), an already
# cached kernel is used as is. The cloud flavour is small (about 27 MB) and has every cgroup
# controller built in; it lacks 9p and most drivers, which these tests do not need.
#
# Why the vmlinux: Debian compresses the bzImage with LZ4, and under QEMU TCG (no KVM on our
# hosts) the in-guest decompressor costs noticeable boot time. The uncompressed ELF carries a PVH
# entry note, so `qemu -kernel vmlinux` boots it directly. If extraction fails, run.sh boots the
# vmlinuz instead; only the boot gets slower.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${1:-${SGRUN_CGV2_DIR:-$repo/build/cgv2}}
meta=linux-image-cloud-amd64
say() { echo "fetch-kernel: $*" >&2; }
die() { say "error: $*"; exit 1; }

mkdir -p "$dir/debs" "$dir/kernel"
dir=$(cd "$dir" && pwd)

# --- which package -----------------------------------------------------------------------------
pkg=${SGRUN_CGV2_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
    pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }' || true)
fi
if [ -z "$pkg" ]; then
    if [ -f "$dir/kernel.env" ]; then
        say "cannot resolve $meta (no apt lists?); using the cached kernel from $dir/kernel.env"
        exit 0
    fi
    die "cannot resolve $meta to a linux-image-*-cloud-amd64 package: run 'apt-get update' first"
fi
case $pkg in
    linux-image-*-amd64) ;;
    *) die "unexpected kernel package name '$pkg' (want linux-image-<abi>-cloud-amd64)";;
esac

# --- download (cached) -------------------------------------------------------------------------
deb=$(ls -t "$dir/debs/${pkg}_"*.deb 2>/dev/null | head -1 || true)
if [ -n "$deb" ]; then
    say "cached: $deb"
else
    say "downloading $pkg"
    # apt-get download writes into the current directory. Download into a scratch dir, then move:
    # an interrupted download never leaves a half-written .deb in the cache.
    tmp=$(mktemp -d "$dir/debs/.dl.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # _apt (apt's sandbox user) must be able to write there, or apt warns and downloads as root.
    chmod 755 "$tmp"; chown _apt "$tmp" 2>/dev/null || true
    (cd "$tmp" && apt-get download -q "$pkg") >&2 || die "apt-get download $pkg failed"
    got=$(ls "$tmp"/*.deb 2>/dev/null | head -1 || true)
    [ -n "$got" ] || die "apt-get download $pkg produced no .deb"
    deb=$dir/debs/$(basename "$got")
    mv "$got" "$deb"
fi
debver=$(dpkg-deb -f "$deb" Version)
dpkg-deb -f "$deb" Package | grep -qx "$pkg" || die "$deb is not package $pkg"

# --- unpack (cached) ---------------------------------------------------------------------------
kdir=$dir/kernel/${pkg}_${debver}
if [ ! -e "$kdir/.unpacked" ]; then
    say "unpacking $(basename "$deb") into $kdir"
    rm -rf "$kdir" "$kdir.tmp"
    dpkg-deb -x "$deb" "$kdir.tmp"
    touch "$kdir.tmp/.unpacked"
    mv "$kdir.tmp" "$kdir"
fi
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* 2>/dev/null | head -1 || true)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $deb"
kver=${vmlinuz##*/vmlinuz-}

# --- uncompressed vmlinux (optional) -----------------------------------------------------------
# The bzImage's payload is one LZ4 "legacy" frame (magic 02 21 4c 18). Find the first magic,
# decompress from there (lz4 may complain about the bytes after the frame: ignore, check the
# result instead) and keep the result only if it is an ELF with the PVH note QEMU needs.
vmlinux=$kdir/vmlinux
if [ ! -s "$vmlinux" ]; then
    rm -f "$vmlinux"
    if command -v lz4 >/dev/null && command -v readelf >/dev/null; then
        off=$(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$vmlinuz" | head -1 | cut -d: -f1 || true)
        if [ -n "$off" ]; then
            tail -c +"$((off + 1))" "$vmlinuz" | lz4 -dc > "$vmlinux.tmp" 2>/dev/null || true
            if [ "$(head -c 4 "$vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] &&
               readelf -n "$vmlinux.tmp" 2>/dev/null | grep -q '^ *Xen '; then
                mv "$vmlinux.tmp" "$vmlinux"
            fi
        fi
        rm -f "$vmlinux.tmp"
    fi
    if [ -s "$vmlinux" ]; then say "extracted PVH vmlinux ($(du -m "$vmlinux" | cut -f1) MiB)"
    else say "no PVH vmlinux extracted (lz4 or readelf missing?): the VM boots the compressed vmlinuz"; fi
fi
[ -s "$vmlinux" ] || vmlinux=

cat > "$dir/kernel.env.tmp" <<ENV
# written by tests/cgv2/fetch-kernel.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)
KERNEL_PKG=$pkg
KERNEL_DEB_VERSION=$debver
KERNEL_RELEASE=$kver
KERNEL_ROOT=$kdir
KERNEL_VMLINUZ=$vmlinuz
KERNEL_VMLINUX=$vmlinux
ENV
mv "$dir/kernel.env.tmp" "$dir/kernel.env"
say "kernel $kver ($pkg $debver) ready: $dir/kernel.env"
