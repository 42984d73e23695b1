//! Unit tests: every built-in profile resolves and compiles; each compiled filter answers a
//! table of calls as intended (through sgrun-seccomp's BPF simulator); every kind of bad input
//! is refused with its file and line.

use sgrun_seccomp::simulate::{call, Outcome};

use crate::always::ALWAYS_DENIED;
use crate::catalog::BUILTIN;
use crate::{compile, oci, Catalog, ProfileError, Selection, Tightening};

const EPERM: u16 = 1;
const ENOSYS: u16 = 38;
const CLASSES: &[&str] = &[
    "strict",
    "nginx",
    "static",
    "php-fpm",
    "mariadb",
    "wordpress",
    "oci-default",
];

fn compiled(name: &str) -> sgrun_seccomp::CompiledSeccomp {
    let profile = Catalog::builtin()
        .class(name)
        .expect("built-in class resolves");
    compile(&profile, &Tightening::default()).expect("built-in class compiles")
}

fn outcome(c: &sgrun_seccomp::CompiledSeccomp, name: &str, args: &[u64]) -> Outcome {
    call(c, name, args).unwrap_or_else(|| panic!("{name} is not a syscall"))
}

#[test]
fn builtin_set_is_the_profiles_directory() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../profiles");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .expect("profiles/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut builtin: Vec<String> = BUILTIN.iter().map(|(n, _)| (*n).to_owned()).collect();
    builtin.sort();
    assert_eq!(
        on_disk, builtin,
        "catalog.rs BUILTIN must embed every file of profiles/"
    );
}

#[test]
fn every_class_resolves_compiles_and_every_rule_says_why() {
    let catalog = Catalog::builtin();
    let mut classes = catalog.classes();
    classes.sort();
    let mut expected: Vec<String> = CLASSES.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(classes, expected);
    for name in CLASSES {
        let p = catalog
            .class(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (syscall, rule) in &p.allow {
            assert!(
                rule.why.is_some(),
                "{name}: allow {syscall} at {} has no why",
                rule.at
            );
        }
        for (syscall, rule) in &p.deny {
            assert!(
                rule.why.is_some(),
                "{name}: deny {syscall} at {} has no why",
                rule.at
            );
        }
        let c = compile(&p, &Tightening::default()).unwrap();
        assert!(c.instruction_count() < sgrun_seccomp::MAX_TOTAL_INSTRUCTIONS);
    }
}

/// The cost of a class rests on the kernel's action cache: every call a class allows without
/// conditions must be answered from it (its path through every filter looks at nothing but
/// the call number and the architecture), and every call with conditions or denied must not
/// be. A change to the compiler that loaded an argument before dispatching on the number
/// would make every call run ~2600 instructions; this catches it.
#[test]
fn unconditional_allows_are_answered_from_the_kernels_cache() {
    use sgrun_seccomp::simulate::cached_allow;
    let catalog = Catalog::builtin();
    for name in CLASSES {
        let p = catalog.class(name).unwrap();
        let c = compile(&p, &Tightening::default()).unwrap();
        let mut cached = 0;
        for (syscall, rule) in &p.allow {
            let nr = sgrun_seccomp::syscall_number(syscall).unwrap() as u32;
            // Conditional: the class's own conditions, a deny of its own beside the allow, or
            // an always-denied rule for some arguments (ioctl requests, clone flags, …).
            let conditional = rule.when != crate::model::When::Always
                || p.deny.contains_key(syscall)
                || ALWAYS_DENIED
                    .iter()
                    .any(|d| d.names.contains(&syscall.as_str()));
            assert_eq!(
                cached_allow(&c, nr),
                !conditional,
                "{name}: {syscall} (allowed {}) cached: {}",
                if conditional {
                    "with conditions"
                } else {
                    "always"
                },
                cached_allow(&c, nr)
            );
            cached += usize::from(!conditional);
        }
        assert!(cached > 150, "{name}: only {cached} calls cached");
        for syscall in p.deny.keys() {
            let nr = sgrun_seccomp::syscall_number(syscall).unwrap() as u32;
            assert!(
                !cached_allow(&c, nr),
                "{name}: denied {syscall} is cached as allowed"
            );
        }
    }
}

/// Golden hashes: a change to a profile or to the compiler shows up here, on purpose. Update
/// with `SGRUN_UPDATE_GOLDEN=1 cargo test -p sgrun-profiles golden` and review the diff.
#[test]
fn golden_bpf_hashes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden-hashes.txt");
    let actual: String = CLASSES
        .iter()
        .map(|name| {
            let c = compiled(name);
            format!(
                "{name} {} filters={} instructions={}\n",
                c.content_hash(),
                c.filter_count(),
                c.instruction_count()
            )
        })
        .collect();
    if std::env::var_os("SGRUN_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "compiled profiles changed; if intended, rerun with SGRUN_UPDATE_GOLDEN=1 and review"
    );
    // And compiling twice gives the same program.
    assert_eq!(compiled("wordpress"), compiled("wordpress"));
}

