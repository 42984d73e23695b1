//! The tenant registry: one JSON file per tenant and the UID/GID allocation record, under
//! `<state>/registry/`.
//!
//! Every change happens under an exclusive `flock` on `<state>/registry/.lock`, and every file
//! is replaced atomically: written to a temporary file in the same directory, fsync'ed,
//! renamed over the old one, then the directory is fsync'ed so that the rename itself survives
//! a crash. Readers therefore never see a half-written file, and a temporary file left by a
//! crash (its name starts with '.') is never read.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TenantError};

/// Ids per tenant: a full 16-bit user namespace, so the tenant's images may use any uid.
pub const RANGE_SIZE: u64 = 65_536;
/// Default first id handed to tenants: 2^30. Far above Debian's system and user ids, above
/// /etc/subuid's usual 100000 + n*65536 ranges (reached only after 16,000 users) and above
/// the test harness's 100000.
pub const DEFAULT_RANGE_BASE: u64 = 1 << 30;
/// Ranges end below 0x7fff0000: ids at and above 2^31 break tools that keep uids in a
/// signed 32-bit int, and systemd reserves the top of that space. 16,383 tenants fit.
pub const RANGE_LIMIT: u64 = 0x7fff_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    Loop,
    Dir,
    Btrfs,
    Ext4Prjquota,
    XfsPrjquota,
}

impl BackendKind {
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Loop,
        BackendKind::Dir,
        BackendKind::Btrfs,
        BackendKind::Ext4Prjquota,
        BackendKind::XfsPrjquota,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Loop => "loop",
            BackendKind::Dir => "dir",
            BackendKind::Btrfs => "btrfs",
            BackendKind::Ext4Prjquota => "ext4-prjquota",
            BackendKind::XfsPrjquota => "xfs-prjquota",
        }
    }

    /// Backends whose tenants live in a shared filesystem (a pool) rather than in a volume
    /// of their own.
    pub fn uses_pool(self) -> bool {
        matches!(
            self,
            BackendKind::Btrfs | BackendKind::Ext4Prjquota | BackendKind::XfsPrjquota
        )
    }

    pub fn uses_project_quota(self) -> bool {
        matches!(self, BackendKind::Ext4Prjquota | BackendKind::XfsPrjquota)
    }
}

/// Where a tenant stands. `Removed` keeps the data and the UID range (`rm` without
/// `--purge`); only a purge deletes the record and frees the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TenantState {
    /// Written before the volume is made: a crash leaves this, and `rm --purge` cleans it.
    Creating,
    Active,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    /// First host uid and gid of the tenant's range (the mapped root).
    pub uid_base: u64,
    pub uid_count: u64,
    pub backend: BackendKind,
    pub storage_bytes: u64,
    pub inodes: u64,
    pub state: TenantState,
    /// Seconds since the epoch.
    pub created: u64,
    /// The project id of a project-quota tenant (ext4-prjquota, xfs-prjquota): derived from
    /// the UID range at create ([`project_id_for`]) and kept, so that it never changes while
    /// the data tagged with it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u32>,
}

/// The project id of the tenant whose range starts at `uid_base`: the range's index,
/// `uid_base / 65536`. Ranges never overlap and start at multiples of 65536 of at least
/// 65536, so ids are unique among tenants and never 0 (project 0 is "no project": it is
/// where a re-tagged directory would escape to).
pub fn project_id_for(uid_base: u64) -> u32 {
    (uid_base / RANGE_SIZE) as u32
}

impl TenantRecord {
    pub fn uid_end(&self) -> u64 {
        self.uid_base + self.uid_count
    }
}

/// Which range belongs to whom. A range stays here as long as the tenant's record exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocations {
    /// first id of the range -> tenant name
    pub ranges: BTreeMap<u64, String>,
}

