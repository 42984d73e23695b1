use serde_json::json;

use super::vm::{call, outcome, Outcome, SeccompData, AUDIT_ARCH_I386};
use super::{compiled, profile, refused};
use crate::guard::X32_SYSCALL_BIT;
use crate::{compile, SeccompError, Site};

use Outcome::{Allow, Errno, KillProcess, KillThread, Log, Trace, Trap};

const EPERM: u16 = 1;
const EACCES: u16 = 13;
const EINVAL: u16 = 22;
const ENOSYS: u16 = 38;

#[test]
fn allowlist_with_errno_default() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW" }]
    }));
    assert_eq!(call(&c, "read", &[0, 0, 10]), Allow);
    assert_eq!(call(&c, "write", &[1]), Allow);
    assert_eq!(call(&c, "exit_group", &[]), Allow);
    // No defaultErrnoRet: EPERM, like runc.
    assert_eq!(call(&c, "openat", &[]), Errno(EPERM));
    assert_eq!(call(&c, "ptrace", &[]), Errno(EPERM));
    // One filter: the default filter, with the ABI guard built in.
    assert_eq!(c.filter_count(), 1);
}

#[test]
fn default_errno_ret_is_used() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW" }]
    }));
    assert_eq!(call(&c, "read", &[]), Allow);
    assert_eq!(call(&c, "clone3", &[]), Errno(ENOSYS));
}

#[test]
fn each_errno_value_is_its_own_action() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 },
            { "names": ["rmdir", "unlink"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22 },
            { "names": ["chmod"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["chown"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0 }
        ]
    }));
    assert_eq!(call(&c, "mkdir", &[]), Errno(EACCES));
    assert_eq!(call(&c, "rmdir", &[]), Errno(EINVAL));
    assert_eq!(call(&c, "unlink", &[]), Errno(EINVAL));
    assert_eq!(call(&c, "chmod", &[]), Errno(EPERM));
    // errno 0: the call "succeeds" without running, as libseccomp allows.
    assert_eq!(call(&c, "chown", &[]), Errno(0));
    assert_eq!(call(&c, "read", &[]), Allow);
    // No default filter (default ALLOW); four errno filters; guard.
    assert_eq!(c.filter_count(), 5);
}

#[test]
fn rules_override_default_with_their_own_action() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 },
            { "names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS" },
            { "names": ["getpid"], "action": "SCMP_ACT_LOG" }
        ]
    }));
    assert_eq!(call(&c, "read", &[]), Allow);
    assert_eq!(call(&c, "clone3", &[]), Errno(ENOSYS));
    assert_eq!(call(&c, "ptrace", &[]), KillProcess);
    assert_eq!(call(&c, "getpid", &[]), Log);
    assert_eq!(call(&c, "mount", &[]), Errno(EPERM));
}

#[test]
fn every_action() {
    for (action, errno_ret, expected) in [
        ("SCMP_ACT_KILL", None, KillThread),
        ("SCMP_ACT_KILL_THREAD", None, KillThread),
        ("SCMP_ACT_KILL_PROCESS", None, KillProcess),
        ("SCMP_ACT_TRAP", None, Trap),
        ("SCMP_ACT_TRACE", None, Trace(EPERM)),
        ("SCMP_ACT_TRACE", Some(1234), Trace(1234)),
        ("SCMP_ACT_LOG", None, Log),
        ("SCMP_ACT_ERRNO", None, Errno(EPERM)),
        ("SCMP_ACT_ERRNO", Some(4095), Errno(4095)),
        // errnoRet on an action without data is ignored, as runc does.
        ("SCMP_ACT_LOG", Some(5), Log),
    ] {
        let mut entry = json!({ "names": ["getppid"], "action": action });
        if let Some(e) = errno_ret {
            entry["errnoRet"] = json!(e);
        }
        let as_rule = compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [entry] }));
        assert_eq!(
            call(&as_rule, "getppid", &[]),
            expected,
            "{action} as a rule"
        );
        assert_eq!(call(&as_rule, "getpid", &[]), Allow, "{action} as a rule");

        let mut default = json!({
            "defaultAction": action,
            "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_ALLOW" }]
        });
        if let Some(e) = errno_ret {
            default["defaultErrnoRet"] = json!(e);
        }
        let as_default = compiled(default);
        assert_eq!(
            call(&as_default, "getppid", &[]),
            expected,
            "{action} as default"
        );
        assert_eq!(
            call(&as_default, "getpid", &[]),
            Allow,
            "{action} as default"
        );
    }
}

