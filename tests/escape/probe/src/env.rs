//! The driver's hints. A missing hint is never a silent skip: the vectors that need it
//! report `not ok` saying which variable was missing.

use crate::tap::Outcome;

pub struct Hints {
    pub config: Option<String>,
    pub peer_pid: Option<String>,
    pub peer_root: Option<String>,
    pub peer_port: Option<String>,
    pub peer_abstract: Option<String>,
    pub peer_sysv_key: Option<String>,
    pub peer_posix_shm: Option<String>,
    pub host_secret: Option<String>,
    pub runtime: Option<String>,
    /// `MAJ:MIN` of the tenant's own storage volume: a whole filesystem that the host made
    /// and mounted for this tenant alone (sgrun's loop volume). Optional: without it every
    /// mount counts as a host filesystem, the strict reading.
    pub own_volume: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Hints {
    pub fn from_env() -> Self {
        Hints {
            config: var("ESCAPE_CONFIG"),
            peer_pid: var("ESCAPE_PEER_PID"),
            peer_root: var("ESCAPE_PEER_ROOT"),
            peer_port: var("ESCAPE_PEER_PORT"),
            peer_abstract: var("ESCAPE_PEER_ABSTRACT"),
            peer_sysv_key: var("ESCAPE_PEER_SYSV_KEY"),
            peer_posix_shm: var("ESCAPE_PEER_POSIX_SHM"),
            host_secret: var("ESCAPE_HOST_SECRET"),
            runtime: var("ESCAPE_RUNTIME"),
            own_volume: var("ESCAPE_OWN_VOLUME"),
        }
    }
}

impl Hints {
    /// Whether mount `m` is of the tenant's own volume (ESCAPE_OWN_VOLUME names its device).
    /// A path inside that filesystem names the tenant's own data, nothing of the host, and
    /// the filesystem's size is the tenant's storage limit.
    pub fn on_own_volume(&self, m: &crate::sys::Mount) -> bool {
        self.own_volume.as_deref() == Some(m.dev.as_str())
    }
}

/// The hint's value, or the `not ok` outcome naming the variable the driver did not set.
pub fn need<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, Outcome> {
    value
        .as_deref()
        .ok_or_else(|| Outcome::open(format!("driver did not set {name}")))
}

/// A numeric hint; a value that does not parse is reported like a missing one.
pub fn need_num<T: std::str::FromStr>(value: &Option<String>, name: &str) -> Result<T, Outcome> {
    let v = need(value, name)?;
    v.parse()
        .map_err(|_| Outcome::open(format!("driver set {name}={v:?}, which is not a number")))
}
