//! A classic-BPF interpreter for seccomp programs, so compiled profiles can be checked call by
//! call without installing them, and a model of how the kernel combines several filters.

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
    pub fn call(name: &str, args: &[u64]) -> Self {
        let nr = crate::syscall_number(name).unwrap_or_else(|| panic!("no x86_64 syscall {name}"));
        Self::raw(i32::try_from(nr).expect("syscall numbers fit i32"), args)
    }

    pub fn raw(nr: i32, args: &[u64]) -> Self {
        let mut all = [0u64; 6];
        all[..args.len()].copy_from_slice(args);
        Self {
            nr,
            arch: AUDIT_ARCH_X86_64,
            ip: 0x7f00_dead_beef,
            args: all,
        }
    }

    pub fn with_arch(mut self, arch: u32) -> Self {
        self.arch = arch;
        self
    }

    /// The 32-bit word at `offset`, little-endian like x86_64. The kernel refuses programs
    /// loading anything else, so do we.
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
            _ => panic!("BPF load from invalid seccomp_data offset {offset}"),
        }
    }
}

const CLASS_LD: u16 = 0x00;
const CLASS_ALU: u16 = 0x04;
const CLASS_JMP: u16 = 0x05;
const CLASS_RET: u16 = 0x06;

/// Checks what the kernel's `bpf_check_classic` and `seccomp_check_filter` check for the subset
/// seccompiler and the guard emit: jumps land inside the program, it ends with RET, only
/// supported opcodes appear.
pub fn validate(prog: &[sock_filter]) {
    assert!(!prog.is_empty(), "empty program");
    assert!(prog.len() <= 4096, "program too long: {}", prog.len());
    let last = prog.last().expect("non-empty");
    assert_eq!(last.code & 0x07, CLASS_RET, "program must end with RET");
    for (pc, insn) in prog.iter().enumerate() {
        match insn.code & 0x07 {
            CLASS_LD => {
                assert_eq!(insn.code, 0x20, "pc {pc}: only LD W ABS is expected");
                assert!(
                    insn.k & 3 == 0 && insn.k < 64,
                    "pc {pc}: bad offset {}",
                    insn.k
                );
            }
            CLASS_ALU => assert_eq!(insn.code, 0x54, "pc {pc}: only ALU AND K is expected"),
            CLASS_JMP => {
                let targets: Vec<usize> = if insn.code == 0x05 {
                    vec![pc + 1 + insn.k as usize]
                } else {
                    assert!(
                        matches!(insn.code, 0x15 | 0x25 | 0x35 | 0x45),
                        "pc {pc}: unexpected jump {:#x}",
                        insn.code
                    );
                    vec![pc + 1 + usize::from(insn.jt), pc + 1 + usize::from(insn.jf)]
                };
                for t in targets {
                    assert!(t < prog.len(), "pc {pc}: jump to {t} outside the program");
                }
            }
            CLASS_RET => assert_eq!(insn.code, 0x06, "pc {pc}: only RET K is expected"),
            other => panic!("pc {pc}: unsupported instruction class {other:#x}"),
        }
    }
}

/// Runs one program on `data`, returning its 32-bit seccomp result.
pub fn run(prog: &[sock_filter], data: &SeccompData) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let insn = prog
            .get(pc)
            .unwrap_or_else(|| panic!("pc {pc} ran off the program"));
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
            code => panic!("pc {pc}: unsupported opcode {code:#x}"),
        }
        pc += 1;
    }
}

/// The kernel's `seccomp_run_filters`: newest filter first, keep the result with the lowest
/// signed action (highest precedence); on a tie the earlier (newer) result stays.
pub fn run_all(compiled: &CompiledSeccomp, data: &SeccompData) -> u32 {
    let mut ret = libc::SECCOMP_RET_ALLOW;
    for filter in compiled.filters.iter().rev() {
        let cur = run(&filter.program, data);
        let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        if action(cur) < action(ret) {
            ret = cur;
        }
    }
    ret
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
    for filter in &compiled.filters {
        validate(&filter.program);
    }
    decode(run_all(compiled, data))
}

/// Shorthand: the outcome of an x86_64 call by name.
pub fn call(compiled: &CompiledSeccomp, name: &str, args: &[u64]) -> Outcome {
    outcome(compiled, &SeccompData::call(name, args))
}
