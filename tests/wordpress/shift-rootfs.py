#!/usr/bin/env python3
"""Make a copy of a rootfs whose owners are shifted by BASE, for a container whose user
namespace maps container ids 0..65535 to host ids BASE..BASE+65535.

Usage: shift-rootfs.py SRC DST BASE

A stop-gap for tests until sgrun mounts the shared image through an idmapped mount
(DESIGN.md, "Filesystem"). Idempotent: DST.stamp records the source's stamp (written by
build-image.sh next to SRC) and BASE; a matching stamp means DST is up to date. The copy is
made in DST.new and renamed at the end; a failed run removes DST.new.

chown() clears the setuid/setgid bits and security.capability: both are put back.
"""
import os
import shutil
import stat
import subprocess
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: shift-rootfs.py SRC DST BASE")
    src, dst, base = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
    if not base.isdigit() or int(base) <= 0:
        sys.exit(f"shift-rootfs: BASE must be a positive number, not {base!r}")
    base = int(base)
    src_stamp = os.path.join(os.path.dirname(os.path.abspath(src)), "stamp")
    try:
        with open(src_stamp) as f:
            want = f"{f.read().strip()} {base}\n"
    except OSError as e:
        sys.exit(f"shift-rootfs: cannot read {src_stamp} ({e.strerror}): build the image first")
    stamp = dst + ".stamp"
    if os.path.isdir(dst) and os.path.exists(stamp) and open(stamp).read() == want:
        return
    new = dst + ".new"
    shutil.rmtree(new, ignore_errors=True)
    try:
        # cp -a keeps hard links, modes, times and xattrs; only the owners change below.
        subprocess.run(["cp", "-a", "--reflink=auto", src, new], check=True)
        seen = set()  # hard links: shift each inode once
        shift(new, base, seen)
        for root, dirs, files in os.walk(new):
            for name in dirs + files:
                shift(os.path.join(root, name), base, seen)
        shutil.rmtree(dst, ignore_errors=True)
        os.rename(new, dst)
        with open(stamp, "w") as f:
            f.write(want)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise


def shift(path, base, seen):
    st = os.lstat(path)
    if (st.st_dev, st.st_ino) in seen:
        return
    seen.add((st.st_dev, st.st_ino))
    if st.st_uid >= 65536 or st.st_gid >= 65536:
        sys.exit(f"shift-rootfs: {path} is owned by {st.st_uid}:{st.st_gid}, outside 0..65535")
    cap = None
    if stat.S_ISREG(st.st_mode):
        try:
            cap = os.getxattr(path, "security.capability", follow_symlinks=False)
        except OSError:
            pass
    os.lchown(path, st.st_uid + base, st.st_gid + base)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    if cap is not None:
        os.setxattr(path, "security.capability", cap, follow_symlinks=False)


if __name__ == "__main__":
    main()
