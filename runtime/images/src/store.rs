//! The content-addressed image store under `<state-dir>/images/`:
//!
//! ```text
//! images/.lock                         flock: every change holds it exclusively
//! images/sha256/<id>/rootfs/           the tree, host root ids as in the image, never modified
//! images/sha256/<id>/manifest          canonical manifest; <id> = its sha256
//! images/sha256/<id>/image.json        metadata (ImageMeta)
//! images/sha256/<id>/users/<ctr-id>    in-use markers; content: the container's --root dir
//! images/sha256/<id>/rootfs.erofs     the tree as an EROFS image, made on first use (erofs.rs)
//! images/mounts/<id>/                  where the runtime mounts that EROFS image, once
//! images/names/<name>                  the id a name points to (atomic replace)
//! images/tmp/<random>/                 staging: builds and imports, renamed in when complete
//! ```
//!
//! A build or import works in its own `tmp/<random>/` (holding an flock on that directory,
//! so that a concurrent `open` does not clean it away) and is renamed to `sha256/<id>` only
//! when complete, so a failure or a crash leaves at most a `tmp/` entry, which the next
//! `Store::open` removes. `images/` is 0700: an image may hold setuid binaries (trusted
//! imports, Debian builds), which no unprivileged host user may reach.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{is_no_space, ImageError, Result};
use crate::fsutil::{self, atomic_write, flock, fsync_dir, remove_tree};
use crate::import::{self, Format, ImageConfig, Source};
use crate::manifest::{self, hex, Difference, Manifest};
use crate::names::{self, is_full_id, validate_container_id, validate_name};
use crate::unpack::{UnpackOptions, UnpackStats, Unpacker};

/// Where an image came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ImageSource {
    /// Built by `sgrun image build` from a recipe.
    Recipe {
        /// The recipe directory as given.
        recipe: PathBuf,
        recipe_name: String,
        /// See recipe::LoadedRecipe::hash: same hash, same build.
        recipe_hash: String,
        suite: String,
    },
    /// Imported by `sgrun image import`.
    Import {
        file: PathBuf,
        /// sha256 of the archive (of index.json or manifest.json for a directory).
        sha256: String,
        format: Format,
        /// The reference the archive names (RepoTags, ref.name), if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
}

/// image.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub id: String,
    /// The names pointing at this image (kept in step with images/names/ under the lock).
    #[serde(default)]
    pub names: Vec<String>,
    pub source: ImageSource,
    /// RFC 3339.
    pub created: String,
    /// Bytes of content (files, each inode once, and symlink targets).
    pub size: u64,
    /// Bytes allocated on disk.
    pub disk_usage: u64,
    /// Entries below the root.
    pub files: u64,
    /// Setuid/setgid bits and file capabilities kept (builds, --trusted imports).
    pub trusted: bool,
    #[serde(default)]
    pub stripped_setid: u64,
    #[serde(default)]
    pub stripped_caps: u64,
    /// Seconds the build or import took.
    #[serde(default)]
    pub seconds: f64,
    /// What an imported image runs by default.
    #[serde(default)]
    pub config: ImageConfig,
}

/// An image of the store.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub id: String,
    pub names: Vec<String>,
    pub rootfs: PathBuf,
    pub meta: ImageMeta,
}

/// An in-use marker and whether its container still exists.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub container: String,
    pub runtime_root: Option<PathBuf>,
    pub alive: bool,
}

pub struct Store {
    dir: PathBuf,
    /// Notes from opening (stale staging directories removed or kept), for the CLI.
    pub notes: Vec<String>,
}

/// The store lock, released on drop.
pub(crate) struct Lock {
    _file: File,
}

/// A staging directory `tmp/<random>/`, removed on drop unless committed.
pub(crate) struct Staging {
    pub dir: PathBuf,
    /// Holds the flock that tells `Store::open` this directory is in use.
    _fd: OwnedFd,
    committed: bool,
}

impl Staging {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(e) = remove_tree(&self.dir) {
            tracing::warn!(
                "cannot remove the staging directory {}: {e}; the next sgrun image command removes it",
                self.dir.display()
            );
        }
    }
}

