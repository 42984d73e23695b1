//! `sgrun tenant`: loop volumes with real block and inode limits, resize, rm, purge, and bad
//! input or injected failures that must leave nothing behind (no mount, no loop device, no
//! image, no registry entry, no UID range).
//!
//! The btrfs backend on a btrfs pool made by `sgrun tenant pool create`: EDQUOT at the
//! qgroup limit, no inode limit (and `show` says so), restart, purge; and the escape through a
//! nested subvolume, closed by the profile in a real user-namespaced container and open in
//! its weakened (unprofiled) twin. A host "restart" (everything unmounted and detached by hand)
//! followed by `mount --all` brings back loop and btrfs volumes with their data. The
//! project-quota backends need a kernel this host lacks: tests/cgv2/guest-tests.sh runs them.
//!
//! Each test has its own state directory (`--state-dir`) under /var/tmp; its guard unmounts
//! and detaches only what lives under that directory, even when the test fails.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};
use sgrun_tests::{require_root, sgrun_bin, sh_as, Out, TestEnv};

struct TenantEnv {
    state: PathBuf,
}

impl TenantEnv {
    fn new(tag: &str) -> Self {
        require_root();
        for tool in ["mkfs.ext4", "e2fsck", "resize2fs", "setpriv", "mkfs.btrfs"] {
            let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .any(|d| Path::new(d).join(tool).is_file());
            assert!(found, "{tool} is missing: install e2fsprogs, btrfs-progs and util-linux (scripts/install-deps.sh --for test)");
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("sgrun-tenants-{tag}-"))
            .tempdir_in("/var/tmp")
            .expect("tempdir")
            .keep();
        TenantEnv { state: dir }
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(sgrun_bin());
        cmd.arg("--state-dir").arg(&self.state).args(args);
        cmd.env_remove("SGRUN_TEST_FAIL_AT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run sgrun");
        Out {
            code: out.status.code().unwrap_or(128),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmdline: format!(
                "sgrun --state-dir {} {}",
                self.state.display(),
                args.join(" ")
            ),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }

    fn show(&self, name: &str) -> Value {
        self.run(&["tenant", "show", name, "--json"]).ok().json()
    }

    fn usage(&self, name: &str) -> Value {
        self.run(&["tenant", "usage", name, "--json"]).ok().json()
    }

    fn volume(&self, name: &str) -> PathBuf {
        self.state.join("tenants").join(name).join("volume")
    }

    /// Mount points under this state directory, from /proc/self/mountinfo.
    fn mounts(&self) -> Vec<PathBuf> {
        let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
        text.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&self.state))
            .collect()
    }

    /// Loop devices whose backing file is under this state directory (from sysfs).
    fn loop_devices(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for e in fs::read_dir("/sys/block").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            if let Ok(b) = fs::read_to_string(e.path().join("loop/backing_file")) {
                let b = PathBuf::from(b.trim_end());
                if b.starts_with(&self.state) {
                    out.push((name, b));
                }
            }
        }
        out
    }

    fn ranges(&self) -> Value {
        let text = fs::read_to_string(self.state.join("registry/allocations.json"))
            .unwrap_or_else(|_| "{\"ranges\":{}}".into());
        serde_json::from_str::<Value>(&text).unwrap()["ranges"].clone()
    }

    fn tenant_dirs(&self) -> Vec<String> {
        fs::read_dir(self.state.join("tenants"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn registry_files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.state.join("registry"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json") && n != "allocations.json")
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Nothing of tenant `name` exists anywhere.
    #[track_caller]
    fn assert_nothing_of(&self, name: &str) {
        assert!(
            !self.tenant_dirs().contains(&name.to_string()),
            "tenant dir of {name} left: {:?}",
            self.tenant_dirs()
        );
        assert!(
            !self.registry_files().contains(&format!("{name}.json")),
            "registry entry of {name} left"
        );
        let ranges = self.ranges();
        assert!(
            !ranges
                .as_object()
                .unwrap()
                .values()
                .any(|v| v.as_str() == Some(name)),
            "UID range of {name} left: {ranges}"
        );
        let vol = self.volume(name);
        assert!(
            !self.mounts().iter().any(|m| m.starts_with(&vol)),
            "mount of {name} left"
        );
        assert!(
            !self
                .loop_devices()
                .iter()
                .any(|(_, b)| b.starts_with(self.state.join("tenants").join(name))),
            "loop device of {name} left: {:?}",
            self.loop_devices()
        );
    }
}

impl Drop for TenantEnv {
    /// Unmount and detach only what lives under this test's state directory, then remove it.
    fn drop(&mut self) {
        let mut mounts = self.mounts();
        mounts.reverse();
        for m in mounts {
            let c = CString::new(m.to_string_lossy().as_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        for (dev, _) in self.loop_devices() {
            let _ = Command::new("losetup")
                .args(["-d", &format!("/dev/{dev}")])
                .status();
        }
        let _ = fs::remove_dir_all(&self.state);
    }
}

#[test]
fn loop_tenant_limits_resize_rm_purge() {
    let env = TenantEnv::new("loop");
    let t0 = Instant::now();
    let out = env.run(&[
        "tenant",
        "create",
        "acme",
        "--storage",
        "64M",
        "--inodes",
        "2048",
    ]);
    out.ok();
    eprintln!("create of a 64M loop tenant: {:?}", t0.elapsed());

    let info = env.show("acme");
    assert_eq!(info["mounted"], true, "{info}");
    assert_eq!(info["backend"], "loop", "{info}");
    assert_eq!(info["uid_count"], 65536, "{info}");
    let uid = info["uid_base"].as_u64().unwrap();
    assert!(uid >= 65536 && uid & 0xffff == 0, "{info}");
    let vol = env.volume("acme");
    assert_eq!(info["mount_path"], vol.to_str().unwrap());
    // The mount: ext4 from a loop device whose backing file is the tenant's image.
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(vol.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} not in mountinfo", vol.display()));
    assert!(line.contains(" - ext4 /dev/loop"), "{line}");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    let devs = env.loop_devices();
    assert_eq!(devs.len(), 1, "{devs:?}");
    assert!(devs[0].1.ends_with("acme/volume.ext4"), "{devs:?}");
    let md = fs::metadata(&vol).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((md.uid() as u64, md.gid() as u64), (uid, uid));
    assert_eq!(md.permissions().mode() & 0o777, 0o700);

    // Block limit: the mapped root fills the volume and gets ENOSPC.
    let v = vol.to_str().unwrap();
    let o = sh_as(uid, &format!("dd if=/dev/zero of={v}/big bs=1M count=100"));
    assert!(!o.status.success(), "writing 100M into 64M succeeded");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    let u = env.usage("acme");
    let (used, limit) = (
        u["bytes_used"].as_u64().unwrap(),
        u["bytes_limit"].as_u64().unwrap(),
    );
    assert!(limit <= 64 << 20 && used + (4 << 20) >= limit, "{u}");
    fs::remove_file(vol.join("big")).unwrap();

    // Inode limit: empty files until ENOSPC, with plenty of blocks left.
    let o = sh_as(
        uid,
        &format!(
            "mkdir {v}/many && cd {v}/many && i=0; while true > f$i; do i=$((i+1)); done; echo $i"
        ),
    );
    let made: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!((2000..2048).contains(&made), "made {made} files");
    let u = env.usage("acme");
    assert_eq!(u["inodes_used"], u["inodes_limit"], "{u}");
    assert!(u["bytes_used"].as_u64().unwrap() < 16 << 20, "{u}");
    let o = sh_as(uid, &format!("rm -rf {v}/many"));
    assert!(o.status.success(), "{o:?}");

    // Resize: 128M, and a 90M file now fits.
    env.run(&["tenant", "resize", "acme", "--storage", "128M"])
        .ok();
    let u = env.usage("acme");
    assert!(u["bytes_limit"].as_u64().unwrap() > 120 << 20, "{u}");
    assert_eq!(env.show("acme")["storage_bytes"], 128u64 << 20);
    let o = sh_as(uid, &format!("dd if=/dev/zero of={v}/big bs=1M count=90"));
    assert!(o.status.success(), "{o:?}");
    env.run(&["tenant", "resize", "acme", "--storage", "64M"])
        .failed()
        .stderr_has(&["shrinking", "not supported"]);

    // rm: nothing mounted or attached; image and range kept.
    let t0 = Instant::now();
    env.run(&["tenant", "rm", "acme"]).ok();
    eprintln!("rm of a loop tenant: {:?}", t0.elapsed());
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    assert!(env.loop_devices().is_empty(), "{:?}", env.loop_devices());
    let losetup = Command::new("losetup").arg("-a").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&losetup.stdout).contains(env.state.to_str().unwrap()),
        "losetup -a still lists it"
    );
    let info = env.show("acme");
    assert_eq!(info["state"], "removed");
    assert_eq!(info["mounted"], false);
    assert!(env.state.join("tenants/acme/volume.ext4").is_file());
    env.run(&["tenant", "usage", "acme"])
        .failed()
        .stderr_has(&["removed"]);
    env.run(&[
        "tenant",
        "create",
        "acme",
        "--storage",
        "64M",
        "--inodes",
        "2048",
    ])
    .failed()
    .stderr_has(&["already exists"]);

    // The kept range is not handed out again.
    env.run(&[
        "tenant",
        "create",
        "beta",
        "--storage",
        "64M",
        "--inodes",
        "2048",
    ])
    .ok();
    let beta = env.show("beta")["uid_base"].as_u64().unwrap();
    assert_ne!(beta, uid);

    // mount brings acme back with its data.
    env.run(&["tenant", "mount", "acme"]).ok();
    assert!(vol.join("big").is_file());
    env.run(&["tenant", "rm", "acme"]).ok();
    // mount --all after a "restart": only active tenants (beta), which is already mounted.
    let o = env.run(&["tenant", "mount", "--all"]);
    o.ok();
    assert!(
        o.stdout.contains("beta") && !o.stdout.contains("acme"),
        "{o}"
    );

    // --purge deletes the data and frees the range: the next tenant gets it.
    let t0 = Instant::now();
    env.run(&["tenant", "rm", "--purge", "acme"]).ok();
    eprintln!("rm --purge of a loop tenant: {:?}", t0.elapsed());
    env.assert_nothing_of("acme");
    env.run(&[
        "tenant",
        "create",
        "gamma",
        "--storage",
        "64M",
        "--inodes",
        "2048",
    ])
    .ok();
    assert_eq!(env.show("gamma")["uid_base"].as_u64().unwrap(), uid);

    let ls = env.run(&["tenant", "ls", "--json"]).ok().json();
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["beta", "gamma"]);
    for n in ["beta", "gamma"] {
        env.run(&["tenant", "rm", "--purge", n]).ok();
        env.assert_nothing_of(n);
    }
    assert!(env.loop_devices().is_empty() && env.mounts().is_empty());
}

#[test]
fn bad_input_leaves_nothing_behind() {
    let env = TenantEnv::new("bad");
    let long = "a".repeat(300);
    let bad_names: &[(&str, &str)] = &[
        ("a/b", "'/'"),
        ("..", "\"..\""),
        ("a\0b", "NUL"),
        ("Acme", "upper case"),
        (&long, "300 characters"),
        ("", "empty"),
    ];
    for (name, why) in bad_names {
        // A NUL cannot be passed in argv: the library's unit tests cover it.
        if name.contains('\0') {
            continue;
        }
        env.run(&[
            "tenant",
            "create",
            name,
            "--storage",
            "64M",
            "--inodes",
            "2048",
        ])
        .failed()
        .stderr_has(&[why, "lower-case letters"]);
    }
    env.run(&[
        "tenant",
        "create",
        "tiny",
        "--storage",
        "10M",
        "--inodes",
        "2048",
    ])
    .failed()
    .stderr_has(&["below the minimum", "64M"]);
    env.run(&[
        "tenant",
        "create",
        "huge",
        "--storage",
        "100T",
        "--inodes",
        "2048",
    ])
    .failed()
    .stderr_has(&["free on the filesystem", env.state.to_str().unwrap()]);
    env.run(&[
        "tenant",
        "create",
        "few",
        "--storage",
        "64M",
        "--inodes",
        "10",
    ])
    .failed()
    .stderr_has(&["inode limit 10"]);
    env.run(&[
        "tenant",
        "create",
        "unit",
        "--storage",
        "64X",
        "--inodes",
        "2048",
    ])
    .failed()
    .stderr_has(&["unknown unit"]);
    for n in ["tiny", "huge", "few", "unit"] {
        env.assert_nothing_of(n);
    }
    assert!(
        env.registry_files().is_empty(),
        "{:?}",
        env.registry_files()
    );
    assert!(env.tenant_dirs().is_empty(), "{:?}", env.tenant_dirs());

    // A duplicate is refused and leaves the first one as it was.
    env.run(&[
        "tenant",
        "create",
        "dup",
        "--storage",
        "64M",
        "--inodes",
        "2048",
    ])
    .ok();
    let before = env.show("dup");
    env.run(&[
        "tenant",
        "create",
        "dup",
        "--storage",
        "128M",
        "--inodes",
        "4096",
    ])
    .failed()
    .stderr_has(&["tenant dup already exists"]);
    let after = env.show("dup");
    assert_eq!(before, after);
    assert_eq!(env.ranges().as_object().unwrap().len(), 1);
    assert_eq!(env.loop_devices().len(), 1);
    env.run(&["tenant", "show", "nosuch"])
        .failed()
        .stderr_has(&["does not exist"]);
    env.run(&["tenant", "rm", "--purge", "dup"]).ok();
    env.assert_nothing_of("dup");
}

#[test]
fn a_failure_half_way_undoes_every_step() {
    let env = TenantEnv::new("fail");
    // One tenant that must survive every failed create untouched.
    env.run(&[
        "tenant",
        "create",
        "keep",
        "--storage",
        "64M",
        "--inodes",
        "2048",
    ])
    .ok();
    let keep = env.show("keep");
    for step in ["after-mkfs", "after-attach", "after-mount", "before-commit"] {
        env.run_env(
            &[
                "tenant",
                "create",
                "half",
                "--storage",
                "64M",
                "--inodes",
                "2048",
            ],
            &[("SGRUN_TEST_FAIL_AT", step)],
        )
        .failed()
        .stderr_has(&["injected", step]);
        env.assert_nothing_of("half");
        assert_eq!(
            env.loop_devices().len(),
            1,
            "{step}: {:?}",
            env.loop_devices()
        );
    }
    assert_eq!(env.show("keep"), keep);
    // A failed resize leaves the old size, mounted.
    env.run_env(
        &["tenant", "resize", "keep", "--storage", "128M"],
        &[("SGRUN_TEST_FAIL_AT", "resize-before-resize2fs")],
    )
    .failed()
    .stderr_has(&["injected"]);
    let after = env.show("keep");
    assert_eq!(after["storage_bytes"], keep["storage_bytes"]);
    assert_eq!(after["mounted"], true, "{after}");
    let len = fs::metadata(env.state.join("tenants/keep/volume.ext4"))
        .unwrap()
        .len();
    assert_eq!(len, 64 << 20);
    // The undone range is the first one handed out again.
    env.run(&[
        "tenant",
        "create",
        "next",
        "--storage",
        "64M",
        "--inodes",
        "2048",
    ])
    .ok();
    assert_eq!(
        env.show("next")["uid_base"].as_u64().unwrap(),
        keep["uid_base"].as_u64().unwrap() + 65536
    );
    for n in ["keep", "next"] {
        env.run(&["tenant", "rm", "--purge", n]).ok();
        env.assert_nothing_of(n);
    }
}

#[test]
fn dir_backend_says_it_has_no_limits() {
    let env = TenantEnv::new("dir");
    let warn = "enforces NO storage or inode limits";
    env.run(&[
        "tenant",
        "create",
        "dev",
        "--storage",
        "64M",
        "--inodes",
        "2048",
        "--backend",
        "dir",
    ])
    .ok()
    .stderr_has(&[warn]);
    env.run(&["tenant", "show", "dev"]).ok().stderr_has(&[warn]);
    let u = env.run(&["tenant", "usage", "dev", "--json"]);
    u.ok().stderr_has(&[warn]);
    assert!(u.json()["bytes_limit"].is_null(), "{u}");
    let info = env.show("dev");
    let uid = info["uid_base"].as_u64().unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(env.volume("dev")).unwrap().uid() as u64, uid);
    env.run(&["tenant", "rm", "--purge", "dev"])
        .ok()
        .stderr_has(&[warn]);
    env.assert_nothing_of("dev");
}

#[test]
fn tenant_help_has_examples() {
    let env = TenantEnv::new("help");
    let o = env.run(&["tenant", "--help"]);
    o.ok();
    for want in [
        "create",
        "usage",
        "resize",
        "mount",
        "Examples:",
        "sgrun tenant rm --purge acme",
    ] {
        assert!(o.stdout.contains(want), "{want}: {o}");
    }
    let o = env.run(&["tenant", "create", "--help"]);
    o.ok();
    assert!(
        o.stdout.contains("--inodes") && o.stdout.contains("at least 64M"),
        "{o}"
    );
}

/// `tenant create NAME --storage SIZE --inodes N --backend B`, successful.
fn create(env: &TenantEnv, name: &str, backend: &str, size: &str, inodes: &str) -> Value {
    env.run(&[
        "tenant",
        "create",
        name,
        "--storage",
        size,
        "--inodes",
        inodes,
        "--backend",
        backend,
    ])
    .ok();
    env.show(name)
}

/// The btrfs qgroups of the pool (`btrfs qgroup show`), for diagnostics.
fn qgroups(pool: &Path) -> String {
    let o = Command::new("btrfs")
        .args(["qgroup", "show", "-re", "--sync"])
        .arg(pool)
        .output()
        .expect("run btrfs (btrfs-progs)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn btrfs_tenant_quota_no_inode_limit_resize_purge() {
    let env = TenantEnv::new("btrfs");
    // A pool backend without its pool: the error says how to make one.
    env.run(&[
        "tenant",
        "create",
        "early",
        "--storage",
        "64M",
        "--inodes",
        "2048",
        "--backend",
        "btrfs",
    ])
    .failed()
    .stderr_has(&["no btrfs pool", "sgrun tenant pool create btrfs"]);
    env.assert_nothing_of("early");
    env.run(&["tenant", "pool", "create", "btrfs", "--size", "100M"])
        .failed()
        .stderr_has(&["minimum pool size"]);
    env.run(&["tenant", "pool", "create", "btrfs", "--size", "1G"])
        .ok();
    let pool = env.state.join("pools/btrfs");
    env.run(&["tenant", "pool", "create", "btrfs", "--size", "1G"])
        .failed()
        .stderr_has(&["already configured"]);
    let ls = env.run(&["tenant", "pool", "ls", "--json"]).ok().json();
    assert_eq!(ls[0]["backend"], "btrfs", "{ls}");
    assert_eq!(ls[0]["mounted"], true, "{ls}");

    let info = create(&env, "acme", "btrfs", "64M", "2048");
    assert_eq!(info["backend"], "btrfs", "{info}");
    assert_eq!(info["mounted"], true, "{info}");
    assert_eq!(info["enforces_limits"], true, "{info}");
    assert_eq!(info["enforces_inode_limit"], false, "{info}");
    let text = env.run(&["tenant", "show", "acme"]).ok().stdout.clone();
    assert!(text.contains("no inode limit"), "{text}");
    let uid = info["uid_base"].as_u64().unwrap();
    let vol = env.volume("acme");
    let v = vol.to_str().unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = fs::metadata(&vol).unwrap();
    assert_eq!((md.uid() as u64, md.gid() as u64), (uid, uid));
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(v))
        .unwrap_or_else(|| panic!("{v} not in mountinfo"));
    assert!(
        line.contains(" /tenants/acme ") && line.contains(" - btrfs "),
        "{line}"
    );
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");

    // Block limit: the mapped root writes 100M into 64M and gets EDQUOT.
    let o = sh_as(uid, &format!("dd if=/dev/zero of={v}/big bs=1M count=100"));
    assert!(!o.status.success(), "writing 100M into 64M succeeded");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Disk quota exceeded"), "{err}");
    let u = env.usage("acme");
    let (used, limit) = (
        u["bytes_used"].as_u64().unwrap(),
        u["bytes_limit"].as_u64().unwrap(),
    );
    assert_eq!(limit, 64 << 20, "{u}");
    assert!(used + (4 << 20) >= limit && used <= limit, "{u}");
    assert!(u["inodes_limit"].is_null(), "{u}");
    eprintln!("qgroups at the limit:\n{}", qgroups(&pool));
    fs::remove_file(vol.join("big")).unwrap();

    // Weakened: the same write with the qgroup limit lifted by hand goes through, so the
    // check above can see a missing limit. Then the limit is put back.
    let btrfs = |args: &[&str]| {
        let o = Command::new("btrfs")
            .args(args)
            .output()
            .expect("run btrfs");
        assert!(o.status.success(), "btrfs {args:?}: {o:?}");
    };
    btrfs(&["qgroup", "limit", "none", v]);
    let o = sh_as(uid, &format!("dd if=/dev/zero of={v}/big bs=1M count=100"));
    assert!(o.status.success(), "no limit, yet the write failed: {o:?}");
    fs::remove_file(vol.join("big")).unwrap();
    btrfs(&["qgroup", "limit", "64M", v]);

    // No inode limit: 3000 files in a tenant that asked for 2048.
    let o = sh_as(
        uid,
        &format!("mkdir {v}/many && cd {v}/many && i=0; while [ $i -lt 3000 ]; do : > f$i || exit 1; i=$((i+1)); done"),
    );
    assert!(o.status.success(), "{o:?}");
    assert!(env.usage("acme")["inodes_used"].as_u64().unwrap() > 3000);
    assert!(sh_as(uid, &format!("rm -rf {v}/many")).status.success());

    // Resize moves the qgroup limit; a 90M file now fits.
    env.run(&["tenant", "resize", "acme", "--storage", "128M"])
        .ok();
    assert_eq!(env.usage("acme")["bytes_limit"], 128u64 << 20);
    let o = sh_as(uid, &format!("dd if=/dev/zero of={v}/big bs=1M count=90"));
    assert!(o.status.success(), "{o:?}");
    env.run(&["tenant", "resize", "acme", "--storage", "64M"])
        .failed()
        .stderr_has(&["shrinking", "not supported"]);

    // Injected failures leave no subvolume, mount, record or range.
    for step in ["after-mkfs", "after-attach", "after-mount", "before-commit"] {
        env.run_env(
            &[
                "tenant",
                "create",
                "half",
                "--storage",
                "64M",
                "--inodes",
                "2048",
                "--backend",
                "btrfs",
            ],
            &[("SGRUN_TEST_FAIL_AT", step)],
        )
        .failed()
        .stderr_has(&["injected", step]);
        env.assert_nothing_of("half");
        assert!(
            !pool.join("tenants/half").exists(),
            "{step}: subvolume left"
        );
    }

    // A pool in use cannot be removed.
    env.run(&["tenant", "pool", "rm", "btrfs"])
        .failed()
        .stderr_has(&["still holds tenants", "acme"]);
    // rm keeps the data in the pool; mount brings it back.
    env.run(&["tenant", "rm", "acme"]).ok();
    assert_eq!(env.show("acme")["mounted"], false);
    assert!(pool.join("tenants/acme/big").is_file());
    env.run(&["tenant", "mount", "acme"]).ok();
    assert!(vol.join("big").is_file());
    env.run(&["tenant", "rm", "--purge", "acme"]).ok();
    env.assert_nothing_of("acme");
    assert!(!pool.join("tenants/acme").exists());
    let q = qgroups(&pool);
    eprintln!("qgroups after the purge:\n{q}");
    env.run(&["tenant", "pool", "rm", "btrfs"]).ok();
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
    assert!(env.loop_devices().is_empty(), "{:?}", env.loop_devices());
    assert!(!env.state.join("pools/btrfs.img").exists());
}

/// The escape through a nested subvolume: a tenant's root in a user namespace (no capability
/// in the initial one) creates a subvolume, whose new qgroup has no limit. Under sgrun's
/// profile the four ioctls that make one answer EPERM and the quota holds; in the weakened
/// twin (no profile) they succeed and 100M land in a 64M tenant.
#[test]
fn btrfs_nested_subvolumes_are_denied_by_the_profile() {
    let env = TenantEnv::new("btrfsnest");
    env.run(&["tenant", "pool", "create", "btrfs", "--size", "1G"])
        .ok();
    let info = create(&env, "nest", "btrfs", "64M", "2048");
    let uid = info["uid_base"].as_u64().unwrap();
    let vol = env.volume("nest");
    let ctr = TestEnv::new("btrfsnest");
    // How tenants run: a user namespace mapped to the tenant's range, the volume at /data.
    let m = json!([{"containerID": 0, "hostID": uid, "size": 65536}]);
    let script = "/probes/probe btrfs /data; \
                  dd if=/dev/zero of=/data/sub1/big bs=1M count=100 2>&1; \
                  echo nested-size=$(stat -c %s /data/sub1/big); \
                  dd if=/dev/zero of=/data/big bs=1M count=100 2>&1; true";
    let bundle = || {
        ctr.bundle()
            .with_namespace("user")
            .id_mappings(m.clone(), m.clone())
            .with_probes()
            .bind(&vol, "/data", false)
            .sh(script)
    };

    let out = ctr.container("prof", bundle()).run_fg();
    out.ok();
    for call in [
        "subvol-create",
        "subvol-create-v2",
        "snap-create",
        "snap-create-v2",
    ] {
        assert!(
            out.stdout.contains(&format!("{call} errno 1\n")),
            "{call} not denied with EPERM: {out}"
        );
    }
    assert!(out.stdout.contains("Disk quota exceeded"), "{out}");
    for sub in ["sub1", "sub2", "snap1", "snap2"] {
        assert!(!vol.join(sub).exists(), "{sub} exists: {out}");
    }
    let u = env.usage("nest");
    assert!(u["bytes_used"].as_u64().unwrap() <= 64 << 20, "{u}");
    fs::remove_file(vol.join("big")).unwrap();

    // Weakened: no profile. The kernel lets the user-namespaced root make all four, and the
    // nested subvolume takes 100M past the 64M limit.
    let out = ctr.weak_container("weak", bundle()).run_fg();
    for call in [
        "subvol-create",
        "subvol-create-v2",
        "snap-create",
        "snap-create-v2",
    ] {
        assert!(
            out.stdout.contains(&format!("{call} ok\n")),
            "{call} failed without a profile: {out}"
        );
    }
    assert!(
        out.stdout.contains("nested-size=104857600\n"),
        "the nested subvolume did not take 100M: {out}"
    );
    let pool = env.state.join("pools/btrfs");
    eprintln!("qgroups after the weakened run:\n{}", qgroups(&pool));
    drop(ctr);
    // The purge deletes the nested subvolumes too (deepest first, after lifting the limit).
    env.run(&["tenant", "rm", "--purge", "nest"]).ok();
    env.assert_nothing_of("nest");
    assert!(!pool.join("tenants/nest").exists());
    env.run(&["tenant", "pool", "rm", "btrfs"]).ok();
}

/// A host restart, simulated: every tenant volume and pool unmounted and every loop device
/// detached by hand; `mount --all` brings back the btrfs pool first, then loop and btrfs
/// volumes, with their data and limits.
#[test]
fn mount_all_after_a_restart_brings_back_pools_and_volumes() {
    let env = TenantEnv::new("restart");
    env.run(&["tenant", "pool", "create", "btrfs", "--size", "1G"])
        .ok();
    let l = create(&env, "lp", "loop", "64M", "2048");
    let b = create(&env, "bt", "btrfs", "64M", "2048");
    for (name, t) in [("lp", &l), ("bt", &b)] {
        let uid = t["uid_base"].as_u64().unwrap();
        let v = env.volume(name);
        let o = sh_as(uid, &format!("echo {name}-data > {}/keep", v.display()));
        assert!(o.status.success(), "{o:?}");
    }
    // "Restart": unmount everything under the state dir (volumes before the pool), then
    // wait for the AUTOCLEAR loop devices to go.
    let mut mounts = env.mounts();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for m in &mounts {
        let o = Command::new("umount").arg(m).output().unwrap();
        assert!(o.status.success(), "umount {}: {o:?}", m.display());
    }
    let t0 = Instant::now();
    while !env.loop_devices().is_empty() && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(env.loop_devices().is_empty(), "{:?}", env.loop_devices());
    assert!(env.mounts().is_empty());
    for n in ["lp", "bt"] {
        assert_eq!(env.show(n)["mounted"], false);
    }
    // A tenant command that needs the pool mounts it at first use, but `mount --all` is what
    // a boot runs.
    let o = env.run(&["tenant", "mount", "--all"]);
    o.ok();
    assert!(o.stdout.contains("pool btrfs: mounted"), "{o}");
    assert!(
        o.stdout.contains("tenant lp: mounted") && o.stdout.contains("tenant bt: mounted"),
        "{o}"
    );
    for (name, t) in [("lp", &l), ("bt", &b)] {
        let v = env.volume(name);
        assert_eq!(
            fs::read_to_string(v.join("keep")).unwrap(),
            format!("{name}-data\n")
        );
        // The limit is still there.
        let uid = t["uid_base"].as_u64().unwrap();
        let o = sh_as(
            uid,
            &format!("dd if=/dev/zero of={}/big bs=1M count=100", v.display()),
        );
        assert!(
            !o.status.success(),
            "{name}: 100M fit into 64M after the restart"
        );
    }
    // A second run has nothing to do.
    let o = env.run(&["tenant", "mount", "--all"]);
    o.ok();
    assert!(o.stdout.contains("pool btrfs: already mounted"), "{o}");
    // A pool whose image vanished: mount --all says which pool and which tenants failed.
    for n in ["lp", "bt"] {
        env.run(&["tenant", "rm", "--purge", n]).ok();
        env.assert_nothing_of(n);
    }
    env.run(&["tenant", "pool", "rm", "btrfs"]).ok();
    assert!(env.mounts().is_empty() && env.loop_devices().is_empty());
}

/// A relative `--state-dir` is made absolute first: the backends compare volume paths with
/// mountinfo's (absolute) ones, and a relative path would never match, so `mount` would stack
/// a second mount on a second loop device.
#[test]
fn relative_state_dir_is_made_absolute() {
    let env = TenantEnv::new("relstate");
    let parent = env.state.parent().unwrap().to_path_buf();
    let rel = env.state.file_name().unwrap().to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(sgrun_bin())
            .current_dir(&parent)
            .arg("--state-dir")
            .arg(&rel)
            .args(args)
            .env_remove("SGRUN_TEST_FAIL_AT")
            .output()
            .unwrap();
        assert!(out.status.success(), "sgrun {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[
        "tenant",
        "create",
        "rel",
        "--storage",
        "64M",
        "--inodes",
        "2048",
    ]);
    let show: Value = serde_json::from_str(&run(&["tenant", "show", "rel", "--json"])).unwrap();
    assert_eq!(show["mounted"], true, "{show}");
    // Mounting again finds the volume mounted: still one mount, one loop device.
    run(&["tenant", "mount", "rel"]);
    run(&["tenant", "mount", "--all"]);
    let vol = env.volume("rel");
    assert_eq!(
        env.mounts().iter().filter(|m| **m == vol).count(),
        1,
        "{:?}",
        env.mounts()
    );
    assert_eq!(env.loop_devices().len(), 1, "{:?}", env.loop_devices());
    run(&["tenant", "rm", "--purge", "rel"]);
}
