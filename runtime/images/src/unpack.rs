//! Safe unpacking of image layers (tar streams) into a staging root.
//!
//! The `tar` crate only parses headers here; every file is created by this module with
//! directory-fd-relative calls beneath the staging root, so that nothing an archive says can
//! make root write outside it:
//!
//! - the parent directory of each entry is opened with openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): an entry whose path passes through a
//!   symlink (the classic "symlink to /etc, then etc-link/passwd") fails with ELOOP and is
//!   refused, whether the symlink is absolute or relative;
//! - the entry itself is made with mkdirat / openat(O_CREAT|O_EXCL|O_NOFOLLOW) / symlinkat /
//!   linkat / mknodat (fifos only) on that parent fd, then owned with fchown /
//!   fchownat(AT_SYMLINK_NOFOLLOW) and moded with fchmod: never a path walk, never a follow;
//! - paths with `..`, absolute paths, NUL, more than [`MAX_DEPTH`] components or
//!   [`MAX_PATH`] bytes, device nodes, hardlinks to anything but an already unpacked regular
//!   file of this image, and symlinks whose relative target climbs above the image root are
//!   refused with the rule they broke ([`EntryRule`]);
//! - absolute symlink targets are accepted: they resolve inside the container's root at run
//!   time, every Debian tree has hundreds of them (/etc/alternatives, /etc/localtime), and
//!   neither this unpacker nor the store ever follows a symlink (see docs/images.md);
//! - setuid/setgid bits and file capabilities are stripped unless the import is trusted;
//! - logical bytes are counted against a budget (free space of the store, or --max-size)
//!   before anything is written, which stops a "huge sparse file" at its header.
//!
//! Layers are applied in order into one tree; whiteouts (`.wh.NAME`, `.wh..wh..opq`) delete
//! what earlier layers made, with the same no-follow removal.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use tar::EntryType;

use crate::error::{is_no_space, ImageError, Result};
use crate::fsutil::{self, file_type, lstat_at, open_dir_beneath};

/// Deepest path accepted (components). Debian's deepest paths have about 15; a tarball of
/// 10,000 nested directories is refused at the 257th.
pub const MAX_DEPTH: usize = 256;
/// Longest path accepted, in bytes (PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest single name (NAME_MAX).
pub const MAX_NAME: usize = 255;

