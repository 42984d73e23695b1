//! The ABI guard: hand-built instructions that close the hole seccompiler leaves open.
//!
//! seccompiler's filters check the audit architecture (`seccomp_data.arch`) but not the x32 bit
//! of the syscall number. An x32 system call arrives with `arch == AUDIT_ARCH_X86_64` and
//! `nr == __X32_SYSCALL_BIT | n`, so it matches none of the rules of a seccompiler filter and
//! gets that filter's mismatch action — ALLOW, in a denylist profile — and the kernel then runs
//! the x86_64 (or x32 compat) implementation of `n`, which is exactly what the denylist meant to
//! stop. The guard answers every number with that bit set itself, and kills the process on a
//! foreign audit architecture (i386 through `int 0x80`) as seccompiler's own filters do.
//!
//! It is used in two forms:
//! * as a [`prefix`] of the default filter, the only filter whose mismatch action is not
//!   ALLOW. Putting it *inside* that filter, rather than in a filter of its own, makes the x32
//!   answer independent of install order (two ERRNO results from two filters tie, and the kernel
//!   keeps the newest filter's errno);
//! * as a [`standalone`] filter when there is no default filter (defaultAction ALLOW): the only
//!   filters left then answer ALLOW to x32 numbers, so the guard's ENOSYS stands.

use seccompiler::{sock_filter, BpfProgram};

/// `AUDIT_ARCH_X86_64` = `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE` (linux/audit.h);
/// libc does not export the audit constants.
pub(crate) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// `__X32_SYSCALL_BIT` (arch/x86/include/uapi/asm/unistd.h).
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The result for x32 calls where nothing stricter applies: what a kernel built without x32
/// support answers.
pub(crate) const X32_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// Offsets into `struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; }`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

/// libc's BPF opcode constants are `u32`; `sock_filter.code` is a `u16` and every classic BPF
/// opcode fits in 8 bits, so the narrowing cannot lose bits.
const fn op(code: u32) -> u16 {
    code as u16
}

const fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: op(code),
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: op(code),
        jt,
        jf,
        k,
    }
}

/// Instructions to put in front of a program: KILL_PROCESS for a foreign audit arch,
/// `x32_result` for an x32 number, fall through to the next instruction for a native x86_64
/// call. Every jump is relative, so the program that follows is unaffected by the prefix.
pub(crate) fn prefix(x32_result: u32) -> Vec<sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W};
    vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, ARCH_OFFSET),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD | BPF_W | BPF_ABS, NR_OFFSET),
        jump(BPF_JMP | BPF_JSET | BPF_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET | BPF_K, x32_result),
    ]
}

/// The guard as a filter of its own (7 instructions): ENOSYS for x32, ALLOW for x86_64.
pub(crate) fn standalone() -> BpfProgram {
    let mut program = prefix(X32_ENOSYS);
    program.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    program
}
