//! The `btrfs` backend: one subvolume per tenant in the btrfs pool, with a qgroup limit on
//! the bytes it references. btrfs has no inode limit: this backend enforces blocks only.
//!
//! Everything goes through the btrfs ioctls (no `btrfs` CLI): SUBVOL_CREATE, INO_LOOKUP (the
//! subvolume's id, which is its level-0 qgroup), QGROUP_LIMIT, SNAP_DESTROY, QUOTA_CTL. The
//! numbers and layouts are those of <linux/btrfs.h>; a unit test checks the layouts.
//!
//! The hole this backend must leave closed: a tenant that creates a subvolume (or snapshot)
//! inside its own gets a new qgroup without a limit, and writes there escape its quota. Any
//! user may create subvolumes in a directory it can write, also root of a user namespace
//! without any capability in the initial one (measured: docs/tenants.md). The seccomp
//! profiles deny those ioctls with EPERM in every class (runtime/profiles `always.rs`,
//! `BTRFS_IOCTLS`); the integration tests prove it with a real container on a btrfs pool.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::backend::{
    expose_pool_dir, fail_point, mkdir, remove_tree, sync_fs, walk_count, Rollback, StorageBackend,
    Usage, Volume,
};
use crate::error::{Result, TenantError};
use crate::loopdev;
use crate::registry::BackendKind;

const BTRFS_PATH_NAME_MAX: usize = 4087;
/// `_IOW(0x94, 14, struct btrfs_ioctl_vol_args)`
const BTRFS_IOC_SUBVOL_CREATE: libc::c_ulong = 0x5000_940e;
/// `_IOW(0x94, 15, struct btrfs_ioctl_vol_args)`
const BTRFS_IOC_SNAP_DESTROY: libc::c_ulong = 0x5000_940f;
/// `_IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)`
const BTRFS_IOC_INO_LOOKUP: libc::c_ulong = 0xd000_9412;
/// `_IOR(0x94, 31, struct btrfs_ioctl_fs_info_args)`
const BTRFS_IOC_FS_INFO: libc::c_ulong = 0x8400_941f;
/// `_IOWR(0x94, 40, struct btrfs_ioctl_quota_ctl_args)`
const BTRFS_IOC_QUOTA_CTL: libc::c_ulong = 0xc010_9428;
/// `_IOW(0x94, 42, struct btrfs_ioctl_qgroup_create_args)`
const BTRFS_IOC_QGROUP_CREATE: libc::c_ulong = 0x4010_942a;
/// `_IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args)`
const BTRFS_IOC_QGROUP_LIMIT: libc::c_ulong = 0x8030_942b;
const BTRFS_QUOTA_CTL_ENABLE: u64 = 1;
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1;
/// The limit value that clears a limit.
const BTRFS_QGROUP_LIMIT_NONE: u64 = u64::MAX;
/// The inode number of every subvolume's root directory.
const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;

#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; BTRFS_PATH_NAME_MAX + 1],
}

#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

#[repr(C)]
struct FsInfoArgs {
    max_id: u64,
    num_devices: u64,
    fsid: [u8; 16],
    rest: [u8; 1024 - 32],
}

#[repr(C)]
struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

#[repr(C)]
struct QgroupCreateArgs {
    create: u64,
    qgroupid: u64,
}

