//! Rules after parsing: numbers instead of names, conditions in a canonical order, so merging
//! layers and comparing rules is plain equality.

use std::collections::BTreeSet;
use std::fmt;

pub use crate::format::Op;

/// One argument condition: `args[index] <op> value`, or `args[index] & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cond {
    pub index: u8,
    pub op: Op,
    pub value: u64,
    /// Only for `masked_eq`; zero otherwise.
    pub mask: u64,
}

impl Cond {
    pub fn masked_eq(index: u8, mask: u64, value: u64) -> Self {
        Self {
            index,
            op: Op::MaskedEq,
            value,
            mask,
        }
    }

    pub fn eq(index: u8, value: u64) -> Self {
        Self {
            index,
            op: Op::Eq,
            value,
            mask: 0,
        }
    }

    /// What the kernel-side comparison does with `arg` (for checks; the BPF is seccompiler's).
    pub fn matches(&self, arg: u64) -> bool {
        match self.op {
            Op::Eq => arg == self.value,
            Op::Ne => arg != self.value,
            Op::Lt => arg < self.value,
            Op::Le => arg <= self.value,
            Op::Gt => arg > self.value,
            Op::Ge => arg >= self.value,
            Op::MaskedEq => arg & self.mask == self.value,
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::MaskedEq => {
                return write!(
                    f,
                    "arg{} & {:#x} == {:#x}",
                    self.index, self.mask, self.value
                )
            }
        };
        write!(f, "arg{} {op} {:#x}", self.index, self.value)
    }
}

/// All of these conditions (each on its own argument).
pub type Group = Vec<Cond>;

/// When a rule applies to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Whatever the arguments.
    Always,
    /// When any of these groups holds (never empty).
    AnyOf(BTreeSet<Group>),
}

impl When {
    pub fn groups(&self) -> Option<&BTreeSet<Group>> {
        match self {
            When::Always => None,
            When::AnyOf(g) => Some(g),
        }
    }

    /// Whether a call with these arguments is covered.
    pub fn matches(&self, args: &[u64; 6]) -> bool {
        match self {
            When::Always => true,
            When::AnyOf(groups) => groups
                .iter()
                .any(|g| g.iter().all(|c| c.matches(args[usize::from(c.index)]))),
        }
    }
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Always => f.write_str("always"),
            When::AnyOf(groups) => {
                let text: Vec<String> = groups
                    .iter()
                    .map(|g| {
                        g.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" && ")
                    })
                    .collect();
                f.write_str(&text.join(" || "))
            }
        }
    }
}
