//! Tenants' containers on their own filesystem: the shared base image idmapped into the
//! tenant's range under an overlay whose upper layer is on the tenant's volume, the site's data
//! at /srv/site, the user namespace forced to the tenant's range (docs/rootfs.md).
//!
//! Each test has its own `--state-dir` (tenants, the busybox image imported into the image
//! store, the rootfs records) and `--root`. Its guard deletes the containers, then purges
//! the tenants (unmounting their loop volumes) before the directory goes.
//!
//! The security tests come with their weakened half: the same attack against a plain
//! path-based mount (what an implementation without openat2 would do), or against a setup
//! where both containers share one tenant's ids, must succeed, so each test can see the hole.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sgrun_tests::{rootfs, sgrun_bin, sh_as, Bundle, Container, Out, TestEnv};

const IMAGE: &str = "busybox";

struct RootfsEnv {
    env: TestEnv,
    state: PathBuf,
    image_hex: String,
    tenants: std::cell::RefCell<Vec<String>>,
}

impl RootfsEnv {
    fn new(short: &str) -> Self {
        let mut env = TestEnv::new(short);
        let state = env.path().join("state");
        fs::create_dir_all(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o711)).unwrap();
        env.sg.state_dir = Some(state.clone());
        // The image store: busybox imported as a docker-archive, as an orchestrator would.
        let archive = env.path().join("busybox.tar");
        fs::write(
            &archive,
            crate::images::docker_archive(
                &[crate::images::layer_of_dir(&rootfs())],
                "docker.io/library/busybox:1.36",
            ),
        )
        .unwrap();
        let sg = |args: &[&str]| {
            let out = Command::new(sgrun_bin())
                .arg("--state-dir")
                .arg(&state)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "sgrun {args:?}: {out:?}");
            out.stdout
        };
        sg(&[
            "image",
            "import",
            archive.to_str().unwrap(),
            "--name",
            IMAGE,
        ]);
        let inspect: Value = serde_json::from_slice(&sg(&["image", "inspect", IMAGE])).unwrap();
        let image_hex = inspect["id"].as_str().unwrap().to_string();
        RootfsEnv {
            env,
            state,
            image_hex,
            tenants: Default::default(),
        }
    }

    fn base(&self) -> PathBuf {
        self.state
            .join("images/sha256")
            .join(&self.image_hex)
            .join("rootfs")
    }

    /// `sgrun --state-dir S --root R ARGS` with extra environment.
    fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(sgrun_bin());
        cmd.arg("--state-dir")
            .arg(&self.state)
            .arg("--root")
            .arg(&self.env.sg.root)
            .args(args)
            .env("SGRUN_TEST_MARK", &self.env.name)
            .env_remove("SGRUN_TEST_FAIL_AT")
            .env_remove("SGRUN_DEFAULT_PROFILE")
            .stdin(std::process::Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run sgrun");
        Out {
            code: out.status.code().unwrap_or(128),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmdline: format!("sgrun {}", args.join(" ")),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }

    /// A tenant; `loop` with 64M unless `dir` is asked for.
    fn tenant(&self, name: &str, backend: &str) -> u32 {
        let args = [
            "tenant",
            "create",
            name,
            "--backend",
            backend,
            "--storage",
            "64M",
            "--inodes",
            "4096",
        ];
        self.run(&args).ok();
        self.tenants.borrow_mut().push(name.to_string());
        let info = self.run(&["tenant", "show", name, "--json"]).ok().json();
        info["uid_base"].as_u64().unwrap() as u32
    }

    fn volume(&self, tenant: &str) -> PathBuf {
        self.state.join("tenants").join(tenant).join("volume")
    }

    /// A bundle for a tenant's container: no rootfs of its own, a writable root.
    fn bundle(&self, tenant: &str, site: Option<&str>) -> Bundle {
        let mut b = self
            .env
            .bundle()
            .root_path(Path::new("rootfs-unused"))
            .readonly_root(false)
            .annotation("io.sgrun.tenant", tenant)
            .annotation("io.sgrun.image", IMAGE);
        if let Some(s) = site {
            b = b.annotation("io.sgrun.site", s);
        }
        b
    }

    /// Import busybox again with a second layer that adds /srv/site, as image `name`: a
    /// read-only root needs the mount point in the image.
    fn import_site_image(&self, name: &str) {
        let mut site = crate::images::Layer::new();
        site.dir("srv").dir("srv/site");
        let archive = self.env.path().join(format!("{name}.tar"));
        fs::write(
            &archive,
            crate::images::docker_archive(
                &[crate::images::layer_of_dir(&rootfs()), site.bytes()],
                "docker.io/library/busybox-site:1.36",
            ),
        )
        .unwrap();
        self.run(&["image", "import", archive.to_str().unwrap(), "--name", name])
            .ok();
    }

    fn container(&self, tag: &str, bundle: Bundle) -> Container<'_> {
        self.env.container(tag, bundle)
    }

    /// Mount points under this test's directory, from the host's mountinfo.
    fn host_mounts(&self) -> Vec<String> {
        let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.env.path().to_string_lossy().into_owned();
        text.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&dir))
            .map(String::from)
            .collect()
    }

    /// Files sgrun-rootfs keeps while a container exists: records, mount points, site
    /// claims and image markers.
    fn rootfs_leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.state.join("rootfs")];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let name = p.strip_prefix(self.state.join("rootfs")).unwrap();
                let hash_dir = name.components().count() == 1 && name != Path::new("sites");
                let tenant_dir = name.starts_with("sites") && name.components().count() <= 2;
                if e.file_type().unwrap().is_dir()
                    && (hash_dir || tenant_dir || name == Path::new("sites"))
                {
                    stack.push(p);
                } else {
                    out.push(p.display().to_string());
                }
            }
        }
        let users = self
            .state
            .join("images/sha256")
            .join(&self.image_hex)
            .join("users");
        for e in fs::read_dir(users).into_iter().flatten().flatten() {
            out.push(e.path().display().to_string());
        }
        out
    }

    /// Nothing of any container left: no record, claim, marker or mount point, no mount but
    /// the tenants' volumes, an empty state root.
    #[track_caller]
    fn assert_clean(&self) {
        assert_eq!(
            self.rootfs_leftovers(),
            Vec::<String>::new(),
            "rootfs leftovers"
        );
        let volumes: Vec<String> = self
            .tenants
            .borrow()
            .iter()
            .map(|t| self.volume(t).display().to_string())
            .collect();
        // the images' EROFS mounts stay until `image rm` (docs/rootfs.md): a cache
        let image_mounts = self.state.join("images/mounts").display().to_string();
        let extra: Vec<String> = self
            .host_mounts()
            .into_iter()
            .filter(|m| !volumes.contains(m) && !m.starts_with(&image_mounts))
            .collect();
        assert!(extra.is_empty(), "mounts left on the host: {extra:?}");
        let entries = self.env.sg.root_entries();
        assert!(
            entries.iter().all(|e| e.starts_with('.')),
            "state root holds {entries:?}"
        );
    }
}

