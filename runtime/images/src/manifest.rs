//! The canonical tree manifest: one line per file of a rootfs, sorted by path. The sha256 of
//! the manifest is the image's id (its content address), so two trees with the same files,
//! modes, owners, link targets and file capabilities have the same id however they were made;
//! timestamps are left out on purpose (a rebuild of the same packages is the same image).
//!
//! Line format (fields separated by one space, every field escaped, see [`escape`]):
//!
//! ```text
//! PATH TYPE MODE UID GID SIZE DATA [cap=HEX]
//! /etc/hostname f 0644 0 0 7 <sha256 of the content>
//! /bin l 0777 0 0 7 usr/bin
//! /usr/bin/perl5.36.0 h 0755 0 0 0 /usr/bin/perl        (second name of one inode)
//! /dev/null c 0666 0 0 0 1:3
//! /etc d 0755 0 0 0 -
//! ```
//!
//! TYPE is d f l h p c b s (directory, file, symlink, hardlink, fifo, char/block device,
//! socket); MODE the permission bits in octal (with setuid/setgid/sticky); DATA the content
//! sha256 for files, the target for symlinks, the first path (in manifest order) of the same
//! inode for hardlinks, `major:minor` for devices, `-` otherwise. `cap=` carries the
//! security.capability xattr in hex when a file has one.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use sha2::{Digest, Sha256};

use crate::error::{ImageError, Result};
use crate::fsutil::{self, file_type, lstat_at, open_dir_beneath, openat_beneath};

/// Bytes outside the printable ASCII range, space and backslash become `\xNN`: a manifest line
/// is plain ASCII, one line per path whatever bytes the name holds (newlines included).
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if (0x21..=0x7e).contains(&c) && c != b'\\' {
            s.push(c as char);
        } else {
            let _ = write!(s, "\\x{c:02x}");
        }
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Hardlink,
    Fifo,
    Char,
    Block,
    Socket,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Dir => 'd',
            Kind::File => 'f',
            Kind::Symlink => 'l',
            Kind::Hardlink => 'h',
            Kind::Fifo => 'p',
            Kind::Char => 'c',
            Kind::Block => 'b',
            Kind::Socket => 's',
        }
    }
}

#[derive(Debug, Clone)]
struct Rec {
    path: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    data: String,
    cap: Option<Vec<u8>>,
    /// (dev, ino) of regular files with more than one link.
    inode: Option<(u64, u64)>,
}

impl Rec {
    fn line(&self) -> String {
        let mut l = format!(
            "{} {} {:04o} {} {} {} {}",
            escape(&self.path),
            self.kind.letter(),
            self.mode,
            self.uid,
            self.gid,
            self.size,
            if self.data.is_empty() {
                "-"
            } else {
                &self.data
            }
        );
        if let Some(cap) = &self.cap {
            l.push_str(" cap=");
            for b in cap {
                let _ = write!(l, "{b:02x}");
            }
        }
        l
    }
}

/// A manifest and the figures gathered while making it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest text (ASCII, one line per path, each ending in '\n').
    pub text: String,
    /// sha256 of `text`, lower-case hex: the image id.
    pub id: String,
    /// Entries below the root (files, directories, links, …).
    pub entries: u64,
    /// Bytes of content: regular files (each inode once) and symlink targets.
    pub size: u64,
    /// Disk usage in bytes (allocated blocks, each inode once).
    pub disk_usage: u64,
    /// Files and directories with a setuid or setgid bit.
    pub setid: u64,
}

/// Walk the tree at `root` (never following a symlink, never leaving the tree) and make its
/// manifest.
pub fn walk(root: &Path) -> Result<Manifest> {
    let _span = tracing::debug_span!("manifest", root = %root.display()).entered();
    let rootfd = fsutil::open_dir(root)?;
    let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&rootfd))
        .map_err(ImageError::nix("cannot stat", root))?;
    let mut recs = vec![Rec {
        path: b"/".to_vec(),
        kind: Kind::Dir,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: 0,
        data: String::new(),
        cap: None,
        inode: None,
    }];
    let mut w = Walker {
        root,
        hashes: HashMap::new(),
        disk_usage: st.st_blocks as u64 * 512,
        seen: HashMap::new(),
        buf: vec![0u8; 256 * 1024],
    };
    let mut rel = Vec::new();
    w.dir(rootfd.as_fd(), &mut rel, &mut recs)?;

    // Sort by path bytes: a depth-first walk is not in that order ("a-b" < "a/b").
    recs.sort_by(|a, b| a.path.cmp(&b.path));
    // The first path of a multiply-linked inode (in manifest order) is the file, the others
    // are hardlinks to it: deterministic whatever order readdir returned.
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut size = 0u64;
    let mut setid = 0u64;
    for r in recs.iter_mut() {
        if r.mode & 0o6000 != 0 {
            setid += 1;
        }
        if let Some(ino) = r.inode {
            if let Some(p) = first.get(&ino) {
                r.kind = Kind::Hardlink;
                r.data = escape(p);
                r.size = 0;
                r.cap = None;
                continue;
            }
            first.insert(ino, r.path.clone());
        }
        if matches!(r.kind, Kind::File | Kind::Symlink) {
            size += r.size;
        }
    }
    let mut text = String::with_capacity(recs.len() * 100);
    for r in &recs {
        text.push_str(&r.line());
        text.push('\n');
    }
    let id = hex(&Sha256::digest(text.as_bytes()));
    Ok(Manifest {
        id,
        entries: recs.len() as u64 - 1,
        size,
        disk_usage: w.disk_usage,
        setid,
        text,
    })
}

