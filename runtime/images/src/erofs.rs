//! An image's tree packed as one EROFS filesystem image, for read-only tenant roots:
//!
//! ```text
//! images/sha256/<id>/rootfs.erofs   the tree of rootfs/, made by mkfs.erofs on first use
//! images/mounts/<id>/               where the runtime mounts it, once per image
//! ```
//!
//! Why (docs/rootfs.md, "Read-only roots"): an idmapped bind of the tree as the root of a
//! tenant's container would show the tree's host path in the container's mountinfo, and an
//! overlay over an idmapped lower layer costs every path lookup (overlayfs leaves RCU path
//! walk for each permission check on an idmapped layer: 12% of the CPU per WordPress page,
//! measured). An EROFS image is a filesystem of its own (root field `/`), read-only by
//! construction, idmappable, and mounted once per image, so all tenants share one page cache.
//!
//! The file is derived from rootfs/, which stays the image's reference (the manifest and
//! `sgrun image verify` are about the tree). It is made under the store lock, into a
//! temporary name that is renamed when complete: a crash leaves no half-made file that a
//! later create would mount.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ImageError, Result};
use crate::store::{Image, Store};

const MKFS: &str = "mkfs.erofs";

impl Store {
    /// `sha256/<id>/rootfs.erofs` of `image`, made now if it does not exist yet (about 3 s
    /// for the 500 MiB WordPress image).
    pub fn erofs_file(&self, image: &Image) -> Result<PathBuf> {
        let file = self
            .dir()
            .join("sha256")
            .join(&image.id)
            .join("rootfs.erofs");
        if file.is_file() {
            return Ok(file);
        }
        let _lock = self.lock()?;
        if file.is_file() {
            return Ok(file); // made by a concurrent create while we waited
        }
        let _span = tracing::info_span!("erofs", image = %image.id).entered();
        let started = std::time::Instant::now();
        let tmp = file.with_extension(format!("erofs.tmp-{}", std::process::id()));
        let made = make(&tmp, &image.rootfs)
            .and_then(|()| fs::rename(&tmp, &file).map_err(ImageError::io("cannot rename", &tmp)));
        if made.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        made?;
        tracing::info!(ms = started.elapsed().as_millis(), "EROFS image made");
        Ok(file)
    }

    /// Where the runtime mounts the EROFS image of image `id` (docs/rootfs.md). The
    /// directory `mounts/` is made 0700 here, like the rest of the store.
    pub fn erofs_mount_point(&self, id: &str) -> Result<PathBuf> {
        let mounts = self.dir().join("mounts");
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&mounts)
            .map_err(ImageError::io("cannot create", &mounts))?;
        Ok(mounts.join(id))
    }

    /// Detach the EROFS mount of image `id`, if it is mounted, and remove its mount point.
    /// Running containers are not affected: each holds its own clone of the mount, which
    /// keeps the filesystem alive until its last process ends. Caller holds the lock.
    pub(crate) fn unmount_erofs(&self, id: &str) -> Result<()> {
        let mp = self.dir().join("mounts").join(id);
        match nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (never mounted, or not since the host restarted)
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(ImageError::io("cannot unmount", &mp)(e.into())),
        }
        match fs::remove_dir(&mp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(ImageError::io("cannot remove", &mp)(e))
            }
            _ => Ok(()),
        }
    }
}

/// Run mkfs.erofs: uncompressed (PHP and MariaDB read their files at full speed, no CPU
/// spent on decompression), owners, modes, times and xattrs as in the tree.
fn make(out: &Path, tree: &Path) -> Result<()> {
    let output = Command::new(MKFS)
        .arg(out)
        .arg(tree)
        .output()
        .map_err(|source| ImageError::ToolMissing {
            tool: MKFS,
            hint: "install Debian's erofs-utils (scripts/install-deps.sh does): read-only tenant roots are EROFS images",
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    // mkfs.erofs prints a progress line per file on stdout; the reason is on stderr
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text.lines().collect();
    Err(ImageError::ToolFailed {
        tool: MKFS,
        status: output.status.to_string(),
        tail: lines[lines.len().saturating_sub(10)..].join("\n"),
        hint: format!(
            "check the free space of the image store ({} is about the size of the tree)",
            out.display()
        ),
    })
}
