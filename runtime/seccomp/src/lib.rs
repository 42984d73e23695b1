//! OCI `linux.seccomp` compiled to classic BPF with [seccompiler], and installed with seccomp(2).
//!
//! The runtime calls [`compile`] in the parent, before forking, so that a profile that cannot be
//! applied exactly fails `create` with a clear error instead of a half-started container. The
//! container's init then calls [`CompiledSeccomp::install`] just before execve, after it has set
//! no_new_privs itself (install does not: without no_new_privs, or CAP_SYS_ADMIN, the kernel
//! refuses the filter, and sgrun wants that failure to be loud rather than papered over).
//!
//! # One filter per action
//!
//! A seccompiler filter has exactly one *match* action and one *mismatch* action, while an OCI
//! profile gives every syscall entry an action of its own. The kernel, for its part, runs *every*
//! attached filter on each system call and keeps the highest-precedence result:
//!
//! ```text
//! KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > TRACE > LOG > ALLOW
//! ```
//!
//! So a profile becomes a stack of filters:
//!
//! * the **default filter** — match ALLOW, mismatch `defaultAction` — holds the rules of every
//!   entry, whatever its action. Whatever matches any rule passes it; anything else gets the
//!   default action. It is left out when `defaultAction` is ALLOW (it could only say ALLOW).
//! * one **action filter** per distinct non-ALLOW rule action — match that action, mismatch
//!   ALLOW — holding only that action's rules. Distinct errno (or trace) values are distinct
//!   actions, since a filter returns a single 32-bit value.
//! * the **ABI guard** (see the `guard` module): ENOSYS for the x32 ABI (or the default action,
//!   if that is stricter), KILL_PROCESS for a foreign audit arch. It is built into the default
//!   filter as a prefix, or is a filter of its own when there is no default filter.
//!
//! A call matching an ERRNO(13) rule passes the default filter (ALLOW), gets ERRNO(13) from its
//! action filter and ALLOW from the others: ERRNO(13) wins. A call matching no rule gets the
//! default action from the default filter and ALLOW everywhere else: the default wins. That is
//! the OCI meaning, built from single-action filters.
//!
//! When one call matches rules of two actions (overlapping conditions on the same syscall), the
//! stricter action wins. Between two values of the same kind (ERRNO(1) and ERRNO(13)) the
//! kernel keeps the result of the newest filter; action filters are installed in reverse order
//! of their first appearance in the profile, so the entry listed first wins such a tie.
//! libseccomp has no documented answer for that case; this one is deterministic and never
//! weaker than either rule.
//!
//! # Install order, and seccomp(2) itself
//!
//! The filters are installed one seccomp(2) call at a time, and every call passes through the
//! filters already installed. A profile that does not allow `seccomp` (most allowlists) would
//! make the default filter refuse the installation of the next filter. So the filter that can
//! deny `seccomp` is installed **last** — the default filter when `seccomp` is not allowed
//! unconditionally, or the action filter holding a rule for `seccomp`. Two filters able to deny
//! it (`seccomp` restricted by rules of two actions, or by a conditional rule under a non-ALLOW
//! default) cannot be installed in stages at all: [`compile`] refuses such a profile. Moving a
//! filter last can change which errno wins the tie described above; nothing else depends on
//! the order.
//!
//! # runc compatibility
//!
//! * A rule whose action equals the default action is dropped, as runc does (it cannot change
//!   the outcome of a call that matches only that rule).
//! * `errnoRet` defaults to EPERM for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`, `defaultErrnoRet` the
//!   same for the default action; on other actions it is ignored.
//! * Argument conditions compare all 64 bits. If one entry uses an argument index more than once,
//!   each condition becomes a rule of its own (OR); otherwise they form one rule (AND).
//!   `SCMP_CMP_MASKED_EQ` takes the mask in `value` and the expected value in `valueTwo`.
//! * An entry with several names applies to each.
//!
//! # What sgrun refuses (an error, never a warning)
//!
//! * `SCMP_ACT_NOTIFY` and `listenerPath`: sgrun runs no seccomp agent.
//! * `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (only meaningful with notification). oci-spec
//!   0.10 cannot even parse `SECCOMP_FILTER_FLAG_NEW_LISTENER` or unknown flags, so such a
//!   config.json already fails to load.
//! * `architectures` not listing x86_64: this crate builds x86_64 filters only. i386 and x32
//!   listed alongside x86_64 are accepted, but their calls are denied (see the guard): their
//!   syscall numbers differ, and a container must never get *less* protection than asked for.
//! * A syscall name that is not a Linux system call on any architecture (a typo would otherwise
//!   silently leave a call allowed or denied). Names that exist only on other architectures
//!   (`_llseek`, `chown32`, `arm_fadvise64_64`, …) cannot be invoked on x86_64 and are skipped.
//! * `seccomp` itself restricted by two filters (see "Install order" above).
//! * Errno values the kernel would clamp (above 4095), argument indexes above 5, a
//!   `SCMP_CMP_MASKED_EQ` whose expected value has bits outside its mask (it can never match,
//!   but seccompiler would mask it and match), and filters over the kernel's size limits.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("sgrun-seccomp builds x86_64 filters and uses the x86_64 syscall table");

