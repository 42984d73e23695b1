use std::collections::HashSet;

use crate::syscall_number;
use crate::table::{lookup, Lookup, OTHER_ARCH_ONLY, X86_64};

#[test]
fn table_is_sorted_and_unique() {
    let mut names = HashSet::new();
    let mut last = -1;
    for &(name, nr) in X86_64 {
        assert!(nr > last, "{name} ({nr}) is out of order after {last}");
        last = nr;
        assert!(names.insert(name), "{name} listed twice");
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b == b'_' || b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }
    // The kernel table: 0..=336 without holes, then 424..=470.
    let numbers: Vec<i64> = X86_64.iter().map(|&(_, nr)| nr).collect();
    let expected: Vec<i64> = (0..=336).chain(424..=470).collect();
    assert_eq!(numbers, expected);
}

#[test]
fn other_arch_names_are_not_x86_64_names() {
    let mut seen = HashSet::new();
    for name in OTHER_ARCH_ONLY {
        assert!(seen.insert(name), "{name} listed twice");
        assert!(
            X86_64.iter().all(|(n, _)| n != name),
            "{name} is an x86_64 syscall and must not be in OTHER_ARCH_ONLY"
        );
    }
}

#[test]
fn numbers_match_the_kernel() {
    for (name, nr) in [
        ("read", 0),
        ("open", 2),
        ("clone", 56),
        ("personality", 135),
        ("arch_prctl", 158),
        ("create_module", 174),
        ("newfstatat", 262),
        ("io_pgetevents", 333),
        ("rseq", 334),
        ("uretprobe", 335),
        ("pidfd_send_signal", 424),
        ("clone3", 435),
        ("openat2", 437),
        ("pidfd_getfd", 438),
        ("close_range", 436),
        ("faccessat2", 439),
        ("process_madvise", 440),
        ("epoll_pwait2", 441),
        ("mount_setattr", 442),
        ("landlock_create_ruleset", 444),
        ("landlock_restrict_self", 446),
        ("memfd_secret", 447),
        ("process_mrelease", 448),
        ("futex_waitv", 449),
        ("set_mempolicy_home_node", 450),
        ("cachestat", 451),
        ("fchmodat2", 452),
        ("map_shadow_stack", 453),
        ("futex_wake", 454),
        ("futex_wait", 455),
        ("futex_requeue", 456),
        ("statmount", 457),
        ("listmount", 458),
        ("lsm_get_self_attr", 459),
        ("lsm_set_self_attr", 460),
        ("lsm_list_modules", 461),
        ("mseal", 462),
        ("setxattrat", 463),
        ("getxattrat", 464),
        ("listxattrat", 465),
        ("removexattrat", 466),
        ("open_tree_attr", 467),
    ] {
        assert_eq!(syscall_number(name), Some(nr), "{name}");
    }
    assert_eq!(syscall_number("_llseek"), None);
    assert_eq!(syscall_number("no_such_call"), None);
    assert_eq!(lookup("chown32"), Lookup::OtherArchOnly);
    assert_eq!(lookup("arm_fadvise64_64"), Lookup::OtherArchOnly);
    assert_eq!(lookup("arch_prctl"), Lookup::X86_64(158));
    assert_eq!(lookup("nosuchcall"), Lookup::Unknown);
}