#[test]
fn always_denied_is_denied_in_every_class() {
    for name in CLASSES {
        let c = compiled(name);
        for denied in ALWAYS_DENIED {
            for syscall in denied.names {
                let args: &[u64] = match *syscall {
                    "clone" => &[0x1000_0000 | 0x11],
                    "personality" => &[0x0004_0000],
                    "ioctl" => &[3, 0x5000_940e],
                    _ => &[],
                };
                let want = Outcome::Errno(u16::try_from(denied.errno).unwrap());
                assert_eq!(
                    outcome(&c, syscall, args),
                    want,
                    "{name}: {syscall}{args:x?}"
                );
            }
        }
        // The argument families: allowed forms stay allowed where the class allows them.
        assert_eq!(
            outcome(&c, "clone", &[0x0120_0011]),
            Outcome::Allow,
            "{name}: fork"
        );
        assert_eq!(
            outcome(&c, "clone", &[0x003d_0f00]),
            Outcome::Allow,
            "{name}: thread"
        );
        assert_eq!(
            outcome(&c, "personality", &[0xffff_ffff]),
            Outcome::Allow,
            "{name}"
        );
        assert_eq!(
            outcome(&c, "ioctl", &[0, 0x5401]),
            Outcome::Allow,
            "{name}: TCGETS"
        );
        // Sign-extended request: still the btrfs ioctl to the kernel, still denied.
        let sign_extended = 0xffff_ffff_0000_0000 | 0xc010_9428;
        assert_eq!(
            outcome(&c, "ioctl", &[3, sign_extended]),
            Outcome::Errno(EPERM)
        );
        assert_eq!(
            outcome(&c, "ioctl", &[3, 0x5412]),
            Outcome::Errno(EPERM),
            "TIOCSTI"
        );
        // Unlisted: ENOSYS.
        assert_eq!(
            outcome(&c, "vhangup", &[]),
            Outcome::Errno(ENOSYS),
            "{name}"
        );
        assert_eq!(outcome(&c, "uselib", &[]), Outcome::Errno(ENOSYS), "{name}");
    }
}