mod guard;
pub mod simulate;
mod table;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;

use libc::c_ulong;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use sha2::{Digest, Sha256};

/// The kernel's limit on one filter (`BPF_MAXINSNS`). seccompiler refuses a program of this
/// length or more.
pub const MAX_FILTER_INSTRUCTIONS: usize = 4096;

/// The kernel's limit on all filters of a task together (`MAX_INSNS_PER_PATH`), where every
/// filter but the one being added costs 4 extra instructions.
pub const MAX_TOTAL_INSTRUCTIONS: usize = 32768;

/// The kernel clamps larger errno values to this (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

/// `SECCOMP_RET_DATA`: the 16 bits of data a TRACE result can carry.
const MAX_TRACE_DATA: u32 = 0xffff;

/// x86_64 number of seccomp(2): the filters are installed through it.
const SECCOMP_NR: i64 = libc::SYS_seccomp;

/// Where in the profile a construct sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// `defaultAction` / `defaultErrnoRet`.
    DefaultAction,
    /// `syscalls[index]`.
    Syscall {
        /// Index of the entry in `syscalls`.
        index: usize,
    },
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::DefaultAction => f.write_str("linux.seccomp.defaultAction"),
            Site::Syscall { index } => write!(f, "linux.seccomp.syscalls[{index}]"),
        }
    }
}

/// Why a profile cannot be compiled or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// `SCMP_ACT_NOTIFY` (as a rule or default action).
    #[error(
        "{site}: action {action} cannot be applied: sgrun runs no seccomp notification agent; \
         use SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS or SCMP_ACT_LOG instead"
    )]
    UnsupportedAction {
        /// Where the action appears.
        site: Site,
        /// The action.
        action: LinuxSeccompAction,
    },

    /// `listenerPath` is set.
    #[error(
        "linux.seccomp.listenerPath is {path:?}, but sgrun does not support seccomp user \
         notification; remove listenerPath (and any SCMP_ACT_NOTIFY rule)"
    )]
    ListenerPath {
        /// The listener path from the profile.
        path: PathBuf,
    },

    /// An errno (or trace data) value the kernel cannot return as given.
    #[error(
        "{site}: {action} with errno/data value {value} is out of range (at most {max}: the \
         kernel would clamp it); use a value from errno(3)"
    )]
    ErrnoOutOfRange {
        /// Where the value appears.
        site: Site,
        /// The action it belongs to.
        action: LinuxSeccompAction,
        /// The value.
        value: u32,
        /// The largest value the kernel returns unchanged.
        max: u32,
    },

    /// An entry without names.
    #[error("linux.seccomp.syscalls[{index}]: names is empty; list at least one syscall")]
    EmptyNames {
        /// Index of the entry in `syscalls`.
        index: usize,
    },

    /// A name that is not a Linux system call on any architecture, in a rule that restricts.
    #[error(
        "linux.seccomp.syscalls[{index}]: {name:?} is not a Linux system call on any \
         architecture, so this restricting rule would not restrict it; fix its spelling or \
         remove it from the profile"
    )]
    UnknownSyscall {
        /// Index of the entry in `syscalls`.
        index: usize,
        /// The name.
        name: String,
    },

    /// An argument index above 5.
    #[error(
        "linux.seccomp.syscalls[{index}].args[{arg}]: argument index {arg_index} is out of \
         range; system calls have 6 arguments, indexes 0 to 5"
    )]
    ArgumentIndex {
        /// Index of the entry in `syscalls`.
        index: usize,
        /// Position of the condition in the entry's `args`.
        arg: usize,
        /// The argument index it names.
        arg_index: usize,
    },

    /// `SCMP_CMP_MASKED_EQ` whose expected value has bits the mask clears.
    #[error(
        "linux.seccomp.syscalls[{index}].args[{arg}]: SCMP_CMP_MASKED_EQ with mask (value) \
         {mask:#x} and valueTwo {value_two:#x} can never match, since valueTwo has bits outside \
         the mask; clear those bits from valueTwo"
    )]
    MaskedEqUnmatchable {
        /// Index of the entry in `syscalls`.
        index: usize,
        /// Position of the condition in the entry's `args`.
        arg: usize,
        /// The mask (`value`).
        mask: u64,
        /// The expected value (`valueTwo`).
        value_two: u64,
    },

    /// A filter flag sgrun cannot apply.
    #[error(
        "linux.seccomp.flags: {flag} cannot be applied: it only makes sense with seccomp user \
         notification, which sgrun does not support; remove it"
    )]
    UnsupportedFlag {
        /// The flag.
        flag: LinuxSeccompFilterFlag,
    },

    /// `architectures` does not include x86_64.
    #[error(
        "linux.seccomp.architectures is [{}], which does not include SCMP_ARCH_X86_64: sgrun \
         builds x86_64 filters only; add SCMP_ARCH_X86_64 or drop the list",
        join(.listed)
    )]
    ArchitectureNotSupported {
        /// The architectures the profile lists.
        listed: Vec<Arch>,
    },

    /// One filter exceeds the kernel's instruction limit.
    #[error(
        "seccomp filter {filter} has {instructions} BPF instructions, over the kernel's limit of \
         {max}; shorten the profile (fewer conditional rules for that action)"
    )]
    FilterTooLarge {
        /// The filter's label.
        filter: String,
        /// Its length.
        instructions: usize,
        /// The limit.
        max: usize,
    },

    /// All filters together exceed the kernel's per-task limit.
    #[error(
        "the {filters} seccomp filters have {instructions} BPF instructions together (counting \
         the kernel's 4 per extra filter), over the kernel's limit of {max}; use fewer distinct \
         actions or shorten the profile"
    )]
    TooManyInstructions {
        /// Number of filters.
        filters: usize,
        /// Their total cost.
        instructions: usize,
        /// The limit.
        max: usize,
    },

    /// seccomp(2) itself would be restricted by more than one filter.
    #[error(
        "linux.seccomp.syscalls{entries:?}: seccomp(2) itself would be restricted by more than \
         one BPF filter ({}); sgrun installs one filter per action, and the first of them would \
         refuse the installation of the next; give seccomp a single action, or allow it \
         unconditionally",
        .filters.join("; ")
    )]
    SeccompSyscallSplit {
        /// Indexes of the entries naming `seccomp`.
        entries: Vec<usize>,
        /// Labels of the filters that can deny it.
        filters: Vec<String>,
    },

    /// seccompiler refused a filter for a reason the checks above should have caught.
    #[error("seccompiler rejected {subject}: {source}")]
    Backend {
        /// What was being built (an entry or a filter).
        subject: String,
        /// seccompiler's error.
        #[source]
        source: BackendError,
    },

    /// seccomp(2) failed.
    #[error(
        "installing seccomp filter #{filter} ({label}) failed: {source} (EACCES: set \
         no_new_privs first; EINVAL: a flag this kernel does not know)"
    )]
    Install {
        /// Position of the filter in install order.
        filter: usize,
        /// Its label.
        label: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Two filter stacks that can each deny seccomp(2) cannot both be installed.
    #[error(
        "cannot enforce two seccomp profiles ({first:.12} and {second:.12}) together: each \
         can deny seccomp(2), so the first installed would refuse the second; allow seccomp in \
         one of them, or merge them into one profile"
    )]
    StackBothRestrictSeccomp {
        /// Content hash of the first stack.
        first: String,
        /// Content hash of the second stack.
        second: String,
    },

    /// seccomp(2) with TSYNC could not synchronise a thread.
    #[error(
        "installing seccomp filter #{filter} ({label}) with SECCOMP_FILTER_FLAG_TSYNC failed: \
         thread {tid} cannot be synchronised (it has diverging filters)"
    )]
    ThreadSync {
        /// Position of the filter in install order.
        filter: usize,
        /// Its label.
        label: String,
        /// The thread that could not be synchronised.
        tid: i64,
    },
}

