//! `sgrun image build DIR`: the Rust port of tests/wordpress/build-image.sh.
//!
//! The steps, in the script's order (each one matters for the tree that comes out):
//!  1. read and validate the recipe, hash it with its files/ tree: an image with the same
//!     recipe hash in the store means "up to date" (unless --rebuild);
//!  2. mmdebstrap with the script's exact options into a staging directory of the store,
//!     its `I:` lines shown as phases with the elapsed time;
//!  3. post-install, in the script's order: remove_paths (a wildcard only in the last
//!     component), mount_points, the documentation that the Essential set unpacked before
//!     dpkg's path filter applied (all of usr/share/doc but copyright files, then the empty
//!     directories), usr/share/{man,info,locale}, then files/ copied over everything (owner
//!     root, modes and times from the repository tree);
//!  4. root 0755 root:root, manifest, commit under the recipe's name.
//!
//! Every path operation inside the new tree is fd-relative and never follows a symlink.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use serde::Serialize;

use crate::error::{is_no_space, ImageError, Result};
use crate::fsutil::{self, file_type, lstat_at, open_dir_beneath};
use crate::manifest;
use crate::recipe::{self, LoadedRecipe};
use crate::store::{prepare_root, Committed, ImageMeta, ImageSource, Store};

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Build even when an image of the same recipe hash is in the store.
    pub rebuild: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    pub up_to_date: bool,
    pub recipe_hash: String,
    #[serde(flatten)]
    pub committed: Committed,
    pub seconds: f64,
}

/// Lines kept from mmdebstrap's output for the error message.
const TAIL_LINES: usize = 30;

