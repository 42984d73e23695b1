//! Docker's default profile (see tests/fixtures/README.md for what the fixture keeps).

use oci_spec::runtime::LinuxSeccomp;

use super::vm::{call, outcome, Outcome, SeccompData, AUDIT_ARCH_I386};
use crate::guard::X32_SYSCALL_BIT;
use crate::{compile, CompiledSeccomp};

use Outcome::{Allow, Errno, KillProcess};

pub(super) const FIXTURE: &str = include_str!("../../tests/fixtures/docker-default.json");

const EPERM: u16 = 1;
const ENOSYS: u16 = 38;

const SIGCHLD: u64 = 17;
const CLONE_VM: u64 = 0x0000_0100;
const CLONE_FS: u64 = 0x0000_0200;
const CLONE_FILES: u64 = 0x0000_0400;
const CLONE_SIGHAND: u64 = 0x0000_0800;
const CLONE_THREAD: u64 = 0x0001_0000;
const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWNET: u64 = 0x4000_0000;

const ADDR_NO_RANDOMIZE: u64 = 0x004_0000;
const READ_IMPLIES_EXEC: u64 = 0x040_0000;
const PER_LINUX32: u64 = 0x0008;
const UNAME26: u64 = 0x002_0000;

pub(super) fn docker_default() -> CompiledSeccomp {
    let profile: LinuxSeccomp = serde_json::from_str(FIXTURE).expect("fixture parses");
    compile(&profile).expect("Docker's default profile compiles")
}

#[test]
fn compiles_into_two_filters() {
    let c = docker_default();
    // ERRNO(38) for clone3; the default filter (ERRNO(1) unless a rule matches, with the ABI
    // guard). Docker allows seccomp, so neither can block the other's installation.
    assert_eq!(c.filter_count(), 2, "{c:?}");
    let labels: Vec<_> = c.filters().map(|(label, _)| label.to_owned()).collect();
    assert!(labels[0].starts_with("SCMP_ACT_ERRNO(38)"), "{labels:?}");
    assert!(
        labels[1].starts_with("default: SCMP_ACT_ERRNO(1)"),
        "{labels:?}"
    );
    assert!(c.instruction_count() < crate::MAX_TOTAL_INSTRUCTIONS);
    // Printed by `cargo test -- --nocapture`: the sizes quoted in the docs.
    println!(
        "docker-default: {} filters, {} instructions: {:?}",
        c.filter_count(),
        c.instruction_count(),
        c.filters().collect::<Vec<_>>()
    );
}

#[test]
fn everyday_calls_are_allowed() {
    let c = docker_default();
    for name in [
        "read",
        "write",
        "openat",
        "close",
        "mmap",
        "futex",
        "epoll_wait",
        "accept4",
        "execve",
        "exit_group",
        "newfstatat",
        "statx",
        "rseq",
        "arch_prctl",
        "chroot",
        "getxattrat",
        "ptrace",
        "uretprobe",
    ] {
        assert_eq!(call(&c, name, &[]), Allow, "{name}");
    }
}

#[test]
fn privileged_calls_get_eperm() {
    let c = docker_default();
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "reboot",
        "kexec_load",
        "init_module",
        "bpf",
        "kcmp",
        "pivot_root",
        "swapon",
        "open_by_handle_at",
        "perf_event_open",
        "keyctl",
        "add_key",
        "userfaultfd",
        "syslog",
        "acct",
        "settimeofday",
        "iopl",
        "fsopen",
        "open_tree",
        "move_mount",
        "mount_setattr",
        "lookup_dcookie",
        "quotactl",
        "nfsservctl",
        "lsm_set_self_attr",
    ] {
        assert_eq!(call(&c, name, &[]), Errno(EPERM), "{name}");
    }
}

#[test]
fn clone_without_namespace_flags_only() {
    let c = docker_default();
    // fork(), and glibc's pthread_create flags.
    assert_eq!(call(&c, "clone", &[SIGCHLD]), Allow);
    let thread = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD;
    assert_eq!(call(&c, "clone", &[thread]), Allow);
    for flag in [CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET] {
        assert_eq!(
            call(&c, "clone", &[flag | SIGCHLD]),
            Errno(EPERM),
            "{flag:#x}"
        );
    }
    // clone3 carries its flags in memory seccomp cannot read: ENOSYS, so glibc falls back.
    assert_eq!(call(&c, "clone3", &[]), Errno(ENOSYS));
}

#[test]
fn personality_as_in_the_profile() {
    let c = docker_default();
    for persona in [0, PER_LINUX32, UNAME26, UNAME26 | PER_LINUX32, 0xffff_ffff] {
        assert_eq!(call(&c, "personality", &[persona]), Allow, "{persona:#x}");
    }
    for persona in [
        ADDR_NO_RANDOMIZE,
        READ_IMPLIES_EXEC,
        ADDR_NO_RANDOMIZE | PER_LINUX32,
        1,
    ] {
        assert_eq!(
            call(&c, "personality", &[persona]),
            Errno(EPERM),
            "{persona:#x}"
        );
    }
    // 64-bit compare: 0xffffffff sign-extended is not the query value.
    assert_eq!(call(&c, "personality", &[u64::MAX]), Errno(EPERM));
}

#[test]
fn vsock_sockets_are_denied() {
    let c = docker_default();
    assert_eq!(call(&c, "socket", &[2, 1, 0]), Allow); // AF_INET
    assert_eq!(call(&c, "socket", &[1, 1, 0]), Allow); // AF_UNIX
    assert_eq!(call(&c, "socket", &[40, 1, 0]), Errno(EPERM)); // AF_VSOCK
}

#[test]
fn other_abis_are_shut() {
    let c = docker_default();
    let x32_read = SeccompData::raw(X32_SYSCALL_BIT as i32, &[]);
    assert_eq!(outcome(&c, &x32_read), Errno(ENOSYS));
    let i386_read = SeccompData::raw(3, &[]).with_arch(AUDIT_ARCH_I386);
    assert_eq!(outcome(&c, &i386_read), KillProcess);
}
