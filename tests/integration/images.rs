//! `sgrun image`: imports of real docker-archive and OCI layouts (busybox), whiteouts across
//! layers, verify, rm and in-use markers, and hostile archives, each of which must fail with a
//! message naming the entry, leave the store exactly as it was (no new image, no name, nothing
//! in tmp/) and write nothing outside it.
//!
//! Archives are made in the test with the tar crate, writing raw header names so that the
//! hostile ones (`../x`, `/etc/x`, …) are exactly what an attacker would send; GNU tar makes
//! the sparse ones. Each test has its own state directory under /var/tmp.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sgrun_tests::{require_root, rootfs, sgrun_bin, Out};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Archives

/// A layer tar written entry by entry with raw names.
pub(crate) struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    pub(crate) fn new() -> Self {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn raw(&mut self, path: &str, ty: EntryType, mode: u32, data: &[u8], link: Option<&str>) {
        let mut h = Header::new_gnu();
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        if path.len() < 100 {
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        } else {
            pax.push(("path", path.as_bytes()));
            h.as_old_mut().name[..4].copy_from_slice(b"long");
        }
        if let Some(l) = link {
            if l.len() < 100 {
                h.set_link_name_literal(l).unwrap();
            } else {
                pax.push(("linkpath", l.as_bytes()));
            }
        }
        if !pax.is_empty() {
            self.0.append_pax_extensions(pax).unwrap();
        }
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
    }
    pub(crate) fn dir(&mut self, p: &str) -> &mut Self {
        self.raw(p, EntryType::Directory, 0o755, b"", None);
        self
    }
    fn file(&mut self, p: &str, data: &[u8]) -> &mut Self {
        self.raw(p, EntryType::Regular, 0o644, data, None);
        self
    }
    fn file_mode(&mut self, p: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.raw(p, EntryType::Regular, mode, data, None);
        self
    }
    fn symlink(&mut self, p: &str, target: &str) -> &mut Self {
        self.raw(p, EntryType::Symlink, 0o777, b"", Some(target));
        self
    }
    fn hardlink(&mut self, p: &str, target: &str) -> &mut Self {
        self.raw(p, EntryType::Link, 0o644, b"", Some(target));
        self
    }
    pub(crate) fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A layer holding a whole directory tree (the busybox rootfs), symlinks kept as symlinks.
pub(crate) fn layer_of_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn image_config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo hi"], "Env": ["PATH=/bin"], "WorkingDir": "/root", "User": "0"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>()},
    }))
    .unwrap()
}

/// `docker save` layout: manifest.json, <sha>.json config, <n>/layer.tar (uncompressed).
pub(crate) fn docker_archive(layers: &[Vec<u8>], repo_tag: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = image_config(&diff_ids);
    let config_name = format!("{}.json", sha(&config));
    let layer_names: Vec<String> = (0..layers.len())
        .map(|i| format!("l{i}/layer.tar"))
        .collect();
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names,
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&config_name, &config);
    for (n, l) in layer_names.iter().zip(layers) {
        add(n, l);
    }
    add("manifest.json", &manifest);
    b.into_inner().unwrap()
}

/// An OCI image layout directory with gzip layers.
fn oci_layout(dir: &Path, layers: &[Vec<u8>], reference: &str) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha(data);
        fs::write(blobs.join(&d), data).unwrap();
        (d, data.len())
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let (cd, cs) = put(&image_config(&diff_ids));
    let layer_descs: Vec<Value> = layers
        .iter()
        .map(|l| {
            let (d, s) = put(&gzip(l));
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{d}"), "size": s})
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{cd}"), "size": cs},
        "layers": layer_descs,
    }))
    .unwrap();
    let (md, ms) = put(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{md}"), "size": ms,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": "1.0"},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn tar_of_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Environment

struct ImgEnv {
    dir: PathBuf,
    state: PathBuf,
    /// A directory outside the store that hostile archives aim at; must stay empty.
    outside: PathBuf,
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    ids: BTreeSet<String>,
    names: BTreeSet<(String, String)>,
    tmp: BTreeSet<String>,
}