/// Build the recipe in `dir` into the store. `progress(seconds since start, phase)` is
/// called once per phase.
pub fn build(
    store: &Store,
    dir: &Path,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(f64, &str),
) -> Result<BuildOutcome> {
    let started = Instant::now();
    let r = recipe::load(dir)?;
    let _span = tracing::info_span!("build", image = %r.name, recipe = %dir.display()).entered();
    let mut say = |msg: &str| progress(started.elapsed().as_secs_f64(), msg);

    if !opts.rebuild {
        if let Some(img) = store.find_by_recipe_hash(&r.hash)? {
            let committed = if img.names.contains(&r.name) {
                crate::store::Committed {
                    image: img,
                    new_content: false,
                    replaced: None,
                    replaced_removed: false,
                }
            } else {
                store.tag(&r.name, &img.id)?
            };
            return Ok(BuildOutcome {
                up_to_date: true,
                recipe_hash: r.hash,
                committed,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ImageError::Recipe {
            path: r.path.clone(),
            problem:
                "building needs root (mmdebstrap --mode=root keeps file ownership); rerun with sudo"
                    .into(),
        });
    }
    ensure_mmdebstrap(&mut say)?;
    say(&format!(
        "building {} from {} (suite {}, recipe hash {})",
        r.name,
        dir.display(),
        r.recipe.suite,
        &r.hash[..12]
    ));
    let staging = store.stage()?;
    let rootfs = staging.rootfs();
    run_mmdebstrap(store, &r, &rootfs, &mut say)?;
    if let Some(m) = fsutil::mounts_under(&staging.dir).into_iter().next() {
        return Err(ImageError::MountUnder {
            path: staging.dir.clone(),
            mount: m,
        });
    }
    say("post-install: removing paths, creating mount points, copying files/");
    post_install(store, &r, &rootfs)?;
    prepare_root(&rootfs)?;
    say("hashing the tree");
    let m = manifest::walk(&rootfs)?;
    let seconds = started.elapsed().as_secs_f64();
    let meta = ImageMeta {
        id: String::new(),
        names: Vec::new(),
        source: ImageSource::Recipe {
            recipe: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
            recipe_name: r.name.clone(),
            recipe_hash: r.hash.clone(),
            suite: r.recipe.suite.clone(),
        },
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        size: m.size,
        disk_usage: m.disk_usage,
        files: m.entries,
        // A recipe builds from Debian's signed packages: setuid bits stay (passwd, su…).
        trusted: true,
        stripped_setid: 0,
        stripped_caps: 0,
        seconds,
        config: Default::default(),
    };
    let committed = store.commit(staging, &m, meta, Some(&r.name))?;
    Ok(BuildOutcome {
        up_to_date: false,
        recipe_hash: r.hash,
        committed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn ensure_mmdebstrap(say: &mut dyn FnMut(&str)) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("mmdebstrap").is_file()))
        .unwrap_or(false);
    if found {
        return Ok(());
    }
    say("mmdebstrap is missing: installing it with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "mmdebstrap"])
            .stdout(Stdio::null())
            .status()
    };
    let ok = |s: io::Result<std::process::ExitStatus>| s.map(|s| s.success()).unwrap_or(false);
    if ok(install()) {
        return Ok(());
    }
    let _ = Command::new("apt-get")
        .args(["update", "-q"])
        .stdout(Stdio::null())
        .status();
    if ok(install()) {
        return Ok(());
    }
    Err(ImageError::ToolMissing {
        tool: "mmdebstrap",
        hint: "install it with `apt-get install mmdebstrap` (Debian's package)",
        source: io::Error::from(io::ErrorKind::NotFound),
    })
}

fn run_mmdebstrap(
    store: &Store,
    r: &LoadedRecipe,
    rootfs: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    let (rd, wr) =
        nix::unistd::pipe().map_err(ImageError::nix("cannot make a pipe for", "mmdebstrap"))?;
    let wr2 = wr
        .try_clone()
        .map_err(ImageError::io("cannot make a pipe for", "mmdebstrap"))?;
    let mut child = {
        let mut cmd = Command::new("mmdebstrap");
        cmd.args(r.mmdebstrap_options())
            .arg(&r.recipe.suite)
            .arg(rootfs)
            .arg(r.sources())
            .stdin(Stdio::null())
            .stdout(Stdio::from(wr))
            .stderr(Stdio::from(wr2));
        // SAFETY: the closure only calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // If sgrun dies, mmdebstrap gets SIGTERM and undoes its mounts itself,
                // instead of writing on into a staging directory nobody owns.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().map_err(|source| ImageError::ToolMissing {
            tool: "mmdebstrap",
            hint: "install it with `apt-get install mmdebstrap`",
            source,
        })?
        // `cmd`, holding the parent's copies of the pipe's write end, is dropped here: the
        // reader below sees EOF when mmdebstrap and its children exit.
    };
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut no_space: Option<String> = None;
    for line in BufReader::new(File::from(rd)).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        if line.contains("No space left on device") && no_space.is_none() {
            no_space = Some(line.clone());
        }
        if let Some(info) = line.strip_prefix("I: ") {
            say(info.trim_end_matches("..."));
        } else if let Some(w) = line.strip_prefix("W: ") {
            say(&format!("warning: {w}"));
        } else if line.starts_with("E: ") {
            say(&line);
        }
        tracing::debug!(target: "mmdebstrap", "{line}");
        if !line.is_empty() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child
        .wait()
        .map_err(ImageError::io("cannot wait for", "mmdebstrap"))?;
    if status.success() {
        return Ok(());
    }
    let tail: Vec<String> = tail.into_iter().collect();
    if let Some(line) = no_space {
        return Err(ImageError::NoSpace {
            store: store.dir().to_path_buf(),
            what: format!("the new rootfs {} ({line})", rootfs.display()),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        });
    }
    Err(ImageError::ToolFailed {
        tool: "mmdebstrap",
        status: status.to_string(),
        tail: tail.join("\n"),
        hint: format!(
            "see its output above; a 'Could not resolve' or 'Temporary failure' means the mirror {} is unreachable",
            r.recipe.mirror
        ),
    })
}

fn io_err(store: &Store, what: &Path, e: io::Error) -> ImageError {
    if is_no_space(&e) {
        ImageError::NoSpace {
            store: store.dir().to_path_buf(),
            what: what.display().to_string(),
            source: e,
        }
    } else {
        ImageError::Io {
            op: "cannot write",
            path: what.to_path_buf(),
            source: e,
        }
    }
}

