//! A classic-BPF interpreter for seccomp programs, so compiled profiles can be checked call by
//! call without installing them (golden tests, `sgrun profile explain`), and a model of how the
//! kernel combines several filters (`seccomp_run_filters`).

use seccompiler::sock_filter;

use crate::guard::AUDIT_ARCH_X86_64;
use crate::CompiledSeccomp;

/// `AUDIT_ARCH_I386` = `EM_386 | __AUDIT_ARCH_LE`.
pub const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;

/// `struct seccomp_data`, as the kernel fills it.
#[derive(Debug, Clone, Copy)]
pub struct SeccompData {
    pub nr: i32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl SeccompData {
    /// An x86_64 call of `name` with these leading arguments (the rest zero).
    /// `None` when `name` is not an x86_64 system call.
    pub fn call(name: &str, args: &[u64]) -> Option<Self> {
        let nr = crate::syscall_number(name)?;
        Some(Self::raw(i32::try_from(nr).ok()?, args))
    }

    /// A call by number; arguments past the sixth are ignored.
    pub fn raw(nr: i32, args: &[u64]) -> Self {
        let mut all = [0u64; 6];
        let n = args.len().min(6);
        all[..n].copy_from_slice(&args[..n]);
        Self {
            nr,
            arch: AUDIT_ARCH_X86_64,
            ip: 0x7f00_dead_beef,
            args: all,
        }
    }

    /// The same call made through another ABI (`AUDIT_ARCH_*`).
    pub fn with_arch(mut self, arch: u32) -> Self {
        self.arch = arch;
        self
    }

    /// The 32-bit word at `offset`, little-endian like x86_64. The kernel refuses programs
    /// loading anything else; sgrun's compiler emits none, so another offset reads as 0 here.
    fn word(&self, offset: u32) -> u32 {
        match offset {
            0 => self.nr as u32,
            4 => self.arch,
            8 => self.ip as u32,
            12 => (self.ip >> 32) as u32,
            // Each argument is two words: low half first.
            16..=60 if offset & 3 == 0 => {
                let arg = self.args[((offset - 16) / 8) as usize];
                if (offset - 16) % 8 == 4 {
                    (arg >> 32) as u32
                } else {
                    arg as u32
                }
            }
            _ => 0,
        }
    }
}

/// Runs one program on `data`, returning its 32-bit seccomp result. A program that runs off
/// its end or uses an opcode sgrun never emits yields KILL_PROCESS, as the kernel would have
/// refused to load it.
pub(crate) fn run(prog: &[sock_filter], data: &SeccompData) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let Some(insn) = prog.get(pc) else {
            return libc::SECCOMP_RET_KILL_PROCESS;
        };
        let k = insn.k;
        match insn.code {
            // LD W ABS
            0x20 => a = data.word(k),
            // ALU AND K / OR K
            0x54 => a &= k,
            0x44 => a |= k,
            // JMP JA
            0x05 => {
                pc += 1 + k as usize;
                continue;
            }
            // JMP JEQ / JGT / JGE / JSET, K
            0x15 | 0x25 | 0x35 | 0x45 => {
                let taken = match insn.code {
                    0x15 => a == k,
                    0x25 => a > k,
                    0x35 => a >= k,
                    _ => a & k != 0,
                };
                pc += 1 + usize::from(if taken { insn.jt } else { insn.jf });
                continue;
            }
            // RET K / RET A
            0x06 => return k,
            0x16 => return a,
            _ => return libc::SECCOMP_RET_KILL_PROCESS,
        }
        pc += 1;
    }
}

/// The kernel's `seccomp_run_filters`: newest filter first, keep the result with the lowest
/// signed action (highest precedence); on a tie the earlier (newer) result stays.
pub fn run_all(compiled: &CompiledSeccomp, data: &SeccompData) -> u32 {
    let mut ret = libc::SECCOMP_RET_ALLOW;
    for (_, program) in compiled.programs().rev() {
        let cur = run(program, data);
        let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        if action(cur) < action(ret) {
            ret = cur;
        }
    }
    ret
}