impl ImgEnv {
    fn new(tag: &str) -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix(&format!("sgrun-images-{tag}-"))
            .tempdir_in("/var/tmp")
            .expect("tempdir")
            .keep();
        let outside = dir.join("outside");
        fs::create_dir(&outside).unwrap();
        ImgEnv {
            state: dir.join("state"),
            dir,
            outside,
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        let out = Command::new(sgrun_bin())
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .output()
            .expect("run sgrun");
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

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, data).unwrap();
        p
    }

    fn import(&self, file: &Path, extra: &[&str]) -> Out {
        let mut args = vec!["image", "import", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn images(&self) -> PathBuf {
        self.state.join("images")
    }

    fn snapshot(&self) -> Snapshot {
        let ls = |d: &Path| -> BTreeSet<String> {
            fs::read_dir(d)
                .map(|r| {
                    r.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let names = ls(&self.images().join("names"))
            .into_iter()
            .map(|n| {
                let id =
                    fs::read_to_string(self.images().join("names").join(&n)).unwrap_or_default();
                (n, id.trim().to_string())
            })
            .collect();
        Snapshot {
            ids: ls(&self.images().join("sha256")),
            names,
            tmp: ls(&self.images().join("tmp")),
        }
    }

    fn rootfs_of(&self, name: &str) -> PathBuf {
        let v = self.run(&["image", "inspect", name]).ok().json();
        PathBuf::from(v["rootfs"].as_str().unwrap())
    }

    /// A small good image named "base", imported first so that a failing import has an image
    /// to leave intact.
    fn with_base(&self) -> Snapshot {
        let mut l = Layer::new();
        l.dir("etc").file("etc/motd", b"base image\n");
        let f = self.write("base.tar", &docker_archive(&[l.bytes()], "base:1"));
        self.import(&f, &[]).ok();
        let s = self.snapshot();
        assert_eq!(s.ids.len(), 1, "{s:?}");
        s
    }

    /// Import a hostile single-layer image: it must fail naming `needles`, leave the store as
    /// it was and write nothing outside.
    fn refused(&self, layer: Vec<u8>, extra: &[&str], needles: &[&str]) -> Out {
        let before = self.with_base();
        let f = self.write("hostile.tar", &docker_archive(&[layer], "hostile:1"));
        let out = self.import(&f, extra);
        out.failed().stderr_has(needles);
        assert_eq!(self.snapshot(), before, "the store changed: {out}");
        assert!(before.tmp.is_empty());
        assert_eq!(
            fs::read_dir(&self.outside).unwrap().count(),
            0,
            "something was written outside the store: {out}"
        );
        for stray in ["x", "pwned"] {
            assert!(
                !self.dir.join(stray).exists(),
                "{stray} written next to the store: {out}"
            );
        }
        self.run(&["image", "verify", "base"]).ok();
        out
    }
}

impl Drop for ImgEnv {
    fn drop(&mut self) {
        if self.state.exists() {
            // A test that mounted a tmpfs there: unmount it (only ours, by its path).
            let _ = Command::new("umount").arg(&self.state).output();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Good imports

#[test]
fn docker_archive_of_busybox_imports_and_verifies() {
    let env = ImgEnv::new("docker");
    let rf = rootfs();
    let archive = env.write(
        "busybox.tar",
        &docker_archive(&[layer_of_dir(&rf)], "docker.io/library/busybox:1.36"),
    );
    let out = env.import(&archive, &[]);
    out.ok();
    assert!(out.stdout.contains("image busybox imported"), "{out}");
    let v = env.run(&["image", "inspect", "busybox"]).ok().json();
    assert_eq!(v["source"]["kind"], "import");
    assert_eq!(v["source"]["format"], "docker-archive");
    assert_eq!(v["source"]["sha256"], sha(&fs::read(&archive).unwrap()));
    assert_eq!(v["config"]["entrypoint"], json!(["/bin/sh"]));
    assert_eq!(v["config"]["working_dir"], "/root");
    assert_eq!(v["trusted"], false);
    let root = PathBuf::from(v["rootfs"].as_str().unwrap());
    let id = v["id"].as_str().unwrap().to_string();
    assert!(root.ends_with(format!("images/sha256/{id}/rootfs")));
    // The tree is the busybox tree: same bytes, symlinks kept as symlinks, root 0755 root.
    assert_eq!(
        fs::read(root.join("bin/busybox")).unwrap(),
        fs::read(rf.join("bin/busybox")).unwrap()
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        PathBuf::from("busybox")
    );
    let m = fs::metadata(&root).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0));
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    // The id is the sha256 of the manifest, and the manifest lists bin/busybox.
    let manifest = fs::read(env.images().join("sha256").join(&id).join("manifest")).unwrap();
    assert_eq!(sha(&manifest), id);
    assert!(String::from_utf8_lossy(&manifest).contains("/bin/sh l 0777 0 0 7 busybox\n"));
    // The store is 0700: no host user reaches a setuid binary of an image.
    assert_eq!(fs::metadata(env.images()).unwrap().mode() & 0o777, 0o700);

    env.run(&["image", "verify", "busybox"]).ok();
    let ls = env.run(&["image", "ls"]).ok().stdout.clone();
    assert!(ls.contains("busybox") && ls.contains(&id[..12]), "{ls}");
    let ls = env.run(&["image", "ls", "--json"]).ok().json();
    assert_eq!(ls[0]["names"], json!(["busybox"]));
    // By id prefix too.
    assert_eq!(
        env.run(&["image", "inspect", &id[..12]]).ok().json()["id"],
        json!(id)
    );
    // The same archive again: the same image, nothing unpacked.
    let again = env.import(&archive, &["--name", "bb2"]);
    again.ok();
    assert!(
        again.stdout.contains("this archive was imported before"),
        "{again}"
    );
    assert_eq!(
        env.run(&["image", "inspect", "bb2"]).ok().json()["id"],
        json!(id)
    );
    // The same tree from another archive (an extra empty layer): unpacked, then found to be
    // the same content: one copy.
    let other = env.write(
        "busybox2.tar",
        &docker_archive(&[layer_of_dir(&rf), Layer::new().bytes()], "busybox:2"),
    );
    let again = env.import(&other, &["--name", "bb3"]);
    assert!(
        again.ok().stdout.contains("in the store already"),
        "{again}"
    );
    assert_eq!(env.snapshot().ids.len(), 1);
    assert!(env.snapshot().tmp.is_empty());
}

#[test]
fn oci_layout_with_whiteouts_across_two_layers() {
    let env = ImgEnv::new("oci");
    let mut l1 = Layer::new();
    l1.dir("etc")
        .file("etc/a", b"a")
        .file("etc/b", b"b")
        .dir("opt")
        .dir("opt/x")
        .file("opt/x/1", b"1")
        .file("opt/x/2", b"2")
        .dir("var")
        .dir("var/gone")
        .file("var/gone/f", b"f");
    let mut l2 = Layer::new();
    l2.file("etc/.wh.a", b"")
        .dir("opt/x")
        .file("opt/x/.wh..wh..opq", b"")
        .file("opt/x/3", b"3")
        .file("var/.wh.gone", b"")
        .file("etc/new", b"n");
    let layout = env.dir.join("layout");
    oci_layout(
        &layout,
        &[l1.bytes(), l2.bytes()],
        "registry.example/team/ocitest:1.0",
    );
    // As a directory:
    let out = env.import(&layout, &[]);
    out.ok();
    assert!(out.stdout.contains("image ocitest imported"), "{out}");
    let root = env.rootfs_of("ocitest");
    let names = |p: &str| -> BTreeSet<String> {
        fs::read_dir(root.join(p))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names("etc"), ["b", "new"].map(String::from).into());
    assert_eq!(names("opt/x"), ["3"].map(String::from).into());
    assert_eq!(names("var"), BTreeSet::new());
    assert_eq!(fs::read(root.join("opt/x/3")).unwrap(), b"3");
    let v = env.run(&["image", "inspect", "ocitest"]).ok().json();
    assert_eq!(v["source"]["format"], "oci-layout");
    // The same layout as a tar: the same tree, the same id.
    let t = env.write("layout.tar", &tar_of_dir(&layout));
    let out = env.import(&t, &["--name", "ocitar"]);
    out.ok();
    assert_eq!(
        env.run(&["image", "inspect", "ocitar"]).ok().json()["id"],
        v["id"]
    );
    env.run(&["image", "verify"]).ok();
}

#[test]
fn oci_layout_with_a_bad_blob_digest_is_refused() {
    let env = ImgEnv::new("digest");
    let before = env.with_base();
    let mut l = Layer::new();
    l.dir("etc")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n");
    let layout = env.dir.join("layout");
    oci_layout(&layout, &[l.bytes()], "x/y:1");
    // Tamper with the layer blob (keep its size).
    let manifest: Value = {
        let idx: Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let d = idx["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(d)).unwrap()).unwrap()
    };
    let ld = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = layout.join("blobs/sha256").join(&ld);
    let mut data = fs::read(&blob).unwrap();
    let n = data.len();
    data[n - 9] ^= 0xff;
    fs::write(&blob, &data).unwrap();
    let out = env.import(&layout, &[]);
    out.failed()
        .stderr_has(&["digest mismatch", &ld, "nothing was added"]);
    assert_eq!(env.snapshot(), before);
}

#[test]
fn names_are_checked_and_rm_keeps_an_image_while_named() {
    let env = ImgEnv::new("names");
    let mut l = Layer::new();
    l.file("f", b"x");
    let f = env.write("a.tar", &docker_archive(&[l.bytes()], "a:1"));
    env.import(&f, &["--name", "Bad/Name"])
        .failed()
        .stderr_has(&["image name \"Bad/Name\"", "character 1 (upper-case 'B')"]);
    env.import(&f, &["--name", "x..y"])
        .failed()
        .stderr_has(&["\"..\" at character 2"]);
    assert!(env.snapshot().ids.is_empty());
    env.import(&f, &["--name", "one"]).ok();
    env.import(&f, &["--name", "two"]).ok();
    let id = env.run(&["image", "inspect", "one"]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        env.run(&["image", "inspect", "two"]).ok().json()["names"],
        json!(["one", "two"])
    );
    env.run(&["image", "rm", &id])
        .failed()
        .stderr_has(&["still has the name(s) one, two", "--force"]);
    let out = env.run(&["image", "rm", "one"]);
    assert!(out.ok().stdout.contains("removed name one; image"), "{out}");
    assert_eq!(env.snapshot().ids.len(), 1);
    let out = env.run(&["image", "rm", "two"]);
    assert!(out.ok().stdout.contains("removed image sha256:"), "{out}");
    assert!(env.snapshot().ids.is_empty());
    assert!(env.snapshot().tmp.is_empty());
    env.run(&["image", "rm", "two"])
        .failed()
        .stderr_has(&["no image \"two\""]);
}

#[test]
fn verify_finds_a_modified_file() {
    let env = ImgEnv::new("verify");
    let f = env.write(
        "bb.tar",
        &docker_archive(&[layer_of_dir(&rootfs())], "busybox:1"),
    );
    env.import(&f, &[]).ok();
    let root = env.rootfs_of("busybox");
    env.run(&["image", "verify", "busybox"]).ok();
    fs::write(root.join("etc/passwd"), b"root::0:0::/:/bin/sh\n").unwrap();
    fs::set_permissions(root.join("etc/group"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::write(root.join("etc/added"), b"").unwrap();
    let out = env.run(&["image", "verify", "busybox"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("MODIFIED  busybox"), "{out}");
    assert!(
        out.stdout.contains("  /etc/passwd: size,content")
            || out.stdout.contains("  /etc/passwd: content"),
        "{out}"
    );
    assert!(out.stdout.contains("  /etc/group: mode"), "{out}");
    assert!(out.stdout.contains("  /etc/added: added"), "{out}");
    let j = env.run(&["image", "verify", "--json"]);
    assert_eq!(j.code, 1);
    assert_eq!(j.json()[0]["ok"], false);
}

#[test]
fn rm_is_refused_while_a_live_container_uses_the_image() {
    let env = ImgEnv::new("inuse");
    let mut l = Layer::new();
    l.file("f", b"x");
    let f = env.write("a.tar", &docker_archive(&[l.bytes()], "a:1"));
    env.import(&f, &["--name", "site"]).ok();
    let id = env.run(&["image", "inspect", "site"]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The marker the runtime's Store::acquire writes: users/<container> = its --root.
    let runtime_root = env.dir.join("run");
    fs::create_dir_all(runtime_root.join("web1")).unwrap();
    let users = env.images().join("sha256").join(&id).join("users");
    fs::write(users.join("web1"), format!("{}\n", runtime_root.display())).unwrap();
    let v = env.run(&["image", "inspect", "site"]).ok().json();
    assert_eq!(v["users"][0]["container"], "web1");
    assert_eq!(v["users"][0]["alive"], true);
    env.run(&["image", "rm", "site"])
        .failed()
        .stderr_has(&["in use by container(s) web1", "sgrun delete"]);
    env.run(&["image", "rm", "--force", &id])
        .failed()
        .stderr_has(&["in use by container(s) web1"]);
    assert_eq!(env.snapshot().ids.len(), 1);
    assert_eq!(env.snapshot().names.len(), 1);
    // The container is gone (its state directory too): the marker is stale.
    fs::remove_dir(runtime_root.join("web1")).unwrap();
    let out = env.run(&["image", "rm", "site"]);
    out.ok()
        .stderr_has(&["stale in-use marker of container web1"]);
    assert!(env.snapshot().ids.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Hostile archives

#[test]
fn hostile_dotdot_entry() {
    let env = ImgEnv::new("dotdot");
    let mut l = Layer::new();
    l.dir("etc").file("../../../../../x", b"pwned");
    env.refused(
        l.bytes(),
        &[],
        &["entry \"../../../../../x\" refused", "\"..\" component"],
    );
}

#[test]
fn hostile_absolute_path_entry() {
    let env = ImgEnv::new("abspath");
    let target = env.outside.join("pwned");
    let mut l = Layer::new();
    l.file(target.to_str().unwrap(), b"pwned");
    env.refused(
        l.bytes(),
        &[],
        &[
            &format!("entry {:?} refused", target.to_str().unwrap()),
            "its path is absolute",
        ],
    );
}

#[test]
fn hostile_absolute_symlink_then_a_file_through_it() {
    let env = ImgEnv::new("abslink");
    let mut l = Layer::new();
    l.dir("etc")
        .symlink("etc/evil", env.outside.to_str().unwrap())
        .file("etc/evil/pwned", b"pwned");
    env.refused(
        l.bytes(),
        &[],
        &[
            "entry \"etc/evil/pwned\" refused",
            "passes through the symlink \"etc/evil\"",
        ],
    );
}

#[test]
fn hostile_relative_symlink_escaping_the_root() {
    let env = ImgEnv::new("rellink");
    let mut l = Layer::new();
    l.dir("a").symlink("a/up", "../../outside");
    env.refused(
        l.bytes(),
        &[],
        &[
            "entry \"a/up\" refused",
            "symlink to \"../../outside\", which climbs above the image root",
        ],
    );
    // The same, then a file through it, with a link that stays inside: refused by the
    // through-a-symlink rule.
    let mut l = Layer::new();
    l.dir("a")
        .dir("b")
        .symlink("a/b-link", "../b")
        .file("a/b-link/f", b"x");
    env.refused(
        l.bytes(),
        &[],
        &["entry \"a/b-link/f\" refused", "passes through the symlink"],
    );
}

#[test]
fn hostile_hardlinks_out_of_the_tree() {
    let env = ImgEnv::new("hardlink");
    let mut l = Layer::new();
    l.hardlink("passwd", "../../../../../etc/passwd");
    env.refused(
        l.bytes(),
        &[],
        &[
            "entry \"passwd\" refused",
            "hardlink to \"../../../../../etc/passwd\", which has a \"..\" component",
        ],
    );
    let mut l = Layer::new();
    l.hardlink("shadow", "/etc/shadow");
    env.refused(
        l.bytes(),
        &[],
        &[
            "entry \"shadow\" refused",
            "hardlink to the absolute path \"/etc/shadow\"",
        ],
    );
    // Through a symlink of the image to a host file.
    let mut l = Layer::new();
    l.symlink("hostetc", "/etc")
        .hardlink("shadow", "hostetc/shadow");
    env.refused(
        l.bytes(),
        &[],
        &[
            "entry \"shadow\" refused",
            "passes through the symlink \"hostetc\"",
        ],
    );
    // To something that is not an unpacked file.
    let mut l = Layer::new();
    l.hardlink("ghost", "nothing/here");
    env.refused(
        l.bytes(),
        &[],
        &["entry \"ghost\" refused", "not an already unpacked file"],
    );
}

#[test]
fn hostile_device_node() {
    let env = ImgEnv::new("device");
    let mut l = Layer::new();
    l.dir("dev");
    l.raw("dev/sda", EntryType::Block, 0o660, b"", None);
    env.refused(
        l.bytes(),
        &[],
        &["entry \"dev/sda\" refused", "block device node"],
    );
    let mut l = Layer::new();
    l.raw("mem", EntryType::Char, 0o666, b"", None);
    env.refused(
        l.bytes(),
        &[],
        &["entry \"mem\" refused", "character device node"],
    );
}

#[test]
fn hostile_ten_thousand_deep_directories() {
    let env = ImgEnv::new("deep");
    let mut l = Layer::new();
    let mut p = String::from("d");
    for _ in 0..300 {
        l.dir(&p);
        p.push_str("/d");
    }
    l.file(
        &format!("{}/f", "d/".repeat(10_000).trim_end_matches('/')),
        b"x",
    );
    env.refused(
        l.bytes(),
        &[],
        &[
            "refused: its path is 257 components deep, more than 256",
            "d/d/d/d",
        ],
    );
}

fn gnu_tar(args: &[&str], cwd: &Path) {
    let out = Command::new("tar")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run GNU tar (apt-get install tar)");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hostile_huge_sparse_file() {
    let env = ImgEnv::new("sparse");
    let src = env.dir.join("sparse-src");
    fs::create_dir(&src).unwrap();
    // 10 TiB of holes (ext4's largest file is 16 TiB): a few KiB of archive, more than any
    // disk here.
    let f = fs::File::create(src.join("big")).unwrap();
    f.set_len(10 << 40).unwrap();
    drop(f);
    gnu_tar(
        &[
            "--sparse",
            "--format=gnu",
            "-cf",
            "../gnu-sparse.tar",
            "big",
        ],
        &src,
    );
    let layer = fs::read(env.dir.join("gnu-sparse.tar")).unwrap();
    assert!(layer.len() < 1 << 20, "the sparse archive should be small");
    env.refused(
        layer.clone(),
        &[],
        &[
            "entry \"big\" would bring the image to 10995116277760 bytes",
            "free space of the filesystem holding",
        ],
    );
    env.refused(
        layer,
        &["--max-size", "1M"],
        &["entry \"big\"", "(--max-size)"],
    );
    // The PAX encoding of sparse files is refused by name.
    gnu_tar(
        &[
            "--sparse",
            "--format=pax",
            "-cf",
            "../pax-sparse.tar",
            "big",
        ],
        &src,
    );
    let layer = fs::read(env.dir.join("pax-sparse.tar")).unwrap();
    env.refused(layer, &[], &["PAX-format sparse file"]);
    // A small GNU sparse file is unpacked, holes and all.
    fs::remove_file(src.join("big")).unwrap();
    let f = fs::File::create(src.join("small")).unwrap();
    f.set_len(8 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"end", (8 << 20) - 3).unwrap();
    drop(f);
    gnu_tar(
        &["--sparse", "--format=gnu", "-cf", "../small.tar", "small"],
        &src,
    );
    let file = env.write(
        "small-img.tar",
        &docker_archive(&[fs::read(env.dir.join("small.tar")).unwrap()], "small:1"),
    );
    env.import(&file, &[]).ok();
    let got = env.rootfs_of("small").join("small");
    let m = fs::metadata(&got).unwrap();
    assert_eq!(m.len(), 8 << 20);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "holes kept: {} blocks",
        m.blocks()
    );
}

#[test]
fn setuid_bits_are_stripped_unless_trusted() {
    let env = ImgEnv::new("setuid");
    let mut l = Layer::new();
    l.dir("bin").file_mode("bin/su", 0o4755, b"#!/bin/sh\n");
    l.raw("shared", EntryType::Directory, 0o2775, b"", None);
    let f = env.write("suid.tar", &docker_archive(&[l.bytes()], "suid:1"));
    let out = env.import(&f, &["--name", "plain"]);
    out.ok()
        .stderr_has(&["stripped 2 setuid/setgid bit(s)", "--trusted keeps them"]);
    let root = env.rootfs_of("plain");
    assert_eq!(
        fs::metadata(root.join("bin/su")).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        fs::metadata(root.join("shared")).unwrap().mode() & 0o7777,
        0o775
    );
    assert_eq!(
        env.run(&["image", "inspect", "plain"]).ok().json()["stripped_setid"],
        2
    );
    let out = env.import(&f, &["--name", "kept", "--trusted"]);
    assert!(!out.ok().stderr.contains("stripped"), "{out}");
    let root = env.rootfs_of("kept");
    assert_eq!(
        fs::metadata(root.join("bin/su")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::metadata(root.join("shared")).unwrap().mode() & 0o7777,
        0o2775
    );
    assert_eq!(
        env.snapshot().ids.len(),
        2,
        "trusted and untrusted trees differ"
    );
}

#[test]
fn full_disk_during_an_import_leaves_the_store_intact() {
    let env = ImgEnv::new("full");
    fs::create_dir(&env.state).unwrap();
    // A small tmpfs as the state directory: 8 MiB and 600 inodes.
    let st = env.state.to_str().unwrap();
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=8m,nr_inodes=600,mode=0755",
            "tmpfs",
            st,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount tmpfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = env.with_base();
    // Out of inodes in the middle of the layer: a real ENOSPC from the kernel.
    let mut l = Layer::new();
    l.dir("many");
    for i in 0..1000 {
        l.file(&format!("many/f{i}"), b"x");
    }
    let f = env.write("many.tar", &docker_archive(&[l.bytes()], "many:1"));
    let out = env.import(&f, &[]);
    out.failed().stderr_has(&[
        "no space left on the filesystem of the image store",
        &env.images().display().to_string(),
        "entry \"many/f",
        "nothing was added",
    ]);
    assert_eq!(env.snapshot(), before, "{out}");
    // More data than the free space: refused before writing it.
    let mut l = Layer::new();
    let noise: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    l.file("blob", &noise);
    let f = env.write("big.tar", &docker_archive(&[l.bytes()], "big:1"));
    let out = env.import(&f, &[]);
    out.failed().stderr_has(&[
        "entry \"blob\" would bring the image to 12582912 bytes",
        "free space",
    ]);
    assert_eq!(env.snapshot(), before, "{out}");
    env.run(&["image", "verify", "base"]).ok();
}

#[test]
fn not_an_image_and_zstd_layers_are_refused_clearly() {
    let env = ImgEnv::new("format");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
    let f = env.write("plain.tar", &b.into_inner().unwrap());
    env.import(&f, &[])
        .failed()
        .stderr_has(&["neither an OCI image layout", "found hello.txt"]);
    let f = env.write("gz.tar.gz", &gzip(&fs::read(&f).unwrap()));
    env.import(&f, &[])
        .failed()
        .stderr_has(&["gzip-compressed as a whole", "gunzip"]);
    // A zstd layer (its magic is enough to be recognised).
    let zstd = vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
    let f = env.write("zstd.tar", &docker_archive(&[zstd], "z:1"));
    env.import(&f, &[])
        .failed()
        .stderr_has(&["zstd-compressed, which sgrun does not support"]);
    assert!(env.snapshot().ids.is_empty());
    assert!(env.snapshot().tmp.is_empty());
}