fn join(archs: &[Arch]) -> String {
    archs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One BPF program, what it is for, and the seccomp(2) flags it is installed with.
#[derive(Clone, PartialEq, Eq)]
struct Filter {
    label: String,
    program: BpfProgram,
    flags: c_ulong,
}

/// A profile compiled to BPF: the filters in install order, each with its seccomp(2) flags.
#[derive(Clone, PartialEq, Eq)]
pub struct CompiledSeccomp {
    filters: Vec<Filter>,
    hash: String,
    /// The last filter can deny seccomp(2): nothing can be installed after it.
    restricts_seccomp: bool,
}

// `install` hands seccompiler's instructions to the kernel as `libc::sock_filter`s; both are
// `#[repr(C)] { u16 code; u8 jt; u8 jf; u32 k }`. Checked here so a change in either crate
// breaks the build instead of the filter.
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<seccompiler::sock_filter>() == size_of::<libc::sock_filter>());
    assert!(align_of::<seccompiler::sock_filter>() == align_of::<libc::sock_filter>());
    assert!(offset_of!(seccompiler::sock_filter, code) == offset_of!(libc::sock_filter, code));
    assert!(offset_of!(seccompiler::sock_filter, jt) == offset_of!(libc::sock_filter, jt));
    assert!(offset_of!(seccompiler::sock_filter, jf) == offset_of!(libc::sock_filter, jf));
    assert!(offset_of!(seccompiler::sock_filter, k) == offset_of!(libc::sock_filter, k));
};

