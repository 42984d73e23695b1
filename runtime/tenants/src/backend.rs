//! Storage backends: where a tenant's data lives and what enforces its block and inode limits.
//!
//! - [`LoopBackend`]: one ext4 image file per tenant, attached to a loop device and mounted at
//!   `<state>/tenants/<name>/volume`. ext4 itself enforces both limits (ENOSPC), because the
//!   filesystem is exactly as large as the tenant's quota and has exactly its inode count.
//! - [`BtrfsBackend`](crate::btrfs::BtrfsBackend): a subvolume per tenant in the btrfs pool,
//!   with a qgroup limit. Blocks only: btrfs has no inode limit.
//! - [`ProjQuotaBackend`](crate::prjquota::ProjQuotaBackend): a directory per tenant in an
//!   ext4 or xfs pool, tagged with the tenant's project id, with a project quota on blocks and
//!   inodes.
//! - [`DirBackend`]: a plain directory. No limits at all: development only.
//!
//! The pool backends bind-mount the tenant's directory of the pool at the same mount path as
//! the loop backend's volume, so that sites find every volume at one place.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Result, TenantError};
use crate::loopdev;
use crate::registry::BackendKind;

/// What a backend needs to know about one tenant's volume.
#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    /// `<state>/tenants/<name>`: everything of this volume lives below it.
    pub dir: PathBuf,
    pub size: u64,
    pub inodes: u64,
    /// Host uid and gid of the tenant's root (the first id of its range).
    pub uid: u32,
    pub gid: u32,
    /// Where the pool of a pool backend (btrfs, *-prjquota) is mounted; `None` when the
    /// backend has no pool or none is configured.
    pub pool: Option<PathBuf>,
    /// The project id of a project-quota tenant (registry::project_id_for).
    pub project_id: u32,
}

impl Volume {
    /// Where the volume is mounted (loop) or is (dir).
    pub fn mount_path(&self) -> PathBuf {
        self.dir.join("volume")
    }
    /// The ext4 image of the loop backend.
    pub fn image_path(&self) -> PathBuf {
        self.dir.join("volume.ext4")
    }
    /// The tenant's own directory (subvolume) in the pool: `<pool>/tenants/<name>`.
    pub fn pool_dir(&self, kind: BackendKind) -> Result<PathBuf> {
        match &self.pool {
            Some(p) => Ok(p.join("tenants").join(&self.name)),
            None => Err(TenantError::PoolNotConfigured {
                kind: kind.as_str(),
                path: self
                    .dir
                    .parent()
                    .and_then(Path::parent)
                    .map(|state| crate::pool::record_path(state, kind))
                    .unwrap_or_default(),
            }),
        }
    }
}

/// Used and available space, in bytes and inodes. `None` limits: the backend enforces none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub bytes_used: u64,
    pub bytes_limit: Option<u64>,
    pub inodes_used: u64,
    pub inodes_limit: Option<u64>,
}

pub trait StorageBackend {
    fn kind(&self) -> BackendKind;
    /// Whether the backend enforces the block limit.
    fn enforces_limits(&self) -> bool;
    /// Whether it enforces the inode limit too (btrfs does not).
    fn enforces_inode_limit(&self) -> bool {
        self.enforces_limits()
    }
    /// Make the volume with its limits and mount it, owned by the tenant's mapped root. On
    /// failure, everything made so far is undone before the error is returned.
    fn create(&self, v: &Volume) -> Result<()>;
    /// Mount the volume if it is not mounted; true when it was mounted by this call.
    fn ensure_mounted(&self, v: &Volume) -> Result<bool>;
    fn is_mounted(&self, v: &Volume) -> bool;
    /// The device or source backing the mount, if mounted.
    fn device(&self, v: &Volume) -> Option<String>;
    fn usage(&self, v: &Volume) -> Result<Usage>;
    /// Grow the volume (mounted) to `new_size` bytes; returns the new inode limit, which
    /// ext4 grows in proportion (its inodes per block group are fixed at mkfs time).
    fn resize(&self, v: &Volume, new_size: u64) -> Result<u64>;
    /// Unmount and release the device; the data stays.
    fn unmount(&self, v: &Volume) -> Result<()>;
    /// Delete the data (after `unmount`).
    fn destroy(&self, v: &Volume) -> Result<()>;
}

