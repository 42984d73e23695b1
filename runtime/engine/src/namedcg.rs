//! The container's cgroup in the v1 `name=systemd` hierarchy (hybrid and v1 hosts).
//!
//! libcgroups manages only the v1 hierarchies that have controllers; a container left in the
//! caller's `name=systemd` cgroup (usually the root) sees the host's tree there, even in a
//! cgroup namespace of its own: the namespace's root is the cgroup the init was in when it
//! unshared. runc places containers there too. sgrun does it before libcontainer forks: the
//! creating *thread* moves itself into `<hierarchy>/<cgroupsPath>` (writing "0" to `tasks`
//! moves only the writer), the init it forks inherits that cgroup and unshares its cgroup
//! namespace there, and the thread then moves back where it was. Order matters: after the
//! init has unshared, moving it would show `/..` paths inside instead.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

const HIERARCHY: &str = "name=systemd";

/// The mount point of the `name=systemd` hierarchy, if this host has one.
fn hierarchy_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    crate::cgroups::cgroup_mounts(&mountinfo)
        .into_iter()
        .find(|m| m.controllers.is_some() && m.serves(HIERARCHY))
        .map(|m| m.point)
}

/// The container's directory in the hierarchy mounted at `mount`. cgroupsPath is taken from
/// the hierarchy's root, as libcgroups does for the v1 controllers.
fn container_dir(mount: &Path, cgroup_path: &Path) -> PathBuf {
    mount.join(cgroup_path.strip_prefix("/").unwrap_or(cgroup_path))
}

/// This thread's cgroup in the hierarchy, from /proc/thread-self/cgroup.
fn own_dir(mount: &Path) -> Result<PathBuf> {
    let path = Path::new("/proc/thread-self/cgroup");
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io("reading", path, e))?;
    let rel = text
        .lines()
        .filter_map(|l| {
            let mut fields = l.splitn(3, ':');
            let _id = fields.next();
            fields.next().zip(fields.next())
        })
        .find(|(h, _)| *h == HIERARCHY)
        .map(|(_, p)| p.to_string())
        .ok_or_else(|| {
            EngineError::io(
                "finding the name=systemd cgroup in",
                path,
                std::io::Error::other("no name=systemd line"),
            )
        })?;
    Ok(container_dir(mount, Path::new(&rel)))
}

fn move_thread(dir: &Path) -> Result<()> {
    let tasks = dir.join("tasks");
    std::fs::write(&tasks, "0").map_err(|e| EngineError::io("moving this thread into", tasks, e))
}

/// This thread in the container's `name=systemd` cgroup until [`Placement::leave`].
#[must_use = "the thread must leave the container's cgroup"]
pub struct Placement {
    back_to: PathBuf,
}

/// Put this thread into the container's cgroup of the `name=systemd` hierarchy (made if
/// needed). `None` on hosts without that hierarchy (pure cgroup v2).
pub fn enter(cgroup_path: &Path) -> Result<Option<Placement>> {
    let Some(mount) = hierarchy_mount() else {
        return Ok(None);
    };
    let back_to = own_dir(&mount)?;
    let dir = container_dir(&mount, cgroup_path);
    std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("creating cgroup", &dir, e))?;
    if let Err(e) = move_thread(&dir) {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    Ok(Some(Placement { back_to }))
}

impl Placement {
    /// Back to the cgroup the thread was in (the init forked meanwhile stays).
    pub fn leave(self) -> Result<()> {
        move_thread(&self.back_to)
    }
}

/// Remove the container's cgroup of the hierarchy, once its processes are gone. Parents made
/// for it stay (other containers share them), as libcgroups leaves them for the controllers.
pub fn remove(cgroup_path: &Path) {
    if let Some(mount) = hierarchy_mount() {
        let dir = container_dir(&mount, cgroup_path);
        if dir != mount {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_dirs_are_beneath_the_hierarchy() {
        let m = Path::new("/sys/fs/cgroup/systemd");
        assert_eq!(
            container_dir(m, Path::new("/sgrun/c1")),
            Path::new("/sys/fs/cgroup/systemd/sgrun/c1")
        );
        assert_eq!(
            container_dir(m, Path::new("sgrun/c1")),
            Path::new("/sys/fs/cgroup/systemd/sgrun/c1")
        );
    }
}