/// What each class lets through, call by call.
#[test]
fn class_tables() {
    type Row<'a> = (&'a str, &'a [u64], Outcome);
    let allow = Outcome::Allow;
    let enosys = Outcome::Errno(ENOSYS);
    let eperm = Outcome::Errno(EPERM);
    let tables: &[(&str, &[Row])] = &[
        (
            "strict",
            &[
                ("read", &[], allow),
                ("execve", &[], allow),
                ("wait4", &[], allow),
                ("socket", &[1, 1, 0], enosys),
                ("setuid", &[0], enosys),
                ("bind", &[], enosys),
            ],
        ),
        (
            "nginx",
            &[
                ("socket", &[1, 1, 0], allow),
                ("socket", &[2, 1, 0], allow),
                ("socket", &[10, 1, 0], allow),
                ("socket", &[16, 3, 0], enosys),
                ("socket", &[17, 3, 0], enosys),
                ("accept4", &[], allow),
                ("recvmsg", &[], allow),
                ("setuid", &[33], allow),
                ("io_uring_setup", &[], eperm),
                ("io_setup", &[], enosys),
            ],
        ),
        (
            "static",
            &[("connect", &[], eperm), ("accept4", &[], allow)],
        ),
        (
            "php-fpm",
            &[
                ("socket", &[16, 3, 0], allow),
                ("socket", &[16, 3, 9], enosys),
                ("connect", &[], allow),
                ("setitimer", &[2], allow),
            ],
        ),
        (
            "mariadb",
            &[
                ("io_setup", &[], allow),
                ("io_submit", &[], allow),
                ("io_uring_setup", &[], eperm),
                ("fallocate", &[], allow),
                ("socket", &[2, 1, 0], enosys),
                ("get_mempolicy", &[], enosys),
            ],
        ),
        (
            "wordpress",
            &[
                ("io_setup", &[], allow),
                ("socket", &[16, 3, 0], allow),
                ("socket", &[2, 1, 0], allow),
                ("recvmsg", &[], allow),
                ("clone3", &[], enosys),
                ("bpf", &[], eperm),
                ("setns", &[], eperm),
            ],
        ),
        (
            "oci-default",
            &[
                ("socket", &[17, 3, 0], allow),
                ("socket", &[40, 1, 0], eperm),
                ("shmget", &[], allow),
                ("seccomp", &[], allow),
                ("personality", &[8], allow),
                ("mount", &[], eperm),
            ],
        ),
    ];
    for (class, rows) in tables {
        let c = compiled(class);
        for (syscall, args, want) in *rows {
            assert_eq!(
                outcome(&c, syscall, args),
                *want,
                "{class}: {syscall}{args:?}"
            );
        }
    }
}

#[test]
fn capabilities_per_class() {
    let catalog = Catalog::builtin();
    let caps = |n: &str| -> Vec<String> {
        catalog
            .class(n)
            .unwrap()
            .capabilities
            .keys()
            .cloned()
            .collect()
    };
    assert!(caps("strict").is_empty());
    assert_eq!(caps("wordpress"), ["CAP_KILL", "CAP_SETGID", "CAP_SETUID"]);
    assert_eq!(caps("static"), ["CAP_KILL", "CAP_SETGID", "CAP_SETUID"]);
    assert_eq!(caps("oci-default").len(), 14);
}

fn catalog_with(files: &[(&str, &str)]) -> Catalog {
    let mut c = Catalog::builtin();
    for (name, text) in files {
        c.add_builtin_for_test(name, text);
    }
    c
}

fn refused(files: &[(&str, &str)], name: &str) -> String {
    let err = catalog_with(files)
        .resolve(name)
        .expect_err("the profile must be refused");
    err.to_string()
}

const HEADER: &str = "[profile]\nname = \"t\"\nkind = \"class\"\nextends = [\"base\"]\n";

fn test_profile(body: &str) -> String {
    format!("{HEADER}{body}")
}

#[test]
fn unknown_syscall_names_file_line_and_name() {
    let msg = refused(
        &[(
            "t",
            &test_profile("\n[[allow]]\nnames = [\"read\", \"opennat\"]\nwhy = \"x\"\n"),
        )],
        "t",
    );
    assert!(msg.starts_with("test/t.toml:7: \"opennat\""), "{msg}");
    assert!(msg.contains("did you mean"), "{msg}");
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let msg = refused(
        &[(
            "t",
            &test_profile("\n[[allow]]\nnames = [\"read\"]\nwhyy = \"x\"\n"),
        )],
        "t",
    );
    assert!(msg.starts_with("test/t.toml:"), "{msg}");
    assert!(msg.contains("whyy"), "{msg}");
    let msg = refused(&[("t", &format!("{HEADER}colour = \"blue\"\n"))], "t");
    assert!(msg.contains("colour"), "{msg}");
}