/// `*` and `?` against one name (the shell's globbing of the script's `rm -rf "$new"/$arg`).
pub(crate) fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    // Like the shell, a leading dot is matched only by a literal dot.
    if name.first() == Some(&b'.') && pat.first() != Some(&b'.') {
        return false;
    }
    fn m(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], n) || (!n.is_empty() && m(p, &n[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    m(pat, name)
}

fn post_install(store: &Store, r: &LoadedRecipe, rootfs: &Path) -> Result<()> {
    let root = fsutil::open_dir(rootfs)?;
    let rootfd = root.as_fd();
    let at = |rel: &str| rootfs.join(rel);
    for p in &r.recipe.remove_paths {
        let (parent, last) = p.rsplit_once('/').unwrap_or(("", p.as_str()));
        let dir = match open_dir_beneath(rootfd, parent.as_bytes()) {
            Ok(d) => d,
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => continue,
            Err(e) => return Err(ImageError::nix("cannot open", at(parent))(e)),
        };
        if last.contains(['*', '?']) {
            let names = fsutil::list_dir(dir.as_fd())
                .map_err(ImageError::nix("cannot list", at(parent)))?;
            for n in names {
                if glob_match(last.as_bytes(), n.to_bytes()) {
                    let shown = at(parent).join(OsStr::from_bytes(n.to_bytes()));
                    fsutil::remove_at(dir.as_fd(), n.to_bytes(), &shown)?;
                }
            }
        } else {
            fsutil::remove_at(dir.as_fd(), last.as_bytes(), &at(p))?;
        }
    }
    for p in &r.recipe.mount_points {
        mkdir_p(store, rootfd, rootfs, p)?;
    }
    // Documentation the Essential set unpacked before dpkg's path-exclude applied.
    if let Ok(doc) = open_dir_beneath(rootfd, b"usr/share/doc") {
        prune_docs(doc.as_fd(), &at("usr/share/doc"))?;
    }
    if let Ok(share) = open_dir_beneath(rootfd, b"usr/share") {
        for d in ["man", "info", "locale"] {
            fsutil::remove_at(share.as_fd(), d.as_bytes(), &at("usr/share").join(d))?;
        }
    }
    if let Some(files) = &r.files_dir {
        copy_tree(store, files, rootfd, rootfs)?;
    }
    Ok(())
}

/// `mkdir -p` below the root: 0755 root:root, never through a symlink.
fn mkdir_p(store: &Store, root: BorrowedFd<'_>, rootfs: &Path, rel: &str) -> Result<()> {
    let dup = nix::unistd::dup(root.as_raw_fd()).map_err(ImageError::nix("cannot dup", rootfs))?;
    // SAFETY: dup returned a fresh fd that nothing else owns.
    let mut cur = unsafe { OwnedFd::from_raw_fd(dup) };
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let shown = rootfs.join(rel);
        match nix::sys::stat::mkdirat(Some(cur.as_raw_fd()), c, Mode::from_bits_truncate(0o755)) {
            Ok(()) => {
                let d = open_dir_beneath(cur.as_fd(), c.as_bytes())
                    .map_err(ImageError::nix("cannot open", &shown))?;
                nix::sys::stat::fchmod(d.as_raw_fd(), Mode::from_bits_truncate(0o755))
                    .map_err(ImageError::nix("cannot chmod", &shown))?;
                cur = d;
            }
            Err(Errno::EEXIST) => {
                cur = open_dir_beneath(cur.as_fd(), c.as_bytes()).map_err(ImageError::nix(
                    "cannot open (a symlink or a file is in the way)",
                    &shown,
                ))?;
            }
            Err(e) => return Err(io_err(store, &shown, io::Error::from(e))),
        }
    }
    Ok(())
}

/// `find DIR -mindepth 1 ! -type d ! -name copyright -delete`, then the directories left
/// empty, deepest first.
fn prune_docs(dir: BorrowedFd<'_>, shown: &Path) -> Result<()> {
    for n in fsutil::list_dir(dir).map_err(ImageError::nix("cannot list", shown))? {
        let n = n.to_bytes();
        let p = shown.join(OsStr::from_bytes(n));
        let st = lstat_at(dir, n).map_err(ImageError::nix("cannot stat", &p))?;
        if file_type(&st) == SFlag::S_IFDIR {
            let sub = open_dir_beneath(dir, n).map_err(ImageError::nix("cannot open", &p))?;
            prune_docs(sub.as_fd(), &p)?;
            let empty = fsutil::list_dir(sub.as_fd())
                .map_err(ImageError::nix("cannot list", &p))?
                .is_empty();
            if empty {
                nix::unistd::unlinkat(
                    Some(dir.as_raw_fd()),
                    OsStr::from_bytes(n),
                    nix::unistd::UnlinkatFlags::RemoveDir,
                )
                .map_err(ImageError::nix("cannot remove", &p))?;
            }
        } else if n != b"copyright" {
            nix::unistd::unlinkat(
                Some(dir.as_raw_fd()),
                OsStr::from_bytes(n),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )
            .map_err(ImageError::nix("cannot remove", &p))?;
        }
    }
    Ok(())
}

/// `cp -a --no-preserve=ownership SRC/. ROOT/`: modes and times from the source, new files
/// owned by root, existing directories and files keep their owner (cp writes into them).
fn copy_tree(store: &Store, src: &Path, dst: BorrowedFd<'_>, dst_shown: &Path) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(src)
        .map_err(ImageError::io("cannot list", src))?
        .collect::<io::Result<Vec<_>>>()
        .map_err(ImageError::io("cannot list", src))?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name();
        let nb = name.as_bytes();
        let sp = e.path();
        let dp = dst_shown.join(&name);
        let md = std::fs::symlink_metadata(&sp).map_err(ImageError::io("cannot stat", &sp))?;
        let mode = Mode::from_bits_truncate(md.permissions().mode() & 0o7777);
        let times = (
            TimeSpec::new(md.atime(), md.atime_nsec()),
            TimeSpec::new(md.mtime(), md.mtime_nsec()),
        );
        let existing = match lstat_at(dst, nb) {
            Ok(st) => Some(file_type(&st)),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(ImageError::nix("cannot stat", &dp)(e)),
        };
        let ft = md.file_type();
        if ft.is_dir() {
            if existing.is_some() && existing != Some(SFlag::S_IFDIR) {
                fsutil::remove_at(dst, nb, &dp)?;
            }
            if existing != Some(SFlag::S_IFDIR) {
                nix::sys::stat::mkdirat(Some(dst.as_raw_fd()), nb, Mode::from_bits_truncate(0o700))
                    .map_err(|e| io_err(store, &dp, e.into()))?;
            }
            let d = open_dir_beneath(dst, nb).map_err(ImageError::nix("cannot open", &dp))?;
            copy_tree(store, &sp, d.as_fd(), &dp)?;
            nix::sys::stat::fchmod(d.as_raw_fd(), mode)
                .map_err(ImageError::nix("cannot chmod", &dp))?;
            nix::sys::stat::futimens(d.as_raw_fd(), &times.0, &times.1)
                .map_err(ImageError::nix("cannot set the times of", &dp))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&sp).map_err(ImageError::io("cannot read", &sp))?;
            if existing.is_some() {
                fsutil::remove_at(dst, nb, &dp)?;
            }
            nix::unistd::symlinkat(&target, Some(dst.as_raw_fd()), nb)
                .map_err(|e| io_err(store, &dp, e.into()))?;
            nix::sys::stat::utimensat(
                Some(dst.as_raw_fd()),
                nb,
                &times.0,
                &times.1,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(ImageError::nix("cannot set the times of", &dp))?;
        } else if ft.is_file() {
            let flags = if existing == Some(SFlag::S_IFREG) {
                OFlag::O_WRONLY | OFlag::O_TRUNC
            } else {
                if existing.is_some() {
                    fsutil::remove_at(dst, nb, &dp)?;
                }
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL
            };
            let fd = fsutil::openat_beneath(dst, nb, flags, Mode::from_bits_truncate(0o600))
                .map_err(ImageError::nix("cannot open", &dp))?;
            let mut out = File::from(fd);
            let mut input = File::open(&sp).map_err(ImageError::io("cannot read", &sp))?;
            let mut buf = Vec::new();
            input
                .read_to_end(&mut buf)
                .map_err(ImageError::io("cannot read", &sp))?;
            out.write_all(&buf).map_err(|e| io_err(store, &dp, e))?;
            nix::sys::stat::fchmod(out.as_raw_fd(), mode)
                .map_err(ImageError::nix("cannot chmod", &dp))?;
            nix::sys::stat::futimens(out.as_raw_fd(), &times.0, &times.1)
                .map_err(ImageError::nix("cannot set the times of", &dp))?;
        } else {
            return Err(ImageError::Recipe {
                path: sp,
                problem: "only files, directories and symlinks may be in files/".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"mysql"));
        assert!(!glob_match(b"*", b".hidden"));
        assert!(glob_match(b".*", b".hidden"));
        assert!(glob_match(b"*.log", b"dpkg.log"));
        assert!(!glob_match(b"*.log", b"dpkg.log.1"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"templates.dat-old", b"templates.dat-old"));
    }
}
