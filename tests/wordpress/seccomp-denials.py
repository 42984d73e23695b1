#!/usr/bin/python3
"""Record every seccomp audit record (type 1326) the kernel emits while it runs.

Usage: seccomp-denials.py OUT_FILE READY_FILE      (as root; stop it with SIGTERM)

Writes one line per record to OUT_FILE: "<syscall name> <pid> <exe>". Touches READY_FILE once
it listens, so that a caller can start the workload only then.

Why a netlink listener and not dmesg: without auditd the kernel prints audit records through
printk_ratelimit (10 lines per 5 s by default), so dmesg shows the first ten denials of a run
and silently drops the rest. The audit read-only multicast group (AUDIT_NLGRP_READLOG) gets
every record without that limit and without taking over the host's audit daemon role or
changing any host setting.
"""
import re
import signal
import socket
import struct
import sys

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_SECCOMP = 1326
UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"


def syscall_names():
    names = {}
    try:
        with open(UNISTD) as f:
            for line in f:
                m = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
                if m:
                    names[int(m.group(2))] = m.group(1)
    except OSError as e:
        sys.exit(f"seccomp-denials: cannot read {UNISTD} for syscall names: {e} "
                 "(apt-get install linux-libc-dev)")
    return names


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: seccomp-denials.py OUT_FILE READY_FILE")
    names = syscall_names()
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    try:
        sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
    except OSError as e:
        sys.exit(f"seccomp-denials: cannot join the audit multicast group: {e} "
                 "(needs root: CAP_AUDIT_READ)")
    out = open(sys.argv[1], "w", buffering=1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    open(sys.argv[2], "w").close()
    while True:
        data = sock.recv(1 << 16)
        off = 0
        # struct nlmsghdr: u32 len, u16 type, u16 flags, u32 seq, u32 pid; payload 4-aligned
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            if kind == AUDIT_SECCOMP:
                text = data[off + 16:off + length].rstrip(b"\0").decode(errors="replace")
                nr = re.search(r" syscall=(\d+)", text)
                pid = re.search(r" pid=(\d+)", text)
                exe = re.search(r' exe="([^"]*)"', text)
                if nr:
                    n = int(nr.group(1))
                    out.write(f"{names.get(n, n)} {pid.group(1) if pid else '?'} "
                              f"{exe.group(1) if exe else '?'}\n")
            off += (length + 3) & ~3


if __name__ == "__main__":
    main()