/// Why an entry was refused. Each text says what the rule protects against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryRule {
    DotDot,
    AbsolutePath,
    Nul,
    TooDeep { depth: usize },
    TooLong { len: usize },
    NameTooLong { len: usize },
    Device { kind: &'static str },
    ThroughSymlink { component: String },
    NotADirectory { component: String },
    SymlinkEscapes { target: String },
    EmptyLinkTarget,
    HardlinkAbsolute { target: String },
    HardlinkDotDot { target: String },
    HardlinkBadPath { target: String, why: Box<EntryRule> },
    HardlinkThroughSymlink { target: String, component: String },
    HardlinkMissing { target: String },
    HardlinkNotFile { target: String, kind: &'static str },
    HardlinkToItself,
    UnsupportedType { code: u8 },
    PaxSparse,
    BadOwner { uid: u64, gid: u64 },
    RootNotDir,
    BadWhiteout,
    Truncated { expected: u64, got: u64 },
}

impl fmt::Display for EntryRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use EntryRule::*;
        match self {
            DotDot => write!(f, "its path has a \"..\" component, which could climb out of the image"),
            AbsolutePath => write!(f, "its path is absolute; image entries are relative to the image root"),
            Nul => write!(f, "its name holds a NUL byte"),
            TooDeep { depth } => write!(f, "its path is {depth} components deep, more than {MAX_DEPTH}"),
            TooLong { len } => write!(f, "its path is {len} bytes long, more than {MAX_PATH}"),
            NameTooLong { len } => write!(f, "one of its names is {len} bytes long, more than {MAX_NAME}"),
            Device { kind } => write!(f, "it is a {kind} device node; images may not carry device nodes (the runtime provides /dev)"),
            ThroughSymlink { component } => write!(f, "its path passes through the symlink {component:?}; writing through it could land outside the image"),
            NotADirectory { component } => write!(f, "its path passes through {component:?}, which is not a directory"),
            SymlinkEscapes { target } => write!(f, "it is a symlink to {target:?}, which climbs above the image root"),
            EmptyLinkTarget => write!(f, "it is a link with an empty target"),
            HardlinkAbsolute { target } => write!(f, "it is a hardlink to the absolute path {target:?}, outside the image"),
            HardlinkDotDot { target } => write!(f, "it is a hardlink to {target:?}, which has a \"..\" component"),
            HardlinkBadPath { target, why } => write!(f, "it is a hardlink to {target:?}, whose path is not valid ({why})"),
            HardlinkThroughSymlink { target, component } => write!(f, "it is a hardlink to {target:?}, whose path passes through the symlink {component:?}"),
            HardlinkMissing { target } => write!(f, "it is a hardlink to {target:?}, which is not an already unpacked file of this image"),
            HardlinkNotFile { target, kind } => write!(f, "it is a hardlink to {target:?}, which is a {kind}, not a regular file"),
            HardlinkToItself => write!(f, "it is a hardlink to itself"),
            UnsupportedType { code } => write!(f, "its tar entry type {:?} is not supported (files, directories, symlinks, hardlinks and fifos are)", *code as char),
            PaxSparse => write!(f, "it is a PAX-format sparse file, which sgrun does not unpack; re-create the archive without --sparse or with --format=gnu"),
            BadOwner { uid, gid } => write!(f, "its owner {uid}:{gid} is out of range"),
            RootNotDir => write!(f, "it replaces the image root with something that is not a directory"),
            BadWhiteout => write!(f, "it is a whiteout for \".\" or \"..\""),
            Truncated { expected, got } => write!(f, "the archive ends inside it ({got} of {expected} bytes)"),
        }
    }
}

/// Split an archive path into its components: `./` and empty components are dropped, `..`,
/// absolute paths, NUL, and too deep or too long paths are refused.
pub fn normalize_path(raw: &[u8]) -> std::result::Result<Vec<&[u8]>, EntryRule> {
    if raw.contains(&0) {
        return Err(EntryRule::Nul);
    }
    if raw.first() == Some(&b'/') {
        return Err(EntryRule::AbsolutePath);
    }
    if raw.len() > MAX_PATH {
        return Err(EntryRule::TooLong { len: raw.len() });
    }
    let mut comps = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err(EntryRule::DotDot),
            c if c.len() > MAX_NAME => return Err(EntryRule::NameTooLong { len: c.len() }),
            c => comps.push(c),
        }
        if comps.len() > MAX_DEPTH {
            return Err(EntryRule::TooDeep { depth: comps.len() });
        }
    }
    Ok(comps)
}

/// A symlink at depth `parent_depth` (number of directories above it below the root) may
/// point anywhere inside the image: a relative target must not climb above the root.
/// Absolute targets are accepted (see the module comment).
pub fn check_symlink_target(
    parent_depth: usize,
    target: &[u8],
) -> std::result::Result<(), EntryRule> {
    if target.is_empty() {
        return Err(EntryRule::EmptyLinkTarget);
    }
    if target.contains(&0) {
        return Err(EntryRule::Nul);
    }
    if target.len() > MAX_PATH {
        return Err(EntryRule::TooLong { len: target.len() });
    }
    if target[0] == b'/' {
        return Ok(());
    }
    let mut depth = parent_depth as isize;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(EntryRule::SymlinkEscapes {
                        target: String::from_utf8_lossy(target).into_owned(),
                    });
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// An entry path for an error message: a hostile path may be kilobytes long; keep its
/// start and its end.
fn shown(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() <= 240 {
        return s.into_owned();
    }
    let head: String = s.chars().take(160).collect();
    let tail: String = s.chars().skip(s.chars().count() - 60).collect();
    format!("{head}…{tail} ({} bytes)", b.len())
}

/// What the unpacker needs to know besides the layers.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Keep setuid/setgid bits and file capabilities.
    pub trusted: bool,
    /// Most logical bytes the image may have.
    pub max_bytes: u64,
    /// Where `max_bytes` comes from, for the error ("the free space of …", "--max-size").
    pub max_reason: String,
    /// The store directory, for "no space" errors.
    pub store: PathBuf,
}

