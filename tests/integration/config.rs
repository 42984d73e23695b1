//! What config.json asks for is what the process gets: masked and read-only paths, hooks,
//! rlimits, capabilities, hostname, extra mounts, uid/gid mappings.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use sgrun_tests::{cap_mask, host_caps, status_field, TestEnv, USERNS_HOST_ID, USERNS_SIZE};

#[test]
fn masked_paths() {
    let env = TestEnv::new("masked");
    let script = "echo timer_list=$(cat /proc/timer_list 2>/dev/null | wc -c); \
                  echo kcore=$(cat /proc/kcore 2>/dev/null | wc -c); \
                  echo firmware=$(ls /sys/firmware | wc -l)";
    let c = env.container("m", env.bundle().sh(script));
    let out = c.run_fg();
    let lines: Vec<&str> = out.ok().stdout.lines().collect();
    assert_eq!(
        lines,
        ["timer_list=0", "kcore=0", "firmware=0"],
        "masked paths read empty: {out}"
    );

    // Weakened: without maskedPaths the host's data shows (this host has /proc/timer_list and
    // /sys/firmware; it has no /proc/kcore at all).
    let weak = env.weak_container("w", env.bundle().masked_paths(&[]).sh(script));
    let out = weak.run_fg();
    let lines: Vec<&str> = out.ok().stdout.lines().collect();
    assert_ne!(lines[0], "timer_list=0", "{out}");
    assert_ne!(lines[2], "firmware=0", "{out}");
}

#[test]
fn readonly_paths() {
    let env = TestEnv::new("ropaths");
    // The container has its own uts namespace: this write can only change the container's name.
    let script = "echo changed-name > /proc/sys/kernel/hostname; echo rc=$?; hostname; \
                  echo h > /proc/sysrq-trigger; echo sysrq=$?";
    let c = env.container("r", env.bundle().sh(script));
    let out = c.run_fg();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["rc=1", "sgrun-test", "sysrq=1"], "{out}");
    assert!(
        out.stderr.contains("Read-only file system"),
        "writes fail with EROFS: {out}"
    );

    // Weakened: without readonlyPaths the /proc/sys write goes through (the sysrq one is not
    // attempted there: it would reach the host).
    let weak = env.weak_container(
        "w",
        env.bundle()
            .readonly_paths(&[])
            .sh("echo changed-name > /proc/sys/kernel/hostname; echo rc=$?; hostname"),
    );
    let out = weak.run_fg();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["rc=0", "changed-name"], "{out}");
}

#[test]
fn hooks_run_on_the_host_with_the_state() {
    let env = TestEnv::new("hooks");
    let dir = env.path().join("markers");
    fs::create_dir(&dir).unwrap();
    let mut b = env.bundle().args(&["sleep", "1000"]);
    for kind in ["prestart", "createRuntime", "poststart", "poststop"] {
        let marker = dir.join(kind);
        b = b.hook(
            kind,
            "/bin/sh",
            &["sh", "-c", &format!("cat > {}", marker.display())],
        );
    }
    let c = env.container("h", b);
    let marker = |k: &str| -> Option<serde_json::Value> {
        fs::read_to_string(dir.join(k)).ok().map(|t| {
            serde_json::from_str(&t)
                .unwrap_or_else(|e| panic!("{k} hook got no state JSON on stdin ({e}): {t:?}"))
        })
    };
    c.create();
    let pid = c.pid();
    for k in ["prestart", "createRuntime"] {
        let st = marker(k).unwrap_or_else(|| panic!("{k} hook did not run at create"));
        assert_eq!(st["id"], c.id.as_str(), "{k}: {st}");
        assert_eq!(st["pid"].as_i64(), Some(pid as i64), "{k}: {st}");
        assert!(st["bundle"].is_string(), "{k}: {st}");
        assert!(st["ociVersion"].is_string(), "{k}: {st}");
    }
    assert!(marker("poststart").is_none(), "poststart ran before start");
    c.start();
    let st = marker("poststart").expect("poststart hook ran after start");
    assert_eq!(st["id"], c.id.as_str(), "{st}");
    assert!(marker("poststop").is_none(), "poststop ran before delete");
    env.sg.run(["kill", &c.id, "KILL"]).ok();
    c.wait_status("stopped");
    env.sg.run(["delete", &c.id]).ok();
    let st = marker("poststop").expect("poststop hook ran at delete");
    assert_eq!(st["id"], c.id.as_str(), "{st}");
}

