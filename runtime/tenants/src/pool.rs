//! Pools: the shared filesystems that the `btrfs`, `ext4-prjquota` and `xfs-prjquota` backends
//! put their tenants in (one subvolume or one project directory per tenant). At most one pool
//! per backend, described by `<state>/pools/<backend>.json`.
//!
//! Two kinds, for the two ways an SRE gets a filesystem:
//! - **made by sgrun** (`sgrun tenant pool create KIND --size N`): a sparse image
//!   `<state>/pools/<backend>.img`, formatted for the backend, attached to an AUTOCLEAR loop
//!   device and mounted at `<state>/pools/<backend>/`. sgrun mounts it again after a restart
//!   (`mount --all`, or at the first command that needs it). Good for one host, tests and CI.
//! - **registered** (`sgrun tenant pool add KIND PATH`): a filesystem the host already mounts
//!   (a disk of its own, in /etc/fstab). sgrun checks it (type, quota on) but never mounts or
//!   unmounts it: after a restart it must be mounted by the host before `mount --all`.
//!
//! Inside a pool, sgrun owns `<pool>/tenants/` (root, 0711): tenant `NAME` lives in
//! `<pool>/tenants/NAME`, which is bind-mounted at `<state>/tenants/NAME/volume` so that every
//! backend has its volume at the same place.

use std::ffi::CStr;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{fail_point, mkdir, run_tool, statfs_type, Rollback};
use crate::error::{Result, TenantError};
use crate::loopdev;
use crate::registry::{write_atomic, BackendKind};

pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
pub const EXT4_SUPER_MAGIC: i64 = 0xef53;
pub const XFS_SUPER_MAGIC: i64 = 0x5846_5342;

/// Smallest pool sgrun makes: mkfs.xfs (xfsprogs >= 5.19) refuses anything below 300 MiB, and
/// a btrfs this small already loses a large share to metadata.
pub const MIN_POOL_SIZE: u64 = 300 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub backend: BackendKind,
    /// Where the pool filesystem is mounted.
    pub path: PathBuf,
    /// The loop image of a pool made by sgrun; `None` for a registered filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<PathBuf>,
}

impl PoolRecord {
    /// Where tenants live inside the pool.
    pub fn tenants_dir(&self) -> PathBuf {
        self.path.join("tenants")
    }
}

/// What `pool ls` reports.
#[derive(Debug, Clone, Serialize)]
pub struct PoolInfo {
    #[serde(flatten)]
    pub record: PoolRecord,
    pub mounted: bool,
    pub device: Option<String>,
    pub bytes_total: Option<u64>,
    pub bytes_free: Option<u64>,
}

fn kind_name(kind: BackendKind) -> &'static str {
    kind.as_str()
}

fn check_pool_kind(kind: BackendKind) -> Result<()> {
    if kind.uses_pool() {
        Ok(())
    } else {
        Err(TenantError::NoPoolBackend {
            backend: kind.as_str(),
        })
    }
}

/// The filesystem a backend needs, as statfs and mountinfo name it.
fn fs_of(kind: BackendKind) -> (i64, &'static str) {
    match kind {
        BackendKind::Btrfs => (BTRFS_SUPER_MAGIC, "btrfs"),
        BackendKind::XfsPrjquota => (XFS_SUPER_MAGIC, "xfs"),
        _ => (EXT4_SUPER_MAGIC, "ext4"),
    }
}

pub fn pools_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pools")
}

pub fn record_path(state_dir: &Path, kind: BackendKind) -> PathBuf {
    pools_dir(state_dir).join(format!("{}.json", kind.as_str()))
}

/// The pool of `kind`, if one is configured.
pub fn load(state_dir: &Path, kind: BackendKind) -> Result<Option<PoolRecord>> {
    if !kind.uses_pool() {
        return Ok(None);
    }
    let path = record_path(state_dir, kind);
    match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| TenantError::Json { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TenantError::io("read", path)(e)),
    }
}