impl CompiledSeccomp {
    /// Installs every filter, in order, with the profile's flags.
    ///
    /// Call it in the process about to execve, after setting no_new_privs. It does not
    /// allocate on success, so it is safe between fork and exec. On error some filters may
    /// already be installed: the caller must not exec.
    pub fn install(&self) -> Result<(), SeccompError> {
        for (position, filter) in self.filters.iter().enumerate() {
            let len =
                u16::try_from(filter.program.len()).map_err(|_| SeccompError::FilterTooLarge {
                    filter: filter.label.clone(),
                    instructions: filter.program.len(),
                    max: MAX_FILTER_INSTRUCTIONS,
                })?;
            let prog = libc::sock_fprog {
                len,
                // The kernel only reads the program; `*mut` is the C declaration's constness.
                filter: filter
                    .program
                    .as_ptr()
                    .cast::<libc::sock_filter>()
                    .cast_mut(),
            };
            // SAFETY: `prog` points at `len` instructions owned by `self`, alive for the whole
            // call; seccompiler's `sock_filter` has libc's layout (checked at compile time
            // above). seccomp(2) copies the program and does not keep the pointer. Called
            // through `libc::syscall` because glibc's wrapper may be missing, and because the
            // flags (TSYNC, LOG, SPEC_ALLOW) need seccomp(2) rather than prctl.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    filter.flags,
                    &prog as *const libc::sock_fprog,
                )
            };
            if rc < 0 {
                return Err(SeccompError::Install {
                    filter: position,
                    label: filter.label.clone(),
                    source: io::Error::last_os_error(),
                });
            }
            if rc > 0 {
                // With TSYNC the kernel returns the id of the thread it could not synchronise.
                return Err(SeccompError::ThreadSync {
                    filter: position,
                    label: filter.label.clone(),
                    tid: rc,
                });
            }
        }
        Ok(())
    }

    /// Number of BPF programs `install` attaches (one per action, plus the ABI guard when
    /// there is no default filter to carry it).
    pub fn filter_count(&self) -> usize {
        self.filters.len()
    }

    /// Total BPF instructions over all filters.
    pub fn instruction_count(&self) -> usize {
        self.filters.iter().map(|f| f.program.len()).sum()
    }

    /// SHA-256 (hex) of the flags and every filter's instructions, in install order: equal
    /// hashes install identical filters. For caching compiled profiles and golden tests.
    pub fn content_hash(&self) -> String {
        self.hash.clone()
    }

    /// The seccomp(2) flags (`SECCOMP_FILTER_FLAG_*` bits) of every filter together.
    pub fn flags(&self) -> u64 {
        self.filters.iter().fold(0, |all, f| all | f.flags)
    }

    /// Whether the last filter can deny seccomp(2) itself, so that nothing can be installed
    /// after this stack.
    pub fn restricts_seccomp(&self) -> bool {
        self.restricts_seccomp
    }

    /// Both stacks, to be enforced together: the kernel runs every filter and keeps the
    /// strictest result, so the pair allows only what both allow. The stack that can deny
    /// seccomp(2) is installed last (or it would refuse the other's installation); two that
    /// both can cannot be installed one after the other, and are refused.
    pub fn stack(self, other: CompiledSeccomp) -> Result<CompiledSeccomp, SeccompError> {
        let (first, last) = match (self.restricts_seccomp, other.restricts_seccomp) {
            (true, true) => {
                return Err(SeccompError::StackBothRestrictSeccomp {
                    first: self.hash,
                    second: other.hash,
                })
            }
            (true, false) => (other, self),
            _ => (self, other),
        };
        let restricts_seccomp = last.restricts_seccomp;
        let filters: Vec<Filter> = first.filters.into_iter().chain(last.filters).collect();
        check_total(&filters)?;
        let hash = hash_filters(&filters);
        Ok(CompiledSeccomp {
            filters,
            hash,
            restricts_seccomp,
        })
    }

    /// Every program, in install order, with its label.
    pub(crate) fn programs(
        &self,
    ) -> impl DoubleEndedIterator<Item = (&str, &[seccompiler::sock_filter])> {
        self.filters
            .iter()
            .map(|f| (f.label.as_str(), f.program.as_slice()))
    }

    /// A self-checking serialisation for a cache: [`CompiledSeccomp::from_bytes`] recomputes
    /// the content hash and refuses bytes that do not match it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(CACHE_MAGIC);
        out.extend_from_slice(self.hash.as_bytes());
        out.push(u8::from(self.restricts_seccomp));
        out.extend_from_slice(&(self.filters.len() as u32).to_le_bytes());
        for f in &self.filters {
            out.extend_from_slice(&(f.label.len() as u32).to_le_bytes());
            out.extend_from_slice(f.label.as_bytes());
            out.extend_from_slice(&f.flags.to_le_bytes());
            out.extend_from_slice(&(f.program.len() as u32).to_le_bytes());
            for insn in &f.program {
                out.extend_from_slice(&insn.code.to_le_bytes());
                out.extend_from_slice(&[insn.jt, insn.jf]);
                out.extend_from_slice(&insn.k.to_le_bytes());
            }
        }
        out
    }

    /// Reads what [`CompiledSeccomp::to_bytes`] wrote; `None` for anything else, truncated or
    /// altered (the caller then compiles afresh).
    pub fn from_bytes(bytes: &[u8]) -> Option<CompiledSeccomp> {
        let mut r = Reader(bytes);
        if r.take(CACHE_MAGIC.len())? != CACHE_MAGIC {
            return None;
        }
        let hash = std::str::from_utf8(r.take(64)?).ok()?.to_owned();
        let restricts_seccomp = match r.take(1)?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let count = r.u32()? as usize;
        let mut filters = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let len = r.u32()? as usize;
            let label = String::from_utf8(r.take(len)?.to_vec()).ok()?;
            let flags: c_ulong = r.u64()?;
            let insns = r.u32()? as usize;
            if insns > MAX_FILTER_INSTRUCTIONS {
                return None;
            }
            let mut program = Vec::with_capacity(insns);
            for _ in 0..insns {
                let raw = r.take(8)?;
                program.push(seccompiler::sock_filter {
                    code: u16::from_le_bytes([raw[0], raw[1]]),
                    jt: raw[2],
                    jf: raw[3],
                    k: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
                });
            }
            filters.push(Filter {
                label,
                program,
                flags,
            });
        }
        if !r.0.is_empty() || hash_filters(&filters) != hash {
            return None;
        }
        Some(CompiledSeccomp {
            filters,
            hash,
            restricts_seccomp,
        })
    }

    /// What each filter is for, in install order, with its instruction count.
    pub fn filters(&self) -> impl Iterator<Item = (&str, usize)> {
        self.filters
            .iter()
            .map(|f| (f.label.as_str(), f.program.len()))
    }
}

