//! What every profile denies, whatever a layer, class, tenant or annotation says. This is the
//! one place the list lives: the resolver refuses a profile that allows any of it, and the
//! compiler appends these rules to every profile, so even a rule that slipped through would
//! lose (an ERRNO result beats ALLOW in the kernel, whichever filter says it).

use std::collections::BTreeSet;

use crate::constants::{
    BTRFS_IOCTLS, CLONE_NAMESPACE_FLAGS, PERSONALITY_FLAGS, TTY_INJECTION_IOCTLS,
};
use crate::model::{Cond, Group, When};

/// One family of denied calls.
pub struct Denied {
    pub names: &'static [&'static str],
    /// What the call answers: EPERM, except clone3 (see below).
    pub errno: i32,
    pub arguments: Arguments,
    pub why: &'static str,
    /// A class may allow the family if it names a reason (`exception = "…"`). Only io_uring.
    pub exception_allowed: bool,
}

/// Which calls of the family are denied.
pub enum Arguments {
    Any,
    /// clone(2) with any namespace flag.
    CloneNamespaces,
    /// personality(2) with anything but PER_LINUX, PER_LINUX32 and the query.
    PersonalityFlags,
    /// ioctl(2) with one of these requests (compared on the low 32 bits: the kernel's `cmd` is
    /// an `unsigned int`, and a caller may sign-extend it).
    IoctlRequests(&'static [&'static [(&'static str, u64)]]),
}

const EPERM: i32 = 1;
const ENOSYS: i32 = 38;

/// The list. Order is the order of the compiled rules.
pub const ALWAYS_DENIED: &[Denied] = &[
    Denied {
        names: &[
            "mount",
            "umount2",
            "pivot_root",
            "move_mount",
            "open_tree",
            "open_tree_attr",
            "fsopen",
            "fsmount",
            "fsconfig",
            "fspick",
            "mount_setattr",
        ],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "the mount family: a tenant never changes its mount tree, and these are the \
              kernel's largest attack surface reachable from a user namespace",
        exception_allowed: false,
    },
    Denied {
        names: &["unshare", "setns"],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "no new or foreign namespaces: a new user namespace hands out the capabilities \
              every kernel escape starts from",
        exception_allowed: false,
    },
    Denied {
        names: &["clone"],
        errno: EPERM,
        arguments: Arguments::CloneNamespaces,
        why: "clone with a namespace flag is unshare by another name; threads and fork are \
              allowed by the profiles",
        exception_allowed: false,
    },
    Denied {
        names: &["clone3"],
        errno: ENOSYS,
        arguments: Arguments::Any,
        why: "clone3 passes its flags in memory seccomp cannot read; ENOSYS (not EPERM) makes \
              glibc fall back to clone, whose flags the filter checks",
        exception_allowed: false,
    },
    Denied {
        names: &[
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "process_madvise",
            "kcmp",
            "pidfd_getfd",
        ],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "no reading or steering of other processes' memory, files or state",
        exception_allowed: false,
    },
    Denied {
        names: &["keyctl", "add_key", "request_key"],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "the kernel keyring is not namespaced: keys would be shared across tenants",
        exception_allowed: false,
    },
    Denied {
        names: &["bpf", "perf_event_open", "userfaultfd"],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "eBPF, perf and userfaultfd: classic building blocks of kernel exploits",
        exception_allowed: false,
    },
    Denied {
        names: &[
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
        ],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "no kernel or module loading from a container",
        exception_allowed: false,
    },
    Denied {
        names: &["open_by_handle_at", "name_to_handle_at"],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "file handles open files by inode, around the mount tree (the 'shocker' escape)",
        exception_allowed: false,
    },
    Denied {
        names: &["iopl", "ioperm"],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "no raw I/O port access",
        exception_allowed: false,
    },
    Denied {
        names: &[
            "swapon",
            "swapoff",
            "reboot",
            "acct",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "syslog",
        ],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "host administration: swap, reboot, process accounting, quotas, the kernel log",
        exception_allowed: false,
    },
    Denied {
        names: &["settimeofday", "clock_settime", "clock_adjtime", "adjtimex"],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "the clock is the host's, shared by every tenant",
        exception_allowed: false,
    },
    Denied {
        names: &["personality"],
        errno: EPERM,
        arguments: Arguments::PersonalityFlags,
        why: "personality flags switch off ASLR or make data executable",
        exception_allowed: false,
    },
    Denied {
        names: &["ioctl"],
        errno: EPERM,
        arguments: Arguments::IoctlRequests(&[BTRFS_IOCTLS, TTY_INJECTION_IOCTLS]),
        why: "btrfs subvolumes and snapshots escape the tenant's qgroup; TIOCSTI and TIOCLINUX \
              inject input into a terminal someone else reads",
        exception_allowed: false,
    },
    Denied {
        names: &["io_uring_setup", "io_uring_enter", "io_uring_register"],
        errno: EPERM,
        arguments: Arguments::Any,
        why: "io_uring performs its operations outside seccomp's view; MariaDB falls back to \
              libaio",
        exception_allowed: true,
    },
];

/// Capabilities no profile may grant: each is a way out of the container or into the host's
/// or another tenant's business.
pub const FORBIDDEN_CAPABILITIES: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_PTRACE",
    "CAP_SYS_BOOT",
    "CAP_SYS_TIME",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_PACCT",
    "CAP_SYS_TTY_CONFIG",
    "CAP_SYS_NICE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_NET_ADMIN",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_DAC_READ_SEARCH",
    "CAP_LINUX_IMMUTABLE",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_LEASE",
];

impl Denied {
    /// The calls of the family this entry denies, as a rule condition.
    pub fn when(&self) -> When {
        let any_of = |groups: Vec<Group>| When::AnyOf(groups.into_iter().collect::<BTreeSet<_>>());
        match self.arguments {
            Arguments::Any => When::Always,
            Arguments::CloneNamespaces => any_of(
                CLONE_NAMESPACE_FLAGS
                    .iter()
                    .map(|(_, flag)| vec![Cond::masked_eq(0, *flag, *flag)])
                    .collect(),
            ),
            Arguments::PersonalityFlags => {
                // personality(2) takes an unsigned int and ignores the upper half; only
                // 0xffffffff is the query. Deny (a) any flag bit with bit 31 clear, and (b) bit 31
                // set with any other bit clear: together, every value with a flag but the query.
                // Bit-31 values without flags are refused too; they mean nothing.
                const BIT31: u64 = 0x8000_0000;
                let mut groups: Vec<Group> = PERSONALITY_FLAGS
                    .iter()
                    .map(|(_, flag)| vec![Cond::masked_eq(0, flag | BIT31, *flag)])
                    .collect();
                groups.extend((0..31).map(|bit| vec![Cond::masked_eq(0, BIT31 | 1 << bit, BIT31)]));
                any_of(groups)
            }
            Arguments::IoctlRequests(tables) => any_of(
                tables
                    .iter()
                    .flat_map(|t| t.iter())
                    .map(|(_, request)| vec![Cond::masked_eq(1, 0xffff_ffff, *request)])
                    .collect(),
            ),
        }
    }
}

/// The entry that denies `name` for every argument, if there is one.
pub fn unconditionally_denied(name: &str) -> Option<&'static Denied> {
    ALWAYS_DENIED
        .iter()
        .find(|d| matches!(d.arguments, Arguments::Any) && d.names.contains(&name))
}

/// Whether `personality(value)` is one of the calls the list allows.
pub fn personality_allowed(value: u64) -> bool {
    let denied = ALWAYS_DENIED
        .iter()
        .find(|d| matches!(d.arguments, Arguments::PersonalityFlags))
        .expect("personality is on the list");
    !denied.when().matches(&[value, 0, 0, 0, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::CLONE_NAMESPACES;

    #[test]
    fn the_issue_list_is_all_there() {
        let all: Vec<&str> = ALWAYS_DENIED
            .iter()
            .flat_map(|d| d.names)
            .copied()
            .collect();
        for name in [
            "mount",
            "umount2",
            "pivot_root",
            "move_mount",
            "open_tree",
            "fsopen",
            "fsmount",
            "fsconfig",
            "mount_setattr",
            "unshare",
            "clone",
            "setns",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "open_by_handle_at",
            "name_to_handle_at",
            "iopl",
            "ioperm",
            "swapon",
            "swapoff",
            "reboot",
            "acct",
            "quotactl",
            "lookup_dcookie",
            "syslog",
            "settimeofday",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
            "personality",
            "ioctl",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
        ] {
            assert!(
                all.contains(&name),
                "{name} missing from the always-denied list"
            );
        }
        for name in all {
            assert!(
                sgrun_seccomp::syscall_number(name).is_some(),
                "{name} is not an x86_64 system call"
            );
        }
    }

    #[test]
    fn clone_denied_exactly_with_a_namespace_flag() {
        let when = ALWAYS_DENIED
            .iter()
            .find(|d| d.names == ["clone"])
            .unwrap()
            .when();
        let call = |flags: u64| when.matches(&[flags, 0, 0, 0, 0, 0]);
        // glibc's fork and pthread_create flags.
        assert!(!call(0x0120_0011));
        assert!(!call(0x003d_0f00));
        for (name, flag) in CLONE_NAMESPACE_FLAGS {
            assert!(call(*flag | 0x11), "{name}");
        }
        assert!(call(CLONE_NAMESPACES));
    }

    #[test]
    fn personality_values() {
        for ok in [0, 8, 0xffff_ffff, 0x1_0000_0000] {
            assert!(personality_allowed(ok), "{ok:#x}");
        }
        for bad in [
            0x0004_0000,
            0x0040_0008,
            0x8004_0000,
            0xffff_fffe,
            0x0800_0000,
        ] {
            assert!(!personality_allowed(bad), "{bad:#x}");
        }
    }
}