/// The kernel's seccomp action cache (`seccomp_cache_prepare`, 5.11+): when a filter is
/// attached, the kernel emulates it for each call number with only `nr` and `arch` known, and
/// a call for which it provably returns ALLOW is answered from a bitmap ever after, without
/// running the filter. This mirrors `seccomp_is_const_allow`: any instruction outside the few
/// it understands, or a load of anything but `nr` and `arch`, makes the call uncached.
pub fn kernel_caches_allow(program: &[sock_filter], arch: u32, nr: u32) -> bool {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    while let Some(insn) = program.get(pc) {
        pc += 1;
        match insn.code {
            // LD W ABS: only seccomp_data.nr (offset 0) and .arch (offset 4) are known.
            0x20 => {
                a = match insn.k {
                    0 => nr,
                    4 => arch,
                    _ => return false,
                }
            }
            // ALU AND K
            0x54 => a &= insn.k,
            // JMP JA
            0x05 => pc += insn.k as usize,
            // JMP JEQ/JGE/JGT/JSET with K
            0x15 | 0x35 | 0x25 | 0x45 => {
                let taken = match insn.code {
                    0x15 => a == insn.k,
                    0x35 => a >= insn.k,
                    0x25 => a > insn.k,
                    _ => a & insn.k != 0,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            // RET K
            0x06 => return insn.k == libc::SECCOMP_RET_ALLOW,
            _ => return false,
        }
    }
    false
}

/// Whether the kernel answers `nr` (x86_64) from its action cache under every filter of
/// `compiled`, that is, without running any of them.
pub fn cached_allow(compiled: &CompiledSeccomp, nr: u32) -> bool {
    compiled
        .programs()
        .all(|(_, program)| kernel_caches_allow(program, AUDIT_ARCH_X86_64, nr))
}

/// A seccomp result, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    KillProcess,
    KillThread,
    Trap,
    Errno(u16),
    Trace(u16),
    Log,
    Allow,
    Other(u32),
}

pub fn decode(ret: u32) -> Outcome {
    let data = (ret & libc::SECCOMP_RET_DATA) as u16;
    match ret & libc::SECCOMP_RET_ACTION_FULL {
        libc::SECCOMP_RET_KILL_PROCESS => Outcome::KillProcess,
        libc::SECCOMP_RET_KILL_THREAD => Outcome::KillThread,
        libc::SECCOMP_RET_TRAP => Outcome::Trap,
        libc::SECCOMP_RET_ERRNO => Outcome::Errno(data),
        libc::SECCOMP_RET_TRACE => Outcome::Trace(data),
        libc::SECCOMP_RET_LOG => Outcome::Log,
        libc::SECCOMP_RET_ALLOW => Outcome::Allow,
        _ => Outcome::Other(ret),
    }
}

/// What the kernel would do with `data` under every filter of `compiled`.
pub fn outcome(compiled: &CompiledSeccomp, data: &SeccompData) -> Outcome {
    decode(run_all(compiled, data))
}

/// Shorthand: the outcome of an x86_64 call by name; `None` if there is no such call.
pub fn call(compiled: &CompiledSeccomp, name: &str, args: &[u64]) -> Option<Outcome> {
    Some(outcome(compiled, &SeccompData::call(name, args)?))
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::KillProcess => f.write_str("KILL_PROCESS"),
            Outcome::KillThread => f.write_str("KILL_THREAD"),
            Outcome::Trap => f.write_str("TRAP"),
            Outcome::Errno(e) => match crate::errno_name(i32::from(*e)) {
                Some(name) => write!(f, "ERRNO({name})"),
                None => write!(f, "ERRNO({e})"),
            },
            Outcome::Trace(d) => write!(f, "TRACE({d})"),
            Outcome::Log => f.write_str("LOG"),
            Outcome::Allow => f.write_str("ALLOW"),
            Outcome::Other(r) => write!(f, "{r:#x}"),
        }
    }
}