impl fmt::Debug for CompiledSeccomp {
    // The programs are thousands of instructions: show what they are, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSeccomp")
            .field("filters", &self.filters().collect::<Vec<_>>())
            .field("flags", &format_args!("{:#x}", self.flags()))
            .field("hash", &self.hash)
            .finish()
    }
}

/// Leads every cached filter stack; bump it with any change of the encoding.
const CACHE_MAGIC: &[u8] = b"sgrun-bpf/2\0";

/// Reads the cache encoding; every accessor returns `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn hash_filters(filters: &[Filter]) -> String {
    let mut hasher = Sha256::new();
    // Versioned so a change of encoding cannot collide with cached hashes of the old one.
    hasher.update(b"sgrun-seccomp/2\0");
    hasher.update((filters.len() as u64).to_le_bytes());
    for filter in filters {
        hasher.update(filter.flags.to_le_bytes());
        hasher.update((filter.program.len() as u64).to_le_bytes());
        for insn in &filter.program {
            hasher.update(insn.code.to_le_bytes());
            hasher.update([insn.jt, insn.jf]);
            hasher.update(insn.k.to_le_bytes());
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The x86_64 number of a system call, by its kernel name (`clone3`, `newfstatat`, …).
pub fn syscall_number(name: &str) -> Option<i64> {
    match table::lookup(name) {
        table::Lookup::X86_64(nr) => Some(nr),
        table::Lookup::OtherArchOnly | table::Lookup::Unknown => None,
    }
}

/// Every x86_64 system call name, in number order.
pub fn x86_64_names() -> impl Iterator<Item = &'static str> {
    table::X86_64.iter().map(|(name, _)| *name)
}

/// What one syscall must look like to match, within one filter.
#[derive(Clone, Debug)]
enum Match {
    /// Any arguments.
    Always,
    /// Any of these rules (never empty).
    AnyOf(Vec<SeccompRule>),
}

impl Match {
    fn merge(&mut self, other: &Match) {
        match (&mut *self, other) {
            (Match::Always, _) => {}
            (_, Match::Always) => *self = Match::Always,
            (Match::AnyOf(mine), Match::AnyOf(theirs)) => {
                for rule in theirs {
                    if !mine.contains(rule) {
                        mine.push(rule.clone());
                    }
                }
            }
        }
    }

    /// seccompiler's encoding: no rules means "match unconditionally" (it refuses a rule with
    /// no conditions).
    fn into_rules(self) -> Vec<SeccompRule> {
        match self {
            Match::Always => Vec::new(),
            Match::AnyOf(rules) => rules,
        }
    }
}

#[derive(Default)]
struct RuleSet(BTreeMap<i64, Match>);

impl RuleSet {
    fn add(&mut self, nr: i64, m: &Match) {
        self.0
            .entry(nr)
            .and_modify(|existing| existing.merge(m))
            .or_insert_with(|| m.clone());
    }

    fn into_map(self) -> BTreeMap<i64, Vec<SeccompRule>> {
        self.0
            .into_iter()
            .map(|(nr, m)| (nr, m.into_rules()))
            .collect()
    }
}

fn action_label(action: &SeccompAction) -> String {
    match action {
        SeccompAction::Allow => "SCMP_ACT_ALLOW".into(),
        SeccompAction::Errno(e) => format!("SCMP_ACT_ERRNO({e})"),
        SeccompAction::KillThread => "SCMP_ACT_KILL_THREAD".into(),
        SeccompAction::KillProcess => "SCMP_ACT_KILL_PROCESS".into(),
        SeccompAction::Log => "SCMP_ACT_LOG".into(),
        SeccompAction::Trace(d) => format!("SCMP_ACT_TRACE({d})"),
        SeccompAction::Trap => "SCMP_ACT_TRAP".into(),
    }
}

/// What the ABI guard answers to an x32 call: ENOSYS, unless the default action is stricter
/// (a KILL or TRAP default must not be softened for x32 calls).
fn x32_result(default: &SeccompAction) -> u32 {
    match default {
        SeccompAction::KillProcess | SeccompAction::KillThread | SeccompAction::Trap => {
            u32::from(default.clone())
        }
        SeccompAction::Allow
        | SeccompAction::Errno(_)
        | SeccompAction::Log
        | SeccompAction::Trace(_) => guard::X32_ENOSYS,
    }
}

fn resolve_action(
    site: Site,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
) -> Result<SeccompAction, SeccompError> {
    // runc's default for both ERRNO and TRACE data.
    let eperm = libc::EPERM as u32;
    let checked = |max: u32| {
        let value = errno_ret.unwrap_or(eperm);
        if value > max {
            Err(SeccompError::ErrnoOutOfRange {
                site,
                action,
                value,
                max,
            })
        } else {
            Ok(value)
        }
    };
    let resolved = match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(checked(MAX_ERRNO)?),
        // SCMP_ACT_KILL is the historical name of KILL_THREAD.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(checked(MAX_TRACE_DATA)?),
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction { site, action })
        }
    };
    if errno_ret.is_some() && !matches!(resolved, SeccompAction::Errno(_) | SeccompAction::Trace(_))
    {
        tracing::debug!(%site, %action, "errnoRet ignored: the action returns no errno (as runc)");
    }
    Ok(resolved)
}