pub fn backend(kind: BackendKind) -> Box<dyn StorageBackend> {
    match kind {
        BackendKind::Loop => Box::new(LoopBackend),
        BackendKind::Dir => Box::new(DirBackend),
        BackendKind::Btrfs => Box::new(crate::btrfs::BtrfsBackend),
        kind @ (BackendKind::Ext4Prjquota | BackendKind::XfsPrjquota) => {
            Box::new(crate::prjquota::ProjQuotaBackend { kind })
        }
    }
}

/// Steps to undo, run last-first unless the whole operation succeeded.
type UndoStep = (&'static str, Box<dyn FnOnce() -> Result<()>>);

pub(crate) struct Rollback {
    steps: Vec<UndoStep>,
}

impl Rollback {
    pub(crate) fn new() -> Self {
        Rollback { steps: Vec::new() }
    }
    pub(crate) fn push(&mut self, what: &'static str, f: impl FnOnce() -> Result<()> + 'static) {
        self.steps.push((what, Box::new(f)));
    }
    pub(crate) fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        while let Some((what, f)) = self.steps.pop() {
            match f() {
                Ok(()) => tracing::debug!(step = what, "undone"),
                // Nothing better to do than say so: the original error is what gets returned.
                Err(e) => tracing::error!(step = what, error = %e, "cannot undo"),
            }
        }
    }
}

/// A test hook: `SGRUN_TEST_FAIL_AT=<step>` makes the operation fail at that step, so that
/// the tests can check that every earlier step is undone. It can only make sgrun fail.
pub(crate) fn fail_point(name: &str, step: &str) -> Result<()> {
    if std::env::var("SGRUN_TEST_FAIL_AT").is_ok_and(|s| s == step) {
        return Err(TenantError::Injected {
            name: name.to_string(),
            step: step.to_string(),
        });
    }
    Ok(())
}

/// The Debian package that ships `tool`, for the error that says what to install.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "mkfs.btrfs" | "btrfs" => "btrfs-progs",
        "mkfs.xfs" | "xfs_quota" => "xfsprogs",
        _ => "e2fsprogs",
    }
}

/// e2fsprogs live in /usr/sbin, which a caller such as containerd may not have on PATH.
fn tool_path(tool: &'static str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(tool)
}

pub(crate) fn run_tool(tool: &'static str, args: &[&str]) -> Result<()> {
    let out = Command::new(tool_path(tool))
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| TenantError::ToolMissing {
            tool,
            package: package_of(tool),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let text = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return Err(TenantError::ToolFailed {
            tool,
            args: args.join(" "),
            status: out.status.to_string(),
            stderr: text.trim().replace('\n', "; "),
        });
    }
    Ok(())
}

/// The last steps of a pool backend's create: the tenant's directory `dir` (inside the pool)
/// becomes its volume root (owned by its mapped root, 0700) and is bind-mounted at the
/// volume's mount path, each step pushed onto `undo`.
pub(crate) fn expose_pool_dir(v: &Volume, dir: &Path, undo: &mut Rollback) -> Result<()> {
    std::os::unix::fs::chown(dir, Some(v.uid), Some(v.gid))
        .map_err(TenantError::io("chown volume", dir))?;
    set_mode(dir, 0o700)?;
    let target = v.mount_path();
    mkdir(&target, 0o700)?;
    let t = target.clone();
    undo.push("remove mount point", move || {
        fs::remove_dir(&t).map_err(TenantError::io("remove mount point", &t))
    });
    fail_point(&v.name, "after-attach")?;
    loopdev::bind_mount(dir, &target)?;
    let t = target.clone();
    undo.push("unmount", move || loopdev::umount(&t));
    fail_point(&v.name, "after-mount")
}

pub(crate) fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(TenantError::io("create directory", path))?;
    // The mode above went through the umask: set it exactly.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(TenantError::io("chmod", path))
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(TenantError::io("chmod", path))
}