#[test]
fn failing_hook_fails_create_and_leaves_nothing() {
    let env = TestEnv::new("hookfail");
    let c = env.container(
        "f",
        env.bundle()
            .args(&["true"])
            .hook("createRuntime", "/bin/sh", &["sh", "-c", "exit 3"]),
    );
    let out = c.create_args(&[]);
    out.failed();
    assert!(
        out.stderr.contains("hook") || out.stderr.contains("/bin/sh"),
        "{out}"
    );
    env.assert_nothing_left(&c.id, &c.cgroup);
}

#[test]
fn rlimits() {
    let env = TestEnv::new("rlimits");
    let c = env.container(
        "r",
        env.bundle()
            .rlimit("RLIMIT_NOFILE", 512, 512)
            .sh("ulimit -n; ulimit -Hn"),
    );
    assert_eq!(c.run_fg().ok().stdout, "512\n512\n");
    let c = env.container(
        "s",
        env.bundle()
            .rlimit("RLIMIT_NOFILE", 256, 512)
            .sh("ulimit -n; ulimit -Hn"),
    );
    assert_eq!(c.run_fg().ok().stdout, "256\n512\n");
}

#[test]
fn capabilities_exactly_as_configured() {
    let env = TestEnv::new("caps");
    let caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let c = env.container(
        "c",
        env.bundle().caps(&caps).args(&["cat", "/proc/self/status"]),
    );
    let out = c.run_fg();
    let st = out.ok().stdout.clone();
    let mask = cap_mask(&caps);
    for f in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&st, f), Some(mask.as_str()), "{f}: {st}");
    }
    assert_eq!(
        status_field(&st, "CapInh"),
        Some("0000000000000000"),
        "{st}"
    );

    // Weakened: with every capability the probe sees more, CAP_SYS_ADMIN included.
    let weak = env.weak_container(
        "w",
        env.bundle()
            .caps(&host_caps())
            .args(&["cat", "/proc/self/status"]),
    );
    let out = weak.run_fg();
    let eff = status_field(&out.ok().stdout, "CapEff")
        .unwrap()
        .to_string();
    assert_ne!(eff, mask, "{out}");
    assert!(
        u64::from_str_radix(&eff, 16).unwrap() & (1 << 21) != 0,
        "{out}"
    );
}

#[test]
fn hostname() {
    let env = TestEnv::new("hostname");
    let c = env.container(
        "h",
        env.bundle()
            .hostname("blog-42.example")
            .sh("hostname; cat /proc/sys/kernel/hostname"),
    );
    assert_eq!(c.run_fg().ok().stdout, "blog-42.example\nblog-42.example\n");
}

#[test]
fn extra_mounts() {
    let env = TestEnv::new("mounts");
    let ro = env.path().join("ro-src");
    let rw = env.path().join("rw-src");
    for d in [&ro, &rw] {
        fs::create_dir(d).unwrap();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(ro.join("hello"), "from the host\n").unwrap();
    let script = "grep ' /tmp ' /proc/mounts | cut -d' ' -f3; \
                  echo data > /tmp/f && cat /tmp/f; \
                  cat /data/hello; \
                  touch /data/new; echo ro-write=$?; \
                  echo written > /mnt/out; echo rw-write=$?";
    let c = env.container(
        "m",
        env.bundle()
            .tmpfs("/tmp")
            .bind(&ro, "/data", true)
            .bind(&rw, "/mnt", false)
            .sh(script),
    );
    let out = c.run_fg();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["tmpfs", "data", "from the host", "ro-write=1", "rw-write=0"],
        "{out}"
    );
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!ro.join("new").exists(), "the read-only bind was written");
    assert_eq!(fs::read_to_string(rw.join("out")).unwrap(), "written\n");
}