impl Drop for RootfsEnv {
    fn drop(&mut self) {
        for t in self.tenants.borrow().iter() {
            let _ = self.run(&["tenant", "rm", "--purge", t]);
        }
        // Whatever is still mounted under the test's directory (a failed test): detach it, so
        // that removing the directory never walks into a live volume.
        let mut m = self.host_mounts();
        m.reverse();
        for p in m {
            let c = std::ffi::CString::new(p).unwrap();
            // SAFETY: umount2 of a path under this test's own directory.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// The container's mountinfo (as `cat` inside printed it) and its line for "/".
fn root_mount(c: &Container) -> (Out, String) {
    let mi = c.exec(&[], &["cat", "/proc/self/mountinfo"]);
    mi.ok();
    let line = mi
        .stdout
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in {mi}"))
        .to_string();
    (mi, line)
}

fn host_pid_stat(pid: i32, path: &str) -> fs::Metadata {
    let p = format!("/proc/{pid}/root{path}");
    fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("stat {p}: {e}"))
}

#[test]
fn tenant_container_runs_on_the_idmapped_overlay() {
    let e = RootfsEnv::new("rfs-run");
    let uid = e.tenant("acme", "loop");
    let c = e.container("c", e.bundle("acme", Some("blog")).args(&["sleep", "600"]));
    c.run_detached();
    let pid = c.pid();

    // Inside: the base's files are root's, the process is root, in the tenant's user namespace.
    let o = c.exec_sh("stat -c %u:%g /bin/busybox /etc/passwd; id -u; cat /proc/self/uid_map");
    o.ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(&lines[..3], &["0:0", "0:0", "0"], "{o}");
    let map: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(map, ["0", &uid.to_string(), "65536"], "{o}");

    // The host, through /proc/<pid>/root, sees the same files owned by the tenant's root.
    let m = host_pid_stat(pid, "/bin/busybox");
    assert_eq!((m.uid(), m.gid()), (uid, uid));
    // The base itself is untouched: still host root's.
    let base = fs::metadata(e.base().join("bin/busybox")).unwrap();
    assert_eq!((base.uid(), base.gid()), (0, 0));

    // Writes land in the upper layer on the tenant's volume, never in the base.
    c.exec_sh("echo written > /newfile && echo more >> /etc/hosts")
        .ok();
    let upper = e.volume("acme").join(".sgrun/rootfs/blog/upper");
    assert_eq!(
        fs::read_to_string(upper.join("newfile")).unwrap(),
        "written\n"
    );
    assert_eq!(fs::metadata(upper.join("newfile")).unwrap().uid(), uid);
    assert!(fs::read_to_string(upper.join("etc/hosts"))
        .unwrap()
        .contains("more"));
    assert!(!e.base().join("newfile").exists());
    assert!(!fs::read_to_string(e.base().join("etc/hosts"))
        .unwrap()
        .contains("more"));

    // /srv/site is the site's directory of the volume, the tenant's root's.
    c.exec_sh("echo data > /srv/site/index.php").ok();
    let site = e.volume("acme").join("sites/blog");
    assert_eq!(
        fs::read_to_string(site.join("index.php")).unwrap(),
        "data\n"
    );
    let sm = fs::metadata(&site).unwrap();
    assert_eq!((sm.uid(), sm.mode() & 0o7777), (uid, 0o755));

    // userxattr: a lower directory deleted and made again works (an opaque directory in the
    // upper layer, marked with user.overlay.opaque), with no EIO.
    let o = c.exec_sh("rm -rf /home && mkdir /home && echo x > /home/f && cat /home/f && ls /home");
    o.ok();
    assert_eq!(o.stdout, "x\nf\n", "{o}");
    let xattrs = Command::new("python3")
        .args(["-c", "import os,sys; print(os.listxattr(sys.argv[1]))"])
        .arg(upper.join("home"))
        .output()
        .unwrap();
    let xattrs = String::from_utf8_lossy(&xattrs.stdout);
    assert!(xattrs.contains("user.overlay.opaque"), "{xattrs}");

    // mountinfo inside names no host path: not the base, the state dir or the test dir.
    let (mi, root_line) = root_mount(&c);
    assert!(root_line.contains(" - overlay "), "{root_line}");
    assert!(
        root_line.contains("lowerdir+=/,upperdir=/upper,workdir=/work"),
        "{root_line}"
    );
    for host in [e.env.path().to_string_lossy(), e.state.to_string_lossy()] {
        assert!(
            !mi.stdout.contains(host.as_ref()),
            "mountinfo shows {host}: {mi}"
        );
    }
    let site_line = mi
        .stdout
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/srv/site"))
        .unwrap_or_else(|| panic!("no /srv/site in {mi}"));
    assert_eq!(
        site_line.split(' ').nth(3),
        Some("/sites/blog"),
        "{site_line}"
    );

    // The host's own mount table holds no mount of the container: only the volume.
    assert_eq!(
        e.host_mounts(),
        vec![e.volume("acme").display().to_string()]
    );

    // While it exists: the image is marked in use, the site claimed.
    let left = e.rootfs_leftovers();
    assert!(
        left.iter().any(|p| p.ends_with(&format!("users/{}", c.id))),
        "{left:?}"
    );
    assert!(
        left.iter().any(|p| p.ends_with("sites/acme/blog")),
        "{left:?}"
    );
    // A second container on the same site is refused while the first exists.
    let c2 = e.container("c", e.bundle("acme", Some("blog")).args(&["true"]));
    c2.create_args(&[])
        .failed()
        .stderr_has(&["site blog of tenant acme is in use", &c.id]);

    c.sg().run(["delete", "-f", &c.id]).ok();
    drop(c2);
    e.assert_clean();
    // The data stays on the volume.
    assert!(site.join("index.php").exists() && upper.join("newfile").exists());
}

#[test]
fn foreground_run_and_restart_keep_the_upper_layer() {
    let e = RootfsEnv::new("rfs-fg");
    e.tenant("acme", "dir");
    let c = e.container(
        "c",
        e.bundle("acme", Some("s1"))
            .sh("echo one >> /log; cat /log"),
    );
    let o = c.run_fg();
    o.ok();
    assert_eq!(o.stdout, "one\n");
    e.assert_clean();
    // Same site again: the upper layer is the same, the write of the first run is there.
    let c = e.container(
        "c",
        e.bundle("acme", Some("s1"))
            .sh("echo two >> /log; cat /log"),
    );
    let o = c.run_fg();
    assert_eq!(o.stdout, "one\ntwo\n", "{o}");
    e.assert_clean();
}

#[test]
fn tenants_cannot_reach_each_other() {
    let e = RootfsEnv::new("rfs-x");
    let a = e.tenant("ta", "loop");
    let b = e.tenant("tb", "loop");
    let ca = e.container("a", e.bundle("ta", Some("a1")).args(&["sleep", "600"]));
    let cb = e.container("b", e.bundle("tb", Some("b1")).args(&["sleep", "600"]));
    ca.run_detached();
    cb.run_detached();
    cb.exec_sh("echo b-secret > /srv/site/secret && chmod 600 /srv/site/secret && echo b-root > /secret && chmod 600 /secret")
        .ok();
    let pid_b = cb.pid();
    let vol_b = e.volume("tb");
    let targets = [
        format!("/proc/{pid_b}/root/secret"),
        format!("/proc/{pid_b}/root/srv/site/secret"),
        vol_b.join("sites/b1/secret").display().to_string(),
        vol_b
            .join(".sgrun/rootfs/b1/upper/secret")
            .display()
            .to_string(),
    ];

    // From inside A: none of B's paths exists in A's mount namespace, B's pid is not in A's
    // pid namespace.
    for t in &targets {
        let o = ca.exec_sh(&format!("cat {t} || ls {t} || stat {t}"));
        assert_ne!(o.code, 0, "A reached {t}: {o}");
        assert!(!o.stdout.contains("b-"), "{o}");
    }

    // From the host, as A's mapped root (a tenant's process outside its container, e.g. its
    // SFTP session): every way to B's files fails. Read, list, stat, open, hardlink.
    let attack = |uid: u32| {
        let mut got = Vec::new();
        for t in &targets {
            let dir = Path::new(t).parent().unwrap().display().to_string();
            let o = sh_as(
                uid,
                &format!("cat {t}; ls {dir}; stat -c %s {t}; ln {t} /tmp/rfs-ln-$$ && rm -f /tmp/rfs-ln-$$ && echo LINKED"),
            );
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            if out.contains("b-") || out.contains("LINKED") || out.contains("secret") {
                got.push(format!("{t}: {out}"));
            }
        }
        got
    };
    assert_eq!(
        attack(a),
        Vec::<String>::new(),
        "tenant A reached B's files"
    );
    // Weakened: with B's own ids (what A would have if tenants shared a range), the same
    // attempts read B's files on its volume: the checks above can see the hole. (B's
    // processes are not dumpable from outside their user namespace, so /proc/<pid>/root stays
    // closed even to B's own ids on the host.)
    let weak = attack(b);
    assert_eq!(
        weak.len(),
        2,
        "B's own ids should reach its volume: {weak:?}"
    );
    assert!(weak.iter().all(|w| w.contains("b-")), "{weak:?}");

    // Symlinks A plants in its own site directory lead nowhere for A's processes either.
    ca.exec_sh(&format!(
        "ln -s {} /srv/site/to-b && ln -s /proc/{pid_b}/root /srv/site/to-b-root",
        vol_b.display()
    ))
    .ok();
    let o = sh_as(
        a,
        &format!(
            "cat {0}/sites/a1/to-b/sites/b1/secret; cat {0}/sites/a1/to-b-root/secret",
            e.volume("ta").display()
        ),
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("b-"), "{o:?}");
}

/// Replace `path` (a directory of tenant `from`'s volume) by a symlink to `to`.
fn plant(path: &Path, to: &Path) {
    let _ = fs::remove_dir_all(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(to, path).unwrap();
}

/// What a path-based implementation would do: bind-mount `src` by name (following any
/// symlink in it) in a private mount namespace, and list what appears.
fn path_based_bind_lists(src: &Path) -> String {
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "d=$(mktemp -d) && mount --bind {} $d && ls $d; umount $d 2>/dev/null; rmdir $d",
            src.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn planted_symlinks_on_the_host_side_are_never_followed() {
    let e = RootfsEnv::new("rfs-plant");
    e.tenant("ta", "dir");
    let b = e.tenant("tb", "dir");
    // B's data: a site with a secret, owned by B.
    let b_site = e.volume("tb").join("sites/b1");
    fs::create_dir_all(&b_site).unwrap();
    fs::write(b_site.join("secret"), "b-secret").unwrap();
    for p in [
        &e.volume("tb").join("sites"),
        &b_site,
        &b_site.join("secret"),
    ] {
        std::os::unix::fs::chown(p, Some(b), Some(b)).unwrap();
    }
    let snapshot = |p: &Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                format!("{:?} {} {:o}", e.file_name(), m.uid(), m.mode())
            })
            .collect();
        v.sort();
        v
    };
    let b_before = snapshot(&b_site);
    let etc_before = snapshot(Path::new("/etc"));
    let etc_meta = fs::metadata("/etc").unwrap();

    let a_vol = e.volume("ta");
    let cases: [(&str, PathBuf, PathBuf); 4] = [
        (
            "site dir -> B's site",
            a_vol.join("sites/a1"),
            b_site.clone(),
        ),
        (
            "site dir -> /etc",
            a_vol.join("sites/a1"),
            PathBuf::from("/etc"),
        ),
        (
            "upper -> B's site",
            a_vol.join(".sgrun/rootfs/a1/upper"),
            b_site.clone(),
        ),
        (
            "layers dir -> /etc",
            a_vol.join(".sgrun/rootfs/a1"),
            PathBuf::from("/etc"),
        ),
    ];
    for (what, at, to) in &cases {
        // The hole is real: a path-based mount of the planted name shows the target.
        plant(at, to);
        let listed = path_based_bind_lists(at);
        let expect = if to.ends_with("b1") {
            "secret"
        } else {
            "passwd"
        };
        assert!(
            listed.contains(expect),
            "{what}: the path-based bind should expose {}: {listed:?}",
            to.display()
        );

        // sgrun refuses, names the link, and mounts or changes nothing.
        let c = e.container(
            "a",
            e.bundle("ta", Some("a1"))
                .args(&["cat", "/srv/site/secret"]),
        );
        let o = c.run_fg();
        o.failed().stderr_has(&["symlink"]);
        assert!(!o.stdout.contains("b-secret"), "{what}: {o}");
        drop(c);
        e.assert_clean();
        assert_eq!(snapshot(&b_site), b_before, "{what}: B's site changed");
        assert_eq!(
            snapshot(Path::new("/etc")),
            etc_before,
            "{what}: /etc changed"
        );
        let m = fs::metadata("/etc").unwrap();
        assert_eq!((m.uid(), m.mode()), (etc_meta.uid(), etc_meta.mode()));
        fs::remove_file(at).unwrap();
    }

    // A symlink the tenant leaves at /srv/site in its upper layer (it owns that directory):
    // the bind's target is resolved beneath the overlay without symlinks, so it is refused
    // too; a path-based mount would have followed it to the host's /etc.
    let upper = a_vol.join(".sgrun/rootfs/a1/upper");
    fs::create_dir_all(upper.join("srv")).unwrap();
    std::os::unix::fs::symlink("/etc", upper.join("srv/site")).unwrap();
    let c = e.container("a", e.bundle("ta", Some("a1")).args(&["ls", "/srv/site"]));
    c.run_fg().failed().stderr_has(&["srv/site", "symlink"]);
    drop(c);
    e.assert_clean();
    assert_eq!(snapshot(Path::new("/etc")), etc_before);
    // And with the link gone, the same site starts.
    fs::remove_file(upper.join("srv/site")).unwrap();
    let c = e.container("a", e.bundle("ta", Some("a1")).args(&["ls", "/srv/site"]));
    c.run_fg().ok();
    drop(c);
    e.assert_clean();
}

#[test]
fn refused_configs_name_the_cause_and_leave_nothing() {
    let e = RootfsEnv::new("rfs-bad");
    let uid = e.tenant("acme", "dir");
    let maps = |host: u32| json!([{"containerID": 0, "hostID": host, "size": 65536}]);
    let cases: Vec<(&str, Bundle, Vec<String>)> = vec![
        (
            "foreign uid mapping",
            e.bundle("acme", None)
                .with_namespace("user")
                .id_mappings(maps(100_000), maps(uid)),
            vec!["tenants cannot choose their ids".into(), "100000".into()],
        ),
        (
            "foreign gid mapping",
            e.bundle("acme", None)
                .with_namespace("user")
                .id_mappings(maps(uid), maps(uid + 65536)),
            vec!["tenants cannot choose their ids".into()],
        ),
        (
            "unknown tenant",
            e.bundle("nosuch", None),
            vec!["tenant nosuch does not exist".into()],
        ),
        (
            "unknown image",
            e.bundle("acme", None)
                .annotation("io.sgrun.image", "nosuch"),
            vec!["no image \"nosuch\" in the store".into()],
        ),
        (
            "bad site",
            e.bundle("acme", Some("../x")),
            vec!["io.sgrun.site".into()],
        ),
        (
            "image without tenant",
            e.env.bundle().annotation("io.sgrun.image", IMAGE),
            vec!["needs io.sgrun.tenant".into()],
        ),
    ];
    for (what, bundle, needles) in cases {
        let c = e.container("c", bundle.args(&["true"]));
        let o = c.create_args(&[]);
        o.failed();
        for n in &needles {
            assert!(
                o.stderr.contains(n.as_str()),
                "{what}: stderr should say {n:?}: {o}"
            );
        }
        drop(c);
        e.assert_clean();
    }
    // The tenant's own mapping, stated in the config, is accepted.
    let c = e.container(
        "c",
        e.bundle("acme", None)
            .with_namespace("user")
            .id_mappings(maps(uid), maps(uid))
            .args(&["true"]),
    );
    c.run_fg().ok();
    drop(c);
    // A removed tenant's containers do not start.
    e.run(&["tenant", "rm", "acme"]).ok();
    let c = e.container("c", e.bundle("acme", None).args(&["true"]));
    c.create_args(&[])
        .failed()
        .stderr_has(&["tenant acme was removed"]);
    drop(c);
    e.assert_clean();
}

#[test]
fn failed_and_half_made_creates_leave_nothing() {
    let e = RootfsEnv::new("rfs-fail");
    e.tenant("acme", "loop");
    // A failure injected after the overlay and /srv/site are mounted.
    let c = e.container("c", e.bundle("acme", None).args(&["true"]));
    let bundle = c.bundle_dir.display().to_string();
    let o = e.run_env(
        &["create", "--bundle", &bundle, &c.id],
        &[("SGRUN_TEST_FAIL_AT", "rootfs-after-mount")],
    );
    o.failed()
        .stderr_has(&["injected failure at step after-mount"]);
    e.assert_clean();
    drop(c);

    // The volume is mounted at first use: after `tenant rm` + `tenant mount`... and after a
    // host restart (unmounted behind sgrun's back), a create mounts it again.
    let vol = e.volume("acme");
    let cv = std::ffi::CString::new(vol.display().to_string()).unwrap();
    // SAFETY: unmount of this test's own tenant volume.
    assert_eq!(unsafe { libc::umount2(cv.as_ptr(), 0) }, 0);
    assert!(e.host_mounts().is_empty());
    let c = e.container("c", e.bundle("acme", None).args(&["sleep", "600"]));
    c.run_detached();
    assert_eq!(e.host_mounts(), vec![vol.display().to_string()]);

    // A half-made container: its init gone and its state directory lost, as after a crash
    // in the middle of a create. `delete --force` still releases what the rootfs holds.
    let pid = c.pid();
    // SAFETY: kill of the init of this test's own container.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    fs::remove_dir_all(e.env.sg.root.join(&c.id)).unwrap();
    assert!(!e.rootfs_leftovers().is_empty());
    e.run(&["delete", "--force", &c.id]).ok();
    sgrun_tests::remove_cgroup(&c.cgroup);
    e.assert_clean();
}

/// The data the JSON state reports for a tenant's container: its rootfs is the mount point.
#[test]
fn state_reports_the_mount_point() {
    let e = RootfsEnv::new("rfs-state");
    e.tenant("acme", "dir");
    let c = e.container("c", e.bundle("acme", None).args(&["sleep", "600"]));
    c.create();
    let st: Value = c.state();
    let rootfs = st["rootfs"].as_str().unwrap();
    assert!(
        rootfs.starts_with(&e.state.join("rootfs").display().to_string())
            && rootfs.ends_with(&c.id),
        "{st}"
    );
    c.sg().run(["delete", "-f", &c.id]).ok();
    e.assert_clean();
}

#[test]
fn tenant_rm_is_refused_while_a_site_of_it_runs() {
    let e = RootfsEnv::new("rfs-rm");
    e.tenant("acme", "loop");
    let c = e.container("c", e.bundle("acme", Some("blog")).args(&["sleep", "600"]));
    c.run_detached();
    // Neither a plain rm nor a purge may take the volume from under a running site (the
    // overlay holds its own clone of the volume's mount: the unmount alone would succeed).
    for args in [
        &["tenant", "rm", "acme"][..],
        &["tenant", "rm", "--purge", "acme"],
    ] {
        e.run(args)
            .failed()
            .stderr_has(&["tenant acme has running sites", "blog", &c.id]);
    }
    let show = e.run(&["tenant", "show", "--json", "acme"]).ok().json();
    assert_eq!(show["state"], "active", "{show}");
    assert_eq!(show["mounted"], true, "{show}");
    // Once the container is gone, rm works (the guard purges the tenant afterwards).
    drop(c);
    e.run(&["tenant", "rm", "acme"]).ok();
    e.run(&["tenant", "mount", "acme"]).ok();
}

/// A read-only root is the image's EROFS, mounted once per image and idmapped per container:
/// no overlay, no upper layer, no host path in mountinfo, one superblock for all tenants
/// (docs/rootfs.md "Read-only roots").
#[test]
fn read_only_root_is_the_images_erofs_shared_by_tenants() {
    const SITE_IMAGE: &str = "busybox-site";
    let e = RootfsEnv::new("rfs-ro");
    let uid = e.tenant("acme", "loop");
    e.tenant("bobco", "loop");
    let ro = |tenant: &str, site: &str, image: &str| {
        e.bundle(tenant, Some(site))
            .annotation("io.sgrun.image", image)
            .readonly_root(true)
            .args(&["sleep", "600"])
    };

    // An image without /srv/site cannot give an EROFS root (it cannot get the directory): a
    // read-only root then is an overlay, as a writable one, which makes it. The same for any
    // mount point of the config the image lacks.
    let root_fs = |c: &Container| {
        let (_, line) = root_mount(c);
        line.split(" - ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let no_site = e.container("nosite", ro("acme", "other", IMAGE));
    no_site.run_detached();
    assert_eq!(root_fs(&no_site), "overlay");
    no_site.exec_sh("test -d /srv/site").ok();
    no_site.sg().run(["delete", "-f", &no_site.id]).ok();
    drop(no_site);
    e.assert_clean();

    e.import_site_image(SITE_IMAGE);
    let extra = e.container(
        "extra",
        ro("acme", "other", SITE_IMAGE)
            .mount(json!({"destination": "/srv/extra", "type": "tmpfs", "source": "tmpfs"})),
    );
    extra.run_detached();
    assert_eq!(root_fs(&extra), "overlay", "a mount point the image lacks");
    extra.sg().run(["delete", "-f", &extra.id]).ok();
    drop(extra);

    let c = e.container("c", ro("acme", "blog", SITE_IMAGE));
    c.run_detached();
    let pid = c.pid();
    assert_eq!(root_fs(&c), "erofs");

    // The root: erofs, idmapped, its root field "/", its source no host path.
    let (mi, root_line) = root_mount(&c);
    assert!(root_line.contains(" - erofs /proc/self/fd/"), "{root_line}");
    assert_eq!(root_line.split(' ').nth(3), Some("/"), "{root_line}");
    assert!(root_line.contains("idmapped"), "{root_line}");
    for host in [e.env.path().to_string_lossy(), e.state.to_string_lossy()] {
        assert!(
            !mi.stdout.contains(host.as_ref()),
            "mountinfo shows {host}: {mi}"
        );
    }

    // Ids: root's files inside, the tenant's root's seen from the host.
    let o = c.exec_sh("stat -c %u:%g /bin/busybox; id -u");
    o.ok();
    assert_eq!(o.stdout, "0:0\n0\n", "{o}");
    let m = host_pid_stat(pid, "/bin/busybox");
    assert_eq!((m.uid(), m.gid()), (uid, uid));

    // Read-only everywhere but /srv/site, whose writes land on the tenant's volume.
    let w = c.exec_sh("echo x > /newfile");
    w.failed().stderr_has(&["Read-only file system"]);
    c.exec_sh("echo data > /srv/site/index.php").ok();
    assert_eq!(
        fs::read_to_string(e.volume("acme").join("sites/blog/index.php")).unwrap(),
        "data\n"
    );
    // No overlay: no upper or work directory was made on the volume.
    assert!(!e.volume("acme").join(".sgrun/rootfs/blog").exists());

    // One EROFS mount of the image on the host, shared: another tenant's container runs on
    // the same superblock (same device), with its own ids.
    let hex = e.run(&["image", "inspect", SITE_IMAGE]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let image_mount = e.state.join("images/mounts").join(&hex);
    let image_mounts: Vec<String> = e
        .host_mounts()
        .into_iter()
        .filter(|m| m.contains("/images/mounts/"))
        .collect();
    assert_eq!(image_mounts, vec![image_mount.display().to_string()]);
    let c2 = e.container("c2", ro("bobco", "shop", SITE_IMAGE));
    c2.run_detached();
    let dev = |c: &Container| {
        let o = c.exec_sh("stat -c %d /");
        o.ok();
        o.stdout
    };
    assert_eq!(dev(&c), dev(&c2));
    assert_eq!(
        e.host_mounts()
            .iter()
            .filter(|m| m.contains("/images/mounts/"))
            .count(),
        1
    );

    // The image is in use: `image rm` refuses. Once the containers are gone it removes the
    // image and detaches its EROFS mount.
    e.run(&["image", "rm", SITE_IMAGE])
        .failed()
        .stderr_has(&["in use"]);
    c.sg().run(["delete", "-f", &c.id]).ok();
    c2.sg().run(["delete", "-f", &c2.id]).ok();
    e.run(&["image", "rm", SITE_IMAGE]).ok();
    assert!(
        !e.host_mounts()
            .iter()
            .any(|m| m.contains("/images/mounts/")),
        "{:?}",
        e.host_mounts()
    );
    assert!(!image_mount.exists());
    e.assert_clean();
}