#[test]
fn duplicates_and_conflicts() {
    let dup =
        test_profile("[[allow]]\nnames = [\"read\"]\n[[allow]]\nnames = [\"write\", \"read\"]\n");
    let msg = refused(&[("t", &dup)], "t");
    assert!(msg.contains("read is already allowed at line 6"), "{msg}");

    let conflict =
        test_profile("[[allow]]\nnames = [\"vhangup\"]\n[[deny]]\nnames = [\"vhangup\"]\n");
    let msg = refused(&[("t", &conflict)], "t");
    assert!(msg.contains("vhangup is denied here but allowed"), "{msg}");

    // Siblings: one denies what the other allows.
    let a = "[profile]\nname = \"a\"\nkind = \"layer\"\nextends = [\"base\"]\n[[deny]]\nnames = [\"chdir\"]\nwhy = \"x\"\n";
    let b = "[profile]\nname = \"b\"\nkind = \"layer\"\nextends = [\"shell\"]\n";
    let ab = "[profile]\nname = \"ab\"\nkind = \"class\"\nextends = [\"a\", \"b\"]\n";
    let msg = refused(&[("a", a), ("b", b), ("ab", ab)], "ab");
    assert!(msg.contains("chdir is allowed here but denied"), "{msg}");
}

#[test]
fn loosening_the_base_is_refused() {
    // An rlimit above base's.
    let rl = test_profile("[[rlimit]]\ntype = \"RLIMIT_CORE\"\nsoft = 1024\nhard = 1024\n");
    let msg = refused(&[("t", &rl)], "t");
    assert!(msg.contains("loosens profiles/base.toml:"), "{msg}");
    // A pids ceiling above base's.
    let msg = refused(&[("t", &test_profile("[limits]\npids = 100000\n"))], "t");
    assert!(
        msg.contains("limits.pids is 4096 there and 100000 here"),
        "{msg}"
    );
    // Allowing what a layer denies outright.
    let child = "[profile]\nname = \"t\"\nkind = \"class\"\nextends = [\"static\"]\n[[allow]]\nnames = [\"connect\"]\n";
    let msg = refused(&[("t", child)], "t");
    assert!(
        msg.contains("connect is denied there and allowed here"),
        "{msg}"
    );
    // A forbidden capability.
    let cap = test_profile("[[capability]]\nname = \"CAP_SYS_ADMIN\"\n");
    let msg = refused(&[("t", &cap)], "t");
    assert!(msg.contains("CAP_SYS_ADMIN may not be granted"), "{msg}");
}

#[test]
fn always_denied_cannot_be_allowed() {
    for (body, needle) in [
        ("[[allow]]\nnames = [\"mount\"]\n", "mount is denied in every profile"),
        ("[[allow]]\nnames = [\"ptrace\"]\n", "ptrace is denied in every profile"),
        ("[[allow]]\nnames = [\"clone\"]\n", "clone with namespace flags"),
        (
            "[[allow]]\nnames = [\"clone\"]\nargs = [{ index = 0, op = \"masked_eq\", mask = \"CLONE_NEWNS\", value = 0 }]\n",
            "clone with namespace flags",
        ),
        (
            "[[allow]]\nnames = [\"personality\"]\nargs = [{ index = 0, op = \"eq\", value = \"ADDR_NO_RANDOMIZE\" }]\n",
            "personality with flags",
        ),
        ("[[allow]]\nnames = [\"io_uring_setup\"]\n", "add `exception ="),
        ("[[allow]]\nnames = [\"read\"]\nexception = \"because\"\n", "needs no exception"),
    ] {
        let msg = refused(&[("t", &test_profile(body))], "t");
        assert!(msg.contains(needle), "{body}: {msg}");
        assert!(msg.starts_with("test/t.toml:6:"), "{body}: {msg}");
    }
    // io_uring with a reason is the one exception.
    let ok = test_profile("[[allow]]\nnames = [\"io_uring_setup\", \"io_uring_enter\"]\nexception = \"measured faster for this class\"\n");
    let p = catalog_with(&[("t", &ok)]).class("t").unwrap();
    let c = compile(&p, &Tightening::default()).unwrap();
    assert_eq!(outcome(&c, "io_uring_setup", &[]), Outcome::Allow);
    assert_eq!(outcome(&c, "io_uring_register", &[]), Outcome::Errno(EPERM));
}