#[test]
fn precedence_between_overlapping_rules() {
    // kill when arg0 == 9, errno otherwise: the stricter action wins where both match.
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 },
            { "names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS",
              "args": [{ "index": 1, "value": 9, "op": "SCMP_CMP_EQ" }] }
        ]
    }));
    assert_eq!(call(&c, "kill", &[1, 15]), Errno(EACCES));
    assert_eq!(call(&c, "kill", &[1, 9]), KillProcess);

    // Two errno values on the same call: the entry listed first wins.
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
              "args": [{ "index": 1, "value": 9, "op": "SCMP_CMP_EQ" }] },
            { "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22 }
        ]
    }));
    assert_eq!(call(&c, "kill", &[1, 9]), Errno(EACCES));
    assert_eq!(call(&c, "kill", &[1, 15]), Errno(EINVAL));
}

#[test]
fn every_comparison_operator_on_64_bits() {
    const HIGH: u64 = 0x1_0000_0000;
    // (op, value, valueTwo, argument, matches)
    let cases: &[(&str, u64, Option<u64>, u64, bool)] = &[
        ("SCMP_CMP_EQ", 5, None, 5, true),
        ("SCMP_CMP_EQ", 5, None, 6, false),
        // The upper half counts: 5 + 2^32 is not 5.
        ("SCMP_CMP_EQ", 5, None, HIGH | 5, false),
        ("SCMP_CMP_EQ", HIGH | 5, None, HIGH | 5, true),
        ("SCMP_CMP_EQ", u64::MAX, None, u64::MAX, true),
        ("SCMP_CMP_NE", 5, None, 5, false),
        ("SCMP_CMP_NE", 5, None, 6, true),
        ("SCMP_CMP_NE", 5, None, HIGH | 5, true),
        ("SCMP_CMP_LT", 10, None, 9, true),
        ("SCMP_CMP_LT", 10, None, 10, false),
        ("SCMP_CMP_LT", 10, None, HIGH, false),
        ("SCMP_CMP_LT", HIGH, None, 0xffff_ffff, true),
        ("SCMP_CMP_LE", 10, None, 10, true),
        ("SCMP_CMP_LE", 10, None, 11, false),
        ("SCMP_CMP_LE", HIGH, None, HIGH, true),
        ("SCMP_CMP_LE", HIGH, None, HIGH + 1, false),
        ("SCMP_CMP_GE", 10, None, 10, true),
        ("SCMP_CMP_GE", 10, None, 9, false),
        ("SCMP_CMP_GE", HIGH, None, 0xffff_ffff, false),
        ("SCMP_CMP_GE", 10, None, HIGH, true),
        ("SCMP_CMP_GT", 10, None, 11, true),
        ("SCMP_CMP_GT", 10, None, 10, false),
        ("SCMP_CMP_GT", 0xffff_ffff, None, HIGH, true),
        ("SCMP_CMP_GT", HIGH, None, HIGH, false),
        // MASKED_EQ: value is the mask, valueTwo the expected result.
        ("SCMP_CMP_MASKED_EQ", 0xff00, Some(0x1200), 0x12ab, true),
        ("SCMP_CMP_MASKED_EQ", 0xff00, Some(0x1200), 0x13ab, false),
        ("SCMP_CMP_MASKED_EQ", 0xff00, None, 0x00ff, true),
        ("SCMP_CMP_MASKED_EQ", HIGH, Some(0), 0xffff_ffff, true),
        ("SCMP_CMP_MASKED_EQ", HIGH, Some(0), HIGH, false),
        ("SCMP_CMP_MASKED_EQ", HIGH | 1, Some(HIGH), HIGH | 2, true),
    ];
    for &(op, value, value_two, arg, matches) in cases {
        let mut cond = json!({ "index": 2, "value": value, "op": op });
        if let Some(v2) = value_two {
            cond["valueTwo"] = json!(v2);
        }
        let c = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{ "names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [cond] }]
        }));
        let expected = if matches { Allow } else { Errno(EPERM) };
        assert_eq!(
            call(&c, "ioctl", &[0, 0, arg]),
            expected,
            "{op} value {value:#x} valueTwo {value_two:?} on argument {arg:#x}"
        );
        // The condition looks at argument 2 only, whatever the others hold.
        assert_eq!(call(&c, "ioctl", &[u64::MAX, 7, arg, 9, HIGH, 1]), expected);
    }
}