fn condition(
    index: usize,
    arg: usize,
    spec: &LinuxSeccompArg,
) -> Result<SeccompCondition, SeccompError> {
    let arg_index = spec.index();
    let out_of_range = SeccompError::ArgumentIndex {
        index,
        arg,
        arg_index,
    };
    let narrow_index = match u8::try_from(arg_index) {
        Ok(i) if i <= 5 => i,
        _ => return Err(out_of_range),
    };
    let (op, value) = match spec.op() {
        LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, spec.value()),
        LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, spec.value()),
        LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, spec.value()),
        LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, spec.value()),
        LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, spec.value()),
        LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, spec.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let mask = spec.value();
            let expected = spec.value_two().unwrap_or(0);
            // libseccomp compares (arg & mask) with valueTwo as given, so stray bits make the
            // condition false forever; seccompiler would mask them away and match. Refuse.
            if expected & !mask != 0 {
                return Err(SeccompError::MaskedEqUnmatchable {
                    index,
                    arg,
                    mask,
                    value_two: expected,
                });
            }
            (SeccompCmpOp::MaskedEq(mask), expected)
        }
    };
    // Qword: compare all 64 bits, like libseccomp on a 64-bit architecture.
    SeccompCondition::new(narrow_index, SeccompCmpArgLen::Qword, op, value).map_err(|source| {
        SeccompError::Backend {
            subject: format!("linux.seccomp.syscalls[{index}].args[{arg}]"),
            source,
        }
    })
}

fn entry_match(index: usize, args: Option<&Vec<LinuxSeccompArg>>) -> Result<Match, SeccompError> {
    let args = match args {
        Some(args) if !args.is_empty() => args,
        _ => return Ok(Match::Always),
    };
    let mut uses = [0usize; 6];
    let mut conditions = Vec::with_capacity(args.len());
    for (arg, spec) in args.iter().enumerate() {
        conditions.push(condition(index, arg, spec)?);
        // `condition` has checked the index is 0..=5.
        if let Some(count) = uses.get_mut(spec.index()) {
            *count += 1;
        }
    }
    let backend = |source| SeccompError::Backend {
        subject: format!("linux.seccomp.syscalls[{index}]"),
        source,
    };
    // runc: an argument compared more than once means "any of these" (one rule per condition),
    // otherwise the conditions must all hold (one rule).
    let rules = if uses.iter().any(|&n| n > 1) {
        conditions
            .into_iter()
            .map(|c| SeccompRule::new(vec![c]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?
    } else {
        vec![SeccompRule::new(conditions).map_err(backend)?]
    };
    Ok(Match::AnyOf(rules))
}

fn resolve_flags(flags: Option<&Vec<LinuxSeccompFilterFlag>>) -> Result<c_ulong, SeccompError> {
    let mut bits = 0;
    for &flag in flags.map(Vec::as_slice).unwrap_or_default() {
        bits |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(SeccompError::UnsupportedFlag { flag })
            }
        };
    }
    Ok(bits)
}

fn check_architectures(archs: Option<&Vec<Arch>>) -> Result<(), SeccompError> {
    let Some(archs) = archs.filter(|a| !a.is_empty()) else {
        // No list: the native architecture, as in runc.
        return Ok(());
    };
    if !archs
        .iter()
        .any(|a| matches!(a, Arch::ScmpArchX86_64 | Arch::ScmpArchNative))
    {
        return Err(SeccompError::ArchitectureNotSupported {
            listed: archs.clone(),
        });
    }
    for arch in archs {
        match arch {
            Arch::ScmpArchX86_64 | Arch::ScmpArchNative => {}
            Arch::ScmpArchX86 => tracing::debug!(
                %arch,
                "i386 system calls cannot be given the x86_64 rules: they kill the process"
            ),
            Arch::ScmpArchX32 => tracing::debug!(
                %arch,
                "x32 system calls cannot be given the x86_64 rules: they return ENOSYS"
            ),
            _ => tracing::debug!(%arch, "architecture cannot run on x86_64: ignored"),
        }
    }
    Ok(())
}