pub(crate) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

struct Walker<'a> {
    root: &'a Path,
    /// content hash per multiply-linked inode: read each such file once
    hashes: HashMap<(u64, u64), String>,
    disk_usage: u64,
    seen: HashMap<(u64, u64), ()>,
    buf: Vec<u8>,
}

impl Walker<'_> {
    fn dir(&mut self, dir: BorrowedFd<'_>, rel: &mut Vec<u8>, out: &mut Vec<Rec>) -> Result<()> {
        let shown = fsutil::path_of(self.root, rel);
        let names = fsutil::list_dir(dir).map_err(ImageError::nix("cannot list", &shown))?;
        for name in names {
            let name = name.to_bytes();
            let len = rel.len();
            rel.push(b'/');
            rel.extend_from_slice(name);
            let res = self.entry(dir, name, rel, out);
            rel.truncate(len);
            res?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &mut Vec<u8>,
        out: &mut Vec<Rec>,
    ) -> Result<()> {
        let shown = fsutil::path_of(self.root, &rel[1..]);
        let st = lstat_at(dir, name).map_err(ImageError::nix("cannot stat", &shown))?;
        let key = (st.st_dev, st.st_ino);
        if self.seen.insert(key, ()).is_none() {
            self.disk_usage += st.st_blocks as u64 * 512;
        }
        let mut r = Rec {
            path: rel.clone(),
            kind: Kind::File,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: 0,
            data: String::new(),
            cap: None,
            inode: None,
        };
        match file_type(&st) {
            SFlag::S_IFDIR => {
                r.kind = Kind::Dir;
                out.push(r);
                let sub =
                    open_dir_beneath(dir, name).map_err(ImageError::nix("cannot open", &shown))?;
                return self.dir(sub.as_fd(), rel, out);
            }
            SFlag::S_IFREG => {
                r.size = st.st_size as u64;
                if st.st_nlink > 1 {
                    r.inode = Some(key);
                }
                let f = openat_beneath(dir, name, OFlag::O_RDONLY, Mode::empty())
                    .map_err(ImageError::nix("cannot open", &shown))?;
                r.cap = fsutil::fgetxattr(f.as_fd(), c"security.capability").map_err(
                    ImageError::io("cannot read the capability xattr of", &shown),
                )?;
                r.data = match r.inode.and_then(|k| self.hashes.get(&k)) {
                    Some(h) => h.clone(),
                    None => {
                        let mut file = std::fs::File::from(f);
                        let mut h = Sha256::new();
                        loop {
                            let n = file
                                .read(&mut self.buf)
                                .map_err(ImageError::io("cannot read", &shown))?;
                            if n == 0 {
                                break;
                            }
                            h.update(&self.buf[..n]);
                        }
                        let h = hex(&h.finalize());
                        if let Some(k) = r.inode {
                            self.hashes.insert(k, h.clone());
                        }
                        h
                    }
                };
            }
            SFlag::S_IFLNK => {
                r.kind = Kind::Symlink;
                let t = nix::fcntl::readlinkat(
                    Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
                    OsStr::from_bytes(name),
                )
                .map_err(ImageError::nix("cannot read the symlink", &shown))?;
                r.size = t.as_bytes().len() as u64;
                r.data = escape(t.as_bytes());
            }
            t => {
                r.kind = match t {
                    SFlag::S_IFIFO => Kind::Fifo,
                    SFlag::S_IFCHR => Kind::Char,
                    SFlag::S_IFBLK => Kind::Block,
                    _ => Kind::Socket,
                };
                if matches!(r.kind, Kind::Char | Kind::Block) {
                    r.data = format!(
                        "{}:{}",
                        nix::sys::stat::major(st.st_rdev),
                        nix::sys::stat::minor(st.st_rdev)
                    );
                }
            }
        }
        out.push(r);
        Ok(())
    }
}