/// The filesystem type (statfs f_type: a *_SUPER_MAGIC) of the filesystem holding `path`.
pub(crate) fn statfs_type(path: &Path) -> Result<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| TenantError::io("statfs", path)(std::io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: statfs is plain old data; all-zero is valid and the kernel fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a pointer to a statfs we own.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(TenantError::io("statfs", path)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(st.f_type)
}

/// Write out the filesystem holding `path` (btrfs counts qgroup usage at commit).
pub(crate) fn sync_fs(path: &Path) -> Result<()> {
    let f = fs::File::open(path).map_err(TenantError::io("open", path))?;
    // SAFETY: syncfs on a valid fd we own.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
        return Err(TenantError::io("syncfs", path)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Bytes and inodes below `root`, walked without following symlinks (the tenant controls
/// the tree). Slow on big trees: only for backends that keep no count of their own.
pub(crate) fn walk_count(root: &Path) -> Result<(u64, u64)> {
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(TenantError::io("read directory", &dir))?;
        inodes += 1;
        for e in entries.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                inodes += 1;
                bytes += md.blocks() * 512;
            }
        }
    }
    Ok((bytes, inodes))
}

pub(crate) fn statvfs(path: &Path) -> Result<libc::statvfs> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| TenantError::io("statvfs", path)(std::io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: statvfs is plain old data; all-zero is valid and the kernel fills it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a pointer to a statvfs we own.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(TenantError::io("statvfs", path)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(st)
}

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64> {
    let st = statvfs(path)?;
    Ok(st.f_bavail * st.f_frsize)
}

pub struct LoopBackend;

impl LoopBackend {
    /// Wait for the kernel to finish an AUTOCLEAR detach, then detach by hand whatever is
    /// still backed by this image (only this image: other loop devices are not ours).
    pub(crate) fn release_devices(image: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !loopdev::devices_backed_by(image).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for dev in loopdev::devices_backed_by(image) {
            loopdev::detach_if_backed_by(&dev, image)?;
        }
        Ok(())
    }

    fn set_image_len(image: &Path, len: u64) -> Result<()> {
        OpenOptions::new()
            .write(true)
            .open(image)
            .and_then(|f| f.set_len(len))
            .map_err(TenantError::io("set the length of volume image", image))
    }

    /// Order: the file grows first, then the loop device learns its new size, then ext4
    /// grows into it. If resize2fs fails the filesystem has not changed, so the file can
    /// shrink back to its old length.
    fn resize_online(v: &Volume, device: &Path, old_size: u64, new_size: u64) -> Result<()> {
        let image = v.image_path();
        let mut undo = Rollback::new();
        Self::set_image_len(&image, new_size)?;
        let (img, dev) = (image.clone(), device.to_path_buf());
        undo.push("shrink the image back", move || {
            Self::set_image_len(&img, old_size)?;
            loopdev::set_capacity(&dev)
        });
        loopdev::set_capacity(device)?;
        fail_point(&v.name, "resize-before-resize2fs")?;
        run_tool("resize2fs", &[&device.to_string_lossy()])?;
        undo.commit();
        Ok(())
    }

    /// Unmount, grow the image, check it (resize2fs insists on a fresh check), grow ext4,
    /// mount again. A failure after the unmount still ends with the volume mounted.
    fn resize_offline(v: &Volume, old_size: u64, new_size: u64) -> Result<()> {
        let image = v.image_path();
        let was_mounted = LoopBackend.is_mounted(v);
        LoopBackend.unmount(v)?;
        let mut undo = Rollback::new();
        if was_mounted {
            let v2 = v.clone();
            undo.push("mount the volume again", move || {
                LoopBackend.ensure_mounted(&v2).map(|_| ())
            });
        }
        Self::set_image_len(&image, new_size)?;
        let img = image.clone();
        undo.push("shrink the image back", move || {
            Self::set_image_len(&img, old_size)
        });
        let image_s = image.to_string_lossy().into_owned();
        // e2fsck -p exits 1 when it fixed something: the filesystem is then fine.
        match run_tool("e2fsck", &["-f", "-p", &image_s]) {
            Ok(()) => {}
            Err(TenantError::ToolFailed { ref status, .. }) if status.ends_with("status: 1") => {}
            Err(e) => return Err(e),
        }
        fail_point(&v.name, "resize-before-resize2fs")?;
        run_tool("resize2fs", &[&image_s])?;
        undo.commit();
        if was_mounted {
            LoopBackend.ensure_mounted(v)?;
        }
        Ok(())
    }

    fn attach_and_mount(v: &Volume) -> Result<()> {
        let image = v.image_path();
        let target = v.mount_path();
        // A loop device already backed by this image is either mounted somewhere else (then
        // mounting it a second time through another device would corrupt it) or a leftover
        // of a crash between attach and mount (then it is ours to detach).
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = loopdev::parse_mountinfo(&mounts);
        for dev in loopdev::devices_backed_by(&image) {
            if let Some(m) = mounts.iter().find(|m| Path::new(&m.source) == dev) {
                return Err(TenantError::Mount {
                    device: dev,
                    target: target.clone(),
                    source: std::io::Error::other(format!(
                        "the image is already mounted at {}",
                        m.target.display()
                    )),
                });
            }
            loopdev::detach_if_backed_by(&dev, &image)?;
        }
        let (device, dev) = loopdev::attach(&image)?;
        let result = fail_point(&v.name, "after-attach")
            .and_then(|()| loopdev::mount_ext4(&device, &target));
        if let Err(e) = result {
            // Detach explicitly too: closing `dev` would (AUTOCLEAR), but say it loudly if not.
            if let Err(d) = loopdev::detach(&device, &dev) {
                tracing::error!(device = %device.display(), error = %d, "cannot detach");
            }
            drop(dev);
            let _ = Self::release_devices(&image);
            return Err(e);
        }
        // From here on the mount holds the device; closing our fd hands it over, so that
        // unmounting alone detaches it (AUTOCLEAR).
        drop(dev);
        tracing::info!(device = %device.display(), target = %target.display(), "volume mounted");
        Ok(())
    }
}

impl StorageBackend for LoopBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Loop
    }

    fn enforces_limits(&self) -> bool {
        true
    }

    fn create(&self, v: &Volume) -> Result<()> {
        let mut undo = Rollback::new();
        let dir = v.dir.clone();
        // 0711: the host's runtime walks through it; a tenant's mapped uid may reach its own
        // volume (0700, its own) but cannot list the directory.
        mkdir(&dir, 0o711)?;
        undo.push("remove tenant directory", move || {
            fs::remove_dir(&dir).map_err(TenantError::io("remove directory", &dir))
        });

        // The image is sparse: it takes disk space only as the tenant writes.
        let image = v.image_path();
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&image)
            .map_err(TenantError::io("create volume image", &image))?;
        let img = image.clone();
        undo.push("remove volume image", move || {
            fs::remove_file(&img).map_err(TenantError::io("remove volume image", &img))
        });
        f.set_len(v.size)
            .map_err(TenantError::io("size volume image", &image))?;
        drop(f);

        // -N: the inode limit. -m 0: reserved blocks are for host uid 0, which no tenant
        // process is, so they would only be lost. root_owner: the volume's root belongs to
        // the tenant's mapped root. 4 KiB blocks whatever the size, so limits behave alike.
        let owner = format!("root_owner={}:{},nodiscard", v.uid, v.gid);
        let inodes = v.inodes.to_string();
        let image_s = image.to_string_lossy().into_owned();
        run_tool(
            "mkfs.ext4",
            &[
                "-q", "-F", "-b", "4096", "-m", "0", "-N", &inodes, "-E", &owner, "-L", "sgrun",
                &image_s,
            ],
        )?;
        fail_point(&v.name, "after-mkfs")?;

        let target = v.mount_path();
        mkdir(&target, 0o700)?;
        let t = target.clone();
        undo.push("remove mount point", move || {
            fs::remove_dir(&t).map_err(TenantError::io("remove mount point", &t))
        });

        Self::attach_and_mount(v)?;
        let (t, img) = (target.clone(), image.clone());
        undo.push("unmount and detach", move || {
            loopdev::umount(&t)?;
            Self::release_devices(&img)
        });
        // The root of a fresh ext4 is 0755; only the tenant may look inside its volume.
        fs::set_permissions(&target, fs::Permissions::from_mode(0o700))
            .map_err(TenantError::io("chmod volume root", &target))?;
        fail_point(&v.name, "after-mount")?;
        undo.commit();
        Ok(())
    }

    fn ensure_mounted(&self, v: &Volume) -> Result<bool> {
        if self.is_mounted(v) {
            return Ok(false);
        }
        let image = v.image_path();
        if !image.is_file() {
            return Err(TenantError::io("find volume image", &image)(
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let target = v.mount_path();
        if !target.is_dir() {
            mkdir(&target, 0o700)?;
        }
        Self::attach_and_mount(v)?;
        Ok(true)
    }

    fn is_mounted(&self, v: &Volume) -> bool {
        loopdev::mount_at(&v.mount_path()).is_some_and(|m| m.fstype == "ext4")
    }

    fn device(&self, v: &Volume) -> Option<String> {
        loopdev::mount_at(&v.mount_path())
            .filter(|m| m.fstype == "ext4")
            .map(|m| m.source)
    }

    fn usage(&self, v: &Volume) -> Result<Usage> {
        if !self.is_mounted(v) {
            return Err(TenantError::NotMounted {
                name: v.name.clone(),
                path: v.mount_path(),
            });
        }
        let st = statvfs(&v.mount_path())?;
        Ok(Usage {
            bytes_used: (st.f_blocks - st.f_bfree) * st.f_frsize,
            bytes_limit: Some(st.f_blocks * st.f_frsize),
            inodes_used: st.f_files - st.f_ffree,
            inodes_limit: Some(st.f_files),
        })
    }

    fn resize(&self, v: &Volume, new_size: u64) -> Result<u64> {
        let image = v.image_path();
        let old_size = fs::metadata(&image)
            .map_err(TenantError::io("stat volume image", &image))?
            .len();
        if new_size < old_size {
            return Err(TenantError::ShrinkRefused {
                name: v.name.clone(),
                current: old_size,
                requested: new_size,
            });
        }
        // Online first: no downtime. It needs CAP_SYS_RESOURCE (ext4's resize ioctl checks
        // it), which hosts without it in the bounding set (this one) lack: then offline.
        if let Some(device) = self.device(v) {
            match Self::resize_online(v, Path::new(&device), old_size, new_size) {
                Ok(()) => return Ok(statvfs(&v.mount_path())?.f_files),
                Err(e @ TenantError::Injected { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "online resize failed; resizing offline (the volume is unmounted for a moment)")
                }
            }
        }
        Self::resize_offline(v, old_size, new_size)?;
        Ok(statvfs(&v.mount_path())?.f_files)
    }

    fn unmount(&self, v: &Volume) -> Result<()> {
        let target = v.mount_path();
        // Every mount stacked at the target (normally one).
        while self.is_mounted(v) {
            loopdev::umount(&target)?;
        }
        Self::release_devices(&v.image_path())
    }

    fn destroy(&self, v: &Volume) -> Result<()> {
        remove_tree(&v.dir)
    }
}

/// Remove a tenant's directory. std's remove_dir_all does not follow symlinks (it works
/// through directory fds), so a symlink the tenant planted cannot send it elsewhere.
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TenantError::io("remove tenant directory", dir)(e)),
    }
}

