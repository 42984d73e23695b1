//! The image store, as far as a container's root filesystem needs it: a reference -> the
//! image's id and base rootfs, and an in-use marker per container. All of it is
//! `sgrun_images::Store` (docs/images.md); this module only keeps the rootfs crate's view of
//! it small (the record stores the full id, which `release` needs).

use std::path::{Path, PathBuf};

use sgrun_images::Store;

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct ImageRef {
    /// The reference the config named (image name or id).
    pub name: String,
    /// The image's full id (64 hex digits).
    pub hex: String,
    pub rootfs: PathBuf,
    image: sgrun_images::Image,
}

/// A reference a config may name: an image name, or an id (`sha256:` + at least 12 hex
/// digits). Checked before anything is read, so a hostile annotation never reaches the store.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    sgrun_images::names::parse_reference(name)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl ImageRef {
    pub fn image(&self) -> &sgrun_images::Image {
        &self.image
    }
}

pub fn resolve(state: &Path, name: &str) -> Result<ImageRef> {
    let image = Store::open(state)?.resolve(name)?;
    Ok(ImageRef {
        name: name.into(),
        hex: image.id.clone(),
        rootfs: image.rootfs.clone(),
        image,
    })
}

/// Mark the image as used by container `id` of runtime root `root`: `sgrun image rm` refuses
/// to remove it while the container exists.
pub fn acquire(state: &Path, image: &ImageRef, id: &str, root: &Path) -> Result<()> {
    Ok(Store::open(state)?.acquire(&image.image, id, root)?)
}

/// Remove the marker if it is this runtime root's: a container of the same id under another
/// runtime root keeps its own.
pub fn release(state: &Path, hex: &str, id: &str, root: &Path) -> Result<()> {
    let store = Store::open(state)?;
    let ours = store
        .users(hex)?
        .iter()
        .any(|u| u.container == id && u.runtime_root.as_deref() == Some(root));
    if ours {
        store.release(hex, id)?;
    }
    Ok(())
}
