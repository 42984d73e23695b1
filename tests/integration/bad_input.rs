//! Bad input: every refusal exits non-zero with a message naming what is wrong and where, and
//! leaves nothing behind (no state dir in --root, no cgroup dir, no process).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use serde_json::json;
use sgrun_tests::{alive, cgroup_dirs, Bundle, RunOpts, TestEnv, CGROUP_PARENT};

/// `create` of a config that must be refused: returns stderr after checking the refusal and
/// that nothing is left.
#[track_caller]
fn refused_create(env: &TestEnv, tag: &str, bundle: Bundle) -> (String, String) {
    let c = env.container(tag, bundle);
    let out = c.create_args(&[]);
    out.failed();
    env.assert_nothing_left(&c.id, &c.cgroup);
    let config = c.bundle_dir.join("config.json");
    (out.stderr.clone(), config.to_string_lossy().into_owned())
}

#[test]
fn missing_bundle() {
    let env = TestEnv::new("nobundle");
    let id = env.new_id("m");
    let missing = env.path().join("no-such-bundle");
    let out = env
        .sg
        .run(["create", "--bundle", missing.to_str().unwrap(), &id]);
    out.failed().stderr_has(&[missing.to_str().unwrap()]);
    env.assert_nothing_left(&id, &format!("{CGROUP_PARENT}/{id}"));
}

#[test]
fn bundle_without_config_json() {
    let env = TestEnv::new("noconfig");
    let id = env.new_id("m");
    let dir = env.path().join("empty-bundle");
    fs::create_dir(&dir).unwrap();
    let out = env
        .sg
        .run(["create", "--bundle", dir.to_str().unwrap(), &id]);
    let cfg = dir.canonicalize().unwrap().join("config.json");
    out.failed().stderr_has(&[cfg.to_str().unwrap()]);
    env.assert_nothing_left(&id, &format!("{CGROUP_PARENT}/{id}"));
}

#[test]
fn malformed_json_names_line_and_column() {
    let env = TestEnv::new("badjson");
    let c = env.container("j", env.bundle());
    let cfg = c.bundle_dir.join("config.json");
    // Line 3 has a stray comma where a value belongs.
    fs::write(
        &cfg,
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": ,\n  \"root\": {}\n}\n",
    )
    .unwrap();
    let out = c.create_args(&[]);
    out.failed();
    let canon = c.bundle_dir.canonicalize().unwrap().join("config.json");
    let needle = format!("{}:3:", canon.display());
    assert!(
        out.stderr.contains(&needle),
        "the message should point at {needle}<column>: {out}"
    );
    let after = &out.stderr[out.stderr.find(&needle).unwrap() + needle.len()..];
    assert!(
        after.starts_with(|ch: char| ch.is_ascii_digit()),
        "line:column expected after the path: {out}"
    );
    env.assert_nothing_left(&c.id, &c.cgroup);
}

#[test]
fn semantically_wrong_configs_name_the_json_pointer() {
    let env = TestEnv::new("semantic");
    let cases: Vec<(&str, Bundle, &str)> = vec![
        (
            "ns",
            env.bundle()
                .edit(|v| v["linux"]["namespaces"][2]["type"] = json!("bogus")),
            "/linux/namespaces/2/type",
        ),
        ("args", env.bundle().args(&[]), "/process/args"),
        ("cwd", env.bundle().cwd("relative/dir"), "/process/cwd"),
        (
            "userns",
            env.bundle().with_namespace("user"),
            "/linux/uidMappings",
        ),
        (
            "root",
            env.bundle().root_path(&env.path().join("no-rootfs")),
            "/root/path",
        ),
        (
            "dupns",
            env.bundle().edit(|v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "pid"}))
            }),
            "/linux/namespaces/5",
        ),
    ];
    for (tag, bundle, pointer) in cases {
        let (stderr, config) = refused_create(&env, tag, bundle);
        assert!(
            stderr.contains(pointer),
            "{tag}: message should name {pointer}: {stderr}"
        );
        assert!(
            stderr.contains(&config) || stderr.contains("config.json"),
            "{tag}: message should name the config file {config}: {stderr}"
        );
    }
}