pub struct DirBackend;

impl StorageBackend for DirBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Dir
    }

    fn enforces_limits(&self) -> bool {
        false
    }

    fn create(&self, v: &Volume) -> Result<()> {
        let mut undo = Rollback::new();
        let dir = v.dir.clone();
        mkdir(&dir, 0o711)?;
        undo.push("remove tenant directory", move || remove_tree(&dir));
        let target = v.mount_path();
        mkdir(&target, 0o700)?;
        std::os::unix::fs::chown(&target, Some(v.uid), Some(v.gid))
            .map_err(TenantError::io("chown volume", &target))?;
        fail_point(&v.name, "after-mount")?;
        undo.commit();
        Ok(())
    }

    fn ensure_mounted(&self, v: &Volume) -> Result<bool> {
        let target = v.mount_path();
        fs::metadata(&target).map_err(TenantError::io("find volume directory", &target))?;
        Ok(false)
    }

    fn is_mounted(&self, v: &Volume) -> bool {
        v.mount_path().is_dir()
    }

    fn device(&self, _v: &Volume) -> Option<String> {
        None
    }

    fn usage(&self, v: &Volume) -> Result<Usage> {
        let (bytes, inodes) = walk_count(&v.mount_path())?;
        Ok(Usage {
            bytes_used: bytes,
            bytes_limit: None,
            inodes_used: inodes,
            inodes_limit: None,
        })
    }

    fn resize(&self, v: &Volume, _new_size: u64) -> Result<u64> {
        Err(TenantError::Unsupported {
            name: v.name.clone(),
            backend: "dir",
            what: "resize (it has no limits to change)",
        })
    }

    fn unmount(&self, _v: &Volume) -> Result<()> {
        Ok(())
    }

    fn destroy(&self, v: &Volume) -> Result<()> {
        remove_tree(&v.dir)
    }
}