fn build_filter(
    label: String,
    rules: RuleSet,
    mismatch: SeccompAction,
    on_match: SeccompAction,
) -> Result<Filter, SeccompError> {
    let filter = SeccompFilter::new(rules.into_map(), mismatch, on_match, TargetArch::x86_64)
        .map_err(|source| SeccompError::Backend {
            subject: format!("filter {label}"),
            source,
        })?;
    match BpfProgram::try_from(filter) {
        Ok(program) => Ok(Filter {
            label,
            program,
            flags: 0,
        }),
        Err(BackendError::FilterTooLarge(instructions)) => Err(SeccompError::FilterTooLarge {
            filter: label,
            instructions,
            max: MAX_FILTER_INSTRUCTIONS,
        }),
        Err(source) => Err(SeccompError::Backend {
            subject: format!("filter {label}"),
            source,
        }),
    }
}

/// Compiles an OCI seccomp section into BPF filters for x86_64.
///
/// Pure: no system call is made, so it can run anywhere and be cached by
/// [`CompiledSeccomp::content_hash`].
pub fn compile(seccomp: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    if let Some(path) = seccomp.listener_path() {
        return Err(SeccompError::ListenerPath { path: path.clone() });
    }
    let flags = resolve_flags(seccomp.flags().as_ref())?;
    check_architectures(seccomp.architectures().as_ref())?;
    let default = resolve_action(
        Site::DefaultAction,
        seccomp.default_action(),
        seccomp.default_errno_ret(),
    )?;

    // Every rule, whatever its action: the default filter lets all of them through.
    let mut all_rules = RuleSet::default();
    // Non-ALLOW actions in order of first appearance, with their rules.
    let mut by_action: Vec<(SeccompAction, RuleSet)> = Vec::new();
    // Entries naming seccomp(2), for the error when it cannot be installed in stages.
    let mut seccomp_entries = Vec::new();

    let entries = seccomp.syscalls().as_deref().unwrap_or_default();
    for (index, entry) in entries.iter().enumerate() {
        let site = Site::Syscall { index };
        if entry.names().is_empty() {
            return Err(SeccompError::EmptyNames { index });
        }
        let action = resolve_action(site, entry.action(), entry.errno_ret())?;
        let matcher = entry_match(index, entry.args().as_ref())?;
        for name in entry.names() {
            let nr = match table::lookup(name) {
                table::Lookup::X86_64(nr) => nr,
                table::Lookup::OtherArchOnly => {
                    tracing::debug!(%site, name, "not an x86_64 system call: rule skipped");
                    continue;
                }
                // A name no architecture has cannot be called, so leaving it out of a rule that
                // grants (ALLOW, LOG) changes nothing, and real profiles carry such names
                // (Podman's lists the long-gone `timerfd`; runc skips them all). In a rule that
                // restricts, an unknown name is most likely a typo that would leave the real
                // call unrestricted: that stays an error.
                table::Lookup::Unknown
                    if matches!(action, SeccompAction::Allow | SeccompAction::Log) =>
                {
                    tracing::warn!(%site, name, "not a Linux system call: name skipped in a rule that grants");
                    continue;
                }
                table::Lookup::Unknown => {
                    return Err(SeccompError::UnknownSyscall {
                        index,
                        name: name.clone(),
                    })
                }
            };
            if nr == SECCOMP_NR && seccomp_entries.last() != Some(&index) {
                seccomp_entries.push(index);
            }
            if action == default {
                // As runc: the rule cannot change the outcome, and libseccomp refuses it.
                tracing::debug!(%site, name, "rule has the default action: skipped");
                continue;
            }
            all_rules.add(nr, &matcher);
            if action != SeccompAction::Allow {
                let position = match by_action.iter().position(|(a, _)| *a == action) {
                    Some(position) => position,
                    None => {
                        by_action.push((action.clone(), RuleSet::default()));
                        by_action.len() - 1
                    }
                };
                by_action[position].1.add(nr, &matcher);
            }
        }
    }

    // Each filter, with whether it can deny seccomp(2) (and so block the next installation).
    let mut planned: Vec<(Filter, bool)> = Vec::with_capacity(by_action.len() + 1);
    if default == SeccompAction::Allow {
        // No default filter to carry the ABI guard: it gets a filter of its own. It never
        // denies a native x86_64 call, so its place in the order does not matter.
        planned.push((
            Filter {
                label: "ABI guard: x32 ENOSYS, foreign arch KILL_PROCESS".into(),
                program: guard::standalone(),
                flags: 0,
            },
            false,
        ));
    }
    // Reverse order of appearance: the kernel keeps the newest filter's value among equal
    // actions, so the entry listed first wins a tie between two errno values.
    for (action, rules) in by_action.into_iter().rev() {
        let denies_seccomp = rules.0.contains_key(&SECCOMP_NR);
        let label = format!("{} when a rule matches", action_label(&action));
        let filter = build_filter(label, rules, SeccompAction::Allow, action)?;
        planned.push((filter, denies_seccomp));
    }
    if default != SeccompAction::Allow {
        let denies_seccomp = !matches!(all_rules.0.get(&SECCOMP_NR), Some(Match::Always));
        let x32 = x32_result(&default);
        let label = format!(
            "default: {} unless a rule matches; x32 {}, foreign arch KILL_PROCESS",
            action_label(&default),
            if x32 == guard::X32_ENOSYS {
                "ENOSYS".to_string()
            } else {
                action_label(&default)
            },
        );
        let mut filter = build_filter(label, all_rules, default, SeccompAction::Allow)?;
        // Relative jumps only: seccompiler's program runs unchanged after the prefix.
        filter.program.splice(0..0, guard::prefix(x32));
        if filter.program.len() > MAX_FILTER_INSTRUCTIONS {
            return Err(SeccompError::FilterTooLarge {
                filter: filter.label,
                instructions: filter.program.len(),
                max: MAX_FILTER_INSTRUCTIONS,
            });
        }
        planned.push((filter, denies_seccomp));
    }
    // The filter that can deny seccomp(2) goes last, or it would refuse the ones after it.
    let (deniers, keep): (Vec<_>, Vec<_>) = planned.into_iter().partition(|(_, d)| *d);
    if deniers.len() > 1 {
        return Err(SeccompError::SeccompSyscallSplit {
            entries: seccomp_entries,
            filters: deniers.into_iter().map(|(f, _)| f.label).collect(),
        });
    }
    let restricts_seccomp = !deniers.is_empty();
    let filters: Vec<Filter> = keep
        .into_iter()
        .chain(deniers)
        .map(|(mut f, _)| {
            f.flags = flags;
            f
        })
        .collect();
    check_total(&filters)?;

    let hash = hash_filters(&filters);
    Ok(CompiledSeccomp {
        filters,
        hash,
        restricts_seccomp,
    })
}