#[test]
fn hostile_ids_are_refused() {
    let env = TestEnv::new("ids");
    let c = env.container("b", env.bundle().args(&["true"]));
    let bundle = c.bundle_dir.to_str().unwrap().to_string();
    let long = "x".repeat(300);
    for id in ["", "a/b", "..", ".", "../escape", long.as_str()] {
        let out = env.sg.run(["create", "--bundle", &bundle, id]);
        out.failed();
        assert!(
            out.stderr.contains("invalid container id"),
            "id {id:?}: message should say the id is invalid: {out}"
        );
        if id.len() < 100 && !id.is_empty() {
            assert!(
                out.stderr.contains(id),
                "message should name the id {id:?}: {out}"
            );
        }
        let entries = env.sg.root_entries();
        assert!(
            entries.is_empty(),
            "id {id:?} left {entries:?} in the state root"
        );
        // "a/b" and "../escape" must not have created anything outside the root either.
        assert!(
            !env.path().join("escape").exists(),
            "id {id:?} escaped the state root"
        );
        for cg in [format!("{CGROUP_PARENT}/{id}"), format!("/{id}")] {
            if id.is_empty() || id == "." || id == ".." || id.starts_with("..") {
                continue; // would name an existing parent; nothing to check there
            }
            assert!(cgroup_dirs(&cg).is_empty(), "id {id:?} created cgroup {cg}");
        }
    }
    // The same refusals apply to every verb that takes an id.
    for verb in ["state", "start", "delete", "kill", "pause"] {
        let out = env.sg.run([verb, "../escape"]);
        out.failed().stderr_has(&["../escape"]);
    }
    env.assert_nothing_left("-", "/sgrun-test/-");
}

#[test]
fn id_with_nul_cannot_reach_sgrun() {
    // A NUL cannot be carried inside an execve argument: the OS interface refuses it before
    // sgrun runs, so a NUL id can never be half-used (e.g. truncated to "a").
    let env = TestEnv::new("nul");
    let c = env.container("b", env.bundle().args(&["true"]));
    let id = OsStr::from_bytes(b"a\0b");
    let res = env.sg.try_run_with(
        [
            OsStr::new("create"),
            OsStr::new("--bundle"),
            c.bundle_dir.as_os_str(),
            id,
        ],
        RunOpts::default(),
    );
    let err = res.expect_err("an argument with a NUL byte must not start a process");
    assert!(err.contains("nul") || err.contains("NUL"), "{err}");
    env.assert_nothing_left("a", "/sgrun-test/a");
}

#[test]
fn duplicate_id_is_refused_and_the_first_survives() {
    let env = TestEnv::new("dup");
    let c = env.container("d", env.bundle().args(&["sleep", "1000"]));
    c.create();
    let pid = c.pid();
    let other = env.path().join("other-bundle");
    env.bundle()
        .args(&["true"])
        .cgroups_path(&format!("{CGROUP_PARENT}/{}-other", c.id))
        .write(&other);
    let out = env
        .sg
        .run(["create", "--bundle", other.to_str().unwrap(), &c.id]);
    out.failed().stderr_has(&[&c.id, "already exists"]);
    assert!(cgroup_dirs(&format!("{CGROUP_PARENT}/{}-other", c.id)).is_empty());
    let st = c.state();
    assert_eq!(
        st["status"], "created",
        "the first container was disturbed: {st}"
    );
    assert_eq!(st["pid"].as_i64(), Some(pid as i64));
    assert!(alive(pid));
    assert!(
        !cgroup_dirs(&c.cgroup).is_empty(),
        "the first container lost its cgroup"
    );
}

#[test]
fn second_start_is_refused() {
    let env = TestEnv::new("start2");
    let c = env.container("s", env.bundle().args(&["sleep", "1000"]));
    c.create().start();
    let out = env.sg.run(["start", &c.id]);
    out.failed().stderr_has(&[&c.id, "running"]);
    assert_eq!(c.state()["status"], "running");
}

#[test]
fn delete_of_a_running_container_needs_force() {
    let env = TestEnv::new("delrun");
    let c = env.container("r", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    let pid = c.pid();
    let out = env.sg.run(["delete", &c.id]);
    out.failed().stderr_has(&[&c.id, "running"]);
    assert_eq!(c.state()["status"], "running");
    assert!(alive(pid));
    env.sg.run(["delete", "-f", &c.id]).ok();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(pid), "delete -f left the init {pid} running");
    assert!(cgroup_dirs(&c.cgroup).is_empty(), "delete -f left cgroups");
    assert!(!env.sg.root.join(&c.id).exists());
}