pub fn load_required(state_dir: &Path, kind: BackendKind) -> Result<PoolRecord> {
    load(state_dir, kind)?.ok_or_else(|| TenantError::PoolNotConfigured {
        kind: kind_name(kind),
        path: record_path(state_dir, kind),
    })
}

pub fn list(state_dir: &Path) -> Result<Vec<PoolRecord>> {
    let mut out = Vec::new();
    for kind in BackendKind::ALL {
        if let Some(r) = load(state_dir, kind)? {
            out.push(r);
        }
    }
    Ok(out)
}

pub fn info(rec: PoolRecord) -> PoolInfo {
    let m = loopdev::mount_at(&rec.path);
    let st = m
        .as_ref()
        .and_then(|_| crate::backend::statvfs(&rec.path).ok());
    PoolInfo {
        mounted: m.is_some(),
        device: m.map(|m| m.source),
        bytes_total: st.map(|s| s.f_blocks * s.f_frsize),
        bytes_free: st.map(|s| s.f_bavail * s.f_frsize),
        record: rec,
    }
}

/// Is the pool mounted, and is it the filesystem the backend needs, with quota on?
pub fn check(rec: &PoolRecord) -> Result<()> {
    let kind = kind_name(rec.backend);
    let (magic, fstype) = fs_of(rec.backend);
    let Some(m) = loopdev::mount_at(&rec.path) else {
        return Err(TenantError::PoolNotMounted {
            kind,
            path: rec.path.clone(),
        });
    };
    let unusable = |reason: String| TenantError::PoolUnusable {
        kind,
        path: rec.path.clone(),
        reason,
    };
    if m.fstype != fstype || statfs_type(&rec.path)? != magic {
        return Err(unusable(format!(
            "it is a {} filesystem, the {kind} backend needs {fstype}",
            m.fstype
        )));
    }
    if rec.backend.uses_project_quota() {
        // ext4 and xfs both list it among the superblock options when enforcement is on.
        let on = m
            .super_options
            .split(',')
            .any(|o| o == "prjquota" || o == "pquota");
        if !on {
            return Err(unusable(
                "project quota is not enforced: mount it with -o prjquota (ext4 also needs \
                 mkfs.ext4 -O quota,project)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Mount an sgrun-made pool that is not mounted (after a restart); check a registered one.
/// True when it was mounted by this call.
pub fn ensure_mounted(rec: &PoolRecord) -> Result<bool> {
    if loopdev::mount_at(&rec.path).is_some() {
        check(rec)?;
        return Ok(false);
    }
    let Some(image) = &rec.image else {
        return Err(TenantError::PoolNotMounted {
            kind: kind_name(rec.backend),
            path: rec.path.clone(),
        });
    };
    attach_and_mount(rec.backend, image, &rec.path)?;
    if let Err(e) = check(rec) {
        let _ = unmount_image(&rec.path, image);
        return Err(e);
    }
    tracing::info!(pool = kind_name(rec.backend), path = %rec.path.display(), "pool mounted");
    Ok(true)
}

fn mount_data(kind: BackendKind) -> &'static CStr {
    match kind {
        // No user_subvol_rm_allowed: tenants must not delete subvolumes either.
        BackendKind::Btrfs => c"",
        // prjquota: enforce project quotas (ext4 keeps them in its hidden quota inodes).
        BackendKind::Ext4Prjquota => c"prjquota,errors=remount-ro",
        _ => c"prjquota",
    }
}

fn attach_and_mount(kind: BackendKind, image: &Path, target: &Path) -> Result<()> {
    // A loop device still backed by the image (a crash between attach and mount) is a
    // leftover: mounting the image twice through two devices would corrupt it.
    let mounts =
        loopdev::parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    for dev in loopdev::devices_backed_by(image) {
        if let Some(m) = mounts.iter().find(|m| Path::new(&m.source) == dev) {
            return Err(TenantError::Mount {
                device: dev,
                target: target.into(),
                source: std::io::Error::other(format!(
                    "the pool image is already mounted at {}",
                    m.target.display()
                )),
            });
        }
        loopdev::detach_if_backed_by(&dev, image)?;
    }
    let (device, dev) = loopdev::attach(image)?;
    let (_, fstype) = fs_of(kind);
    let fstype = std::ffi::CString::new(fstype).expect("no NUL");
    if let Err(e) = loopdev::mount_dev(&device, target, &fstype, mount_data(kind)) {
        if let Err(d) = loopdev::detach(&device, &dev) {
            tracing::error!(device = %device.display(), error = %d, "cannot detach");
        }
        // The kernel's only answer to an option it cannot honour is EINVAL (and a line in
        // dmesg): name the likely cause, a kernel without project quota (this dev host).
        if kind.uses_project_quota()
            && matches!(&e, TenantError::Mount { source, .. } if source.raw_os_error() == Some(libc::EINVAL))
        {
            return Err(TenantError::PoolUnusable {
                kind: kind_name(kind),
                path: target.into(),
                reason: format!(
                    "the kernel refused to mount {} with -o prjquota (EINVAL): it probably \
                     lacks project quota support ({}); dmesg says which",
                    image.display(),
                    if kind == BackendKind::XfsPrjquota {
                        "CONFIG_XFS_QUOTA"
                    } else {
                        "CONFIG_QUOTA and CONFIG_QFMT_V2"
                    }
                ),
            });
        }
        return Err(e);
    }
    // The mount holds the device from here; closing our fd lets the unmount free it.
    drop(dev);
    Ok(())
}

fn unmount_image(path: &Path, image: &Path) -> Result<()> {
    while loopdev::mount_at(path).is_some() {
        loopdev::umount(path)?;
    }
    crate::backend::LoopBackend::release_devices(image)
}

/// Prepare a mounted pool filesystem for tenants: quota on (btrfs), `<pool>/tenants` made.
fn prepare(rec: &PoolRecord) -> Result<()> {
    if rec.backend == BackendKind::Btrfs {
        crate::btrfs::quota_enable(&rec.path)?;
    }
    let dir = rec.tenants_dir();
    if !dir.is_dir() {
        mkdir(&dir, 0o711)?;
    }
    Ok(())
}

/// `sgrun tenant pool create KIND --size N`: image, mkfs, mount, quota, record. Undone on
/// failure, last step first.
pub fn create(state_dir: &Path, kind: BackendKind, size: u64) -> Result<PoolRecord> {
    check_pool_kind(kind)?;
    let name = kind_name(kind);
    let rpath = record_path(state_dir, kind);
    if rpath.exists() {
        return Err(TenantError::PoolExists {
            kind: name,
            path: rpath,
        });
    }
    if size < MIN_POOL_SIZE {
        return Err(TenantError::PoolUnusable {
            kind: name,
            path: pools_dir(state_dir),
            reason: format!("{size} bytes is below the minimum pool size of 300M"),
        });
    }
    let dir = pools_dir(state_dir);
    if !dir.is_dir() {
        mkdir(&dir, 0o711)?;
    }
    let free = crate::backend::free_bytes(&dir)?;
    if size > free {
        return Err(TenantError::SizeTooLarge {
            size,
            free,
            path: dir,
        });
    }
    let image = dir.join(format!("{name}.img"));
    let target = dir.join(name);
    let rec = PoolRecord {
        backend: kind,
        path: target.clone(),
        image: Some(image.clone()),
    };
    let mut undo = Rollback::new();

    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&image)
        .map_err(TenantError::io("create pool image", &image))?;
    let img = image.clone();
    undo.push("remove pool image", move || {
        fs::remove_file(&img).map_err(TenantError::io("remove pool image", &img))
    });
    // Sparse: the pool takes disk space only as tenants write.
    f.set_len(size)
        .map_err(TenantError::io("size pool image", &image))?;
    drop(f);

    let image_s = image.to_string_lossy().into_owned();
    match kind {
        BackendKind::Btrfs => run_tool("mkfs.btrfs", &["-q", "-f", "-L", "sgrun-pool", &image_s])?,
        // -O quota,project: hidden quota inodes with project accounting (needs 256-byte
        // inodes for the project id: mke2fs's "small" type would pick 128 below 512M).
        // -i 4096: WordPress is many small files. -m 0: reserved blocks serve host root only.
        BackendKind::Ext4Prjquota => run_tool(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-b",
                "4096",
                "-I",
                "256",
                "-i",
                "4096",
                "-m",
                "0",
                "-O",
                "quota,project",
                "-E",
                "nodiscard",
                "-L",
                "sgrun-pool",
                &image_s,
            ],
        )?,
        _ => run_tool(
            "mkfs.xfs",
            &["-q", "-f", "-K", "-L", "sgrun-pool", &image_s],
        )?,
    }
    fail_point(name, "pool-after-mkfs")?;

    mkdir(&target, 0o711)?;
    let t = target.clone();
    undo.push("remove pool mount point", move || {
        fs::remove_dir(&t).map_err(TenantError::io("remove pool mount point", &t))
    });
    attach_and_mount(kind, &image, &target)?;
    let (t, img) = (target.clone(), image.clone());
    undo.push("unmount the pool", move || unmount_image(&t, &img));
    // The root of a fresh filesystem is 0755; tenants only traverse it to their own dir.
    crate::backend::set_mode(&target, 0o711)?;
    check(&rec)?;
    prepare(&rec)?;
    fail_point(name, "pool-before-commit")?;
    write_atomic(&rpath, &rec)?;
    undo.commit();
    tracing::info!(pool = name, size, "pool created");
    Ok(rec)
}

/// `sgrun tenant pool add KIND PATH`: register a filesystem the host mounts.
pub fn add(state_dir: &Path, kind: BackendKind, path: &Path) -> Result<PoolRecord> {
    check_pool_kind(kind)?;
    let name = kind_name(kind);
    let rpath = record_path(state_dir, kind);
    if rpath.exists() {
        return Err(TenantError::PoolExists {
            kind: name,
            path: rpath,
        });
    }
    let path = fs::canonicalize(path).map_err(TenantError::io("find pool", path))?;
    let rec = PoolRecord {
        backend: kind,
        path,
        image: None,
    };
    if loopdev::mount_at(&rec.path).is_none() {
        return Err(TenantError::PoolUnusable {
            kind: name,
            path: rec.path,
            reason: "it is not a mount point: give the directory a filesystem is mounted on".into(),
        });
    }
    check(&rec)?;
    prepare(&rec)?;
    let dir = pools_dir(state_dir);
    if !dir.is_dir() {
        mkdir(&dir, 0o711)?;
    }
    write_atomic(&rpath, &rec)?;
    Ok(rec)
}

/// `sgrun tenant pool rm KIND`: forget the pool; an sgrun-made one is unmounted and its image
/// deleted. The caller has checked that no tenant uses it.
pub fn remove(state_dir: &Path, kind: BackendKind) -> Result<()> {
    let rec = load_required(state_dir, kind)?;
    if let Some(image) = &rec.image {
        unmount_image(&rec.path, image)?;
        match fs::remove_file(image) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TenantError::io("remove pool image", image)(e)),
        }
        match fs::remove_dir(&rec.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TenantError::io("remove pool mount point", &rec.path)(e)),
        }
    } else if rec.tenants_dir().is_dir() {
        // Only our own, empty directory; the filesystem stays the host's.
        let _ = fs::remove_dir(rec.tenants_dir());
    }
    let rpath = record_path(state_dir, kind);
    fs::remove_file(&rpath).map_err(TenantError::io("remove pool record", &rpath))?;
    crate::registry::sync_dir(&pools_dir(state_dir))
}