/// One path that differs between a stored manifest and the tree as it is now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// The path as written in the manifest (escaped).
    pub path: String,
    /// "missing", "added", or what changed: "type", "mode", "owner", "size", "content",
    /// "target", "capability" (comma-separated).
    pub change: String,
}

/// Compare two manifests path by path.
pub fn diff(stored: &str, now: &str) -> Vec<Difference> {
    fn map(t: &str) -> BTreeMap<&str, Vec<&str>> {
        t.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut f = l.split(' ');
                (f.next().unwrap_or(""), f.collect())
            })
            .collect()
    }
    let (a, b) = (map(stored), map(now));
    let mut out = Vec::new();
    for (path, fa) in &a {
        match b.get(path) {
            None => out.push(Difference {
                path: path.to_string(),
                change: "missing".into(),
            }),
            Some(fb) if fa != fb => {
                fn field<'a>(v: &[&'a str], i: usize) -> &'a str {
                    v.get(i).copied().unwrap_or("")
                }
                let mut what = Vec::new();
                if field(fa, 0) != field(fb, 0) {
                    what.push("type");
                }
                if field(fa, 1) != field(fb, 1) {
                    what.push("mode");
                }
                if field(fa, 2) != field(fb, 2) || field(fa, 3) != field(fb, 3) {
                    what.push("owner");
                }
                if field(fa, 4) != field(fb, 4) {
                    what.push("size");
                }
                if field(fa, 5) != field(fb, 5) {
                    what.push(match field(fa, 0) {
                        "l" | "h" => "target",
                        _ => "content",
                    });
                }
                if field(fa, 6) != field(fb, 6) {
                    what.push("capability");
                }
                out.push(Difference {
                    path: path.to_string(),
                    change: what.join(","),
                });
            }
            Some(_) => {}
        }
    }
    for path in b.keys() {
        if !a.contains_key(path) {
            out.push(Difference {
                path: path.to_string(),
                change: "added".into(),
            });
        }
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn escaping_keeps_one_line_per_path() {
        assert_eq!(escape(b"/etc/x"), "/etc/x");
        assert_eq!(escape(b"a b\nc\\"), "a\\x20b\\x0ac\\x5c");
        assert_eq!(escape(&[0xc3, 0xa9]), "\\xc3\\xa9");
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::create_dir_all(r.join("a-b")).unwrap();
        std::fs::write(r.join("a/b/f"), b"hello").unwrap();
        std::fs::hard_link(r.join("a/b/f"), r.join("a-b/g")).unwrap();
        symlink("../a-b/g", r.join("a/l")).unwrap();
        t
    }

    #[test]
    fn manifest_is_sorted_and_links_are_canonical() {
        let t = tree();
        let m = walk(t.path()).unwrap();
        let paths: Vec<&str> = m
            .text
            .lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            paths,
            ["/", "/a", "/a-b", "/a-b/g", "/a/b", "/a/b/f", "/a/l"]
        );
        // "/a-b/g" sorts first, so it is the file and "/a/b/f" the hardlink.
        let hello = hex(&Sha256::digest(b"hello"));
        assert!(
            m.text.contains(&format!("/a-b/g f 0644 0 0 5 {hello}\n")),
            "{}",
            m.text
        );
        assert!(
            m.text.contains("/a/b/f h 0644 0 0 0 /a-b/g\n"),
            "{}",
            m.text
        );
        assert!(
            m.text.contains("/a/l l 0777 0 0 8 ../a-b/g\n"),
            "{}",
            m.text
        );
        assert_eq!(m.entries, 6);
        assert_eq!(m.size, 5 + 8);
        // Same tree, same id.
        assert_eq!(walk(t.path()).unwrap().id, m.id);
    }

    #[test]
    fn diff_names_what_changed() {
        let t = tree();
        let before = walk(t.path()).unwrap();
        std::fs::write(t.path().join("a-b/g"), b"HELLO").unwrap();
        std::fs::set_permissions(t.path().join("a"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::write(t.path().join("new"), b"").unwrap();
        std::fs::remove_file(t.path().join("a/l")).unwrap();
        let after = walk(t.path()).unwrap();
        assert_ne!(before.id, after.id);
        let d = diff(&before.text, &after.text);
        let got: Vec<(&str, &str)> = d
            .iter()
            .map(|x| (x.path.as_str(), x.change.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/a", "mode"),
                ("/a-b/g", "content"),
                ("/a/l", "missing"),
                ("/new", "added")
            ]
        );
    }
}