impl Allocations {
    /// The lowest free range at or above `base`: first fit, so the id space stays dense.
    pub fn allocate(&mut self, name: &str, base: u64) -> Result<u64> {
        if base < RANGE_SIZE || base & (RANGE_SIZE - 1) != 0 || base >= RANGE_LIMIT {
            return Err(TenantError::InvalidRangeBase {
                base,
                limit: RANGE_LIMIT,
            });
        }
        let mut start = base;
        // Ranges are sorted by start; skip every one that overlaps [start, start+SIZE).
        for &taken in self.ranges.keys() {
            if taken + RANGE_SIZE <= start {
                continue;
            }
            if taken >= start + RANGE_SIZE {
                break;
            }
            start = taken + RANGE_SIZE;
        }
        if start + RANGE_SIZE > RANGE_LIMIT {
            return Err(TenantError::NoFreeRange {
                base,
                limit: RANGE_LIMIT,
                size: RANGE_SIZE,
            });
        }
        self.ranges.insert(start, name.to_string());
        Ok(start)
    }

    pub fn release(&mut self, name: &str) {
        self.ranges.retain(|_, owner| owner != name);
    }

    pub fn range_of(&self, name: &str) -> Option<u64> {
        self.ranges
            .iter()
            .find(|(_, owner)| owner.as_str() == name)
            .map(|(s, _)| *s)
    }

    /// Refuse a record where two ranges overlap (hand-edited or corrupt).
    pub fn check(&self, path: &Path) -> Result<()> {
        let mut prev: Option<(u64, &String)> = None;
        for (&start, name) in &self.ranges {
            if let Some((pstart, pname)) = prev {
                if pstart + RANGE_SIZE > start {
                    return Err(TenantError::RangeOverlap {
                        name: name.clone(),
                        other: pname.clone(),
                        start,
                        end: start + RANGE_SIZE,
                        path: path.to_path_buf(),
                    });
                }
            }
            prev = Some((start, name));
        }
        Ok(())
    }
}

/// The registry directory and its lock.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

/// Held while the registry is being changed; the flock goes with the last clone of the file.
/// Clones exist so that undo steps of a failed change can write under the same lock: a
/// second `flock` from this process on a new open file would wait for ourselves forever.
#[derive(Clone)]
pub struct RegistryLock {
    _file: std::rc::Rc<File>,
}

impl Registry {
    pub fn new(state_dir: &Path) -> Self {
        Registry {
            dir: state_dir.join("registry"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    pub fn allocations_path(&self) -> PathBuf {
        self.dir.join("allocations.json")
    }

    fn ensure_dir(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(TenantError::io("create registry directory", &self.dir))
    }

    /// Take the exclusive lock every change needs. Blocks until other sgrun processes are done.
    pub fn lock(&self) -> Result<RegistryLock> {
        self.ensure_dir()?;
        Ok(RegistryLock {
            _file: std::rc::Rc::new(lock_file(&self.dir.join(".lock"))?),
        })
    }

    pub fn load(&self, name: &str) -> Result<Option<TenantRecord>> {
        read_json(&self.record_path(name))
    }

    /// Every tenant, by name. Only `<name>.json` files are read: temporary files (".…") and
    /// the allocation record are not tenants.
    pub fn list(&self) -> Result<Vec<TenantRecord>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TenantError::io("read registry directory", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(TenantError::io("read registry directory", &self.dir))?;
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let Some(name) = file.strip_suffix(".json") else {
                continue;
            };
            if file.starts_with('.') || name == "allocations" {
                continue;
            }
            if let Some(rec) = read_json::<TenantRecord>(&entry.path())? {
                out.push(rec);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn save(&self, _lock: &RegistryLock, rec: &TenantRecord) -> Result<()> {
        write_atomic(&self.record_path(&rec.name), rec)
    }

    pub fn delete(&self, _lock: &RegistryLock, name: &str) -> Result<()> {
        let path = self.record_path(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TenantError::io("remove registry entry", path)(e)),
        }
    }

    pub fn allocations(&self) -> Result<Allocations> {
        let path = self.allocations_path();
        let a: Allocations = read_json(&path)?.unwrap_or_default();
        a.check(&path)?;
        Ok(a)
    }

    pub fn save_allocations(&self, _lock: &RegistryLock, a: &Allocations) -> Result<()> {
        write_atomic(&self.allocations_path(), a)
    }
}

/// An exclusive flock on `path` (created 0600), held as long as the returned file is open.
/// Blocks until other sgrun processes release it; a crashed holder releases it with its last
/// descriptor, so there is never a stale lock to clean up. The sites layer locks this way too.
pub fn lock_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| TenantError::Lock {
            path: path.to_path_buf(),
            source,
        })?;
    loop {
        // SAFETY: flock on a valid fd we own; it touches no memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(file);
        }
        let source = std::io::Error::last_os_error();
        if source.kind() != std::io::ErrorKind::Interrupted {
            return Err(TenantError::Lock {
                path: path.to_path_buf(),
                source,
            });
        }
    }
}

/// `path` as JSON; `None` if it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| TenantError::Json {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TenantError::io("read", path)(e)),
    }
}

