//! Tenant profiles in real containers: every always-denied call answers EPERM and an unlisted
//! one ENOSYS, probed without side effects (tests/integration/probes/probe.c `calls`); the
//! same probes in a weakened container (no profile, every capability) get the kernel's own
//! answers, which proves they can see a hole. Annotations tighten and never loosen; exec runs
//! under the container's profile; `sgrun spec --profile` writes a config that runs.

use std::collections::BTreeMap;

use sgrun_tests::{host_caps, status_field, Bundle, TestEnv};

const EPERM: &str = "errno 1";
const ENOSYS: &str = "errno 38";

/// The always-denied probes and what a profile answers.
const ALWAYS_DENIED: &[(&str, &str)] = &[
    ("mount", EPERM),
    ("umount2", EPERM),
    ("pivot_root", EPERM),
    ("move_mount", EPERM),
    ("open_tree", EPERM),
    ("fsopen", EPERM),
    ("fsmount", EPERM),
    ("fsconfig", EPERM),
    ("mount_setattr", EPERM),
    ("unshare", EPERM),
    ("setns", EPERM),
    ("clone", EPERM),
    ("clone3", ENOSYS),
    ("ptrace", EPERM),
    ("process_vm_readv", EPERM),
    ("process_vm_writev", EPERM),
    ("keyctl", EPERM),
    ("add_key", EPERM),
    ("request_key", EPERM),
    ("bpf", EPERM),
    ("perf_event_open", EPERM),
    ("userfaultfd", EPERM),
    ("kexec_load", EPERM),
    ("kexec_file_load", EPERM),
    ("init_module", EPERM),
    ("finit_module", EPERM),
    ("delete_module", EPERM),
    ("open_by_handle_at", EPERM),
    ("name_to_handle_at", EPERM),
    ("iopl", EPERM),
    ("ioperm", EPERM),
    ("swapon", EPERM),
    ("swapoff", EPERM),
    ("reboot", EPERM),
    ("acct", EPERM),
    ("quotactl", EPERM),
    ("lookup_dcookie", EPERM),
    ("syslog", EPERM),
    ("settimeofday", EPERM),
    ("clock_settime", EPERM),
    ("clock_adjtime", EPERM),
    ("adjtimex", EPERM),
    ("personality", EPERM),
    ("ioctl-btrfs-subvol-create", EPERM),
    ("ioctl-tiocsti", EPERM),
    ("io_uring_setup", EPERM),
    ("io_uring_enter", EPERM),
    ("io_uring_register", EPERM),
];

fn probe_results(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, result)| (name.to_owned(), result.to_owned()))
        .collect()
}

fn probe_bundle(env: &TestEnv) -> Bundle {
    env.bundle()
        .with_probes()
        .tmpfs("/tmp")
        .args(&["/probes/probe", "calls"])
}

#[test]
fn always_denied_calls_get_eperm_and_unlisted_ones_enosys_in_every_class() {
    let env = TestEnv::new("profdeny");
    // Every capability the host has, so that nothing but the filter can refuse.
    for class in [
        "strict",
        "wordpress",
        "nginx",
        "php-fpm",
        "mariadb",
        "static",
        "oci-default",
    ] {
        let c = env.container(
            class,
            probe_bundle(&env)
                .caps(&host_caps())
                .annotation("io.sgrun.profile", class),
        );
        let out = c.run_fg();
        let got = probe_results(&out.ok().stdout);
        for (name, want) in ALWAYS_DENIED {
            assert_eq!(
                got.get(*name).map(String::as_str),
                Some(*want),
                "{class}: {name}: {out}"
            );
        }
        // Allowed everywhere: the kernel's own EBADF.
        assert_eq!(got["fstat-bad-fd"], "errno 9", "{class}: {out}");
        if class != "oci-default" {
            assert_eq!(got["ustat"], ENOSYS, "{class}: unlisted: {out}");
        }
        if class == "strict" {
            assert_eq!(
                got["socket-unix-bad-type"], ENOSYS,
                "strict has no sockets: {out}"
            );
        }
    }

    // Weakened: no profile, every capability: the kernel answers each probe itself, and never
    // the way the filter did (EPERM, or ENOSYS for clone3).
    let weak = env.weak_container("w", probe_bundle(&env).caps(&host_caps()));
    let out = weak.run_fg();
    let got = probe_results(&out.ok().stdout);
    for (name, filtered) in ALWAYS_DENIED {
        let kernel = got.get(*name).map(String::as_str);
        assert!(kernel.is_some(), "{name} missing: {out}");
        assert_ne!(
            kernel,
            Some(*filtered),
            "{name} looks filtered without a profile: {out}"
        );
    }
    assert_ne!(got["ustat"], ENOSYS, "{out}");
}