#[test]
fn unknown_signals_are_refused() {
    let env = TestEnv::new("sig");
    let c = env.container("k", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    for sig in ["FOO", "99", "0", "-9"] {
        let out = env.sg.run(["kill", &c.id, sig]);
        out.failed().stderr_has(&[sig]);
    }
    assert_eq!(c.state()["status"], "running");
}

#[test]
fn exec_into_a_stopped_container_is_refused() {
    let env = TestEnv::new("execstop");
    let c = env.container("s", env.bundle().args(&["true"]));
    c.create().start();
    c.wait_status("stopped");
    let out = env.sg.run_with(
        ["exec", &c.id, "true"],
        RunOpts {
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    out.failed().stderr_has(&[&c.id, "stopped"]);
}

#[test]
fn exec_into_a_paused_container_is_refused_without_hanging() {
    let env = TestEnv::new("execpause");
    let c = env.container("p", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    env.sg.run(["pause", &c.id]).ok();
    let out = env.sg.run_with(
        ["exec", &c.id, "true"],
        RunOpts {
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        },
    );
    out.failed().stderr_has(&[&c.id, "paused"]);
    let procs = c.read_cgroup("pids", "cgroup.procs");
    assert_eq!(
        procs.lines().count(),
        1,
        "a refused exec left a process: {procs}"
    );
    env.sg.run(["resume", &c.id]).ok();
    c.exec(&[], &["true"]).ok();
}

#[test]
fn systemd_cgroup_is_not_supported() {
    let env = TestEnv::new("systemd");
    let c = env.container("s", env.bundle().args(&["true"]));
    let b = c.bundle_dir.to_str().unwrap();
    let out = env
        .sg
        .run(["--systemd-cgroup", "create", "--bundle", b, &c.id]);
    out.failed().stderr_has(&["systemd", "not supported"]);
    env.assert_nothing_left(&c.id, &c.cgroup);
}

#[test]
fn delete_of_a_missing_container() {
    let env = TestEnv::new("delmiss");
    let id = env.new_id("x");
    // runc compatible: containerd calls `delete -f` on ids that may be gone.
    env.sg.run(["delete", "-f", &id]).ok();
    env.sg
        .run(["delete", &id])
        .failed()
        .stderr_has(&[&id, "does not exist"]);
    env.assert_nothing_left(&id, &format!("{CGROUP_PARENT}/{id}"));
}

#[test]
fn verbs_on_a_missing_container() {
    let env = TestEnv::new("missing");
    let id = env.new_id("x");
    for args in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["pause", id.as_str()],
        vec!["resume", id.as_str()],
        vec!["ps", id.as_str()],
        vec!["events", "--stats", id.as_str()],
        vec!["update", "--pids-limit", "10", id.as_str()],
        vec!["exec", id.as_str(), "true"],
    ] {
        env.sg
            .run(&args)
            .failed()
            .stderr_has(&[&id, "does not exist"]);
    }
    env.assert_nothing_left(&id, &format!("{CGROUP_PARENT}/{id}"));
}

#[test]
fn update_of_a_stopped_container_is_refused() {
    let env = TestEnv::new("updstop");
    let c = env.container("s", env.bundle().args(&["true"]));
    c.create().start();
    c.wait_status("stopped");
    env.sg
        .run(["update", "--pids-limit", "10", &c.id])
        .failed()
        .stderr_has(&[&c.id, "stopped"]);
}

#[test]
fn no_dev_mount_over_an_image_with_dev_links_is_refused_clearly() {
    // libcontainer would fail half-way with EEXIST; sgrun says what to change up front.
    let env = TestEnv::new("devlinks");
    let rootfs = env.dir.path().join("devrootfs");
    let cp = std::process::Command::new("cp")
        .args(["-a"])
        .arg(sgrun_tests::rootfs())
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(cp.success());
    std::os::unix::fs::symlink("/proc/self/fd", rootfs.join("dev/fd")).unwrap();
    let c = env.container(
        "d",
        env.bundle().root_path(&rootfs).edit(|v| {
            let mounts = v["mounts"].as_array_mut().unwrap();
            mounts.retain(|m| {
                m["destination"] != "/dev"
                    && !m["destination"].as_str().unwrap().starts_with("/dev/")
            });
        }),
    );
    let out = c.create_args(&[]);
    out.failed()
        .stderr_has(&["/mounts", "dev/fd", "tmpfs mount at /dev"]);
    env.assert_nothing_left(&c.id, &c.cgroup);
}

#[test]
fn commands_that_only_read_never_create_the_state_root() {
    // A mistyped --root must not leave a directory behind (runc does not create one either).
    let env = TestEnv::new("noroot");
    let root = env.dir.path().join("no-such-root");
    let sg = sgrun_tests::Sgrun::new(&root, "noroot");
    sg.run(["state", "x"])
        .failed()
        .stderr_has(&["does not exist"]);
    sg.run(["kill", "x", "KILL"]).failed();
    sg.run(["exec", "x", "true"]).failed();
    let out = sg.run(["list", "-q"]);
    assert_eq!(out.ok().stdout, "", "{out}");
    sg.run(["delete", "-f", "x"]).ok();
    // A create refused for a bad bundle does not create it either.
    sg.run(["create", "--bundle", "/nonexistent-sgrun-bundle", "x"])
        .failed();
    assert!(!root.exists(), "{} was created", root.display());
}
