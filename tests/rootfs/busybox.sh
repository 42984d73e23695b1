#!/bin/bash
# Build the minimal rootfs the integration tests, benchmarks and client tests use:
# busybox-static from Debian with its applets as symlinks, plus passwd/group entries.
# Usage: tests/rootfs/busybox.sh DEST        (DEST/rootfs is created; idempotent)
# Needs: busybox-static (the dynamic busybox package would need libc inside the rootfs).
set -euo pipefail
dest=${1:?usage: busybox.sh DEST}
bb=/bin/busybox
if ! file -L "$bb" 2>/dev/null | grep -q 'statically linked' && ! ldd "$bb" 2>&1 | grep -q 'not a dynamic'; then
    echo "busybox.sh: $bb is not statically linked; install it with: apt-get install busybox-static" >&2
    exit 1
fi
rf=$dest/rootfs
stamp=$rf/.sgrun-rootfs-ready
[ -e "$stamp" ] && exit 0
rm -rf "$rf"
mkdir -p "$rf"/{bin,sbin,proc,sys,dev,tmp,etc,root,home/nobody,run,var/tmp,mnt}
chmod 1777 "$rf/tmp" "$rf/var/tmp"
cp "$bb" "$rf/bin/busybox"
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$rf/bin/$applet"
done
cat > "$rf/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home/nobody:/bin/false
P
cat > "$rf/etc/group" <<'G'
root:x:0:
daemon:x:1:
tty:x:5:
www-data:x:33:
users:x:100:
nogroup:x:65534:
G
echo 127.0.0.1 localhost > "$rf/etc/hosts"
touch "$stamp"
