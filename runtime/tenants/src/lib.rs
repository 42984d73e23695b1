//! sgrun tenants: who a tenant is (a name and a host UID/GID range of 65536 ids) and where
//! its data lives (a storage volume with block and inode limits).
//!
//! Layout under the state directory (default /var/lib/sgrun):
//!
//! ```text
//! registry/.lock               flock'ed exclusively by every change
//! registry/allocations.json    UID/GID ranges: first id -> tenant
//! registry/<name>.json         one record per tenant
//! tenants/<name>/volume.ext4   the loop backend's image
//! tenants/<name>/volume/       the volume's mount point (or the dir backend's directory)
//! pools/<backend>.json         the pool of a pool backend (btrfs, ext4-prjquota, xfs-prjquota)
//! pools/<backend>.img, <backend>/  a pool made by `sgrun tenant pool create`: image, mount
//! ```
//!
//! Order of a create, and why: the range is reserved and the record written (state
//! `creating`) *before* any storage is made, so that a crash at any point leaves a record
//! that `rm --purge` can find and clean up. Within one process, a failure undoes every step
//! made so far, last first. A purge deletes the data first and frees the range last, so a
//! range is never handed out while data owned by its ids may still exist.

pub mod backend;
pub mod btrfs;
pub mod error;
pub mod loopdev;
pub mod pool;
pub mod prjquota;
pub mod registry;
pub mod validate;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use backend::{backend, StorageBackend, Usage, Volume};
pub use error::{Result, TenantError};
pub use pool::{PoolInfo, PoolRecord};
pub use registry::{BackendKind, TenantRecord, TenantState, DEFAULT_RANGE_BASE, RANGE_SIZE};

use backend::{fail_point, Rollback};
use registry::Registry;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/sgrun";

/// Where the runtime claims a tenant's sites, one file per site holding the container's
/// runtime root and id (docs/rootfs.md). `rm` reads it to refuse while a site runs.
pub fn site_claims_dir(state_dir: &Path, tenant: &str) -> PathBuf {
    state_dir.join("rootfs").join("sites").join(tenant)
}

/// What `show` and `ls` report: the record plus what is true on the host right now.
#[derive(Debug, Clone, Serialize)]
pub struct TenantInfo {
    #[serde(flatten)]
    pub record: TenantRecord,
    pub uid_range: String,
    pub mount_path: PathBuf,
    pub image: Option<PathBuf>,
    pub mounted: bool,
    pub device: Option<String>,
    pub enforces_limits: bool,
    /// False for btrfs, which has no inode limit (and for dir, which has none at all).
    pub enforces_inode_limit: bool,
    /// The pool the tenant lives in (pool backends).
    pub pool: Option<PathBuf>,
}

/// What `mount --all` did: pools first (tenants of a pool need it), then tenants. One result
/// each; a failure of one does not stop the others.
pub struct MountAll {
    pub pools: Vec<(BackendKind, PathBuf, Result<bool>)>,
    pub tenants: Vec<(String, Result<bool>)>,
}

pub struct CreateRequest {
    pub name: String,
    pub storage_bytes: u64,
    pub inodes: u64,
    pub backend: BackendKind,
}

pub struct Tenants {
    state_dir: PathBuf,
    registry: Registry,
    range_base: u64,
}