#[test]
fn uid_gid_mappings() {
    let env = TestEnv::new("idmap");
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; sleep 1000";
    let c = env.container("u", env.bundle().userns().sh(script));
    c.run_detached();
    let want = format!("0 {USERNS_HOST_ID} {USERNS_SIZE}");
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    // The init's view, from inside, and its host uid from outside.
    let out = c.exec(&[], &["cat", "/proc/1/uid_map", "/proc/1/gid_map"]);
    let lines: Vec<String> = out.ok().stdout.lines().map(norm).collect();
    assert_eq!(lines, [want.clone(), want.clone()], "{out}");
    let status = fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    let uid = status_field(&status, "Uid").unwrap();
    assert!(
        uid.starts_with(&USERNS_HOST_ID.to_string()),
        "host uid of the container's root: {uid}"
    );

    // Contrast: without a user namespace the identity map shows.
    let weak = env.weak_container("w", env.bundle().args(&["cat", "/proc/self/uid_map"]));
    let out = weak.run_fg();
    assert_eq!(norm(out.ok().stdout_trim()), "0 0 4294967295", "{out}");
}

#[test]
fn process_user_and_groups() {
    let env = TestEnv::new("user");
    let c = env.container("u", env.bundle().user(33, 33).sh("id -u; id -g; id -G"));
    assert_eq!(
        c.run_fg().ok().stdout,
        "33\n33\n33\n",
        "no supplementary groups beyond the config's"
    );
    let c = env.container(
        "g",
        env.bundle()
            .edit(|v| {
                v["process"]["user"] =
                    serde_json::json!({"uid": 33, "gid": 33, "additionalGids": [100]})
            })
            .sh("id -G"),
    );
    assert_eq!(c.run_fg().ok().stdout, "33 100\n");
    // A non-root user holds no capabilities unless ambient ones are configured.
    let c = env.container(
        "c",
        env.bundle()
            .user(33, 33)
            .caps(&[])
            .args(&["cat", "/proc/self/status"]),
    );
    let out = c.run_fg();
    assert_eq!(
        status_field(&out.ok().stdout, "CapEff"),
        Some("0000000000000000"),
        "{out}"
    );
}

#[test]
fn tmpfs_with_tmpcopyup_starts_with_the_image_contents() {
    // Podman's --read-only and --tmpfs mounts carry tmpcopyup: the tmpfs starts with a copy of
    // what the image had at that path; mount(2) itself does not know the option.
    let env = TestEnv::new("copyup");
    let script = "head -1 /etc/passwd; touch /etc/new && echo writable";
    let copyup = serde_json::json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["rw", "nosuid", "nodev", "tmpcopyup"]});
    let c = env.container(
        "c",
        env.bundle().readonly_root(true).mount(copyup).sh(script),
    );
    let out = c.run_fg();
    let lines: Vec<&str> = out.ok().stdout.lines().collect();
    assert_eq!(
        lines,
        ["root:x:0:0:root:/root:/bin/sh", "writable"],
        "{out}"
    );

    // Without the option the same tmpfs starts empty.
    let plain = serde_json::json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                                  "options": ["rw", "nosuid", "nodev"]});
    let c = env.container(
        "p",
        env.bundle().readonly_root(true).mount(plain).sh(script),
    );
    let out = c.run_fg();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["writable"],
        "{out}"
    );
}

/// A new network namespace has its loopback interface up, as runc and crun leave it
/// (libcontainer 0.7 does not; runtime/engine/src/loopback.rs): a listener on 127.0.0.1 is
/// reachable, with and without a user namespace.
#[test]
fn loopback_is_up_in_a_new_network_namespace() {
    let env = TestEnv::new("lo");
    // The listener may take a while to start on a loaded machine: connect until it answers
    // (a down lo refuses at once, every time), then wait for it to write what it got.
    // The listener's stdin stays open for a while: busybox nc ends a connection when its
    // stdin ends, and /dev/null would end it before the data arrives.
    let script = "cat /sys/class/net/lo/flags; sleep 5 | nc -l -p 8080 > /tmp/got & l=$!; \
                  i=0; until echo over-loopback | nc 127.0.0.1 8080 2>/dev/null; do \
                  i=$((i+1)); [ $i -ge 100 ] && break; sleep 0.1; done; wait $l; cat /tmp/got";
    for (tag, bundle) in [
        ("plain", env.bundle().sh(script)),
        ("userns", env.bundle().userns().sh(script)),
    ] {
        let bundle = bundle.edit(|c| {
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev"]
            }))
        });
        let out = env.container(tag, bundle).run_fg();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines.first(),
            Some(&"0x9"),
            "{tag}: lo is not UP|LOOPBACK: {out}"
        );
        assert_eq!(lines.last(), Some(&"over-loopback"), "{tag}: {out}");
    }
}