/// Figures of one unpack.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnpackStats {
    pub layers: u64,
    pub entries: u64,
    pub bytes: u64,
    /// setuid/setgid bits taken off (untrusted imports).
    pub stripped_setid: u64,
    /// security.capability xattrs dropped (untrusted imports).
    pub stripped_caps: u64,
    pub whiteouts: u64,
    /// Extended attributes other than security.capability, which are not applied.
    pub ignored_xattrs: u64,
}

pub struct Unpacker {
    root: OwnedFd,
    root_path: PathBuf,
    /// The archive, for errors.
    file: PathBuf,
    opts: UnpackOptions,
    pub stats: UnpackStats,
    /// Directory mtimes, applied once every layer is in: creating children changes them.
    dir_times: HashMap<Vec<u8>, i64>,
    buf: Vec<u8>,
}

/// The subject of one entry's errors.
struct Ctx<'a> {
    layer: &'a str,
    entry: String,
}

impl Unpacker {
    /// `root_path` must be an existing, empty directory (the staging rootfs).
    pub fn new(root_path: &Path, file: &Path, opts: UnpackOptions) -> Result<Self> {
        Ok(Unpacker {
            root: fsutil::open_dir(root_path)?,
            root_path: root_path.to_path_buf(),
            file: file.to_path_buf(),
            opts,
            stats: UnpackStats::default(),
            dir_times: HashMap::new(),
            buf: vec![0u8; 128 * 1024],
        })
    }

    fn refuse(&self, cx: &Ctx<'_>, rule: EntryRule) -> ImageError {
        ImageError::UnsafeEntry {
            file: self.file.clone(),
            layer: cx.layer.to_string(),
            entry: cx.entry.clone(),
            rule,
        }
    }

    fn os_err(&self, cx: &Ctx<'_>, e: io::Error) -> ImageError {
        if is_no_space(&e) {
            ImageError::NoSpace {
                store: self.opts.store.clone(),
                what: format!(
                    "entry {:?} of {} ({})",
                    cx.entry,
                    cx.layer,
                    self.file.display()
                ),
                source: e,
            }
        } else {
            ImageError::Unpack {
                file: self.file.clone(),
                layer: cx.layer.to_string(),
                entry: cx.entry.clone(),
                source: e,
            }
        }
    }

    fn nix_err(&self, cx: &Ctx<'_>, e: Errno) -> ImageError {
        self.os_err(cx, io::Error::from(e))
    }