#[test]
fn bad_arguments() {
    for (args, needle) in [
        ("{ index = 6, op = \"eq\", value = 1 }", "argument index 6"),
        (
            "{ index = 0, op = \"masked_eq\", value = 1 }",
            "needs a `mask`",
        ),
        (
            "{ index = 0, op = \"eq\", value = 1, mask = 1 }",
            "only goes with",
        ),
        (
            "{ index = 0, op = \"masked_eq\", mask = 1, value = 2 }",
            "never matches",
        ),
        (
            "{ index = 0, op = \"eq\", value = \"AF_NOPE\" }",
            "constant \"AF_NOPE\"",
        ),
        ("{ index = 0, op = \"eq\", value = -1 }", "negative"),
        ("{ index = 0, op = \"eq\", value = [] }", "empty list"),
        (
            "{ index = 0, op = \"eq\", value = 1 }, { index = 0, op = \"eq\", value = 2 }",
            "two conditions on argument 0",
        ),
        ("{ index = 0, op = \"like\", value = 1 }", "like"),
    ] {
        let body = format!("[[allow]]\nnames = [\"socket\"]\nargs = [{args}]\n");
        let msg = refused(&[("t", &test_profile(&body))], "t");
        assert!(msg.contains(needle), "{args}: {msg}");
    }
}

#[test]
fn cycles_missing_parents_and_layers() {
    let a = "[profile]\nname = \"a\"\nkind = \"class\"\nextends = [\"b\"]\n";
    let b = "[profile]\nname = \"b\"\nkind = \"class\"\nextends = [\"a\"]\n";
    let msg = refused(&[("a", a), ("b", b)], "a");
    assert!(msg.contains("cycle: a -> b -> a"), "{msg}");
    let msg = refused(
        &[(
            "t",
            "[profile]\nname = \"t\"\nkind = \"class\"\nextends = [\"nope\"]\n",
        )],
        "t",
    );
    assert!(
        msg.contains("no profile named \"nope\"") && msg.contains("test/t.toml:4"),
        "{msg}"
    );
    let msg = refused(&[("t", "[profile]\nname = \"u\"\nkind = \"class\"\n")], "t");
    assert!(msg.contains("named \"u\" but its file is t.toml"), "{msg}");
    let err = Catalog::builtin().class("base").unwrap_err();
    assert!(matches!(err, ProfileError::NotAClass { .. }), "{err}");
}

#[test]
fn local_profiles_may_only_tighten() {
    let mut c = Catalog::builtin();
    c.add_text(
        "tight",
        "/etc/sgrun/profiles/tight.toml",
        "[profile]\nname = \"tight\"\nkind = \"class\"\nextends = [\"wordpress\"]\n\
         [[deny]]\nnames = [\"execve\"]\nwhy = \"no programs\"\n[limits]\npids = 64\n",
    )
    .unwrap();
    let p = c.class("tight").unwrap();
    let compiled = compile(&p, &Tightening::default()).unwrap();
    assert_eq!(outcome(&compiled, "execve", &[]), Outcome::Errno(EPERM));
    assert_eq!(p.pids.as_ref().unwrap().0, 64);

    for body in [
        "[[allow]]\nnames = [\"vhangup\"]\n",
        "[[capability]]\nname = \"CAP_CHOWN\"\n",
    ] {
        let mut c = Catalog::builtin();
        let text = format!(
            "[profile]\nname = \"loose\"\nkind = \"class\"\nextends = [\"strict\"]\n{body}"
        );
        c.add_text("loose", "/etc/sgrun/profiles/loose.toml", &text)
            .unwrap();
        let msg = c.class("loose").unwrap_err().to_string();
        assert!(msg.contains("may only tighten"), "{msg}");
    }
    let mut c = Catalog::builtin();
    let msg = c
        .add_text("wordpress", "x.toml", "")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("built-in profile"), "{msg}");
}