/// The kernel's limit over all filters of a task, where each but the first costs 4 more.
fn check_total(filters: &[Filter]) -> Result<(), SeccompError> {
    let total: usize = filters.iter().map(|f| f.program.len()).sum::<usize>()
        + 4 * filters.len().saturating_sub(1);
    if total > MAX_TOTAL_INSTRUCTIONS {
        return Err(SeccompError::TooManyInstructions {
            filters: filters.len(),
            instructions: total,
            max: MAX_TOTAL_INSTRUCTIONS,
        });
    }
    Ok(())
}

/// [`compile`], through an on-disk cache keyed by the profile's content and this binary.
///
/// The key is the SHA-256 of the profile's JSON and of the running executable's identity
/// (device, inode, size, modification time), so a new sgrun never reads an old one's BPF. A
/// cached file that fails its own hash check is ignored. Reading never creates anything; the
/// caller stores a fresh compile with [`cache_store`] once it knows the profile is in use (a
/// refused create must leave nothing behind). Returns whether the cache answered.
pub fn compile_cached(
    seccomp: &LinuxSeccomp,
    dir: Option<&std::path::Path>,
) -> Result<(CompiledSeccomp, bool), SeccompError> {
    let hit = dir
        .zip(cache_key(seccomp))
        .map(|(dir, key)| dir.join(format!("{key}.bpf")))
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| CompiledSeccomp::from_bytes(&bytes));
    match hit {
        Some(compiled) => {
            tracing::debug!("seccomp: compiled filters from the cache");
            Ok((compiled, true))
        }
        None => Ok((compile(seccomp)?, false)),
    }
}

/// Stores what [`compile`] made of `seccomp` under `dir` (created 0700). Failing is never an
/// error, only a debug line: the next create compiles again.
pub fn cache_store(seccomp: &LinuxSeccomp, dir: &std::path::Path, compiled: &CompiledSeccomp) {
    let Some(key) = cache_key(seccomp) else {
        return;
    };
    let path = dir.join(format!("{key}.bpf"));
    if let Err(e) = write_cache(dir, &path, &compiled.to_bytes()) {
        tracing::debug!(path = %path.display(), error = %e, "seccomp: cache not written");
    }
}

fn cache_key(seccomp: &LinuxSeccomp) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    let mut hasher = Sha256::new();
    hasher.update(b"sgrun-bpf-key/1\0");
    for v in [
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime() as u64,
        exe.mtime_nsec() as u64,
    ] {
        hasher.update(v.to_le_bytes());
    }
    hasher.update(serde_json::to_vec(seccomp).ok()?);
    Some(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

fn write_cache(dir: &std::path::Path, path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Unique per process, renamed into place: readers see a whole file or none.
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The symbolic name of an errno value sgrun's profiles use (`EPERM`, `ENOSYS`, …).
pub fn errno_name(errno: i32) -> Option<&'static str> {
    ERRNO_NAMES
        .iter()
        .find(|(_, n)| *n == errno)
        .map(|(name, _)| *name)
}

/// The value of a symbolic errno name (`EPERM` → 1).
pub fn errno_number(name: &str) -> Option<i32> {
    ERRNO_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| *value)
}

/// The errno values a seccomp rule sensibly returns.
const ERRNO_NAMES: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("EIO", libc::EIO),
    ("EBADF", libc::EBADF),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EINVAL", libc::EINVAL),
    ("ENOTTY", libc::ENOTTY),
    ("ENOSPC", libc::ENOSPC),
    ("EROFS", libc::EROFS),
    ("ENOSYS", libc::ENOSYS),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
];