    /// Apply one layer (an uncompressed tar stream) on top of what is already unpacked.
    pub fn apply_layer<R: Read>(&mut self, layer: &str, reader: R) -> Result<()> {
        let _span = tracing::debug_span!("layer", layer).entered();
        self.stats.layers += 1;
        let bad_tar = |file: &Path, source| ImageError::BadTar {
            file: file.to_path_buf(),
            layer: layer.to_string(),
            source,
        };
        let mut archive = tar::Archive::new(reader);
        // Paths made (or kept) by this layer: a whiteout only hides what earlier layers made.
        let mut current: HashSet<Vec<u8>> = HashSet::new();
        let entries = archive.entries().map_err(|e| bad_tar(&self.file, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad_tar(&self.file, e))?;
            self.entry(layer, &mut entry, &mut current)?;
        }
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        layer: &str,
        entry: &mut tar::Entry<'_, R>,
        current: &mut HashSet<Vec<u8>>,
    ) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let cx = Ctx {
            layer,
            entry: shown(&raw),
        };
        let etype = entry.header().entry_type();
        if matches!(etype, EntryType::XGlobalHeader) {
            return Ok(());
        }
        // PAX records: the file capability (kept only when trusted), GNU's PAX sparse
        // encoding (refused: the data would be unpacked as a wrong file), other xattrs
        // (counted, not applied).
        let mut cap = None;
        let mut pax_sparse = false;
        let mut xattrs = 0;
        if let Some(exts) = entry.pax_extensions().map_err(|e| ImageError::BadTar {
            file: self.file.clone(),
            layer: layer.to_string(),
            source: e,
        })? {
            for ext in exts.flatten() {
                let k = ext.key_bytes();
                if k.starts_with(b"GNU.sparse.") {
                    pax_sparse = true;
                } else if k == b"SCHILY.xattr.security.capability" {
                    cap = Some(ext.value_bytes().to_vec());
                } else if k.starts_with(b"SCHILY.xattr.") || k.starts_with(b"LIBARCHIVE.xattr.") {
                    xattrs += 1;
                }
            }
        }
        self.stats.ignored_xattrs += xattrs;
        if pax_sparse {
            return Err(self.refuse(&cx, EntryRule::PaxSparse));
        }
        let comps = normalize_path(&raw).map_err(|r| self.refuse(&cx, r))?;
        self.stats.entries += 1;

        let Some((&name, parents)) = comps.split_last() else {
            // "./": the image root. Its mode and owner stay 0755 root:root (the store's
            // contract); anything but a directory there is refused.
            if matches!(etype, EntryType::Directory) {
                return Ok(());
            }
            return Err(self.refuse(&cx, EntryRule::RootNotDir));
        };

        if let Some(victim) = name.strip_prefix(b".wh.") {
            return self.whiteout(&cx, parents, victim, current);
        }
        // Every ancestor of this entry belongs to this layer from now on.
        for i in 1..=comps.len() {
            let p = join(&comps[..i]);
            if !current.contains(&p) {
                current.insert(p);
            }
        }

        let header = entry.header();
        let mut mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        // u32::MAX is "-1": chown would leave the id unchanged instead of setting it.
        if uid >= u32::MAX as u64 || gid >= u32::MAX as u64 {
            return Err(self.refuse(&cx, EntryRule::BadOwner { uid, gid }));
        }
        let (uid, gid) = (Uid::from_raw(uid as u32), Gid::from_raw(gid as u32));
        if mode & 0o6000 != 0 && !self.opts.trusted {
            mode &= !0o6000;
            self.stats.stripped_setid += 1;
        }
        if cap.is_some() && !self.opts.trusted {
            cap = None;
            self.stats.stripped_caps += 1;
        }

        match etype {
            EntryType::Char => {
                return Err(self.refuse(&cx, EntryRule::Device { kind: "character" }))
            }
            EntryType::Block => return Err(self.refuse(&cx, EntryRule::Device { kind: "block" })),
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Fifo => {}
            other => {
                return Err(self.refuse(
                    &cx,
                    EntryRule::UnsupportedType {
                        code: other.as_byte(),
                    },
                ))
            }
        }

        let parent = self.parent(&cx, parents, true)?.expect("created on demand");
        let pfd = parent.as_fd();
        let is_dir = matches!(etype, EntryType::Directory);

        // Whatever is at the path (an earlier layer's, or an earlier entry of this archive)
        // is replaced, except that a directory over a directory only takes the new metadata:
        // the lower directory's children stay (a whiteout or an opaque marker removes them).
        match lstat_at(pfd, name) {
            Ok(st) if is_dir && file_type(&st) == SFlag::S_IFDIR => {
                let dfd = open_dir_beneath(pfd, name).map_err(|e| self.nix_err(&cx, e))?;
                self.set_owner_mode(&cx, dfd.as_fd(), uid, gid, mode)?;
                self.dir_times.insert(join(&comps), mtime);
                return Ok(());
            }
            Ok(_) => {
                let shown_path = fsutil::path_of(&self.root_path, &join(&comps));
                fsutil::remove_at(pfd, name, &shown_path)?;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.nix_err(&cx, e)),
        }

