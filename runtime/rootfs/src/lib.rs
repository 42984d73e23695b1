//! sgrun tenant root filesystems.
//!
//! A container whose config carries `io.sgrun.tenant=NAME` and `io.sgrun.image=NAME` (and
//! optionally `io.sgrun.site=NAME`, default: the container id) does not run on its bundle's
//! rootfs. It runs on:
//!
//! - the image's base rootfs (host root's, read-only, shared by every tenant), **idmapped**
//!   into the tenant's UID/GID range, as the overlay's lower layer;
//! - an **overlay** whose upper and work directories are on the tenant's volume,
//!   `volume/.sgrun/rootfs/<site>/{upper,work}` (`userxattr`);
//! - the site's data, `volume/sites/<site>`, bind-mounted at **`/srv/site`**;
//! - in a user namespace mapped to the tenant's range (0 -> uid_base, 65536 ids), forced.
//!
//! A read-only root (`root.readonly`, every site's) has no overlay: it is a clone of the
//! image's EROFS, mounted once per image on the host, idmapped the same way ([`image_root`]).
//!
//! The mounts are made by the runtime, as host root, before the container's namespaces exist
//! (container root could not make an idmapped mount), in a private mount namespace of the
//! creating thread that the container's init copies: the host's mount table never holds them
//! and they disappear with the container. Every host-side lookup inside the tenant's volume or
//! the overlay is an openat2 beneath a directory fd with no symlink followed ([`beneath`]).
//!
//! Paths on the host (all host root's):
//!
//! ```text
//! <state>/rootfs/<root-hash>/<id>/        the overlay's mount point (an empty directory on
//!                                         the host; root.path of the container's config)
//! <state>/rootfs/<root-hash>/<id>.json    what to undo at delete (tenant, site, image)
//! <state>/rootfs/sites/<tenant>/<site>    claim: one container per site at a time
//! ```
//!
//! `<root-hash>` is 16 hex digits of the SHA-256 of the runtime's `--root`: container ids are
//! unique per runtime root only. See docs/rootfs.md for the order of the steps and why.

pub mod beneath;
pub mod error;
pub mod image_ref;
pub mod image_root;
pub mod spec;
pub mod sys;

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use sgrun_tenants::Tenants;
use tracing::{debug, info, info_span};

use beneath::Owner;
pub use error::{Result, RootfsError};
pub use spec::Request;

/// Where the site's data appears inside the container (the WordPress image's contract).
pub const SITE_MOUNT: &str = "srv/site";

/// Makes and removes tenant containers' root filesystems. One per state directory.
#[derive(Debug, Clone)]
pub struct TenantRootfs {
    state: PathBuf,
}

/// What `release` needs to undo a container's root filesystem, written before anything that
/// needs undoing is made, so that a crash at any later point can be cleaned up by a delete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RootfsRecord {
    pub id: String,
    pub runtime_root: PathBuf,
    pub tenant: String,
    pub site: String,
    pub image: String,
    pub image_hex: String,
    pub mount_point: PathBuf,
}

/// A tenant container's root filesystem, mounted in this thread's private mount namespace
/// until [`Mounted::finish`]: by then the container's init has its own copy of the mounts.
pub struct Mounted {
    ns: sys::PrivateMountNamespace,
    idmap_child: sys::ChildReaper,
}

impl Mounted {
    /// Return this thread to the mount namespace it came from. The private namespace then has
    /// no member left and the kernel drops our copies of the mounts; the container keeps its.
    pub fn finish(self) -> Result<()> {
        let started = std::time::Instant::now();
        // Reaped only now, long after it was killed: no wait for the scheduler.
        drop(self.idmap_child);
        self.ns.leave().map_err(RootfsError::sys(
            "setns(CLONE_NEWNS)",
            "the original mount namespace",
        ))?;
        info!(
            leave_us = started.elapsed().as_micros(),
            "back in the host's mount namespace"
        );
        Ok(())
    }
}

/// Microseconds of each step of a mount, for the log (`sgrun --debug`) and the benchmark.
struct StepClock {
    last: std::time::Instant,
    steps: Vec<(&'static str, u128)>,
}

impl StepClock {
    fn new(started: std::time::Instant) -> Self {
        StepClock {
            last: started,
            steps: Vec::new(),
        }
    }