#[test]
fn conditions_on_distinct_arguments_are_and() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{
            "names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [
                { "index": 0, "value": 2, "op": "SCMP_CMP_EQ" },
                { "index": 1, "value": 1, "op": "SCMP_CMP_EQ" }
            ]
        }]
    }));
    assert_eq!(call(&c, "socket", &[2, 1, 0]), Allow);
    assert_eq!(call(&c, "socket", &[2, 2, 0]), Errno(EPERM));
    assert_eq!(call(&c, "socket", &[10, 1, 0]), Errno(EPERM));
}

#[test]
fn conditions_on_the_same_argument_are_or() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{
            "names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [
                { "index": 0, "value": 2, "op": "SCMP_CMP_EQ" },
                { "index": 0, "value": 10, "op": "SCMP_CMP_EQ" },
                { "index": 1, "value": 1, "op": "SCMP_CMP_EQ" }
            ]
        }]
    }));
    // runc: with index 0 used twice, every condition is a rule of its own.
    assert_eq!(call(&c, "socket", &[2, 5, 0]), Allow);
    assert_eq!(call(&c, "socket", &[10, 5, 0]), Allow);
    assert_eq!(call(&c, "socket", &[1, 1, 0]), Allow);
    assert_eq!(call(&c, "socket", &[1, 2, 0]), Errno(EPERM));
}

#[test]
fn several_entries_for_one_syscall() {
    // Two conditional entries: either may match.
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] },
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 8, "op": "SCMP_CMP_EQ" }] }
        ]
    }));
    assert_eq!(call(&c, "personality", &[0]), Allow);
    assert_eq!(call(&c, "personality", &[8]), Allow);
    assert_eq!(call(&c, "personality", &[9]), Errno(EPERM));

    // An unconditional entry makes the syscall match whatever the other entries say, in
    // either order.
    for entries in [
        json!([
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] },
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW" }
        ]),
        json!([
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] }
        ]),
    ] {
        let c = compiled(json!({ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": entries }));
        assert_eq!(call(&c, "personality", &[0]), Allow);
        assert_eq!(call(&c, "personality", &[12345]), Allow);
    }
}

#[test]
fn duplicate_entries_compile_to_the_same_filter() {
    let once = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW",
                       "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] }]
    }));
    let twice = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] },
            { "names": ["read", "read"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] }
        ]
    }));
    assert_eq!(once.content_hash(), twice.content_hash());
}

#[test]
fn rule_with_the_default_action_is_dropped_like_runc() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }
        ]
    }));
    assert_eq!(call(&c, "mount", &[]), Errno(EPERM));
    assert_eq!(call(&c, "read", &[]), Allow);
    // No filter for ERRNO(1) rules: the default filter only.
    assert_eq!(c.filter_count(), 1);

    // An explicit EPERM vs the implicit one are the same action too.
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }]
    }));
    assert_eq!(c.filter_count(), 1);
}

#[test]
fn allow_everything_compiles_to_the_guard_only() {
    let c = compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW" }));
    assert_eq!(c.filter_count(), 1);
    assert_eq!(c.instruction_count(), 7);
    assert_eq!(call(&c, "mount", &[]), Allow);

    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW" }]
    }));
    assert_eq!(c.filter_count(), 1);
}

