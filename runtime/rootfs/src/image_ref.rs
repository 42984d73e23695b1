//! The image store, as far as a container's root filesystem needs it: name -> id -> rootfs,
//! and an in-use marker per container. This is the contract agreed with the images crate
//! (written in parallel); at merge this module becomes calls to
//! `sgrun_images::Store::{resolve, acquire, release}`.
//!
//! ```text
//! <state>/images/names/<name>                  the image id, 64 lower-case hex digits
//! <state>/images/sha256/<hex>/rootfs/          the base root filesystem (host root's, read-only)
//! <state>/images/sha256/<hex>/users/<id>       in use by container <id>; holds the runtime root
//! ```
//!
//! The store is host root's: none of it is tenant-controlled, so plain paths are fine here.

use std::path::{Path, PathBuf};

use crate::error::{Result, RootfsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub name: String,
    pub hex: String,
    pub rootfs: PathBuf,
}

fn images(state: &Path) -> PathBuf {
    state.join("images")
}

/// Image names: what an OCI reference's last part may hold, minus anything that could leave
/// the names directory.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err("must not start with `.` or `-`".into());
    }
    if let Some((i, c)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || "._-:@+".contains(*c)))
    {
        return Err(format!(
            "character {c:?} at {i} is not allowed (letters, digits and `. _ - : @ +` only)"
        ));
    }
    Ok(())
}

pub fn resolve(state: &Path, name: &str) -> Result<ImageRef> {
    let path = images(state).join("names").join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RootfsError::ImageNotFound {
                name: name.into(),
                path,
            })
        }
        Err(e) => return Err(RootfsError::io("read image name", &path)(e)),
    };
    let hex = text.trim().to_string();
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(RootfsError::ImageCorrupt {
            name: name.into(),
            path,
        });
    }
    let rootfs = images(state).join("sha256").join(&hex).join("rootfs");
    if !rootfs.is_dir() {
        return Err(RootfsError::ImageNotFound {
            name: name.into(),
            path: rootfs,
        });
    }
    Ok(ImageRef {
        name: name.into(),
        hex,
        rootfs,
    })
}

fn marker(state: &Path, hex: &str, id: &str) -> PathBuf {
    images(state)
        .join("sha256")
        .join(hex)
        .join("users")
        .join(id)
}

/// Mark the image as used by container `id` of runtime root `root`, so that the store never
/// removes it while the container exists.
pub fn acquire(state: &Path, hex: &str, id: &str, root: &Path) -> Result<()> {
    let path = marker(state, hex, id);
    let dir = path.parent().expect("marker has a parent");
    std::fs::create_dir_all(dir).map_err(RootfsError::io("create image users directory", dir))?;
    std::fs::write(&path, root.as_os_str().as_encoded_bytes())
        .map_err(RootfsError::io("write image in-use marker", &path))
}

/// Remove the marker, if it is ours (a container of the same id under another runtime root
/// keeps its own).
pub fn release(state: &Path, hex: &str, id: &str, root: &Path) -> Result<()> {
    let path = marker(state, hex, id);
    match std::fs::read(&path) {
        Ok(b) if b == root.as_os_str().as_encoded_bytes() => std::fs::remove_file(&path)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(RootfsError::io("remove image in-use marker", &path)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RootfsError::io("read image in-use marker", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["wordpress", "wordpress:6.1", "busybox-1.36", "a@sha256"] {
            check_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "-x", "a\0b", &"x".repeat(129), "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolve_acquire_release() {
        let t = tempfile::tempdir().unwrap();
        let hex = "ab".repeat(32);
        std::fs::create_dir_all(t.path().join("images/names")).unwrap();
        std::fs::create_dir_all(t.path().join(format!("images/sha256/{hex}/rootfs"))).unwrap();
        assert!(matches!(
            resolve(t.path(), "wp"),
            Err(RootfsError::ImageNotFound { .. })
        ));
        std::fs::write(t.path().join("images/names/wp"), "../../etc\n").unwrap();
        assert!(matches!(
            resolve(t.path(), "wp"),
            Err(RootfsError::ImageCorrupt { .. })
        ));
        std::fs::write(t.path().join("images/names/wp"), format!("{hex}\n")).unwrap();
        let r = resolve(t.path(), "wp").unwrap();
        assert_eq!(r.hex, hex);
        acquire(t.path(), &hex, "c1", Path::new("/run/a")).unwrap();
        // another root's container of the same id keeps its marker
        release(t.path(), &hex, "c1", Path::new("/run/b")).unwrap();
        assert!(marker(t.path(), &hex, "c1").exists());
        release(t.path(), &hex, "c1", Path::new("/run/a")).unwrap();
        assert!(!marker(t.path(), &hex, "c1").exists());
        release(t.path(), &hex, "c1", Path::new("/run/a")).unwrap();
    }
}