        let name_os = OsStr::from_bytes(name);
        match etype {
            EntryType::Directory => {
                nix::sys::stat::mkdirat(
                    Some(pfd.as_raw_fd()),
                    name_os,
                    Mode::from_bits_truncate(0o700),
                )
                .map_err(|e| self.nix_err(&cx, e))?;
                let dfd = open_dir_beneath(pfd, name).map_err(|e| self.nix_err(&cx, e))?;
                self.set_owner_mode(&cx, dfd.as_fd(), uid, gid, mode)?;
                self.dir_times.insert(join(&comps), mtime);
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                check_symlink_target(parents.len(), &target).map_err(|r| self.refuse(&cx, r))?;
                nix::unistd::symlinkat(OsStr::from_bytes(&target), Some(pfd.as_raw_fd()), name_os)
                    .map_err(|e| self.nix_err(&cx, e))?;
                nix::unistd::fchownat(
                    Some(pfd.as_raw_fd()),
                    name_os,
                    Some(uid),
                    Some(gid),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.nix_err(&cx, e))?;
                let t = TimeSpec::new(mtime, 0);
                nix::sys::stat::utimensat(
                    Some(pfd.as_raw_fd()),
                    name_os,
                    &t,
                    &t,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| self.nix_err(&cx, e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                self.hardlink(&cx, &comps, pfd, name, &target)?;
            }
            EntryType::Fifo => {
                nix::sys::stat::mknodat(
                    Some(pfd.as_raw_fd()),
                    name_os,
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .map_err(|e| self.nix_err(&cx, e))?;
                nix::unistd::fchownat(
                    Some(pfd.as_raw_fd()),
                    name_os,
                    Some(uid),
                    Some(gid),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.nix_err(&cx, e))?;
                // After the chown, which would clear setgid.
                nix::sys::stat::fchmodat(
                    Some(pfd.as_raw_fd()),
                    name_os,
                    Mode::from_bits_truncate(mode),
                    FchmodatFlags::NoFollowSymlink,
                )
                .or_else(|e| {
                    // Linux has no lchmod: NoFollowSymlink on a non-symlink may answer
                    // EOPNOTSUPP on older kernels; the name is our fresh fifo, follow is safe.
                    if e == Errno::EOPNOTSUPP {
                        nix::sys::stat::fchmodat(
                            Some(pfd.as_raw_fd()),
                            name_os,
                            Mode::from_bits_truncate(mode),
                            FchmodatFlags::FollowSymlink,
                        )
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| self.nix_err(&cx, e))?;
            }
            _ => {
                // Regular file (GNU sparse ones come with their holes filled by the reader).
                let size = entry.size();
                self.charge(&cx, size)?;
                let fd = nix::fcntl::openat(
                    Some(pfd.as_raw_fd()),
                    name_os,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.nix_err(&cx, e))?;
                // SAFETY: fd was just opened and is owned by nobody else.
                let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                self.copy(&cx, entry, &mut file, size)?;
                // Order: chown first (it clears setuid/setgid and capabilities), then chmod,
                // then the capability, then the times (setxattr does not change mtime, but
                // writing data does).
                self.set_owner_mode(&cx, file.as_fd(), uid, gid, mode)?;
                if let Some(cap) = &cap {
                    fsutil::fsetxattr(file.as_fd(), c"security.capability", cap)
                        .map_err(|e| self.os_err(&cx, e))?;
                }
                let t = TimeSpec::new(mtime, 0);
                nix::sys::stat::futimens(file.as_raw_fd(), &t, &t)
                    .map_err(|e| self.nix_err(&cx, e))?;
            }
        }
        Ok(())
    }

    fn set_owner_mode(
        &self,
        cx: &Ctx<'_>,
        fd: BorrowedFd<'_>,
        uid: Uid,
        gid: Gid,
        mode: u32,
    ) -> Result<()> {
        nix::unistd::fchown(fd.as_raw_fd(), Some(uid), Some(gid))
            .map_err(|e| self.nix_err(cx, e))?;
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| self.nix_err(cx, e))
    }

    /// Count `size` logical bytes against the budget, before writing any of them.
    fn charge(&mut self, cx: &Ctx<'_>, size: u64) -> Result<()> {
        let total = self.stats.bytes.saturating_add(size);
        if total > self.opts.max_bytes {
            return Err(ImageError::TooBig {
                file: self.file.clone(),
                layer: cx.layer.to_string(),
                entry: cx.entry.clone(),
                total,
                limit: self.opts.max_bytes,
                why: self.opts.max_reason.clone(),
            });
        }
        self.stats.bytes = total;
        Ok(())
    }

    /// Copy the entry's data; blocks of zeros become holes (sparse files stay sparse).
    fn copy<R: Read>(
        &mut self,
        cx: &Ctx<'_>,
        entry: &mut tar::Entry<'_, R>,
        file: &mut std::fs::File,
        size: u64,
    ) -> Result<()> {
        let mut got = 0u64;
        let mut hole_at_end = false;
        let mut buf = std::mem::take(&mut self.buf);
        let res = (|| -> Result<()> {
            loop {
                let n = entry.read(&mut buf).map_err(|e| ImageError::BadTar {
                    file: self.file.clone(),
                    layer: cx.layer.to_string(),
                    source: e,
                })?;
                if n == 0 {
                    break;
                }
                got += n as u64;
                if buf[..n].iter().all(|&b| b == 0) {
                    file.seek(SeekFrom::Current(n as i64))
                        .map_err(|e| self.os_err(cx, e))?;
                    hole_at_end = true;
                } else {
                    file.write_all(&buf[..n]).map_err(|e| self.os_err(cx, e))?;
                    hole_at_end = false;
                }
            }
            if got != size {
                return Err(self.refuse(
                    cx,
                    EntryRule::Truncated {
                        expected: size,
                        got,
                    },
                ));
            }
            if hole_at_end {
                file.set_len(size).map_err(|e| self.os_err(cx, e))?;
            }
            Ok(())
        })();
        self.buf = buf;
        res
    }

    /// Open the directory `comps` below the root, never through a symlink. With `create`,
    /// missing directories are made (0755 root:root, as tar does); without, a missing one
    /// answers None.
    fn parent(&self, cx: &Ctx<'_>, comps: &[&[u8]], create: bool) -> Result<Option<OwnedFd>> {
        match open_dir_beneath(self.root.as_fd(), &join(comps)) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::ENOENT) if !create => {
                // Could still be a symlink further up: walk to say which.
            }
            Err(Errno::ENOENT) | Err(Errno::ELOOP) | Err(Errno::ENOTDIR) | Err(Errno::EXDEV) => {}
            Err(e) => return Err(self.nix_err(cx, e)),
        }
        // Slow path: one component at a time, to create what is missing or to name the
        // component that is a symlink or not a directory.
        let dup = nix::unistd::dup(self.root.as_raw_fd()).map_err(|e| self.nix_err(cx, e))?;
        // SAFETY: dup returned a fresh fd that nothing else owns.
        let mut cur = unsafe { OwnedFd::from_raw_fd(dup) };
        for (i, c) in comps.iter().enumerate() {
            let here = || shown(&join(&comps[..=i]));
            match open_dir_beneath(cur.as_fd(), c) {
                Ok(next) => cur = next,
                Err(Errno::ENOENT) if create => {
                    nix::sys::stat::mkdirat(
                        Some(cur.as_raw_fd()),
                        OsStr::from_bytes(c),
                        Mode::from_bits_truncate(0o755),
                    )
                    .map_err(|e| self.nix_err(cx, e))?;
                    // mkdirat honours the umask: set the mode explicitly.
                    let next = open_dir_beneath(cur.as_fd(), c).map_err(|e| self.nix_err(cx, e))?;
                    nix::sys::stat::fchmod(next.as_raw_fd(), Mode::from_bits_truncate(0o755))
                        .map_err(|e| self.nix_err(cx, e))?;
                    cur = next;
                }
                Err(Errno::ENOENT) => return Ok(None),
                // O_DIRECTORY|O_NOFOLLOW answers ENOTDIR for a symlink: look at what it is.
                Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                    let is_link = lstat_at(cur.as_fd(), c)
                        .map(|st| file_type(&st) == SFlag::S_IFLNK)
                        .unwrap_or(false);
                    let rule = if is_link {
                        EntryRule::ThroughSymlink { component: here() }
                    } else {
                        EntryRule::NotADirectory { component: here() }
                    };
                    return Err(self.refuse(cx, rule));
                }
                Err(e) => return Err(self.nix_err(cx, e)),
            }
        }
        Ok(Some(cur))
    }