#[test]
fn x32_abi_gets_enosys() {
    let x32_getpid = SeccompData::raw(X32_SYSCALL_BIT as i32 | 39, &[]);
    // A denylist profile: without the guard the x32 call would slip past the kill rule.
    let deny = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS" }]
    }));
    assert_eq!(call(&deny, "getpid", &[]), KillProcess);
    assert_eq!(outcome(&deny, &x32_getpid), Errno(ENOSYS));
    // Even with nothing but ALLOW.
    let allow = compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW" }));
    assert_eq!(outcome(&allow, &x32_getpid), Errno(ENOSYS));
    // The x32 numbering of a 64-bit name (x32 rt_sigaction is 512).
    assert_eq!(
        outcome(&allow, &SeccompData::raw(X32_SYSCALL_BIT as i32 | 512, &[])),
        Errno(ENOSYS)
    );
    // With an ERRNO default, x32 still gets ENOSYS (the guard is inside the default filter).
    let allowlist = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_ALLOW" }]
    }));
    assert_eq!(outcome(&allowlist, &x32_getpid), Errno(ENOSYS));
    // A stricter default still wins.
    let kill = compiled(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_ALLOW" }]
    }));
    assert_eq!(outcome(&kill, &x32_getpid), KillProcess);
    // -1 (a tracer skipping a call) has the bit set as well.
    assert_eq!(outcome(&allow, &SeccompData::raw(-1, &[])), Errno(ENOSYS));
}

#[test]
fn foreign_audit_arch_is_not_allowed() {
    for json in [
        json!({ "defaultAction": "SCMP_ACT_ALLOW" }),
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" }]
        }),
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{ "names": ["read", "getpid"], "action": "SCMP_ACT_ALLOW" }]
        }),
    ] {
        let c = compiled(json);
        // i386 getpid is 20, i386 read is 3: whatever the number, a foreign ABI is killed.
        for nr in [3, 20, 39] {
            let data = SeccompData::raw(nr, &[]).with_arch(AUDIT_ARCH_I386);
            assert_eq!(outcome(&c, &data), KillProcess);
        }
    }
}

#[test]
fn architectures_list() {
    for archs in [
        json!(["SCMP_ARCH_X86_64"]),
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86_64"]),
        json!(["SCMP_ARCH_NATIVE"]),
        json!([]),
    ] {
        compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": archs }));
    }
    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86"]
    }));
    assert!(
        matches!(err, SeccompError::ArchitectureNotSupported { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("SCMP_ARCH_AARCH64, SCMP_ARCH_X86]"), "{msg}");
    assert!(msg.contains("add SCMP_ARCH_X86_64"), "{msg}");
}

#[test]
fn unknown_syscall_in_a_restricting_rule_is_an_error_naming_it() {
    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_KILL" },
            { "names": ["mkdir", "ptrce"], "action": "SCMP_ACT_ERRNO" }
        ]
    }));
    match &err {
        SeccompError::UnknownSyscall { index, name } => {
            assert_eq!((*index, name.as_str()), (1, "ptrce"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("syscalls[1]") && msg.contains("\"ptrce\""),
        "{msg}"
    );
}

#[test]
fn unknown_syscall_in_a_granting_rule_is_skipped() {
    // Podman's default profile allows the long-gone `timerfd`: nothing can call it, so
    // leaving it out of an ALLOW (or LOG) rule changes nothing.
    let with = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read", "timerfd"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["wirte"], "action": "SCMP_ACT_LOG" }
        ]
    }));
    let without = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [ { "names": ["read"], "action": "SCMP_ACT_ALLOW" } ]
    }));
    assert_eq!(with.content_hash(), without.content_hash());
}

#[test]
fn other_architecture_names_are_skipped() {
    let with = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{
            "names": ["read", "_llseek", "chown32", "fcntl64", "arm_fadvise64_64", "ugetrlimit",
                      "waitpid", "socketcall", "sigreturn", "breakpoint", "cacheflush",
                      "set_tls", "clock_gettime64", "riscv_flush_icache", "s390_runtime_instr"],
            "action": "SCMP_ACT_ALLOW"
        }]
    }));
    let without = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW" }]
    }));
    assert_eq!(with.content_hash(), without.content_hash());
    // An entry of nothing but other-arch names leaves no rule behind.
    let only = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["_llseek"], "action": "SCMP_ACT_KILL_PROCESS" }]
    }));
    assert_eq!(only.filter_count(), 1);
}