    fn step(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.steps.push((name, (now - self.last).as_micros()));
        self.last = now;
    }

    fn get(&self, name: &str) -> u128 {
        self.steps
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, us)| us)
            .sum()
    }

    fn summary(&self) -> String {
        self.steps
            .iter()
            .map(|(n, us)| format!("{n}:{us}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A test hook: `SGRUN_TEST_FAIL_AT=rootfs-<step>` makes the create fail at that step, so
/// that the tests can check that every earlier step is undone. It can only make sgrun fail.
fn fail_point(id: &str, step: &str) -> Result<()> {
    if std::env::var("SGRUN_TEST_FAIL_AT").is_ok_and(|s| s.strip_prefix("rootfs-") == Some(step)) {
        return Err(RootfsError::Injected {
            id: id.into(),
            step: step.into(),
        });
    }
    Ok(())
}

fn root_hash(runtime_root: &Path) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(runtime_root.as_os_str().as_encoded_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// 0711 on the way down: the container's init (the tenant's mapped root, no host privilege)
/// must be able to traverse to the mount point; nobody may list what is there.
fn mkdir_host(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o711).create(path) {
        Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711))
            .map_err(RootfsError::io("chmod", path)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(RootfsError::io("create directory", path)(e)),
    }
}

fn remove_if_exists(path: &Path, what: &'static str) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RootfsError::io(what, path)(e)),
    }
}

impl TenantRootfs {
    /// `state_dir` is made absolute: the mount point becomes the container's `root.path`,
    /// which the engine would resolve against the bundle if it were relative, and the tenants'
    /// mount checks compare against mountinfo's absolute paths.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let state: PathBuf = state_dir.into();
        TenantRootfs {
            state: std::path::absolute(&state).unwrap_or(state),
        }
    }

    fn base(&self) -> PathBuf {
        self.state.join("rootfs")
    }

    fn root_dir(&self, runtime_root: &Path) -> PathBuf {
        self.base().join(root_hash(runtime_root))
    }

    /// The overlay's mount point for container `id` of runtime root `runtime_root`.
    pub fn mount_point(&self, id: &str, runtime_root: &Path) -> PathBuf {
        self.root_dir(runtime_root).join(id)
    }

    fn record_path(&self, id: &str, runtime_root: &Path) -> PathBuf {
        self.root_dir(runtime_root).join(format!("{id}.json"))
    }

    fn claim_path(&self, tenant: &str, site: &str) -> PathBuf {
        sgrun_tenants::site_claims_dir(&self.state, tenant).join(site)
    }

    /// At create, before anything exists: is this a tenant's container? If so, check what it
    /// asks for (tenant active, image present) and rewrite the config in memory: its root is
    /// the overlay's mount point, and its user namespace the tenant's range. The bundle is
    /// never written. Mounts the tenant's volume if it was not (first use after a restart).
    pub fn claim(&self, id: &str, runtime_root: &Path, spec: &mut Spec) -> Result<Option<Request>> {
        let Some(req) = spec::request(id, spec)? else {
            return Ok(None);
        };
        let _span = info_span!("tenant", name = %req.tenant, site = %req.site).entered();
        let (tenant, _volume) = Tenants::new(&self.state).ensure_mounted(&req.tenant)?;
        image_ref::resolve(&self.state, &req.image)?;
        spec::force_user_namespace(spec, &req.tenant, tenant.uid_base)?;
        let mut root = spec.root().clone().unwrap_or_default();
        root.set_path(self.mount_point(id, runtime_root));
        spec.set_root(Some(root));
        debug!(image = %req.image, "tenant container: image root filesystem, tenant's ids");
        Ok(Some(req))
    }

    /// Make the container's root filesystem at the mount point `claim` put into its config.
    /// On failure every step already made is undone. On success, the mounts live in this
    /// thread's private mount namespace until [`Mounted::finish`], which the caller calls once
    /// the container's init exists (it copies the namespace when it makes its own).
    pub fn mount(&self, id: &str, runtime_root: &Path, spec: &Spec) -> Result<Mounted> {
        let req = spec::request(id, spec)?.expect("claimed: the annotations are there");
        let _span =
            info_span!("tenant", name = %req.tenant, site = %req.site, container = id).entered();
        let started = std::time::Instant::now();
        let (tenant, volume) = Tenants::new(&self.state).ensure_mounted(&req.tenant)?;
        let image = image_ref::resolve(&self.state, &req.image)?;
        let mut clock = StepClock::new(started);
        clock.step("lookup");

        // 1. The record first: from here on, whatever happens, `release` (a delete, or the
        //    undo of this create) finds everything that follows. A record that exists already
        //    is another create's (or a crash's): refused here, and left alone.
        mkdir_host(&self.state)?;
        mkdir_host(&self.base())?;
        mkdir_host(&self.root_dir(runtime_root))?;
        let record = RootfsRecord {
            id: id.into(),
            runtime_root: runtime_root.to_path_buf(),
            tenant: req.tenant.clone(),
            site: req.site.clone(),
            image: image.name.clone(),
            image_hex: image.hex.clone(),
            mount_point: self.mount_point(id, runtime_root),
        };
        let rec_path = self.record_path(id, runtime_root);
        let json = serde_json::to_vec_pretty(&record).expect("serialisable");
        write_new(&rec_path, &json).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => RootfsError::Io {
                op: "create record (a container of this id and runtime root has one: `sgrun delete -f` it)",
                path: rec_path.clone(),
                source: e,
            },
            _ => RootfsError::io("write record", &rec_path)(e),
        })?;

        clock.step("record");
        // root.readonly: the image's EROFS, no overlay (image_root.rs), if the image has
        // every mount point the config needs; else an overlay, which can make them
        let readonly = spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false);
        let erofs = readonly && {
            let missing = image_root::missing_mount_point(&image.rootfs, spec);
            if let Some(m) = &missing {
                info!(
                    "read-only root on an overlay: the image has no {m} to mount on, and an \
                     EROFS cannot get one"
                );
            }
            missing.is_none()
        };
        let made = self.mount_steps(
            id,
            runtime_root,
            &req,
            &tenant,
            &volume,
            &image,
            erofs,
            clock,
        );
        if made.is_err() {
            if let Err(e) = self.release(id, runtime_root) {
                tracing::warn!("undoing the root filesystem of {id}: {e}");
            }
        }
        made
    }

    #[allow(clippy::too_many_arguments)]
    fn mount_steps(
        &self,
        id: &str,
        runtime_root: &Path,
        req: &Request,
        tenant: &sgrun_tenants::TenantRecord,
        volume: &Path,
        image: &image_ref::ImageRef,
        erofs: bool,
        mut clock: StepClock,
    ) -> Result<Mounted> {
        let owner = Owner {
            uid: tenant.uid_base as u32,
            gid: tenant.uid_base as u32,
            mode: 0o755,
        };

        let mount_point = self.mount_point(id, runtime_root);

        // 2. One container per site: two overlays on one upper directory corrupt it (the
        //    kernel only warns), and two stacks on one data directory do too. The claim is
        //    made with O_EXCL, so two creates cannot both win.
        let claim = self.claim_path(&req.tenant, &req.site);
        let claim_dir = claim.parent().expect("claim has a parent");
        mkdir_host(&self.base().join("sites"))?;
        mkdir_host(claim_dir)?;
        let holder = format!("{}\n{}\n", runtime_root.display(), id);
        if let Err(e) = write_new(&claim, holder.as_bytes()) {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                let text = std::fs::read_to_string(&claim).unwrap_or_default();
                let mut lines = text.lines();
                let holder_root = lines.next().unwrap_or("?").to_string();
                let holder = lines.next().unwrap_or("?").to_string();
                return Err(RootfsError::SiteInUse {
                    tenant: req.tenant.clone(),
                    site: req.site.clone(),
                    holder,
                    holder_root,
                    path: claim,
                });
            }
            return Err(RootfsError::io("write site claim", &claim)(e));
        }

        clock.step("claim");

        // 3. The image may not be removed while the container exists.
        image_ref::acquire(&self.state, image, id, runtime_root)?;
        mkdir_host(&mount_point)?;

        clock.step("marker");

        // 4. The tenant's directories, made host-side beneath the volume's root and owned by
        //    the tenant's mapped root. From here on no path string inside the volume is used
        //    again: only these fds, so a symlink the tenant plants later changes nothing.
        //    A root on the image's EROFS has no overlay, so no upper and work directories.
        let vol = sys::open_dir(volume, libc::O_PATH)
            .map_err(RootfsError::io("open tenant volume", volume))?;
        let state_rel = format!(".sgrun/rootfs/{}", req.site);
        let layers = if erofs {
            None
        } else {
            let private = Owner {
                mode: 0o700,
                ..owner
            };
            let layers = beneath::ensure_dir(vol.as_fd(), volume, &state_rel, private)?;
            beneath::ensure_dir(layers.as_fd(), &volume.join(&state_rel), "upper", owner)?;
            beneath::ensure_dir(layers.as_fd(), &volume.join(&state_rel), "work", private)?;
            Some(layers)
        };
        let site_rel = format!("sites/{}", req.site);
        let site = beneath::ensure_dir(vol.as_fd(), volume, &site_rel, owner)?;

        // 5. The image: a detached clone, idmapped into the tenant's range (host root's files
        //    appear as the tenant's root inside the user namespace) and read-only. A clone,
        //    so the base itself is never changed. For a read-only root it is a clone of the
        //    image's EROFS mount (image_root.rs); otherwise a recursive clone of its tree,
        //    the overlay's lower layer.
        clock.step("dirs");
        let userns = sys::IdmapNamespace::new(owner.uid, spec::MAP_SIZE).map_err(
            RootfsError::sys("clone(CLONE_NEWUSER)", format!("tenant {}", req.tenant)),
        )?;
        let image_tree = if erofs {
            image_root::clone(&self.state, image)?
        } else {
            sys::open_tree_path(
                &image.rootfs,
                libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32,
            )
            .map_err(RootfsError::sys("open_tree", image.rootfs.display()))?
        };
        clock.step("image");
        sys::mount_setattr(
            image_tree.as_fd(),
            libc::MOUNT_ATTR_IDMAP | libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV,
            Some(userns.fd.as_fd()),
        )
        .map_err(RootfsError::sys(
            "mount_setattr(MOUNT_ATTR_IDMAP)",
            image.rootfs.display(),
        ))?;
        // The idmapped mount holds its own reference to the namespace: the child can go. It
        // is killed now and reaped after the build (see `Mounted::finish`).
        let idmap_child = userns.release();
        clock.step("idmap");

        let site_tree = clone_dir(site.as_fd(), &volume.join(&site_rel))?;

        let root = match &layers {
            None => image_tree,
            Some(layers) => {
                // 6. Layers handed to overlayfs as open directories (fsconfig
                //    FSCONFIG_SET_FD), never as path strings: nothing is looked up again.
                //    Each is opened on a detached clone, so the overlay's options
                //    (mountinfo, inside the container too) read `lowerdir+=/,upperdir=/upper,
                //    workdir=/work`: no host path. Upper and work come from one clone because
                //    overlayfs wants them on the same mount.
                let lower = beneath::open_dir(image_tree.as_fd(), &image.rootfs, ".")?;
                let layers_path = volume.join(&state_rel);
                let layers_tree = clone_dir(layers.as_fd(), &layers_path)?;
                let upper = beneath::open_dir(layers_tree.as_fd(), &layers_path, "upper")?;
                let work = beneath::open_dir(layers_tree.as_fd(), &layers_path, "work")?;
                clock.step("layers");
                let overlay = self.overlay(id, req, &lower, &upper, &work)?;
                clock.step("overlay");
                overlay
            }
        };

        // 7. Attach, in a mount namespace of our own (private: nothing propagates to the
        //    host). Only now, so that every earlier failure left the host's namespace alone.
        let ns = sys::PrivateMountNamespace::enter().map_err(RootfsError::sys(
            "unshare(CLONE_NEWNS)",
            format!("container {id}"),
        ))?;
        let mp = sys::open_dir(&mount_point, libc::O_PATH)
            .map_err(RootfsError::io("open mount point", &mount_point))?;
        sys::move_mount(root.as_fd(), mp.as_fd())
            .map_err(RootfsError::sys("move_mount", mount_point.display()))?;

        clock.step("attach");

        // 8. /srv/site: the target is resolved beneath the root without symlinks (the
        //    tenant's upper layer could hold a link at /srv/site pointing anywhere). On an
        //    overlay it is created if the image lacks it, owned by the tenant's root; the
        //    EROFS has it (missing_mount_point checked).
        let target = if erofs {
            beneath::open_dir(root.as_fd(), &mount_point, SITE_MOUNT)?
        } else {
            beneath::ensure_dir(root.as_fd(), &mount_point, SITE_MOUNT, owner)?
        };
        sys::move_mount(site_tree.as_fd(), target.as_fd()).map_err(RootfsError::sys(
            "move_mount",
            mount_point.join(SITE_MOUNT).display(),
        ))?;
        clock.step("site");
        fail_point(id, "after-mount")?;
        info!(
            root = if erofs { "erofs" } else { "overlay" },
            idmap_us = clock.get("idmap"),
            overlay_us = clock.get("overlay"),
            total_us = clock.steps.iter().map(|(_, us)| us).sum::<u128>(),
            steps = clock.summary(),
            "root filesystem mounted"
        );
        Ok(Mounted { ns, idmap_child })
    }

    fn overlay(
        &self,
        id: &str,
        req: &Request,
        lower: &OwnedFd,
        upper: &OwnedFd,
        work: &OwnedFd,
    ) -> Result<OwnedFd> {
        let err = |log: String| {
            let req = req.clone();
            let id = id.to_string();
            move |source| RootfsError::Overlay {
                id,
                image: req.image,
                tenant: req.tenant,
                log,
                source,
            }
        };
        let fs = sys::FsContext::open(c"overlay").map_err(err("fsopen".into()))?;
        let set: [(&CStr, &OwnedFd); 3] = [
            (c"lowerdir+", lower),
            (c"upperdir", upper),
            (c"workdir", work),
        ];
        for (key, fd) in set {
            fs.set_fd(key, fd.as_fd())
                .map_err(|e| err(format!("{key:?}: {}", fs.log()))(e))?;
        }
        // user.overlay.* xattrs in the upper layer, not trusted.*: the tenant's data stays
        // self-contained (its own uids can copy, back up and restore it), and it implies
        // redirect_dir=nofollow and no metacopy, so no xattr in the upper can point the
        // overlay elsewhere.
        fs.set_flag(c"userxattr")
            .map_err(|e| err(format!("userxattr: {}", fs.log()))(e))?;
        fs.create()
            .map_err(|e| err(format!("create: {}", fs.log()))(e))?;
        fs.mount(libc::MOUNT_ATTR_NODEV)
            .map_err(|e| err(format!("fsmount: {}", fs.log()))(e))
    }

    /// Undo everything of container `id` of `runtime_root`: its image marker, its site claim,
    /// its mount point and its record. Idempotent; a container that was never a tenant's has
    /// no record and nothing is done. The mounts themselves need no unmount: they live only in
    /// the container's mount namespace, which the kernel tears down with its last process.
    pub fn release(&self, id: &str, runtime_root: &Path) -> Result<()> {
        let rec_path = self.record_path(id, runtime_root);
        let text = match std::fs::read(&rec_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(RootfsError::io("read record", &rec_path)(e)),
        };
        let rec: RootfsRecord =
            serde_json::from_slice(&text).map_err(|source| RootfsError::Record {
                path: rec_path.clone(),
                source,
            })?;
        let _span =
            info_span!("tenant", name = %rec.tenant, site = %rec.site, container = id).entered();
        image_ref::release(&self.state, &rec.image_hex, id, runtime_root)?;
        let claim = self.claim_path(&rec.tenant, &rec.site);
        let holder = format!("{}\n{}\n", runtime_root.display(), id);
        if std::fs::read(&claim).is_ok_and(|c| c == holder.as_bytes()) {
            remove_if_exists(&claim, "remove site claim")?;
        }
        let mp = self.mount_point(id, runtime_root);
        match std::fs::remove_dir(&mp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RootfsError::io("remove mount point", &mp)(e)),
        }
        remove_if_exists(&rec_path, "remove record")?;
        debug!("root filesystem released");
        Ok(())
    }
}

/// A detached clone of the directory `dir` (a bind mount not attached anywhere yet); `path`
/// names it in errors.
fn clone_dir(dir: std::os::fd::BorrowedFd, path: &Path) -> Result<OwnedFd> {
    sys::open_tree(dir, "", libc::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as u32)
        .map_err(RootfsError::sys("open_tree", path.display()))
}

/// Create `path` with `data`, failing if it exists.
fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