/// Replace `path` with `value` as JSON so that a crash at any point leaves either the old or
/// the new file, complete. The order matters: the data must be on disk (fsync) before the
/// rename makes it visible, and the directory must be synced for the rename to be durable.
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().expect("registry files live in a directory");
    let file_name = path
        .file_name()
        .expect("registry files have a name")
        .to_string_lossy();
    // A leading dot keeps the temporary file out of `list`; the pid keeps two writers (which
    // the lock should prevent anyway) from sharing one.
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let mut text = serde_json::to_vec_pretty(value).map_err(|source| TenantError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push(b'\n');
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(TenantError::io("create", &tmp))?;
        f.write_all(&text).map_err(TenantError::io("write", &tmp))?;
        f.sync_all().map_err(TenantError::io("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(TenantError::io("rename into place", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(TenantError::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, base: u64) -> TenantRecord {
        TenantRecord {
            name: name.into(),
            uid_base: base,
            uid_count: RANGE_SIZE,
            backend: BackendKind::Loop,
            storage_bytes: 64 << 20,
            inodes: 2048,
            state: TenantState::Active,
            created: 0,
            project_id: None,
        }
    }

    #[test]
    fn ranges_never_overlap_and_fill_gaps_first() {
        let mut a = Allocations::default();
        let base = DEFAULT_RANGE_BASE;
        let mut starts = Vec::new();
        for i in 0..100 {
            starts.push(a.allocate(&format!("t{i}"), base).unwrap());
        }
        for (i, s) in starts.iter().enumerate() {
            assert_eq!(*s, base + i as u64 * RANGE_SIZE);
        }
        a.check(Path::new("x")).unwrap();
        // A freed range (purged tenant) is the first handed out again; nothing else moves.
        a.release("t5");
        assert_eq!(a.range_of("t5"), None);
        assert_eq!(a.allocate("new", base).unwrap(), base + 5 * RANGE_SIZE);
        assert_eq!(a.allocate("new2", base).unwrap(), base + 100 * RANGE_SIZE);
        a.check(Path::new("x")).unwrap();
    }

    #[test]
    fn a_kept_range_is_never_reused() {
        // rm without --purge keeps the range in the record: allocating again must skip it.
        let mut a = Allocations::default();
        let first = a.allocate("kept", DEFAULT_RANGE_BASE).unwrap();
        for i in 0..10 {
            let s = a.allocate(&format!("o{i}"), DEFAULT_RANGE_BASE).unwrap();
            assert!(s >= first + RANGE_SIZE || s + RANGE_SIZE <= first, "{s}");
        }
        assert_eq!(a.range_of("kept"), Some(first));
    }

    #[test]
    fn unaligned_existing_ranges_are_skipped() {
        // A range allocated under another base (not aligned to this one) is still avoided.
        let mut a = Allocations::default();
        a.ranges.insert(DEFAULT_RANGE_BASE + 100, "odd".into());
        let s = a.allocate("n", DEFAULT_RANGE_BASE).unwrap();
        assert_eq!(s, DEFAULT_RANGE_BASE + 100 + RANGE_SIZE);
        a.check(Path::new("x")).unwrap();
    }

    #[test]
    fn bad_base_and_exhaustion() {
        let mut a = Allocations::default();
        assert!(matches!(
            a.allocate("x", 12345),
            Err(TenantError::InvalidRangeBase { .. })
        ));
        let last = RANGE_LIMIT - RANGE_SIZE;
        assert_eq!(a.allocate("x", last).unwrap(), last);
        assert!(matches!(
            a.allocate("y", last),
            Err(TenantError::NoFreeRange { .. })
        ));
    }

    #[test]
    fn project_ids_are_unique_and_never_zero() {
        let mut a = Allocations::default();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..50 {
            let base = a.allocate(&format!("t{i}"), RANGE_SIZE).unwrap();
            let id = project_id_for(base);
            assert_ne!(id, 0);
            assert!(seen.insert(id), "{id} twice");
        }
        assert_eq!(project_id_for(DEFAULT_RANGE_BASE), 16384);
        assert_eq!(project_id_for(RANGE_LIMIT - RANGE_SIZE), 32766);
    }

    #[test]
    fn records_without_a_project_id_still_load() {
        let text = r#"{"name":"old","uid_base":1073741824,"uid_count":65536,"backend":"loop",
            "storage_bytes":67108864,"inodes":2048,"state":"active","created":0}"#;
        let r: TenantRecord = serde_json::from_str(text).unwrap();
        assert_eq!(r.project_id, None);
        let kinds: Vec<&str> = BackendKind::ALL.iter().map(|k| k.as_str()).collect();
        for k in kinds {
            let j =
                serde_json::to_string(&BackendKind::ALL.iter().find(|b| b.as_str() == k).unwrap())
                    .unwrap();
            assert_eq!(j, format!("\"{k}\""));
        }
    }

    #[test]
    fn overlap_in_the_record_is_refused() {
        let mut a = Allocations::default();
        a.ranges.insert(DEFAULT_RANGE_BASE, "a".into());
        a.ranges.insert(DEFAULT_RANGE_BASE + 10, "b".into());
        let e = a.check(Path::new("/r/allocations.json")).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
    }

    #[test]
    fn registry_round_trip_and_leftover_temp_files_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::new(tmp.path());
        let lock = reg.lock().unwrap();
        reg.save(&lock, &rec("acme", DEFAULT_RANGE_BASE)).unwrap();
        reg.save(&lock, &rec("beta", DEFAULT_RANGE_BASE + RANGE_SIZE))
            .unwrap();
        // What a crash between write and rename leaves: a torn temporary file.
        fs::write(reg.dir().join(".gamma.json.tmp.4242"), b"{\"name\": \"gam").unwrap();
        fs::write(reg.dir().join(".acme.json.tmp.4243"), b"garbage").unwrap();
        let names: Vec<String> = reg.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["acme", "beta"]);
        assert_eq!(
            reg.load("acme").unwrap().unwrap(),
            rec("acme", DEFAULT_RANGE_BASE)
        );
        assert_eq!(reg.load("gamma").unwrap(), None);
        // No temporary file of ours is left after a successful write.
        let mut a = Allocations::default();
        a.allocate("acme", DEFAULT_RANGE_BASE).unwrap();
        reg.save_allocations(&lock, &a).unwrap();
        assert_eq!(reg.allocations().unwrap(), a);
        let leftovers: Vec<_> = fs::read_dir(reg.dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(&format!(".tmp.{}", std::process::id())))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        reg.delete(&lock, "beta").unwrap();
        reg.delete(&lock, "beta").unwrap();
        assert_eq!(reg.list().unwrap().len(), 1);
    }

    #[test]
    fn a_torn_record_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::new(tmp.path());
        drop(reg.lock().unwrap());
        fs::write(reg.record_path("torn"), b"{\"name\":").unwrap();
        let e = reg.load("torn").unwrap_err().to_string();
        assert!(e.contains("torn.json"), "{e}");
    }

    #[test]
    fn the_lock_excludes_a_second_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::new(tmp.path());
        let held = reg.lock().unwrap();
        let path = reg.dir().join(".lock");
        let f = File::open(&path).unwrap();
        // SAFETY: flock on an fd we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, -1, "a second exclusive lock was granted");
        drop(held);
        // SAFETY: as above.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0);
    }
}