#[repr(C)]
struct QgroupLimit {
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

#[repr(C)]
struct QgroupLimitArgs {
    qgroupid: u64,
    lim: QgroupLimit,
}

fn err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TenantError {
    let path = path.to_path_buf();
    move |source| TenantError::Btrfs { op, path, source }
}

/// Open a directory without following a symlink at its last component.
fn open_dir(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(err("open", path))
}

/// openat(dir, name) of a directory, never through a symlink (the tenant owns the tree).
fn open_dir_at(dir: &File, name: &CString) -> io::Result<File> {
    // SAFETY: a valid fd and NUL-terminated name; the result is checked before use.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened by us and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// ioctl with a pointer argument; `Err` carries errno.
///
/// # Safety
/// `arg` must point to the structure the request expects, valid for the call.
unsafe fn ioctl_ptr<T>(fd: RawFd, req: libc::c_ulong, arg: *mut T) -> io::Result<()> {
    // SAFETY: the caller guarantees `arg`; fd is a descriptor the caller owns.
    if unsafe { libc::ioctl(fd, req, arg) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn vol_args(name: &str, path: &Path) -> Result<VolArgs> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > BTRFS_PATH_NAME_MAX || bytes.contains(&0) {
        return Err(err("name a subvolume", path)(io::Error::from_raw_os_error(
            libc::EINVAL,
        )));
    }
    let mut a = VolArgs {
        fd: 0,
        name: [0; BTRFS_PATH_NAME_MAX + 1],
    };
    a.name[..bytes.len()].copy_from_slice(bytes);
    Ok(a)
}

/// Turn quotas on for the whole filesystem (a no-op when they are on). Needed once per pool:
/// without it there are no qgroups and no limits.
pub fn quota_enable(pool: &Path) -> Result<()> {
    let dir = open_dir(pool)?;
    let mut a = QuotaCtlArgs {
        cmd: BTRFS_QUOTA_CTL_ENABLE,
        status: 0,
    };
    // SAFETY: `a` is the btrfs_ioctl_quota_ctl_args this request expects.
    unsafe { ioctl_ptr(dir.as_raw_fd(), BTRFS_IOC_QUOTA_CTL, &mut a) }
        .map_err(err("enable quotas on", pool))
}

/// Create subvolume `name` in directory `parent`.
fn subvol_create(parent: &Path, name: &str) -> Result<()> {
    let dir = open_dir(parent)?;
    let mut a = vol_args(name, parent)?;
    // SAFETY: `a` is a btrfs_ioctl_vol_args with a NUL-terminated name.
    unsafe { ioctl_ptr(dir.as_raw_fd(), BTRFS_IOC_SUBVOL_CREATE, &mut a) }
        .map_err(err("create subvolume", &parent.join(name)))
}

/// Delete subvolume `name` of the directory open as `parent` (its data with it).
fn subvol_destroy(parent: &File, name: &str, shown: &Path) -> io::Result<()> {
    let mut a = vol_args(name, shown).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: as in subvol_create.
    unsafe { ioctl_ptr(parent.as_raw_fd(), BTRFS_IOC_SNAP_DESTROY, &mut a) }
}

/// The id of the subvolume holding `path` (also the id of its level-0 qgroup, `0/<id>`).
fn subvol_id(path: &Path) -> Result<u64> {
    let dir = open_dir(path)?;
    let mut a = InoLookupArgs {
        treeid: 0,
        objectid: BTRFS_FIRST_FREE_OBJECTID,
        name: [0; 4080],
    };
    // SAFETY: `a` is the btrfs_ioctl_ino_lookup_args this request expects.
    unsafe { ioctl_ptr(dir.as_raw_fd(), BTRFS_IOC_INO_LOOKUP, &mut a) }
        .map_err(err("look up the subvolume id of", path))?;
    Ok(a.treeid)
}

/// Limit the bytes qgroup `0/<id>` references; `None` lifts the limit.
fn qgroup_limit(path: &Path, id: u64, bytes: Option<u64>) -> Result<()> {
    let dir = open_dir(path)?;
    let mut a = QgroupLimitArgs {
        qgroupid: id,
        lim: QgroupLimit {
            flags: BTRFS_QGROUP_LIMIT_MAX_RFER,
            max_rfer: bytes.unwrap_or(BTRFS_QGROUP_LIMIT_NONE),
            max_excl: 0,
            rsv_rfer: 0,
            rsv_excl: 0,
        },
    };
    // SAFETY: `a` is the btrfs_ioctl_qgroup_limit_args this request expects.
    unsafe { ioctl_ptr(dir.as_raw_fd(), BTRFS_IOC_QGROUP_LIMIT, &mut a) }
        .map_err(err("set the qgroup limit of", path))
}

/// Remove qgroup `0/<id>` once its subvolume is gone.
fn qgroup_remove(pool: &Path, id: u64) -> io::Result<()> {
    let dir = open_dir(pool).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let mut a = QgroupCreateArgs {
        create: 0,
        qgroupid: id,
    };
    // SAFETY: `a` is the btrfs_ioctl_qgroup_create_args this request expects.
    unsafe { ioctl_ptr(dir.as_raw_fd(), BTRFS_IOC_QGROUP_CREATE, &mut a) }
}

/// The filesystem's UUID as sysfs spells it (/sys/fs/btrfs/<uuid>).
fn fsid(path: &Path) -> Result<String> {
    let dir = open_dir(path)?;
    // SAFETY: FsInfoArgs is plain old data; all-zero is a valid request (no flags).
    let mut a: FsInfoArgs = unsafe { std::mem::zeroed() };
    // SAFETY: `a` is the 1024-byte btrfs_ioctl_fs_info_args this request expects.
    unsafe { ioctl_ptr(dir.as_raw_fd(), BTRFS_IOC_FS_INFO, &mut a) }
        .map_err(err("read the filesystem id of", path))?;
    let h: String = a.fsid.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Delete every subvolume nested anywhere below the directory open as `dir`, deepest first
/// (a subvolume that holds another cannot be deleted: ENOTEMPTY). Directories are opened
/// with O_NOFOLLOW relative to their parent: the tree is the tenant's, a planted symlink must
/// not lead the host's root elsewhere.
fn destroy_nested(dir: &File, shown: &Path) -> Result<()> {
    let listing = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let entries = fs::read_dir(&listing).map_err(TenantError::io("read directory", shown))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Ok(c) = CString::new(name.as_bytes()) else {
            continue;
        };
        // Not a directory, or a symlink: nothing nested in it.
        let Ok(child) = open_dir_at(dir, &c) else {
            continue;
        };
        let child_path = shown.join(&name);
        destroy_nested(&child, &child_path)?;
        let ino = child
            .metadata()
            .map_err(TenantError::io("stat", &child_path))?
            .ino();
        drop(child);
        if ino == BTRFS_FIRST_FREE_OBJECTID {
            let name = name.to_string_lossy();
            subvol_destroy(dir, &name, &child_path)
                .map_err(err("delete nested subvolume", &child_path))?;
            tracing::warn!(path = %child_path.display(), "deleted a nested subvolume");
        }
    }
    Ok(())
}

pub struct BtrfsBackend;

impl BtrfsBackend {
    /// `<pool>/tenants/<name>`: the tenant's subvolume.
    fn subvol(v: &Volume) -> Result<PathBuf> {
        v.pool_dir(BackendKind::Btrfs)
    }

    fn bind(v: &Volume) -> Result<()> {
        let target = v.mount_path();
        if !target.is_dir() {
            mkdir(&target, 0o700)?;
        }
        loopdev::bind_mount(&Self::subvol(v)?, &target)
    }
}

impl StorageBackend for BtrfsBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Btrfs
    }

    fn enforces_limits(&self) -> bool {
        true
    }

    fn enforces_inode_limit(&self) -> bool {
        false
    }

    /// Order: the subvolume is limited before it is given to the tenant (chown), and bound
    /// at its mount path last, so that the tenant can never reach an unlimited volume.
    fn create(&self, v: &Volume) -> Result<()> {
        let subvol = Self::subvol(v)?;
        let parent = subvol.parent().expect("a pool directory").to_path_buf();
        let mut undo = Rollback::new();
        let dir = v.dir.clone();
        mkdir(&dir, 0o711)?;
        undo.push("remove tenant directory", move || {
            fs::remove_dir(&dir).map_err(TenantError::io("remove directory", &dir))
        });

        subvol_create(&parent, &v.name)?;
        let s = subvol.clone();
        undo.push("delete the subvolume", move || destroy_subvol(&s));
        fail_point(&v.name, "after-mkfs")?;

        let id = subvol_id(&subvol)?;
        qgroup_limit(&subvol, id, Some(v.size))?;
        expose_pool_dir(v, &subvol, &mut undo)?;
        undo.commit();
        tracing::info!(subvolume = %subvol.display(), qgroup = format!("0/{id}"), "btrfs volume created");
        Ok(())
    }

    fn ensure_mounted(&self, v: &Volume) -> Result<bool> {
        if self.is_mounted(v) {
            return Ok(false);
        }
        let subvol = Self::subvol(v)?;
        fs::metadata(&subvol).map_err(TenantError::io("find subvolume", &subvol))?;
        Self::bind(v)?;
        Ok(true)
    }

    fn is_mounted(&self, v: &Volume) -> bool {
        loopdev::mount_at(&v.mount_path()).is_some_and(|m| m.fstype == "btrfs")
    }

    fn device(&self, v: &Volume) -> Option<String> {
        loopdev::mount_at(&v.mount_path())
            .filter(|m| m.fstype == "btrfs")
            .map(|m| format!("{}:{}", m.source, m.root.display()))
    }

    /// Bytes from the qgroup (sysfs, after a sync so that the last writes are counted),
    /// inodes by walking the tree: btrfs keeps no inode count per subvolume.
    fn usage(&self, v: &Volume) -> Result<Usage> {
        if !self.is_mounted(v) {
            return Err(TenantError::NotMounted {
                name: v.name.clone(),
                path: v.mount_path(),
            });
        }
        let subvol = Self::subvol(v)?;
        sync_fs(&subvol)?;
        let id = subvol_id(&subvol)?;
        let q = PathBuf::from(format!("/sys/fs/btrfs/{}/qgroups/0_{id}", fsid(&subvol)?));
        let read = |file: &str| -> Result<u64> {
            let p = q.join(file);
            let t = fs::read_to_string(&p).map_err(TenantError::io("read", &p))?;
            t.trim()
                .parse()
                .map_err(|_| TenantError::io("parse", &p)(io::ErrorKind::InvalidData.into()))
        };
        let used = read("referenced")?;
        let limit = read("max_referenced")?;
        let (_, inodes) = walk_count(&v.mount_path())?;
        Ok(Usage {
            bytes_used: used,
            bytes_limit: (limit != 0 && limit != u64::MAX).then_some(limit),
            inodes_used: inodes,
            inodes_limit: None,
        })
    }

    fn resize(&self, v: &Volume, new_size: u64) -> Result<u64> {
        let subvol = Self::subvol(v)?;
        let id = subvol_id(&subvol)?;
        fail_point(&v.name, "resize-before-resize2fs")?;
        qgroup_limit(&subvol, id, Some(new_size))?;
        Ok(v.inodes)
    }

    fn unmount(&self, v: &Volume) -> Result<()> {
        while self.is_mounted(v) {
            loopdev::umount(&v.mount_path())?;
        }
        Ok(())
    }

    fn destroy(&self, v: &Volume) -> Result<()> {
        let subvol = Self::subvol(v)?;
        if subvol.exists() {
            destroy_subvol(&subvol)?;
        }
        remove_tree(&v.dir)
    }
}

/// Delete a tenant's subvolume and its qgroup.
///
/// Order: the limit is lifted first. A full subvolume cannot even be deleted: removing the
/// nested subvolumes (and their directory entries) needs a metadata reservation that the
/// full qgroup refuses with EDQUOT (measured on 6.18). Then nested subvolumes, deepest first,
/// then the subvolume, then its qgroup, which only exists once quotas were on.
fn destroy_subvol(subvol: &Path) -> Result<()> {
    let id = subvol_id(subvol)?;
    qgroup_limit(subvol, id, None)?;
    let parent = subvol.parent().expect("a pool directory");
    let name = subvol
        .file_name()
        .expect("a subvolume name")
        .to_string_lossy()
        .into_owned();
    let pdir = open_dir(parent)?;
    match subvol_destroy(&pdir, &name, subvol) {
        Ok(()) => {}
        // A subvolume the tenant nested inside (an unfiltered container could).
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
            destroy_nested(&open_dir(subvol)?, subvol)?;
            subvol_destroy(&pdir, &name, subvol).map_err(err("delete subvolume", subvol))?;
        }
        Err(e) => return Err(err("delete subvolume", subvol)(e)),
    }
    // The kernel drops the subvolume's tree in the background; until then its qgroup may be
    // busy. Newer kernels delete it themselves once the tree is gone; a stale qgroup holds no
    // data, only a line in `btrfs qgroup show`.
    if let Err(e) = qgroup_remove(parent, id) {
        tracing::debug!(qgroup = format!("0/{id}"), error = %e, "qgroup left to the kernel");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        use std::mem::size_of;
        // The size is part of each request number (_IOC): these must match <linux/btrfs.h>.
        assert_eq!(size_of::<VolArgs>(), 4096);
        assert_eq!(size_of::<InoLookupArgs>(), 4096);
        assert_eq!(size_of::<FsInfoArgs>(), 1024);
        assert_eq!(size_of::<QuotaCtlArgs>(), 16);
        assert_eq!(size_of::<QgroupCreateArgs>(), 16);
        assert_eq!(size_of::<QgroupLimitArgs>(), 48);
        let ioc = |dir: libc::c_ulong, nr: libc::c_ulong, size: usize| {
            dir << 30 | (size as libc::c_ulong) << 16 | 0x94 << 8 | nr
        };
        assert_eq!(BTRFS_IOC_SUBVOL_CREATE, ioc(1, 14, 4096));
        assert_eq!(BTRFS_IOC_SNAP_DESTROY, ioc(1, 15, 4096));
        assert_eq!(BTRFS_IOC_INO_LOOKUP, ioc(3, 18, 4096));
        assert_eq!(BTRFS_IOC_FS_INFO, ioc(2, 31, 1024));
        assert_eq!(BTRFS_IOC_QUOTA_CTL, ioc(3, 40, 16));
        assert_eq!(BTRFS_IOC_QGROUP_CREATE, ioc(1, 42, 16));
        assert_eq!(BTRFS_IOC_QGROUP_LIMIT, ioc(2, 43, 48));
    }

    #[test]
    fn subvolume_names_are_checked() {
        let p = Path::new("/x");
        assert!(vol_args("", p).is_err());
        assert!(vol_args("a\0b", p).is_err());
        assert!(vol_args(&"a".repeat(4088), p).is_err());
        let a = vol_args("acme", p).unwrap();
        assert_eq!(&a.name[..5], b"acme\0");
    }
}
