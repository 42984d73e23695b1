//! The root of a read-only tenant container: the image's EROFS image (sgrun-images,
//! `rootfs.erofs`), mounted **once per image** on the host at `images/mounts/<id>` and cloned
//! for each container (the clone is then idmapped into the tenant's range by the caller).
//!
//! Once per image, not per container: EROFS backed by a file makes a new superblock at every
//! mount, and every superblock has its own page cache. Mounted once, the image's binaries and
//! PHP files are cached once for all tenants, as the shared lower layer of an overlay was.
//!
//! The host mount is only a cache of the superblock. A container holds its own clone, which
//! keeps the filesystem alive until its last process is gone, so the host mount can be
//! detached at any time (`sgrun image rm` does) without touching running containers. After a
//! host restart the first read-only create mounts it again.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use sgrun_images::Store;
use tracing::info;

use crate::error::{Result, RootfsError};
use crate::image_ref::ImageRef;
use crate::sys;

/// statfs(2) f_type of EROFS (linux/magic.h).
const EROFS_SUPER_MAGIC_V1: i64 = 0xE0F5_E1E2;

fn is_erofs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    // An unmounted mount point reports the filesystem of the store (ext4, xfs, ...).
    rc == 0 && st.f_type as i64 == EROFS_SUPER_MAGIC_V1
}

/// Whether a read-only root can be the image's EROFS: `None` if every mount point the config
/// needs (its mounts' destinations, then /srv/site) exists in the image, else the first one
/// missing. An EROFS cannot get a new directory; the overlay can make it in its upper layer.
/// A destination on an earlier mount of the config needs nothing from the image (a tmpfs at
/// /run makes /run/mysqld possible). Symlinks of the image are resolved inside it, as the
/// runtime resolves destinations.
pub fn missing_mount_point(image_rootfs: &Path, spec: &oci_spec::runtime::Spec) -> Option<String> {
    let root = match sys::open_dir(image_rootfs, libc::O_PATH) {
        Ok(fd) => fd,
        Err(_) => return Some("/".into()),
    };
    let mut mounted: Vec<String> = Vec::new();
    let wanted = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .chain(std::iter::once(format!("/{}", crate::SITE_MOUNT)));
    for dest in wanted {
        let dest = format!("/{}", dest.trim_matches('/'));
        let on_earlier = mounted
            .iter()
            .any(|m| dest == *m || m == "/" || dest.starts_with(&format!("{m}/")));
        if !on_earlier {
            let rel = dest.trim_start_matches('/');
            let found = rel.is_empty()
                || sys::openat2(
                    root.as_fd(),
                    rel,
                    libc::O_PATH,
                    0,
                    libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
                )
                .is_ok();
            if !found {
                return Some(dest);
            }
        }
        mounted.push(dest);
    }
    None
}

/// A detached, non-recursive clone of the EROFS mount of `image`, mounting it first if it is
/// not mounted (making the EROFS file first if the image has none yet).
pub fn clone(state: &Path, image: &ImageRef) -> Result<OwnedFd> {
    let store = Store::open(state)?;
    let file = store.erofs_file(image.image())?;
    let mount_point = store.erofs_mount_point(&image.hex)?;
    // Two creates of the first containers of one image must not both mount it.
    let lock_path = mount_point.with_file_name(".lock");
    let _lock = sgrun_tenants::registry::lock_file(&lock_path)?;
    if !is_erofs(&mount_point) {
        mount(&file, &mount_point, image)?;
    }
    sys::open_tree_path(&mount_point, libc::OPEN_TREE_CLONE)
        .map_err(RootfsError::sys("open_tree", mount_point.display()))
}

fn mount(file: &Path, mount_point: &Path, image: &ImageRef) -> Result<()> {
    let started = std::time::Instant::now();
    let err = |log: String| {
        let image = image.name.clone();
        let file = file.to_path_buf();
        move |source| RootfsError::Erofs {
            image,
            file,
            log,
            source,
        }
    };
    let backing = File::open(file).map_err(RootfsError::io("open", file))?;
    let fs = sys::FsContext::open(c"erofs").map_err(err("fsopen".into()))?;
    // The source is the open file by its /proc/self/fd name: the kernel opens it again
    // while we hold it, and the mount's source, which every container of the image sees
    // in its mountinfo, names no host path.
    let source =
        CString::new(format!("/proc/self/fd/{}", backing.as_raw_fd())).expect("no NUL in a number");
    fs.set_string(c"source", &source)
        .map_err(|e| err(format!("source: {}", fs.log()))(e))?;
    // Direct I/O to the backing file (Linux 6.13 and later): without it, what erofs reads
    // is cached twice, in the file's page cache and in erofs's own. Only memory is at stake,
    // so a kernel without the option mounts without it.
    if let Err(e) = fs.set_flag(c"directio") {
        tracing::debug!("erofs without directio ({e}: {})", fs.log());
    }
    fs.create()
        .map_err(|e| err(format!("create: {}", fs.log()))(e))?;
    let tree = fs
        .mount(libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV)
        .map_err(|e| err(format!("fsmount: {}", fs.log()))(e))?;
    match std::fs::DirBuilder::new().mode(0o700).create(mount_point) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(RootfsError::io("create directory", mount_point)(e)),
    }
    let target = sys::open_dir(mount_point, libc::O_PATH)
        .map_err(RootfsError::io("open mount point", mount_point))?;
    sys::move_mount(tree.as_fd(), target.as_fd())
        .map_err(RootfsError::sys("move_mount", mount_point.display()))?;
    info!(
        image = %image.name,
        us = started.elapsed().as_micros(),
        "EROFS image mounted at {}",
        mount_point.display()
    );
    Ok(())
}