#[test]
fn notify_and_listener_are_refused() {
    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["mount"], "action": "SCMP_ACT_NOTIFY" }
        ]
    }));
    assert!(
        matches!(
            err,
            SeccompError::UnsupportedAction {
                site: Site::Syscall { index: 1 },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("syscalls[1]: action SCMP_ACT_NOTIFY"),
        "{err}"
    );

    let err = refused(json!({ "defaultAction": "SCMP_ACT_NOTIFY" }));
    assert!(
        matches!(
            err,
            SeccompError::UnsupportedAction {
                site: Site::DefaultAction,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("defaultAction"), "{err}");

    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock"
    }));
    assert!(matches!(err, SeccompError::ListenerPath { .. }), "{err:?}");
    assert!(err.to_string().contains("/run/agent.sock"), "{err}");
}

#[test]
fn flags_are_applied_or_refused() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    }));
    assert_eq!(
        c.flags(),
        libc::SECCOMP_FILTER_FLAG_TSYNC
            | libc::SECCOMP_FILTER_FLAG_LOG
            | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
    );
    let plain = compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW" }));
    assert_eq!(plain.flags(), 0);
    // Same BPF, different flags: different hash, since install differs.
    assert_ne!(c.content_hash(), plain.content_hash());

    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    }));
    assert!(
        matches!(err, SeccompError::UnsupportedFlag { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"),
        "{err}"
    );

    // oci-spec 0.10 has no NEW_LISTENER variant: such a config.json does not even parse.
    for flag in [
        "SECCOMP_FILTER_FLAG_NEW_LISTENER",
        "SECCOMP_FILTER_FLAG_BOGUS",
    ] {
        let parsed = serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(json!({
            "defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]
        }));
        let err = parsed.expect_err("unknown flag must not parse");
        assert!(err.to_string().contains(flag), "{err}");
    }
}

#[test]
fn invalid_arguments_are_refused() {
    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["write"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_EQ" },
                       { "index": 6, "value": 1, "op": "SCMP_CMP_EQ" }] }
        ]
    }));
    assert!(
        matches!(
            err,
            SeccompError::ArgumentIndex {
                index: 1,
                arg: 1,
                arg_index: 6
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("syscalls[1].args[1]"), "{err}");

    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["clone"], "action": "SCMP_ACT_ALLOW",
                       "args": [{ "index": 0, "value": 255, "valueTwo": 256,
                                  "op": "SCMP_CMP_MASKED_EQ" }] }]
    }));
    assert!(
        matches!(
            err,
            SeccompError::MaskedEqUnmatchable {
                index: 0,
                arg: 0,
                ..
            }
        ),
        "{err:?}"
    );

    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": [], "action": "SCMP_ACT_ALLOW" }]
    }));
    assert!(
        matches!(err, SeccompError::EmptyNames { index: 0 }),
        "{err:?}"
    );
}

#[test]
fn errno_values_the_kernel_would_clamp_are_refused() {
    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4096 }]
    }));
    assert!(
        matches!(
            err,
            SeccompError::ErrnoOutOfRange {
                value: 4096,
                max: 4095,
                ..
            }
        ),
        "{err:?}"
    );
    let err = refused(json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000 }));
    assert!(
        matches!(
            err,
            SeccompError::ErrnoOutOfRange {
                site: Site::DefaultAction,
                ..
            }
        ),
        "{err:?}"
    );
    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mount"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536 }]
    }));
    assert!(
        matches!(err, SeccompError::ErrnoOutOfRange { max: 65535, .. }),
        "{err:?}"
    );
}