#[test]
fn default_class_applies_to_containers_that_name_none() {
    let env = TestEnv::new("profdefault");
    let c = env.container(
        "d",
        env.bundle()
            .caps(&host_caps())
            .no_new_privs(false)
            .args(&["cat", "/proc/self/status"]),
    );
    let out = c.run_fg();
    let status = &out.ok().stdout;
    // oci-default: seccomp on, no_new_privs on, CAP_SYS_ADMIN (bit 21) gone.
    assert_eq!(status_field(status, "Seccomp"), Some("2"), "{out}");
    assert_eq!(status_field(status, "NoNewPrivs"), Some("1"), "{out}");
    let eff = u64::from_str_radix(status_field(status, "CapEff").unwrap(), 16).unwrap();
    assert_eq!(eff & (1 << 21), 0, "{out}");

    // Weakened: --default-profile none runs the config as given (runc's behaviour).
    let weak = env.weak_container(
        "w",
        env.bundle()
            .caps(&host_caps())
            .no_new_privs(false)
            .args(&["cat", "/proc/self/status"]),
    );
    let out = weak.run_fg();
    let status = &out.ok().stdout;
    assert_eq!(status_field(status, "Seccomp"), Some("0"), "{out}");
    let eff = u64::from_str_radix(status_field(status, "CapEff").unwrap(), 16).unwrap();
    assert_ne!(eff & (1 << 21), 0, "{out}");
}

#[test]
fn annotations_tighten_and_loosening_is_refused_leaving_nothing() {
    let env = TestEnv::new("profann");
    let c = env.container(
        "t",
        env.bundle()
            .with_probes()
            .annotation("io.sgrun.profile", "strict")
            .annotation("io.sgrun.profile.deny", "fstat")
            .args(&["/probes/probe", "calls"]),
    );
    let got = probe_results(&c.run_fg().ok().stdout);
    assert_eq!(got["fstat-bad-fd"], EPERM);

    for (key, value, needle) in [
        ("io.sgrun.profile.allow", "ptrace", "would loosen"),
        ("io.sgrun.profile", "unconfined", "would loosen"),
        (
            "io.sgrun.profile",
            "no-such-class",
            "no profile named \"no-such-class\"",
        ),
        ("io.sgrun.profile", "base", "is a layer"),
        (
            "io.sgrun.profile.deny",
            "opennat",
            "not an x86_64 system call",
        ),
    ] {
        let bad = env.container("bad", env.bundle().annotation(key, value).args(&["true"]));
        let out = bad.create_args(&[]);
        out.failed().stderr_has(&[needle]);
        env.assert_nothing_left(&bad.id, &bad.cgroup);
    }
}

#[test]
fn exec_runs_under_the_containers_profile() {
    let env = TestEnv::new("profexec");
    let c = env.container(
        "e",
        env.bundle()
            .with_probes()
            .caps(&host_caps())
            .annotation("io.sgrun.profile", "strict")
            .args(&["sleep", "600"]),
    );
    c.run_detached();
    let out = c.exec(&[], &["/probes/probe", "calls"]);
    let got = probe_results(&out.ok().stdout);
    assert_eq!(got["mount"], EPERM, "{out}");
    assert_eq!(got["socket-unix-bad-type"], ENOSYS, "{out}");
    let status = c.exec(&[], &["cat", "/proc/self/status"]);
    let eff = status_field(&status.ok().stdout, "CapEff")
        .unwrap()
        .to_string();
    assert_eq!(
        eff, "0000000000000000",
        "strict grants no capability: {status}"
    );
}

#[test]
fn a_config_with_its_own_seccomp_gets_the_profile_too() {
    let env = TestEnv::new("profstack");
    // The config allows everything; the wordpress profile still denies mount.
    let allow_all = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
    let c = env.container(
        "s",
        env.bundle()
            .with_probes()
            .caps(&host_caps())
            .seccomp(allow_all)
            .annotation("io.sgrun.profile", "wordpress")
            .args(&["/probes/probe", "calls"]),
    );
    let got = probe_results(&c.run_fg().ok().stdout);
    assert_eq!(got["mount"], EPERM);
    assert_eq!(got["ustat"], ENOSYS);
}

#[test]
fn spec_with_a_profile_runs_and_records_it() {
    let env = TestEnv::new("profspec");
    let dir = env.path().join("specbundle");
    std::fs::create_dir_all(&dir).unwrap();
    let out = env.sg.run([
        "spec",
        "--profile",
        "strict",
        "--bundle",
        dir.to_str().unwrap(),
    ]);
    out.ok();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["annotations"]["io.sgrun.profile"], "strict");
    assert_eq!(config["linux"]["seccomp"]["defaultErrnoRet"], 38);
    assert_eq!(config["process"]["noNewPrivileges"], true);
    assert_eq!(config["linux"]["resources"]["pids"]["limit"], 256);
    // Unknown class: an error naming the classes.
    let out = env.sg.run([
        "spec",
        "--profile",
        "nope",
        "--bundle",
        dir.to_str().unwrap(),
    ]);
    out.failed();
}
