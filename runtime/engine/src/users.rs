//! `exec -u USER[:GROUP]`: names are looked up in the container's own /etc/passwd and
//! /etc/group, as runc does, never in the host's. The files are opened beneath the
//! container's root (openat2 RESOLVE_IN_ROOT through pathrs), so a tenant's symlink
//! `/etc/passwd -> /../../etc/shadow` cannot make the runtime read a host file.

use std::io::Read;
use std::os::fd::FromRawFd;

use crate::error::{EngineError, Result};

/// What the caller asked for: each part a number or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub user: String,
    pub group: Option<String>,
}

impl UserSpec {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let ok = |x: &str| {
            !x.is_empty()
                && x.len() <= 256
                && !x.contains(['/', '\0', '\n'])
                && x.chars().all(|c| !c.is_control())
        };
        if !ok(user) || !group.is_none_or(ok) {
            return Err(format!(
                "--user {s:?}: expected USER[:GROUP], each a name or a number"
            ));
        }
        Ok(UserSpec {
            user: user.into(),
            group: group.map(String::from),
        })
    }

    /// True when no file of the container needs reading.
    pub fn numeric(&self) -> bool {
        self.user.parse::<u32>().is_ok()
            && self.group.as_ref().is_none_or(|g| g.parse::<u32>().is_ok())
    }
}

/// The resolved ids: uid, gid, and for a user given by name, the groups listing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub uid: u32,
    pub gid: Option<u32>,
    pub additional_gids: Vec<u32>,
}

/// Resolve against the text of passwd and group (None: the file does not exist).
pub fn resolve(
    id: &str,
    spec: &UserSpec,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Resolved> {
    let not_found = |what: &str, name: &str, file: &str| EngineError::Exec {
        id: id.into(),
        message: format!(
            "{what} {name:?} does not exist in the container ({file} has no such entry)"
        ),
    };
    let (uid, mut gid, name) = match spec.user.parse::<u32>() {
        Ok(n) => (n, None, None),
        Err(_) => {
            let entry = passwd
                .unwrap_or_default()
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && f[0] == spec.user)
                .ok_or_else(|| not_found("user", &spec.user, "/etc/passwd"))?;
            let uid = entry[2]
                .parse()
                .map_err(|_| not_found("user", &spec.user, "/etc/passwd"))?;
            (uid, entry[3].parse().ok(), Some(spec.user.clone()))
        }
    };
    let groups: Vec<Vec<&str>> = group
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = &spec.group {
        gid = Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| not_found("group", g, "/etc/group"))?,
        });
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for f in &groups {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if Some(n) != gid && !additional_gids.contains(&n) {
                        additional_gids.push(n);
                    }
                }
            }
        }
    }
    Ok(Resolved {
        uid,
        gid,
        additional_gids,
    })
}

/// Read a file of the container (e.g. /etc/passwd) through its init's root, beneath it.
/// A missing file is None; anything else that fails is an error naming it.
pub fn read_container_file(id: &str, init_pid: i32, path: &str) -> Result<Option<String>> {
    let root_path = format!("/proc/{init_pid}/root");
    let io = |e: pathrs::error::Error| std::io::Error::other(e.to_string());
    // Opened here and handed to pathrs: its own open refuses the /proc magic link.
    let dir = nix::fcntl::open(
        root_path.as_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| EngineError::io("opening", &root_path, e.into()))?;
    // SAFETY: open returned a fresh fd that nothing else owns.
    let root = pathrs::Root::from_fd(unsafe { std::os::fd::OwnedFd::from_raw_fd(dir) });
    let handle = match root.resolve(path) {
        Ok(h) => h,
        Err(e) if e.kind() == pathrs::error::ErrorKind::OsError(Some(libc::ENOENT)) => {
            return Ok(None)
        }
        Err(e) => {
            return Err(EngineError::Exec {
                id: id.into(),
                message: format!("resolving {path} in the container: {e}"),
            })
        }
    };
    let mut f = handle
        .reopen(pathrs::flags::OpenFlags::O_RDONLY)
        .map_err(|e| EngineError::io("opening", path, io(e)))?;
    let mut text = String::new();
    // Bounded: a tenant's 10 GB /etc/passwd must not stall an SRE's exec.
    f.by_ref()
        .take(4 << 20)
        .read_to_string(&mut text)
        .map_err(|e| EngineError::io("reading", path, e))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:33:\nusers:x:100:www-data,bob\nadm:x:4:www-data\n";

    fn r(s: &str) -> Result<Resolved> {
        resolve("c", &UserSpec::parse(s).unwrap(), Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(
            r("33").unwrap(),
            Resolved {
                uid: 33,
                gid: None,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            r("www-data").unwrap(),
            Resolved {
                uid: 33,
                gid: Some(33),
                additional_gids: vec![100, 4]
            }
        );
        assert_eq!(r("www-data:users").unwrap().gid, Some(100));
        assert_eq!(r("0:33").unwrap().gid, Some(33));
        let e = r("nosuchuser").unwrap_err().to_string();
        assert!(e.contains("nosuchuser") && e.contains("/etc/passwd"), "{e}");
        let e = r("33:nosuchgroup").unwrap_err().to_string();
        assert!(e.contains("nosuchgroup") && e.contains("/etc/group"), "{e}");
        // No passwd at all: names cannot resolve, numbers still do.
        assert!(resolve("c", &UserSpec::parse("www-data").unwrap(), None, None).is_err());
        assert!(UserSpec::parse("1:2").unwrap().numeric());
        assert!(!UserSpec::parse("www-data").unwrap().numeric());
        for bad in ["", ":", "a/b", "x:", "a\0b"] {
            assert!(UserSpec::parse(bad).is_err(), "{bad:?}");
        }
    }
}