#[test]
fn oversized_filter_is_refused_with_its_name() {
    // One entry comparing argument 0 with 700 values: runc makes that 700 OR-ed rules.
    let args: Vec<_> = (0..700)
        .map(|v| json!({ "index": 0, "value": v, "op": "SCMP_CMP_EQ" }))
        .collect();
    let err = refused(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                       "args": args }]
    }));
    match &err {
        SeccompError::FilterTooLarge {
            filter,
            instructions,
            max,
        } => {
            assert!(filter.contains("SCMP_ACT_ERRNO(22)"), "{filter}");
            assert!(*instructions >= *max, "{instructions}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn hash_is_stable_and_clone_is_equal() {
    let json = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["read", "write"], "action": "SCMP_ACT_ALLOW" }]
    });
    let a = compiled(json.clone());
    let b = compile(&profile(json)).expect("compiles");
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(a.content_hash().len(), 64);
    assert!(a.content_hash().bytes().all(|c| c.is_ascii_hexdigit()));
    let c = a.clone();
    assert_eq!(c, a);
    assert_eq!(c.content_hash(), a.content_hash());

    let other = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW" }]
    }));
    assert_ne!(other.content_hash(), a.content_hash());
    // Debug names the filters without dumping the programs.
    let debug = format!("{a:?}");
    assert!(
        debug.contains("default: SCMP_ACT_ERRNO(1)") && debug.contains("x32 ENOSYS"),
        "{debug}"
    );
}

fn labels(c: &crate::CompiledSeccomp) -> Vec<String> {
    c.filters().map(|(label, _)| label.to_owned()).collect()
}

#[test]
fn filter_that_can_deny_seccomp_is_installed_last() {
    // An allowlist without seccomp: the default filter would refuse the next installation.
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 },
            { "names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS" }
        ]
    }));
    let l = labels(&c);
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l[2].starts_with("default:"), "{l:?}");
    // Otherwise action filters come in reverse order of appearance.
    assert!(l[0].starts_with("SCMP_ACT_KILL_PROCESS") && l[1].starts_with("SCMP_ACT_ERRNO(13)"));

    // A denylist denying seccomp: that action's filter goes last, after the guard and the
    // filter of an action listed before it.
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 },
            { "names": ["seccomp"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS" }
        ]
    }));
    let l = labels(&c);
    assert_eq!(l.len(), 4, "{l:?}");
    assert!(l[0].starts_with("ABI guard"), "{l:?}");
    assert!(l[3].starts_with("SCMP_ACT_ERRNO(1)"), "{l:?}");
    assert_eq!(call(&c, "seccomp", &[1, 0, 0]), Errno(EPERM));
    assert_eq!(call(&c, "getuid", &[]), Errno(EACCES));

    // Allowed unconditionally: nothing can deny it, the order is the plain one.
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["seccomp", "read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 }
        ]
    }));
    let l = labels(&c);
    assert!(
        l[0].starts_with("SCMP_ACT_ERRNO(13)") && l[1].starts_with("default:"),
        "{l:?}"
    );
}

#[test]
fn seccomp_restricted_by_two_filters_is_refused() {
    for entries in [
        // Two actions on seccomp.
        json!([
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["seccomp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
              "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] },
            { "names": ["seccomp"], "action": "SCMP_ACT_KILL_PROCESS",
              "args": [{ "index": 0, "value": 2, "op": "SCMP_CMP_EQ" }] }
        ]),
        // A conditional action under a non-ALLOW default: the default filter denies the rest.
        json!([
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["seccomp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
              "args": [{ "index": 0, "value": 0, "op": "SCMP_CMP_EQ" }] }
        ]),
    ] {
        let mut profile = json!({ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": entries });
        if profile["syscalls"].as_array().map(Vec::len) == Some(3) {
            profile["defaultAction"] = json!("SCMP_ACT_ALLOW");
        }
        let err = refused(profile);
        assert!(
            matches!(err, SeccompError::SeccompSyscallSplit { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("seccomp(2) itself"), "{err}");
    }
}

#[test]
fn stacked_profiles_allow_only_what_both_allow() {
    let allowlist = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{ "names": ["read", "write", "getpid"], "action": "SCMP_ACT_ALLOW" }]
    }));
    let denylist = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getpid", "ptrace"], "action": "SCMP_ACT_ERRNO" }]
    }));
    assert!(allowlist.restricts_seccomp());
    assert!(!denylist.restricts_seccomp());
    // Whatever the order asked for, the allowlist (which denies seccomp) goes last.
    let both = allowlist
        .clone()
        .stack(denylist.clone())
        .expect("stackable");
    let labels: Vec<_> = both.filters().map(|(l, _)| l.to_owned()).collect();
    assert!(labels.last().unwrap().starts_with("default"), "{labels:?}");
    assert_eq!(both, denylist.stack(allowlist.clone()).unwrap());
    assert_eq!(call(&both, "read", &[]), Allow);
    assert_eq!(call(&both, "getpid", &[]), Errno(EPERM));
    // Denied by both with different errnos: the newer filter's value wins the tie (still a
    // denial; which errno is the only thing the order decides).
    assert_eq!(call(&both, "ptrace", &[]), Errno(ENOSYS));
    assert_eq!(call(&both, "openat", &[]), Errno(ENOSYS));
    // Two allowlists cannot be installed one after the other.
    let err = allowlist
        .clone()
        .stack(allowlist)
        .expect_err("both deny seccomp");
    assert!(
        matches!(err, SeccompError::StackBothRestrictSeccomp { .. }),
        "{err}"
    );
}

