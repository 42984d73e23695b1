//! The `ext4-prjquota` and `xfs-prjquota` backends: one directory per tenant in the pool,
//! tagged with the tenant's project id and inheriting it (FS_IOC_FSSETXATTR with
//! FS_XFLAG_PROJINHERIT), and a project quota with the tenant's block and inode limits
//! (quotactl Q_SETQUOTA for PRJQUOTA). What production kernels use: no device, no kernel
//! thread and no mount per tenant.
//!
//! quotactl goes through `quotactl_fd(2)` (Linux 5.14), which takes a descriptor of any file
//! on the filesystem instead of the path of its block device. XFS answers the generic
//! Q_GETQUOTA / Q_SETQUOTA through the VFS (it translates them to its own Q_XGETQUOTA /
//! Q_XSETQLIM), so one code path serves both filesystems; block limits are in 1 KiB units.
//!
//! The hole: the owner of a directory may change its project id with FS_IOC_FSSETXATTR,
//! so a tenant could re-tag its tree to project 0 (no limit). The kernel refuses a change of
//! the project id from any user namespace but the initial one (fs/ioctl.c
//! `fileattr_set_prepare`), and every tenant process runs in a user namespace: that is what
//! closes it. The VM tests (tests/cgv2) show both sides.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::backend::{
    expose_pool_dir, fail_point, mkdir, remove_tree, Rollback, StorageBackend, Usage, Volume,
};
use crate::error::{Result, TenantError};
use crate::loopdev;
use crate::registry::BackendKind;

/// `_IOR('X', 31, struct fsxattr)`
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
/// `_IOW('X', 32, struct fsxattr)`
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
const Q_GETQUOTA: u32 = 0x80_0007;
const Q_SETQUOTA: u32 = 0x80_0008;
const PRJQUOTA: u32 = 2;
const QIF_BLIMITS: u32 = 1;
const QIF_ILIMITS: u32 = 4;
/// quotactl's block unit.
const QIF_DQBLKSIZE: u64 = 1024;

/// `struct fsxattr` of <linux/fs.h>.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    fsx_xflags: u32,
    fsx_extsize: u32,
    fsx_nextents: u32,
    fsx_projid: u32,
    fsx_cowextsize: u32,
    fsx_pad: [u8; 8],
}

/// `struct if_dqblk` of <linux/quota.h>.
#[repr(C)]
#[derive(Default, Debug)]
struct IfDqblk {
    dqb_bhardlimit: u64,
    dqb_bsoftlimit: u64,
    dqb_curspace: u64,
    dqb_ihardlimit: u64,
    dqb_isoftlimit: u64,
    dqb_curinodes: u64,
    dqb_btime: u64,
    dqb_itime: u64,
    dqb_valid: u32,
}

fn qcmd(cmd: u32, typ: u32) -> u32 {
    (cmd << 8) | (typ & 0xff)
}

fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn quotactl(dir: &File, cmd: u32, id: u32, q: &mut IfDqblk) -> io::Result<()> {
    // SAFETY: quotactl_fd(fd, cmd, id, addr) with a valid fd and, for Q_GETQUOTA and
    // Q_SETQUOTA, a pointer to an if_dqblk that lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            dir.as_raw_fd(),
            qcmd(cmd, PRJQUOTA),
            id,
            q as *mut IfDqblk,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The project quota of `id`: usage and limits.
fn get_quota(path: &Path, id: u32) -> Result<IfDqblk> {
    let quota_err = |source| TenantError::Quota {
        op: "read the quota",
        project: id,
        path: path.to_path_buf(),
        source,
    };
    let dir = open_dir(path).map_err(quota_err)?;
    let mut q = IfDqblk::default();
    match quotactl(&dir, Q_GETQUOTA, id, &mut q) {
        Ok(()) => Ok(q),
        // XFS has no dquot for an id nothing was ever charged to (ext4 answers zeroes).
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(IfDqblk::default()),
        Err(e) => Err(quota_err(e)),
    }
}

/// Set the hard limits of project `id` (0 = no limit). Soft limits equal the hard ones: a
/// grace period would only let a tenant run over for a while.
fn set_limits(path: &Path, id: u32, bytes: u64, inodes: u64) -> Result<()> {
    let quota_err = |source| TenantError::Quota {
        op: "set the limits",
        project: id,
        path: path.to_path_buf(),
        source,
    };
    let dir = open_dir(path).map_err(quota_err)?;
    let blocks = bytes.div_ceil(QIF_DQBLKSIZE);
    let mut q = IfDqblk {
        dqb_bhardlimit: blocks,
        dqb_bsoftlimit: blocks,
        dqb_ihardlimit: inodes,
        dqb_isoftlimit: inodes,
        dqb_valid: QIF_BLIMITS | QIF_ILIMITS,
        ..Default::default()
    };
    quotactl(&dir, Q_SETQUOTA, id, &mut q).map_err(quota_err)
}

/// Read a directory's project id.
pub fn project_of(path: &Path) -> Result<u32> {
    let e = |source| TenantError::Quota {
        op: "read the project id",
        project: 0,
        path: path.to_path_buf(),
        source,
    };
    let dir = open_dir(path).map_err(e)?;
    let mut a = FsXattr::default();
    // SAFETY: `a` is the struct fsxattr this request fills.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSGETXATTR, &mut a) } < 0 {
        return Err(e(io::Error::last_os_error()));
    }
    Ok(a.fsx_projid)
}

/// Tag an (empty) directory with project `id` and make everything created below it inherit
/// the id. Read-modify-write: other flags stay as they are.
fn set_project(path: &Path, id: u32) -> Result<()> {
    let e = |source| TenantError::Quota {
        op: "tag the directory",
        project: id,
        path: path.to_path_buf(),
        source,
    };
    let dir = open_dir(path).map_err(e)?;
    let mut a = FsXattr::default();
    // SAFETY: `a` is the struct fsxattr this request fills.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSGETXATTR, &mut a) } < 0 {
        return Err(e(io::Error::last_os_error()));
    }
    a.fsx_projid = id;
    a.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: `a` is a struct fsxattr the kernel reads.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_FSSETXATTR, &a) } < 0 {
        return Err(e(io::Error::last_os_error()));
    }
    Ok(())
}

pub struct ProjQuotaBackend {
    pub kind: BackendKind,
}

impl ProjQuotaBackend {
    fn fstype(&self) -> &'static str {
        if self.kind == BackendKind::XfsPrjquota {
            "xfs"
        } else {
            "ext4"
        }
    }

    fn data_dir(&self, v: &Volume) -> Result<PathBuf> {
        v.pool_dir(self.kind)
    }

    /// A project id no tenant of this pool uses must be unused: anything charged to it means
    /// the pool is shared with someone else's project quotas, and the tenant would inherit
    /// their files and limits.
    fn check_unused(&self, v: &Volume, pool_tenants: &Path) -> Result<()> {
        let q = get_quota(pool_tenants, v.project_id)?;
        if q.dqb_curspace != 0
            || q.dqb_curinodes != 0
            || q.dqb_bhardlimit != 0
            || q.dqb_ihardlimit != 0
        {
            return Err(TenantError::ProjectInUse {
                name: v.name.clone(),
                project: v.project_id,
                path: pool_tenants.to_path_buf(),
                bytes: q.dqb_curspace,
                inodes: q.dqb_curinodes,
                limits: format!("{} KiB / {} inodes", q.dqb_bhardlimit, q.dqb_ihardlimit),
            });
        }
        Ok(())
    }
}