impl Tenants {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let state_dir = state_dir.into();
        Tenants {
            registry: Registry::new(&state_dir),
            state_dir,
            range_base: DEFAULT_RANGE_BASE,
        }
    }

    /// First id from which new ranges are handed out (a multiple of 65536).
    pub fn with_range_base(mut self, base: u64) -> Self {
        self.range_base = base;
        self
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn registry_dir(&self) -> &Path {
        self.registry.dir()
    }

    fn ensure_state_dirs(&self) -> Result<()> {
        // 0711 on the way down: tenants' mapped uids may traverse to their own volume.
        for dir in [self.state_dir.clone(), self.state_dir.join("tenants")] {
            match fs::DirBuilder::new().mode(0o711).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o711)
                        .create(&dir)
                        .map_err(TenantError::io("create state directory", &dir))?;
                }
                Err(e) => return Err(TenantError::io("create state directory", &dir)(e)),
            }
            // DirBuilder's mode goes through the umask; a umask of 077 would lock tenants
            // out of their own volumes.
            set_mode(&dir, 0o711)?;
        }
        Ok(())
    }

    fn volume(&self, rec: &TenantRecord) -> Volume {
        Volume {
            name: rec.name.clone(),
            dir: self.state_dir.join("tenants").join(&rec.name),
            size: rec.storage_bytes,
            inodes: rec.inodes,
            uid: rec.uid_base as u32,
            gid: rec.uid_base as u32,
            pool: pool::load(&self.state_dir, rec.backend)
                .ok()
                .flatten()
                .map(|p| p.path),
            project_id: rec
                .project_id
                .unwrap_or_else(|| registry::project_id_for(rec.uid_base)),
        }
    }

    /// The pool of a pool backend, mounted (an sgrun-made pool is mounted here at its first
    /// use after a restart). `None` for backends without a pool.
    fn pool_ready(&self, kind: BackendKind) -> Result<Option<PoolRecord>> {
        if !kind.uses_pool() {
            return Ok(None);
        }
        let p = pool::load_required(&self.state_dir, kind)?;
        pool::ensure_mounted(&p)?;
        Ok(Some(p))
    }

    fn info(&self, rec: TenantRecord) -> TenantInfo {
        let be = backend(rec.backend);
        let v = self.volume(&rec);
        TenantInfo {
            uid_range: format!("{}-{}", rec.uid_base, rec.uid_end() - 1),
            mount_path: v.mount_path(),
            image: (rec.backend == BackendKind::Loop).then(|| v.image_path()),
            mounted: rec.state != TenantState::Removed && be.is_mounted(&v),
            device: be.device(&v),
            enforces_limits: be.enforces_limits(),
            enforces_inode_limit: be.enforces_inode_limit(),
            pool: v.pool.clone(),
            record: rec,
        }
    }

    fn load(&self, name: &str) -> Result<TenantRecord> {
        validate::check_name(name)?;
        self.registry
            .load(name)?
            .ok_or_else(|| TenantError::NotFound {
                name: name.to_string(),
                path: self.registry.record_path(name),
            })
    }

    fn load_active(&self, name: &str) -> Result<TenantRecord> {
        let rec = self.load(name)?;
        match rec.state {
            TenantState::Active => Ok(rec),
            TenantState::Removed => Err(TenantError::Removed { name: rec.name }),
            TenantState::Creating => Err(TenantError::Incomplete { name: rec.name }),
        }
    }

    pub fn create(&self, req: &CreateRequest) -> Result<TenantInfo> {
        let span = tracing::info_span!("tenant", name = %req.name);
        let _g = span.enter();
        validate::check_name(&req.name)?;
        self.ensure_state_dirs()?;
        let be = backend(req.backend);
        // A pool backend's tenants share the pool: its free space is what counts.
        let pool = self.pool_ready(req.backend)?;
        let space_on = pool
            .as_ref()
            .map_or(self.state_dir.clone(), |p| p.path.clone());
        let free = if be.enforces_limits() {
            Some((backend::free_bytes(&space_on)?, space_on.as_path()))
        } else {
            None
        };
        validate::check_limits(req.storage_bytes, req.inodes, free)?;

        let lock = self.registry.lock()?;
        let path = self.registry.record_path(&req.name);
        if self.registry.load(&req.name)?.is_some() {
            return Err(TenantError::AlreadyExists {
                name: req.name.clone(),
                path,
            });
        }
        let mut undo = Rollback::new();

        // 1. the range, persisted before anything is owned by its ids
        let mut alloc = self.registry.allocations()?;
        if alloc.range_of(&req.name).is_some() {
            // A range without a record: a purge that crashed before freeing it. Reclaim it.
            alloc.release(&req.name);
        }
        let uid_base = alloc.allocate(&req.name, self.range_base)?;
        self.registry.save_allocations(&lock, &alloc)?;
        let (reg, name, l) = (self.registry.clone(), req.name.clone(), lock.clone());
        undo.push("release UID range", move || {
            let lock = l;
            let mut a = reg.allocations()?;
            a.release(&name);
            reg.save_allocations(&lock, &a)
        });

        // 2. the record, in state `creating`
        let mut rec = TenantRecord {
            name: req.name.clone(),
            uid_base,
            uid_count: RANGE_SIZE,
            backend: req.backend,
            storage_bytes: req.storage_bytes,
            inodes: req.inodes,
            state: TenantState::Creating,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            project_id: req
                .backend
                .uses_project_quota()
                .then(|| registry::project_id_for(uid_base)),
        };
        self.registry.save(&lock, &rec)?;
        let (reg, name, l) = (self.registry.clone(), req.name.clone(), lock.clone());
        undo.push("remove registry entry", move || reg.delete(&l, &name));

        // 3. the volume (undoes its own steps if it fails)
        let v = self.volume(&rec);
        be.create(&v)?;
        let v2 = v.clone();
        let kind = req.backend;
        undo.push("remove volume", move || {
            let be = backend(kind);
            be.unmount(&v2)?;
            be.destroy(&v2)
        });

        // 4. the real inode count (mkfs rounds up to whole inode tables), then `active`
        if !be.enforces_inode_limit() {
            // Nothing counts them; keep what was asked for as a record of intent.
        } else if let Ok(u) = be.usage(&v) {
            if let Some(n) = u.inodes_limit {
                rec.inodes = n;
            }
        }
        fail_point(&rec.name, "before-commit")?;
        rec.state = TenantState::Active;
        self.registry.save(&lock, &rec)?;
        undo.commit();
        tracing::info!(uid_base, backend = rec.backend.as_str(), "tenant created");
        drop(lock);
        Ok(self.info(rec))
    }

    pub fn list(&self) -> Result<Vec<TenantInfo>> {
        Ok(self
            .registry
            .list()?
            .into_iter()
            .map(|r| self.info(r))
            .collect())
    }

    pub fn show(&self, name: &str) -> Result<TenantInfo> {
        Ok(self.info(self.load(name)?))
    }

    pub fn usage(&self, name: &str) -> Result<Usage> {
        let rec = self.load_active(name)?;
        backend(rec.backend).usage(&self.volume(&rec))
    }

    /// Grow a tenant's volume. The volume is mounted first if needed (online resize).
    pub fn resize(&self, name: &str, new_size: u64) -> Result<TenantInfo> {
        let span = tracing::info_span!("tenant", name = %name);
        let _g = span.enter();
        let lock = self.registry.lock()?;
        let mut rec = self.load_active(name)?;
        let be = backend(rec.backend);
        if new_size < rec.storage_bytes {
            return Err(TenantError::ShrinkRefused {
                name: rec.name,
                current: rec.storage_bytes,
                requested: new_size,
            });
        }
        let pool = self.pool_ready(rec.backend)?;
        if be.enforces_limits() {
            // Only the growth needs to fit: the image already holds its old size.
            let space_on = pool.map_or(self.state_dir.clone(), |p| p.path);
            let free = backend::free_bytes(&space_on)?;
            let grow = new_size - rec.storage_bytes;
            if grow > free {
                return Err(TenantError::SizeTooLarge {
                    size: new_size,
                    free: free + rec.storage_bytes,
                    path: space_on,
                });
            }
        }
        let v = self.volume(&rec);
        be.ensure_mounted(&v)?;
        let inodes = be.resize(&v, new_size)?;
        rec.storage_bytes = new_size;
        rec.inodes = inodes;
        self.registry.save(&lock, &rec)?;
        tracing::info!(new_size, inodes, "tenant resized");
        Ok(self.info(rec))
    }

    /// The sites of tenant `name` whose container exists, as "site (container ID under
    /// ROOT)". Claims of containers that are gone (a crash) are not counted.
    pub fn running_sites(&self, name: &str) -> Result<Vec<String>> {
        let dir = site_claims_dir(&self.state_dir, name);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TenantError::io("list site claims", &dir)(e)),
        };
        let mut running = Vec::new();
        for entry in entries.flatten() {
            let site = entry.file_name().to_string_lossy().into_owned();
            let Ok(text) = fs::read_to_string(entry.path()) else {
                continue;
            };
            let mut lines = text.lines();
            let (Some(root), Some(id)) = (lines.next(), lines.next()) else {
                continue;
            };
            if Path::new(root).join(id).exists() {
                running.push(format!("{site} (container {id} under {root})"));
            }
        }
        running.sort();
        Ok(running)
    }

    /// Unmount and detach; with `purge`, delete the data, the record, and free the range.
    pub fn remove(&self, name: &str, purge: bool) -> Result<()> {
        let span = tracing::info_span!("tenant", name = %name);
        let _g = span.enter();
        validate::check_name(name)?;
        let lock = self.registry.lock()?;
        // A running site keeps its overlay (with its own clone of the volume's mount) after
        // an unmount, so EBUSY would not catch it: the site claims say who runs.
        let running = self.running_sites(name)?;
        if !running.is_empty() {
            return Err(TenantError::SitesRunning {
                name: name.to_string(),
                sites: running.join(", "),
            });
        }
        let Some(mut rec) = self.registry.load(name)? else {
            // A range whose record is gone: a purge that crashed before its last step.
            let mut alloc = self.registry.allocations()?;
            if purge && alloc.range_of(name).is_some() {
                alloc.release(name);
                return self.registry.save_allocations(&lock, &alloc);
            }
            return Err(TenantError::NotFound {
                name: name.to_string(),
                path: self.registry.record_path(name),
            });
        };
        let be = backend(rec.backend);
        let v = self.volume(&rec);
        be.unmount(&v)?;
        if purge {
            // The data lives in the pool: it must be there to be deleted.
            self.pool_ready(rec.backend)?;
        }
        if !purge {
            if rec.state == TenantState::Active {
                rec.state = TenantState::Removed;
                self.registry.save(&lock, &rec)?;
            }
            tracing::info!("tenant removed; data and UID range kept");
            return Ok(());
        }
        // Data first, range last: see the module comment.
        be.destroy(&v)?;
        self.registry.delete(&lock, name)?;
        let mut alloc = self.registry.allocations()?;
        alloc.release(name);
        self.registry.save_allocations(&lock, &alloc)?;
        tracing::info!("tenant purged; UID range freed");
        Ok(())
    }

    /// Mount one tenant's volume (also brings back a removed tenant). True if it mounted now.
    pub fn mount(&self, name: &str) -> Result<bool> {
        let span = tracing::info_span!("tenant", name = %name);
        let _g = span.enter();
        let lock = self.registry.lock()?;
        let mut rec = self.load(name)?;
        if rec.state == TenantState::Creating {
            return Err(TenantError::Incomplete { name: rec.name });
        }
        self.pool_ready(rec.backend)?;
        let mounted = backend(rec.backend).ensure_mounted(&self.volume(&rec))?;
        if rec.state == TenantState::Removed {
            rec.state = TenantState::Active;
            self.registry.save(&lock, &rec)?;
        }
        Ok(mounted)
    }

    /// For the runtime, at a container's create: the record of an *active* tenant and the
    /// path of its volume, mounted now if it was not (a volume is mounted at first use after a
    /// host restart). A removed or half-made tenant is refused: its containers must not start.
    pub fn ensure_mounted(&self, name: &str) -> Result<(TenantRecord, PathBuf)> {
        let span = tracing::info_span!("tenant", name = %name);
        let _g = span.enter();
        let rec = self.load_active(name)?;
        let v = self.volume(&rec);
        let be = backend(rec.backend);
        // Cheap check first: the lock serialises only the first use after a restart.
        if !be.is_mounted(&v) {
            let _lock = self.registry.lock()?;
            let rec = self.load_active(name)?;
            // a pool-backed volume is a directory inside its pool: the pool comes first
            self.pool_ready(rec.backend)?;
            be.ensure_mounted(&self.volume(&rec))?;
        }
        Ok((rec, v.mount_path()))
    }

    /// After a host restart: mount every pool sgrun made (and check the registered ones),
    /// then every active tenant's volume. Pools come first because their tenants' volumes
    /// are directories inside them; a tenant whose pool failed fails with the pool's error.
    pub fn mount_all(&self) -> Result<MountAll> {
        let _lock = self.registry.lock()?;
        let mut pools = Vec::new();
        for p in pool::list(&self.state_dir)? {
            let span = tracing::info_span!("pool", backend = p.backend.as_str());
            let _g = span.enter();
            let r = pool::ensure_mounted(&p);
            pools.push((p.backend, p.path.clone(), r));
        }
        let mut tenants = Vec::new();
        for rec in self.registry.list()? {
            if rec.state != TenantState::Active {
                continue;
            }
            let span = tracing::info_span!("tenant", name = %rec.name);
            let _g = span.enter();
            let r = self
                .pool_ready(rec.backend)
                .and_then(|_| backend(rec.backend).ensure_mounted(&self.volume(&rec)));
            tenants.push((rec.name.clone(), r));
        }
        Ok(MountAll { pools, tenants })
    }

    /// `sgrun tenant pool create KIND --size N`.
    pub fn create_pool(&self, kind: BackendKind, size: u64) -> Result<PoolInfo> {
        self.ensure_state_dirs()?;
        let _lock = self.registry.lock()?;
        Ok(pool::info(pool::create(&self.state_dir, kind, size)?))
    }

    /// `sgrun tenant pool add KIND PATH`.
    pub fn add_pool(&self, kind: BackendKind, path: &Path) -> Result<PoolInfo> {
        self.ensure_state_dirs()?;
        let _lock = self.registry.lock()?;
        Ok(pool::info(pool::add(&self.state_dir, kind, path)?))
    }

    pub fn pools(&self) -> Result<Vec<PoolInfo>> {
        Ok(pool::list(&self.state_dir)?
            .into_iter()
            .map(pool::info)
            .collect())
    }

    /// `sgrun tenant pool rm KIND`: refused while any tenant (also a removed one, whose data
    /// is still in the pool) uses it.
    pub fn remove_pool(&self, kind: BackendKind) -> Result<()> {
        let _lock = self.registry.lock()?;
        let users: Vec<String> = self
            .registry
            .list()?
            .into_iter()
            .filter(|r| r.backend == kind)
            .map(|r| r.name)
            .collect();
        if !users.is_empty() {
            return Err(TenantError::PoolInUse {
                kind: kind.as_str(),
                tenants: users.join(", "),
            });
        }
        pool::remove(&self.state_dir, kind)
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(TenantError::io("chmod", path))
}