#[test]
fn cache_bytes_round_trip_and_refuse_tampering() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["ptrace"], "action": "SCMP_ACT_ERRNO" }
        ]
    }));
    let bytes = c.to_bytes();
    assert_eq!(crate::CompiledSeccomp::from_bytes(&bytes), Some(c.clone()));
    // Any flipped bit, a truncation or a trailing byte: refused, never a different filter.
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        assert_ne!(
            crate::CompiledSeccomp::from_bytes(&bad),
            Some(c.clone()),
            "byte {i}"
        );
    }
    assert_eq!(
        crate::CompiledSeccomp::from_bytes(&bytes[..bytes.len() - 1]),
        None
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(crate::CompiledSeccomp::from_bytes(&longer), None);
}

#[test]
fn cache_compiles_once_and_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let p = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ALLOW" }]
    }));
    let cache = dir.path().join("cache");
    let (first, hit) = crate::compile_cached(&p, Some(&cache)).unwrap();
    assert!(!hit);
    assert!(!cache.exists(), "reading the cache creates nothing");
    crate::cache_store(&p, &cache, &first);
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let again = crate::compile_cached(&p, Some(&cache)).unwrap();
    assert_eq!(again, (first.clone(), true));
    // A corrupted entry is recompiled, never used.
    std::fs::write(&files[0], b"sgrun-bpf/2\0garbage").unwrap();
    let again = crate::compile_cached(&p, Some(&cache)).unwrap();
    assert_eq!(again, (first, false));
}

/// The action-cache model itself: a program that dispatches on the call number first is
/// cached for the calls it allows outright; one that looks at an argument, or at the
/// instruction pointer, is not (the kernel then runs it on every call).
#[test]
fn kernel_action_cache_model() {
    use crate::guard::AUDIT_ARCH_X86_64;
    use crate::simulate::kernel_caches_allow;
    use seccompiler::sock_filter;
    let insn = |code: u16, jt: u8, jf: u8, k: u32| sock_filter { code, jt, jf, k };
    const LD: u16 = 0x20;
    const JEQ: u16 = 0x15;
    const RET: u16 = 0x06;
    let allow = libc::SECCOMP_RET_ALLOW;
    let deny = libc::SECCOMP_RET_ERRNO | 1;
    // if nr == 0 allow, else deny
    let by_number = [
        insn(LD, 0, 0, 0),
        insn(JEQ, 0, 1, 0),
        insn(RET, 0, 0, allow),
        insn(RET, 0, 0, deny),
    ];
    assert!(kernel_caches_allow(&by_number, AUDIT_ARCH_X86_64, 0));
    assert!(!kernel_caches_allow(&by_number, AUDIT_ARCH_X86_64, 1));
    // if args[0] == 0 allow: depends on an argument, never cached
    let by_argument = [
        insn(LD, 0, 0, 16),
        insn(JEQ, 0, 1, 0),
        insn(RET, 0, 0, allow),
        insn(RET, 0, 0, deny),
    ];
    assert!(!kernel_caches_allow(&by_argument, AUDIT_ARCH_X86_64, 0));
    // a compiled allowlist: its unconditional allow is cached, its conditional one is not
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{ "index": 1, "value": 21505, "op": "SCMP_CMP_EQ" }] }
        ]
    }));
    assert!(crate::simulate::cached_allow(&c, 0), "read");
    assert!(!crate::simulate::cached_allow(&c, 16), "ioctl");
    assert!(!crate::simulate::cached_allow(&c, 1), "write (denied)");
}