/// What `commit` did.
#[derive(Debug, Clone, Serialize)]
pub struct Committed {
    pub image: Image,
    /// False when the store already had this exact tree (the staging copy was dropped).
    pub new_content: bool,
    /// The image the name pointed to before, when it changed.
    pub replaced: Option<String>,
    /// Whether that previous image was removed (no name and no user left).
    pub replaced_removed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    #[serde(flatten)]
    pub committed: Committed,
    /// The same archive (same sha256, same --trusted) was imported before: nothing was
    /// unpacked, the name (if any) now points at that image.
    pub reused: bool,
    pub stats: UnpackStats,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub name: Option<String>,
    pub trusted: bool,
    pub max_size: Option<u64>,
}

/// What `rm` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoveOutcome {
    pub id: String,
    pub removed_names: Vec<String>,
    pub kept_names: Vec<String>,
    pub removed_content: bool,
    /// Markers of containers that no longer exist, removed on the way.
    pub stale_markers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub id: String,
    pub names: Vec<String>,
    pub ok: bool,
    /// The manifest file itself does not hash to the id.
    pub manifest_altered: bool,
    pub differences: Vec<Difference>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store {
    /// Open (creating it if needed) the store under `state_dir`, and remove what crashed
    /// builds and imports left in `tmp/`.
    pub fn open(state_dir: &Path) -> Result<Store> {
        let dir = state_dir.join("images");
        // The state directory keeps the default mode (the tenants' part of it is theirs);
        // only images/ is 0700.
        fs::create_dir_all(state_dir).map_err(ImageError::io("cannot create", state_dir))?;
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        for sub in ["sha256", "names", "tmp"] {
            let p = dir.join(sub);
            b.create(&p).map_err(ImageError::io("cannot create", &p))?;
        }
        // The store may have been made by hand or by an older version: enforce 0700 on the
        // top, so that no host user reaches the trees below.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(ImageError::io("cannot chmod", &dir))?;
        let mut store = Store {
            dir,
            notes: Vec::new(),
        };
        let lock = store.lock()?;
        store.clean_tmp(&lock)?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn lock(&self) -> Result<Lock> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| ImageError::Lock {
                path: path.clone(),
                source,
            })?;
        flock(file.as_fd(), true, true).map_err(|source| ImageError::Lock {
            path: path.clone(),
            source,
        })?;
        Ok(Lock { _file: file })
    }

    fn clean_tmp(&mut self, _lock: &Lock) -> Result<()> {
        let tmp = self.dir.join("tmp");
        let rd = fs::read_dir(&tmp).map_err(ImageError::io("cannot list", &tmp))?;
        for e in rd.flatten() {
            let p = e.path();
            // A staging directory whose owner still runs holds an flock on it.
            let busy = match fsutil::open_dir(&p) {
                Ok(fd) => !flock(fd.as_fd(), true, false).unwrap_or(false),
                Err(_) => false,
            };
            if busy {
                continue;
            }
            match remove_tree(&p) {
                Ok(()) => self.notes.push(format!(
                    "removed {} (left by an interrupted build or import)",
                    p.display()
                )),
                Err(e) => self
                    .notes
                    .push(format!("cannot remove {}: {e}", p.display())),
            }
        }
        Ok(())
    }

    pub(crate) fn stage(&self) -> Result<Staging> {
        let dir =
            self.dir
                .join("tmp")
                .join(format!("{}-{}", std::process::id(), fsutil::random_hex()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| self.write_err(&dir, e))?;
        let fd = fsutil::open_dir(&dir)?;
        flock(fd.as_fd(), true, false).map_err(ImageError::io("cannot lock", &dir))?;
        Ok(Staging {
            dir,
            _fd: fd,
            committed: false,
        })
    }

    fn write_err(&self, path: &Path, e: io::Error) -> ImageError {
        if is_no_space(&e) {
            ImageError::NoSpace {
                store: self.dir.clone(),
                what: path.display().to_string(),
                source: e,
            }
        } else {
            ImageError::Io {
                op: "cannot create",
                path: path.to_path_buf(),
                source: e,
            }
        }
    }

    fn image_dir(&self, id: &str) -> PathBuf {
        self.dir.join("sha256").join(id)
    }

    fn name_path(&self, name: &str) -> PathBuf {
        self.dir.join("names").join(name)
    }

    /// name -> id, for every name.
    fn all_names(&self) -> Result<BTreeMap<String, String>> {
        let d = self.dir.join("names");
        let mut out = BTreeMap::new();
        for e in fs::read_dir(&d).map_err(ImageError::io("cannot list", &d))? {
            let e = e.map_err(ImageError::io("cannot list", &d))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || validate_name(&name).is_err() {
                continue;
            }
            if let Some(id) = self.read_name(&name)? {
                out.insert(name, id);
            }
        }
        Ok(out)
    }

    fn read_name(&self, name: &str) -> Result<Option<String>> {
        let p = self.name_path(name);
        match fs::read_to_string(&p) {
            Ok(s) => {
                let id = s.trim();
                if !is_full_id(id) {
                    return Err(ImageError::Corrupt {
                        path: p,
                        problem: "the name file does not hold an image id".into(),
                    });
                }
                Ok(Some(id.to_string()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io("cannot read", &p)(e)),
        }
    }

    fn names_of(&self, id: &str) -> Result<Vec<String>> {
        Ok(self
            .all_names()?
            .into_iter()
            .filter(|(_, i)| i == id)
            .map(|(n, _)| n)
            .collect())
    }

    fn ids(&self) -> Result<Vec<String>> {
        let d = self.dir.join("sha256");
        let mut ids = Vec::new();
        for e in fs::read_dir(&d).map_err(ImageError::io("cannot list", &d))? {
            let e = e.map_err(ImageError::io("cannot list", &d))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if is_full_id(&n) {
                ids.push(n);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn load(&self, id: &str, names: Vec<String>) -> Result<Image> {
        let dir = self.image_dir(id);
        let p = dir.join("image.json");
        let text = fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::NotFound {
                    what: id.to_string(),
                    store: self.dir.clone(),
                }
            } else {
                ImageError::io("cannot read", &p)(e)
            }
        })?;
        let mut meta: ImageMeta =
            serde_json::from_slice(&text).map_err(|source| ImageError::Json { path: p, source })?;
        meta.names = names.clone();
        Ok(Image {
            id: id.to_string(),
            names,
            rootfs: dir.join("rootfs"),
            meta,
        })
    }

    /// Find an image by name, full id, or unique id prefix of at least 12 hex digits
    /// (`sha256:` may precede an id).
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        let id = self.resolve_id(reference)?;
        let names = self.names_of(&id)?;
        self.load(&id, names)
    }

    fn resolve_id(&self, reference: &str) -> Result<String> {
        let (name, id) = names::parse_reference(reference)?;
        if let Some(name) = name {
            if let Some(id) = self.read_name(name)? {
                if !self.image_dir(&id).join("image.json").exists() {
                    return Err(ImageError::Corrupt {
                        path: self.name_path(name),
                        problem: format!(
                            "the name points at image {id}, which is not in the store"
                        ),
                    });
                }
                return Ok(id);
            }
        }
        let not_found = || ImageError::NotFound {
            what: names::shown(reference),
            store: self.dir.clone(),
        };
        let Some(prefix) = id else {
            return Err(not_found());
        };
        let matches: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|i| i.starts_with(prefix))
            .collect();
        match matches.len() {
            0 => Err(not_found()),
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            _ => Err(ImageError::AmbiguousId {
                prefix: prefix.to_string(),
                matches: matches.iter().map(|m| m[..16].to_string()).collect(),
            }),
        }
    }

    /// Every image, named ones first (by name), then the unnamed ones by id.
    pub fn list(&self) -> Result<Vec<Image>> {
        let names = self.all_names()?;
        let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, id) in &names {
            by_id.entry(id.clone()).or_default().push(n.clone());
        }
        let mut out = Vec::new();
        for id in self.ids()? {
            let n = by_id.remove(&id).unwrap_or_default();
            match self.load(&id, n) {
                Ok(img) => out.push(img),
                // A directory without image.json is not a committed image (cannot happen
                // through this crate: the rename is the commit); skip it rather than fail ls.
                Err(ImageError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| {
            (a.names.is_empty(), a.names.first(), &a.id).cmp(&(
                b.names.is_empty(),
                b.names.first(),
                &b.id,
            ))
        });
        Ok(out)
    }

    /// The in-use markers of an image.
    pub fn users(&self, id: &str) -> Result<Vec<User>> {
        let d = self.image_dir(id).join("users");
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io("cannot list", &d)(e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let container = e.file_name().to_string_lossy().into_owned();
            if container.starts_with('.') {
                continue;
            }
            let root = fs::read_to_string(e.path())
                .ok()
                .map(|s| PathBuf::from(s.trim()))
                .filter(|p| p.is_absolute());
            // Without a readable root we cannot tell: count it as alive (never remove an
            // image that may be in use); the error names the marker to delete by hand.
            let alive = match &root {
                Some(r) => r.join(&container).exists(),
                None => true,
            };
            out.push(User {
                container,
                runtime_root: root,
                alive,
            });
        }
        out.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(out)
    }

    /// Live users; stale markers (their container's state directory is gone) are removed.
    fn live_users(&self, id: &str, stale: &mut Vec<String>) -> Result<Vec<String>> {
        let mut live = Vec::new();
        for u in self.users(id)? {
            if u.alive {
                live.push(u.container);
            } else {
                let p = self.image_dir(id).join("users").join(&u.container);
                fs::remove_file(&p).map_err(ImageError::io("cannot remove", &p))?;
                stale.push(u.container);
            }
        }
        Ok(live)
    }

    /// Record that container `container_id` (whose state lives in `runtime_root`, the
    /// runtime's `--root`) uses `image`. `rm` refuses to remove the image while the marker
    /// is there and `<runtime_root>/<container_id>` exists.
    pub fn acquire(&self, image: &Image, container_id: &str, runtime_root: &Path) -> Result<()> {
        validate_container_id(container_id)?;
        let _lock = self.lock()?;
        let dir = self.image_dir(&image.id);
        if !dir.join("manifest").exists() {
            return Err(ImageError::NotFound {
                what: image.id.clone(),
                store: self.dir.clone(),
            });
        }
        let users = dir.join("users");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&users)
            .map_err(|e| self.write_err(&users, e))?;
        let root = if runtime_root.is_absolute() {
            runtime_root.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(ImageError::io(
                    "cannot get the current directory for",
                    runtime_root,
                ))?
                .join(runtime_root)
        };
        let mut text = root.as_os_str().as_encoded_bytes().to_vec();
        text.push(b'\n');
        atomic_write(&users.join(container_id), &text)
    }

    /// Drop the marker of `container_id` on image `image_id` (a full id). Releasing a marker
    /// that is not there is not an error (delete may run twice).
    pub fn release(&self, image_id: &str, container_id: &str) -> Result<()> {
        validate_container_id(container_id)?;
        if !is_full_id(image_id) {
            return Err(ImageError::NotFound {
                what: names::shown(image_id),
                store: self.dir.clone(),
            });
        }
        let _lock = self.lock()?;
        let p = self.image_dir(image_id).join("users").join(container_id);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("cannot remove", &p)(e)),
        }
    }

    /// Rewrite image.json's `names` from images/names/ (under the lock).
    fn sync_meta_names(&self, id: &str) -> Result<()> {
        let p = self.image_dir(id).join("image.json");
        let Ok(text) = fs::read(&p) else {
            return Ok(());
        };
        let mut meta: ImageMeta =
            serde_json::from_slice(&text).map_err(|source| ImageError::Json {
                path: p.clone(),
                source,
            })?;
        meta.names = self.names_of(id)?;
        atomic_write(&p, &to_json(&meta))
    }

    /// Remove an image's content: renamed into tmp/ at once (atomic for readers), then
    /// deleted after the store lock is released. Caller holds the lock.
    fn remove_content(&self, id: &str) -> Result<PendingDelete> {
        // first the EROFS mount (erofs.rs): its file goes with the content
        self.unmount_erofs(id)?;
        let from = self.image_dir(id);
        let to = self
            .dir
            .join("tmp")
            .join(format!("rm-{}-{}", &id[..12], fsutil::random_hex()));
        // Lock before the rename: from then on `open` sees a busy staging entry.
        let fd = fsutil::open_dir(&from)?;
        flock(fd.as_fd(), true, false).map_err(ImageError::io("cannot lock", &from))?;
        fs::rename(&from, &to).map_err(ImageError::io("cannot move", &from))?;
        fsync_dir(&self.dir.join("sha256"))?;
        Ok(PendingDelete { path: to, _fd: fd })
    }

    /// Point `name` at `id`. Returns the id it pointed at before, if another.
    fn set_name(&self, name: &str, id: &str) -> Result<Option<String>> {
        validate_name(name)?;
        let old = self.read_name(name)?;
        atomic_write(&self.name_path(name), format!("{id}\n").as_bytes())?;
        self.sync_meta_names(id)?;
        Ok(old.filter(|o| o != id))
    }

    /// After a name moved away from `old`: remove `old` when nothing refers to it any more.
    fn collect_replaced(&self, old: &str) -> Result<(bool, Option<PendingDelete>)> {
        self.sync_meta_names(old)?;
        if !self.names_of(old)?.is_empty() {
            return Ok((false, None));
        }
        let mut stale = Vec::new();
        if !self.live_users(old, &mut stale)?.is_empty() {
            return Ok((false, None));
        }
        Ok((true, Some(self.remove_content(old)?)))
    }

    /// Move a complete staging tree into the store under its content address.
    pub(crate) fn commit(
        &self,
        mut staging: Staging,
        manifest: &Manifest,
        mut meta: ImageMeta,
        name: Option<&str>,
    ) -> Result<Committed> {
        let id = manifest.id.clone();
        meta.id = id.clone();
        let rootfs = staging.rootfs();
        let lock = self.lock()?;
        let target = self.image_dir(&id);
        let new_content = !target.join("manifest").exists();
        if new_content {
            let w = |p: PathBuf, data: &[u8]| -> Result<()> {
                fs::write(&p, data).map_err(|e| self.write_err(&p, e))
            };
            w(staging.dir.join("manifest"), manifest.text.as_bytes())?;
            w(staging.dir.join("image.json"), &to_json(&meta))?;
            let users = staging.dir.join("users");
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&users)
                .map_err(|e| self.write_err(&users, e))?;
            // Everything on disk before the rename makes it visible: after a crash the store
            // holds a complete image or none.
            let fd = fsutil::open_dir(&rootfs)?;
            // SAFETY: syncfs on a valid directory fd.
            if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&fd)) } != 0 {
                let e = io::Error::last_os_error();
                return Err(self.write_err(&rootfs, e));
            }
            // 0555: nothing is meant to change in a committed image (root still may write
            // users/ and image.json; images/ itself keeps everyone else out).
            fs::set_permissions(&staging.dir, fs::Permissions::from_mode(0o555))
                .map_err(ImageError::io("cannot chmod", &staging.dir))?;
            fs::rename(&staging.dir, &target)
                .map_err(ImageError::io("cannot move", &staging.dir))?;
            staging.committed = true;
            fsync_dir(&self.dir.join("sha256"))?;
        }
        // else: the store has this exact tree already; the staging copy goes on drop.
        let mut pending = None;
        let (mut replaced, mut replaced_removed) = (None, false);
        if let Some(name) = name {
            if let Some(old) = self.set_name(name, &id)? {
                let (removed, p) = self.collect_replaced(&old)?;
                replaced = Some(old);
                replaced_removed = removed;
                pending = p;
            }
        } else {
            self.sync_meta_names(&id)?;
        }
        let names = self.names_of(&id)?;
        let image = self.load(&id, names)?;
        drop(lock);
        drop(staging);
        drop(pending);
        Ok(Committed {
            image,
            new_content,
            replaced,
            replaced_removed,
        })
    }

    /// `sgrun image rm`: by name, remove the name, and the image when it was its last name;
    /// by id, remove the image (with --force even when names point at it). Never while a
    /// live container uses the image, force or not.
    pub fn remove(&self, reference: &str, force: bool) -> Result<RemoveOutcome> {
        let lock = self.lock()?;
        let id = self.resolve_id(reference)?;
        let names = self.names_of(&id)?;
        let by_name = names.iter().any(|n| n == reference);
        let mut out = RemoveOutcome {
            id: id.clone(),
            ..Default::default()
        };
        let to_remove: Vec<String> = if by_name {
            vec![reference.to_string()]
        } else {
            if !names.is_empty() && !force {
                return Err(ImageError::HasNames { id, names });
            }
            names.clone()
        };
        out.kept_names = names
            .iter()
            .filter(|n| !to_remove.contains(n))
            .cloned()
            .collect();
        let removes_content = out.kept_names.is_empty();
        if removes_content {
            let live = self.live_users(&id, &mut out.stale_markers)?;
            if !live.is_empty() {
                return Err(ImageError::InUse {
                    image: names::shown(reference),
                    containers: live,
                });
            }
        }
        for n in &to_remove {
            let p = self.name_path(n);
            fs::remove_file(&p).map_err(ImageError::io("cannot remove", &p))?;
            out.removed_names.push(n.clone());
        }
        fsync_dir(&self.dir.join("names"))?;
        let pending = if removes_content {
            out.removed_content = true;
            Some(self.remove_content(&id)?)
        } else {
            self.sync_meta_names(&id)?;
            None
        };
        drop(lock);
        drop(pending);
        Ok(out)
    }

    /// Re-hash an image's tree and compare it with its manifest.
    pub fn verify(&self, image: &Image) -> Result<VerifyReport> {
        let _span = tracing::info_span!("verify", image = %image.id).entered();
        let mpath = self.image_dir(&image.id).join("manifest");
        let stored = fs::read_to_string(&mpath).map_err(ImageError::io("cannot read", &mpath))?;
        let manifest_altered = hex(&Sha256::digest(stored.as_bytes())) != image.id;
        let now = manifest::walk(&image.rootfs)?;
        let differences = manifest::diff(&stored, &now.text);
        Ok(VerifyReport {
            id: image.id.clone(),
            names: image.names.clone(),
            ok: differences.is_empty() && !manifest_altered,
            manifest_altered,
            differences,
        })
    }

    /// Whether an image's manifest exists (for builds: is this exact tree here already).
    pub fn find_by_recipe_hash(&self, hash: &str) -> Result<Option<Image>> {
        let images = self.list()?;
        Ok(images.into_iter().find(|i| {
            matches!(&i.meta.source, ImageSource::Recipe { recipe_hash, .. } if recipe_hash == hash)
        }))
    }

    /// An image imported from an archive with this sha256, with the same trust.
    fn find_import(&self, sha256: &str, trusted: bool) -> Result<Option<Image>> {
        Ok(self.list()?.into_iter().find(|i| {
            i.meta.trusted == trusted
                && matches!(&i.meta.source, ImageSource::Import { sha256: s, .. } if s == sha256)
        }))
    }

    /// Point a name at an existing image (builds that are up to date).
    pub fn tag(&self, name: &str, id: &str) -> Result<Committed> {
        let lock = self.lock()?;
        let old = self.set_name(name, id)?;
        let (mut removed, mut pending) = (false, None);
        if let Some(o) = &old {
            let (r, p) = self.collect_replaced(o)?;
            removed = r;
            pending = p;
        }
        let image = self.load(id, self.names_of(id)?)?;
        drop(lock);
        drop(pending);
        Ok(Committed {
            image,
            new_content: false,
            replaced: old,
            replaced_removed: removed,
        })
    }

    /// The byte budget of an import: the free space of the store's filesystem, or less.
    fn budget(&self, max_size: Option<u64>) -> Result<(u64, String)> {
        let tmp = self.dir.join("tmp");
        let free = fsutil::free_bytes(&tmp)?;
        Ok(match max_size {
            Some(m) if m < free => (m, "--max-size".to_string()),
            _ => (
                free,
                format!(
                    "the free space of the filesystem holding {}",
                    self.dir.display()
                ),
            ),
        })
    }

    /// `sgrun image import FILE`.
    pub fn import(
        &self,
        file: &Path,
        opts: &ImportOptions,
        progress: &mut dyn FnMut(String),
    ) -> Result<ImportOutcome> {
        let _span = tracing::info_span!("import", file = %file.display()).entered();
        let started = Instant::now();
        if let Some(n) = &opts.name {
            validate_name(n)?;
        }
        let src = Source::open(file)?;
        let plan = import::plan(&src)?;
        progress(format!(
            "{}: {} ({} layer{})",
            file.display(),
            plan.format.as_str(),
            plan.layers.len(),
            if plan.layers.len() == 1 { "" } else { "s" }
        ));
        let name = opts.name.clone().or_else(|| plan.derived_name.clone());
        let sha256 = input_sha256(&src, plan.format)?;
        if let Some(existing) = self.find_import(&sha256, opts.trusted)? {
            let committed = match &name {
                Some(n) if !existing.names.contains(n) => self.tag(n, &existing.id)?,
                _ => Committed {
                    image: existing,
                    new_content: false,
                    replaced: None,
                    replaced_removed: false,
                },
            };
            return Ok(ImportOutcome {
                committed,
                reused: true,
                stats: UnpackStats::default(),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        import::verify_blobs(&src, &plan, progress)?;

        let staging = self.stage()?;
        let rootfs = staging.rootfs();
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&rootfs)
            .map_err(|e| self.write_err(&rootfs, e))?;
        let (max_bytes, max_reason) = self.budget(opts.max_size)?;
        let mut unpacker = Unpacker::new(
            &rootfs,
            file,
            UnpackOptions {
                trusted: opts.trusted,
                max_bytes,
                max_reason,
                store: self.dir.clone(),
            },
        )?;
        import::apply_layers(&src, &plan, &mut unpacker, progress)?;
        let stats = unpacker.finish()?;
        prepare_root(&rootfs)?;
        progress(format!("hashing the tree ({} entries)", stats.entries));
        let manifest = manifest::walk(&rootfs)?;
        let seconds = started.elapsed().as_secs_f64();
        let meta = ImageMeta {
            id: String::new(),
            names: Vec::new(),
            source: ImageSource::Import {
                file: std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
                sha256,
                format: plan.format,
                reference: plan.reference.clone(),
            },
            created: now_rfc3339(),
            size: manifest.size,
            disk_usage: manifest.disk_usage,
            files: manifest.entries,
            trusted: opts.trusted,
            stripped_setid: stats.stripped_setid,
            stripped_caps: stats.stripped_caps,
            seconds,
            config: plan.config.clone(),
        };
        let committed = self.commit(staging, &manifest, meta, name.as_deref())?;
        Ok(ImportOutcome {
            committed,
            reused: false,
            stats,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// A content directory moved into tmp/, deleted when dropped (outside the store lock).
struct PendingDelete {
    path: PathBuf,
    _fd: OwnedFd,
}

impl Drop for PendingDelete {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            tracing::warn!(
                "cannot delete {}: {e}; the next sgrun image command retries",
                self.path.display()
            );
        }
    }
}

/// The root of every image is 0755 root:root, whatever the archive or the build said.
pub(crate) fn prepare_root(rootfs: &Path) -> Result<()> {
    std::os::unix::fs::chown(rootfs, Some(0), Some(0))
        .map_err(ImageError::io("cannot chown", rootfs))?;
    fs::set_permissions(rootfs, fs::Permissions::from_mode(0o755))
        .map_err(ImageError::io("cannot chmod", rootfs))
}

fn input_sha256(src: &Source, format: Format) -> Result<String> {
    let mut h = Sha256::new();
    let path = src.path();
    let mut buf = vec![0u8; 256 * 1024];
    let mut r: Box<dyn io::Read> = match src {
        Source::Tar { .. } => {
            Box::new(File::open(path).map_err(ImageError::io("cannot open", path))?)
        }
        Source::Dir { .. } => {
            let member = match format {
                Format::OciLayout => "index.json",
                Format::DockerArchive => "manifest.json",
            };
            src.open_member(member)?.0
        }
    };
    loop {
        let n = r
            .read(&mut buf)
            .map_err(ImageError::io("cannot read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_vec_pretty(v).unwrap_or_default();
    s.push(b'\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn docker_archive(dir: &Path, layer: Vec<u8>) -> PathBuf {
        let cfg = br#"{"config":{"Cmd":["/bin/sh"]}}"#;
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        };
        add("config.json", cfg);
        add("l/layer.tar", &layer);
        add(
            "manifest.json",
            br#"[{"Config":"config.json","RepoTags":["t:1"],"Layers":["l/layer.tar"]}]"#,
        );
        let p = dir.join(format!("a-{}.tar", fsutil::random_hex()));
        fs::write(&p, b.into_inner().unwrap()).unwrap();
        p
    }

    fn import(store: &Store, dir: &Path, files: &[(&str, &[u8])], name: &str) -> Image {
        let f = docker_archive(dir, layer(files));
        let opts = ImportOptions {
            name: Some(name.into()),
            ..Default::default()
        };
        store
            .import(&f, &opts, &mut |_| {})
            .unwrap()
            .committed
            .image
    }

    #[test]
    fn the_runtime_contract_resolve_acquire_release() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let img = import(&store, t.path(), &[("etc/hostname", b"x\n")], "site");
        assert_eq!(img.names, ["site"]);
        assert_eq!(
            img.rootfs,
            t.path().join("images/sha256").join(&img.id).join("rootfs")
        );
        assert_eq!(fs::read(img.rootfs.join("etc/hostname")).unwrap(), b"x\n");
        for r in [
            "site".to_string(),
            img.id.clone(),
            img.id[..12].to_string(),
            format!("sha256:{}", &img.id[..20]),
        ] {
            assert_eq!(store.resolve(&r).unwrap().id, img.id, "{r}");
        }
        assert!(matches!(
            store.resolve(&img.id[..11]),
            Err(ImageError::NotFound { .. })
        ));
        assert!(matches!(
            store.resolve("nosuch"),
            Err(ImageError::NotFound { .. })
        ));

        let run = t.path().join("run");
        fs::create_dir_all(run.join("web1")).unwrap();
        store.acquire(&img, "web1", &run).unwrap();
        let marker = fs::read_to_string(
            t.path()
                .join("images/sha256")
                .join(&img.id)
                .join("users/web1"),
        )
        .unwrap();
        assert_eq!(marker.trim(), run.to_str().unwrap());
        assert!(store.acquire(&img, "../evil", &run).is_err());
        let users = store.users(&img.id).unwrap();
        assert_eq!(
            (users[0].container.as_str(), users[0].alive),
            ("web1", true)
        );
        assert!(matches!(
            store.remove("site", true),
            Err(ImageError::InUse { .. })
        ));
        store.release(&img.id, "web1").unwrap();
        store.release(&img.id, "web1").unwrap(); // twice is fine
        let out = store.remove("site", false).unwrap();
        assert!(out.removed_content);
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(
            store.acquire(&img, "web2", &run),
            Err(ImageError::NotFound { .. })
        ));
    }

    #[test]
    fn a_name_moved_to_new_content_frees_the_old_image() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let a = import(&store, t.path(), &[("f", b"1")], "app");
        let b = import(&store, t.path(), &[("f", b"2")], "app");
        assert_ne!(a.id, b.id);
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(ids, std::slice::from_ref(&b.id));
        // In use: kept, unnamed.
        let run = t.path().join("run");
        fs::create_dir_all(run.join("c1")).unwrap();
        store.acquire(&b, "c1", &run).unwrap();
        let c = import(&store, t.path(), &[("f", b"3")], "app");
        let list = store.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, c.id);
        assert!(list[1].names.is_empty());
        let meta: ImageMeta = serde_json::from_slice(
            &fs::read(
                t.path()
                    .join("images/sha256")
                    .join(&b.id)
                    .join("image.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(meta.names.is_empty(), "image.json follows the names");
    }

    #[test]
    fn open_cleans_what_a_crash_left_in_tmp_but_not_a_running_import() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let crashed = t.path().join("images/tmp/123-dead");
        fs::create_dir_all(crashed.join("rootfs/etc")).unwrap();
        fs::write(crashed.join("rootfs/etc/x"), b"x").unwrap();
        let running = store.stage().unwrap();
        let again = Store::open(t.path()).unwrap();
        assert!(!crashed.exists());
        assert!(running.dir.exists());
        assert_eq!(again.notes.len(), 1, "{:?}", again.notes);
        let dir = running.dir.clone();
        drop(running);
        assert!(!dir.exists(), "a failed staging is removed on drop");
    }
}