#[test]
fn annotations_tighten_and_never_loosen() {
    let ann = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    let sel = Selection::from_annotations(
        Some(&ann(&[
            ("io.sgrun.profile", "wordpress"),
            ("io.sgrun.profile.deny", "execve, chmod"),
            ("io.sgrun.profile.drop-capabilities", "kill"),
            ("org.example.other", "x"),
        ])),
        Some("oci-default"),
    )
    .unwrap()
    .unwrap();
    assert_eq!(sel.class, "wordpress");
    assert_eq!(sel.tightening.deny, ["execve", "chmod"]);
    assert_eq!(sel.tightening.drop_capabilities, ["CAP_KILL"]);

    let none = Selection::from_annotations(None, Some("oci-default"))
        .unwrap()
        .unwrap();
    assert_eq!(none.class, "oci-default");
    assert_eq!(Selection::from_annotations(None, None).unwrap(), None);

    for (pairs, needle) in [
        (vec![("io.sgrun.profile.allow", "ptrace")], "would loosen"),
        (vec![("io.sgrun.profile", "unconfined")], "would loosen"),
        (
            vec![("io.sgrun.profile.add-capabilities", "CAP_SYS_ADMIN")],
            "would loosen",
        ),
        (
            vec![("io.sgrun.profile.colour", "x")],
            "unknown profile annotation",
        ),
        (
            vec![("io.sgrun.profile.deny", "opennat")],
            "not an x86_64 system call",
        ),
        (vec![("io.sgrun.profile", "../x")], "lower-case letters"),
    ] {
        let msg = Selection::from_annotations(Some(&ann(&pairs)), Some("oci-default"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(needle), "{pairs:?}: {msg}");
    }
}

#[test]
fn applying_tightens_the_config() {
    use oci_spec::runtime::Spec;
    let profile = Catalog::builtin().class("nginx").unwrap();
    let mut spec = Spec::default();
    let before_caps = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    let applied = oci::apply(&profile, &Tightening::default(), &mut spec).unwrap();
    assert!(applied.extra_seccomp.is_none());
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.no_new_privileges(), Some(true));
    let caps = process.capabilities().as_ref().unwrap();
    // The default spec has AUDIT_WRITE, KILL and NET_BIND_SERVICE: only KILL is nginx's.
    let bounding = caps.bounding().as_ref().unwrap();
    assert!(bounding.len() < before_caps.bounding().as_ref().unwrap().len());
    assert!(
        bounding.iter().all(|c| c.to_string().contains("KILL")),
        "{bounding:?}"
    );
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_some());
    assert!(linux
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".into()));
    assert_eq!(
        linux
            .resources()
            .as_ref()
            .unwrap()
            .pids()
            .as_ref()
            .unwrap()
            .limit(),
        128
    );
    let rl = process.rlimits().as_ref().unwrap();
    assert!(rl
        .iter()
        .any(|r| r.typ().to_string() == "RLIMIT_CORE" && r.hard() == 0));

    // Applying again changes nothing, and a different seccomp already there is kept and the
    // profile's returned to enforce beside it.
    let again = spec.clone();
    oci::apply(&profile, &Tightening::default(), &mut spec).unwrap();
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&spec).unwrap()
    );
    let mut own = spec.clone();
    let mut linux = own.linux().clone().unwrap();
    linux.set_seccomp(Some(oci::seccomp(
        &Catalog::builtin().class("strict").unwrap(),
        &Tightening::default(),
    )));
    own.set_linux(Some(linux));
    let applied = oci::apply(&profile, &Tightening::default(), &mut own).unwrap();
    assert!(applied.extra_seccomp.is_some());
}
