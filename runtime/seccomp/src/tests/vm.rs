//! The simulator, plus the kernel's load-time checks: every test program is validated before
//! it is run, so a compiler bug shows as a failed check rather than as a wrong outcome.

use seccompiler::sock_filter;

pub use crate::simulate::{Outcome, SeccompData, AUDIT_ARCH_I386};
use crate::CompiledSeccomp;

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

/// What the kernel would do with `data`, after checking every program loads.
pub fn outcome(compiled: &CompiledSeccomp, data: &SeccompData) -> Outcome {
    for (_, program) in compiled.programs() {
        validate(program);
    }
    crate::simulate::outcome(compiled, data)
}

/// Shorthand: the outcome of an x86_64 call by name.
pub fn call(compiled: &CompiledSeccomp, name: &str, args: &[u64]) -> Outcome {
    let data = SeccompData::call(name, args).unwrap_or_else(|| panic!("no x86_64 syscall {name}"));
    outcome(compiled, &data)
}