    fn hardlink(
        &mut self,
        cx: &Ctx<'_>,
        comps: &[&[u8]],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        target: &[u8],
    ) -> Result<()> {
        let t = shown(target);
        let tcomps = match normalize_path(target) {
            Ok(c) => c,
            Err(EntryRule::AbsolutePath) => {
                return Err(self.refuse(cx, EntryRule::HardlinkAbsolute { target: t }))
            }
            Err(EntryRule::DotDot) => {
                return Err(self.refuse(cx, EntryRule::HardlinkDotDot { target: t }))
            }
            Err(EntryRule::Nul) if target.is_empty() => {
                return Err(self.refuse(cx, EntryRule::EmptyLinkTarget))
            }
            Err(why) => {
                return Err(self.refuse(
                    cx,
                    EntryRule::HardlinkBadPath {
                        target: t,
                        why: Box::new(why),
                    },
                ))
            }
        };
        let Some((&tname, tparents)) = tcomps.split_last() else {
            return Err(self.refuse(cx, EntryRule::EmptyLinkTarget));
        };
        if tcomps == comps {
            return Err(self.refuse(cx, EntryRule::HardlinkToItself));
        }
        let tparent = match self.parent(cx, tparents, false) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Err(self.refuse(cx, EntryRule::HardlinkMissing { target: t })),
            Err(ImageError::UnsafeEntry {
                rule: EntryRule::ThroughSymlink { component },
                ..
            }) => {
                return Err(self.refuse(
                    cx,
                    EntryRule::HardlinkThroughSymlink {
                        target: t,
                        component,
                    },
                ))
            }
            Err(ImageError::UnsafeEntry {
                rule: EntryRule::NotADirectory { .. },
                ..
            }) => return Err(self.refuse(cx, EntryRule::HardlinkMissing { target: t })),
            Err(e) => return Err(e),
        };
        let st = match lstat_at(tparent.as_fd(), tname) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                return Err(self.refuse(cx, EntryRule::HardlinkMissing { target: t }))
            }
            Err(e) => return Err(self.nix_err(cx, e)),
        };
        let kind = match file_type(&st) {
            SFlag::S_IFREG => None,
            SFlag::S_IFDIR => Some("directory"),
            SFlag::S_IFLNK => Some("symlink"),
            SFlag::S_IFIFO => Some("fifo"),
            _ => Some("special file"),
        };
        if let Some(kind) = kind {
            return Err(self.refuse(cx, EntryRule::HardlinkNotFile { target: t, kind }));
        }
        // No AT_SYMLINK_FOLLOW: the target (a regular file, checked above) is linked itself.
        nix::unistd::linkat(
            Some(tparent.as_raw_fd()),
            OsStr::from_bytes(tname),
            Some(pfd.as_raw_fd()),
            OsStr::from_bytes(name),
            AtFlags::empty(),
        )
        .map_err(|e| self.nix_err(cx, e))
    }

    fn whiteout(
        &mut self,
        cx: &Ctx<'_>,
        parents: &[&[u8]],
        victim: &[u8],
        current: &HashSet<Vec<u8>>,
    ) -> Result<()> {
        self.stats.whiteouts += 1;
        let Some(dir) = self.parent(cx, parents, false)? else {
            // Nothing below a missing directory to hide.
            return Ok(());
        };
        let dir_rel = join(parents);
        let child_rel = |name: &[u8]| {
            let mut p = dir_rel.clone();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(name);
            p
        };
        if victim == b".wh..opq" {
            // Opaque directory: everything earlier layers put in it goes; what this layer
            // already put there stays.
            let names = fsutil::list_dir(dir.as_fd()).map_err(|e| self.nix_err(cx, e))?;
            for n in names {
                let n = n.to_bytes();
                let rel = child_rel(n);
                if !current.contains(&rel) {
                    fsutil::remove_at(dir.as_fd(), n, &fsutil::path_of(&self.root_path, &rel))?;
                }
            }
            return Ok(());
        }
        if victim.is_empty() || victim == b"." || victim == b".." {
            return Err(self.refuse(cx, EntryRule::BadWhiteout));
        }
        let rel = child_rel(victim);
        if current.contains(&rel) {
            return Ok(());
        }
        fsutil::remove_at(dir.as_fd(), victim, &fsutil::path_of(&self.root_path, &rel))
    }

    /// Apply the directory times, once every layer is in.
    pub fn finish(mut self) -> Result<UnpackStats> {
        for (rel, mtime) in std::mem::take(&mut self.dir_times) {
            // A later layer may have removed or replaced it: skip what is not a directory.
            if let Ok(fd) = open_dir_beneath(self.root.as_fd(), &rel) {
                let t = TimeSpec::new(mtime, 0);
                let _ = nix::sys::stat::futimens(fd.as_raw_fd(), &t, &t);
            }
        }
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            normalize_path(b"./a//b/./c").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert_eq!(normalize_path(b"./").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(normalize_path(b"a/../b"), Err(EntryRule::DotDot));
        assert_eq!(normalize_path(b"../x"), Err(EntryRule::DotDot));
        assert_eq!(normalize_path(b"/etc/passwd"), Err(EntryRule::AbsolutePath));
        assert_eq!(normalize_path(b"a\0b"), Err(EntryRule::Nul));
        let deep = "a/".repeat(MAX_DEPTH + 1);
        assert_eq!(
            normalize_path(deep.as_bytes()),
            Err(EntryRule::TooDeep {
                depth: MAX_DEPTH + 1
            })
        );
        assert!(normalize_path("a/".repeat(MAX_DEPTH).as_bytes()).is_ok());
        let long = "abcdefgh/".repeat(600);
        assert!(matches!(
            normalize_path(long.as_bytes()),
            Err(EntryRule::TooLong { .. })
        ));
        let name = "n".repeat(256);
        assert_eq!(
            normalize_path(name.as_bytes()),
            Err(EntryRule::NameTooLong { len: 256 })
        );
    }

    #[test]
    fn symlink_targets() {
        // /etc/alternatives/x -> /usr/bin/y: absolute targets are fine.
        check_symlink_target(2, b"/usr/bin/y").unwrap();
        // /usr/lib/x/l -> ../../../etc stays at the root: fine; one more climbs out.
        check_symlink_target(3, b"../../../etc").unwrap();
        assert!(matches!(
            check_symlink_target(3, b"../../../../etc"),
            Err(EntryRule::SymlinkEscapes { .. })
        ));
        // a top-level symlink cannot go up at all
        assert!(check_symlink_target(0, b"..").is_err());
        // climbing after descending is counted in order
        check_symlink_target(0, b"a/../b").unwrap();
        assert!(check_symlink_target(0, b"a/../../b").is_err());
        assert_eq!(
            check_symlink_target(0, b""),
            Err(EntryRule::EmptyLinkTarget)
        );
    }
}