impl StorageBackend for ProjQuotaBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn enforces_limits(&self) -> bool {
        true
    }

    /// Order: the directory is made root-owned and closed (0700), tagged and limited, and only
    /// then handed to the tenant (chown) and bound at its mount path. At no point can the
    /// tenant write to a directory that is not yet charged to its limited project.
    fn create(&self, v: &Volume) -> Result<()> {
        let data = self.data_dir(v)?;
        let parent = data.parent().expect("a pool directory").to_path_buf();
        self.check_unused(v, &parent)?;
        let mut undo = Rollback::new();
        let dir = v.dir.clone();
        mkdir(&dir, 0o711)?;
        undo.push("remove tenant directory", move || {
            fs::remove_dir(&dir).map_err(TenantError::io("remove directory", &dir))
        });

        mkdir(&data, 0o700)?;
        let d = data.clone();
        undo.push("remove the project directory", move || remove_tree(&d));
        set_project(&data, v.project_id)?;
        fail_point(&v.name, "after-mkfs")?;
        set_limits(&parent, v.project_id, v.size, v.inodes)?;
        let (p, id) = (parent.clone(), v.project_id);
        undo.push("clear the project limits", move || set_limits(&p, id, 0, 0));
        expose_pool_dir(v, &data, &mut undo)?;
        undo.commit();
        tracing::info!(dir = %data.display(), project = v.project_id, "project-quota volume created");
        Ok(())
    }

    fn ensure_mounted(&self, v: &Volume) -> Result<bool> {
        if self.is_mounted(v) {
            return Ok(false);
        }
        let data = self.data_dir(v)?;
        // The tag is what enforces the limit: never hand out a directory that lost it.
        let id = project_of(&data)?;
        if id != v.project_id {
            return Err(TenantError::PoolUnusable {
                kind: self.kind.as_str(),
                path: data,
                reason: format!(
                    "the directory carries project id {id}, not the tenant's {}",
                    v.project_id
                ),
            });
        }
        let target = v.mount_path();
        if !target.is_dir() {
            mkdir(&target, 0o700)?;
        }
        loopdev::bind_mount(&data, &target)?;
        Ok(true)
    }

    fn is_mounted(&self, v: &Volume) -> bool {
        loopdev::mount_at(&v.mount_path()).is_some_and(|m| m.fstype == self.fstype())
    }

    fn device(&self, v: &Volume) -> Option<String> {
        loopdev::mount_at(&v.mount_path())
            .filter(|m| m.fstype == self.fstype())
            .map(|m| format!("{}:{}", m.source, m.root.display()))
    }

    fn usage(&self, v: &Volume) -> Result<Usage> {
        if !self.is_mounted(v) {
            return Err(TenantError::NotMounted {
                name: v.name.clone(),
                path: v.mount_path(),
            });
        }
        let q = get_quota(&self.data_dir(v)?, v.project_id)?;
        let limit = |x: u64| (x != 0).then_some(x);
        Ok(Usage {
            bytes_used: q.dqb_curspace,
            bytes_limit: limit(q.dqb_bhardlimit * QIF_DQBLKSIZE),
            inodes_used: q.dqb_curinodes,
            inodes_limit: limit(q.dqb_ihardlimit),
        })
    }

    fn resize(&self, v: &Volume, new_size: u64) -> Result<u64> {
        let data = self.data_dir(v)?;
        fail_point(&v.name, "resize-before-resize2fs")?;
        set_limits(&data, v.project_id, new_size, v.inodes)?;
        Ok(v.inodes)
    }

    fn unmount(&self, v: &Volume) -> Result<()> {
        while self.is_mounted(v) {
            loopdev::umount(&v.mount_path())?;
        }
        Ok(())
    }

    /// Data first, then the limits: until the data is gone, the limits still guard it.
    fn destroy(&self, v: &Volume) -> Result<()> {
        let data = self.data_dir(v)?;
        let parent = data.parent().expect("a pool directory").to_path_buf();
        remove_tree(&data)?;
        set_limits(&parent, v.project_id, 0, 0)?;
        remove_tree(&v.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        assert_eq!(std::mem::size_of::<IfDqblk>(), 72);
        // _IOR('X', 31, 28) and _IOW('X', 32, 28)
        assert_eq!(
            FS_IOC_FSGETXATTR,
            2 << 30 | 28 << 16 | (b'X' as libc::c_ulong) << 8 | 31
        );
        assert_eq!(
            FS_IOC_FSSETXATTR,
            1 << 30 | 28 << 16 | (b'X' as libc::c_ulong) << 8 | 32
        );
        assert_eq!(qcmd(Q_SETQUOTA, PRJQUOTA), 0x8000_0802);
    }
}
