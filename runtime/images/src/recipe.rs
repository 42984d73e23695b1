//! Image recipes: `images/<name>/recipe.toml` plus a `files/` tree. Pure parsing, validation,
//! hashing and the mmdebstrap command line; running it is [`crate::build`]'s.
//!
//! The keys and their meaning are exactly those tests/wordpress/build-image.sh reads (see the
//! comments in images/wordpress/recipe.toml); an unknown key is an error, not a warning.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{ImageError, Result};
use crate::manifest::hex;

/// Bumped whenever the Rust build's steps change what a recipe produces: the recipe hash
/// then changes and `sgrun image build` rebuilds instead of answering "up to date".
pub const BUILDER_VERSION: &str = "sgrun-images build 1";

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The image name; defaults to the recipe directory's name.
    pub name: Option<String>,
    pub description: Option<String>,
    pub suite: String,
    pub variant: String,
    pub architecture: Option<String>,
    pub mirror: String,
    pub components: Option<Vec<String>>,
    #[serde(default)]
    pub extra_suites: Vec<String>,
    pub security_mirror: Option<String>,
    pub security_suite: Option<String>,
    pub packages: Vec<String>,
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    #[serde(default)]
    pub keep_paths: Vec<String>,
    #[serde(default)]
    pub purge: Vec<String>,
    #[serde(default)]
    pub remove_paths: Vec<String>,
    #[serde(default)]
    pub mount_points: Vec<String>,
    pub files: Option<String>,
}

/// A recipe read from its directory, validated and hashed.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    pub dir: PathBuf,
    pub path: PathBuf,
    pub recipe: Recipe,
    /// The image name (the recipe's `name`, else the directory's name).
    pub name: String,
    /// sha256 of the recipe file, every file of `files/` (path, type, mode, content or link
    /// target) and [`BUILDER_VERSION`].
    pub hash: String,
    /// The files/ directory, when it exists.
    pub files_dir: Option<PathBuf>,
}

fn words_ok(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == '\0')
}

/// A relative path inside the rootfs: no leading '/', no `..`, no NUL, no empty string.
fn rel_ok(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.contains('\0') && !p.split('/').any(|c| c == "..")
}

pub fn load(dir: &Path) -> Result<LoadedRecipe> {
    let path = dir.join("recipe.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| ImageError::Recipe {
        path: path.clone(),
        problem: format!("cannot read it ({e}); pass the recipe directory, e.g. images/wordpress"),
    })?;
    let recipe: Recipe = toml::from_str(&text).map_err(|source| ImageError::RecipeToml {
        path: path.clone(),
        source,
    })?;
    let problem = |problem: String| ImageError::Recipe {
        path: path.clone(),
        problem,
    };
    for (key, v) in [
        ("suite", &recipe.suite),
        ("variant", &recipe.variant),
        ("mirror", &recipe.mirror),
    ] {
        if !words_ok(v) {
            return Err(problem(format!(
                "key '{key}' must be one word (no spaces or commas)"
            )));
        }
    }
    let no_components = Vec::new();
    let lists: [(&str, &Vec<String>); 4] = [
        ("packages", &recipe.packages),
        ("extra_suites", &recipe.extra_suites),
        ("purge", &recipe.purge),
        (
            "components",
            recipe.components.as_ref().unwrap_or(&no_components),
        ),
    ];
    for (key, list) in lists {
        if let Some(bad) = list.iter().find(|s| !words_ok(s)) {
            return Err(problem(format!(
                "'{key}' entry {bad:?} must be one word (no spaces or commas)"
            )));
        }
    }
    if recipe.packages.is_empty() {
        return Err(problem("'packages' is empty".into()));
    }
    for (key, list) in [
        ("exclude_paths", &recipe.exclude_paths),
        ("keep_paths", &recipe.keep_paths),
    ] {
        if let Some(bad) = list
            .iter()
            .find(|s| s.is_empty() || s.contains('\0') || s.contains('\n'))
        {
            return Err(problem(format!(
                "'{key}' entry {bad:?} is not a valid pattern"
            )));
        }
    }
    for (key, list) in [
        ("remove_paths", &recipe.remove_paths),
        ("mount_points", &recipe.mount_points),
    ] {
        for p in list {
            if !rel_ok(p) {
                return Err(problem(format!(
                    "{key} entry '{p}' must be relative to the rootfs, without '..'"
                )));
            }
            let (dirpart, _) = p.rsplit_once('/').unwrap_or(("", p));
            if dirpart.contains(['*', '?', '['])
                || (key == "mount_points" && p.contains(['*', '?', '[']))
            {
                return Err(problem(format!(
                    "{key} entry '{p}': a wildcard may only stand in the last component"
                )));
            }
        }
    }
    if let Some(f) = &recipe.files {
        if !rel_ok(f) {
            return Err(problem(format!(
                "'files' = {f:?} must be a directory relative to the recipe, without '..'"
            )));
        }
    }
    let name = match &recipe.name {
        Some(n) => n.clone(),
        None => dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    };
    crate::names::validate_name(&name).map_err(|e| problem(format!("the image name: {e}")))?;

    let files_dir = dir.join(recipe.files.as_deref().unwrap_or("files"));
    let files_dir = files_dir.is_dir().then_some(files_dir);
    let mut h = Sha256::new();
    let mut add = |tag: &[u8], data: &[u8]| {
        h.update(tag);
        h.update([0]);
        h.update(data);
        h.update([0]);
    };
    add(b"builder", BUILDER_VERSION.as_bytes());
    add(b"recipe", text.as_bytes());
    if let Some(fd) = &files_dir {
        let mut entries = Vec::new();
        collect(fd, fd, &mut entries).map_err(|(p, e)| ImageError::Recipe {
            path: p,
            problem: e,
        })?;
        entries.sort();
        for (rel, kind, mode, data) in entries {
            let mut tag = format!("{kind} {mode:o} ").into_bytes();
            tag.extend_from_slice(&rel);
            add(&tag, &data);
        }
    }
    Ok(LoadedRecipe {
        dir: dir.to_path_buf(),
        path,
        name,
        hash: hex(&h.finalize()),
        files_dir,
        recipe,
    })
}

type FileRec = (Vec<u8>, &'static str, u32, Vec<u8>);

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut Vec<FileRec>,
) -> std::result::Result<(), (PathBuf, String)> {
    let rd = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e.to_string()))?;
    for e in rd {
        let e = e.map_err(|e| (dir.to_path_buf(), e.to_string()))?;
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).map_err(|e| (p.clone(), e.to_string()))?;
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .as_os_str()
            .as_bytes()
            .to_vec();
        let mode = md.permissions().mode() & 0o7777;
        let ft = md.file_type();
        if ft.is_symlink() {
            let t = std::fs::read_link(&p).map_err(|e| (p.clone(), e.to_string()))?;
            out.push((rel, "link", 0, t.as_os_str().as_bytes().to_vec()));
        } else if ft.is_dir() {
            out.push((rel, "dir", mode, Vec::new()));
            collect(root, &p, out)?;
        } else if ft.is_file() {
            let data = std::fs::read(&p).map_err(|e| (p.clone(), e.to_string()))?;
            out.push((rel, "file", mode, data));
        } else {
            return Err((
                p,
                "only files, directories and symlinks may be in files/".into(),
            ));
        }
    }
    Ok(())
}

impl LoadedRecipe {
    /// mmdebstrap's arguments before SUITE TARGET SOURCES, in the order
    /// tests/wordpress/build-image.sh passes them.
    pub fn mmdebstrap_options(&self) -> Vec<String> {
        let r = &self.recipe;
        let mut a = vec![
            "--mode=root".to_string(),
            format!("--variant={}", r.variant),
            "--format=directory".to_string(),
        ];
        if let Some(arch) = &r.architecture {
            a.push(format!("--architectures={arch}"));
        }
        if let Some(c) = &r.components {
            a.push(format!("--components={}", c.join(",")));
        }
        a.push(format!("--include={}", r.packages.join(",")));
        for p in &r.exclude_paths {
            a.push(format!("--dpkgopt=path-exclude={p}"));
        }
        for p in &r.keep_paths {
            a.push(format!("--dpkgopt=path-include={p}"));
        }
        // no Recommends, no Suggests: the package list is the whole image
        a.push("--aptopt=APT::Install-Recommends \"false\"".to_string());
        a.push("--aptopt=APT::Install-Suggests \"false\"".to_string());
        if !r.purge.is_empty() {
            a.push(format!(
                "--customize-hook=chroot \"$1\" dpkg --purge --force-remove-essential --force-depends {}",
                r.purge.join(" ")
            ));
        }
        a
    }

    /// The sources.list mmdebstrap gets as its last argument.
    pub fn sources(&self) -> String {
        let r = &self.recipe;
        let comps = r
            .components
            .as_ref()
            .map(|c| c.join(" "))
            .unwrap_or_else(|| "main".into());
        let mut lines: Vec<String> = std::iter::once(&r.suite)
            .chain(r.extra_suites.iter())
            .map(|s| format!("deb {} {s} {comps}", r.mirror))
            .collect();
        if let Some(sec) = &r.security_mirror {
            let suite = r
                .security_suite
                .clone()
                .unwrap_or_else(|| format!("{}-security", r.suite));
            lines.push(format!("deb {sec} {suite} {comps}"));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join("recipe.toml"), text).unwrap();
    }

    const MIN: &str = r#"
name = "tiny"
suite = "bookworm"
variant = "essential"
mirror = "http://deb.debian.org/debian"
packages = ["tini"]
"#;

    #[test]
    fn wordpress_recipe_gives_the_scripts_arguments() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/wordpress");
        let r = load(&dir).unwrap();
        assert_eq!(r.name, "wordpress");
        let a = r.mmdebstrap_options();
        assert_eq!(
            &a[..4],
            [
                "--mode=root",
                "--variant=essential",
                "--format=directory",
                "--architectures=amd64"
            ]
        );
        assert_eq!(a[4], "--components=main");
        assert!(
            a[5].starts_with("--include=nginx,php8.2-fpm,php,"),
            "{}",
            a[5]
        );
        assert!(a.contains(&"--dpkgopt=path-exclude=/usr/share/doc/*".to_string()));
        assert!(a.contains(&"--dpkgopt=path-include=/usr/share/doc/*/copyright".to_string()));
        assert_eq!(
            a.last().unwrap(),
            "--aptopt=APT::Install-Suggests \"false\""
        );
        assert_eq!(
            r.sources(),
            "deb http://deb.debian.org/debian bookworm main\n\
             deb http://deb.debian.org/debian bookworm-updates main\n\
             deb http://deb.debian.org/debian-security bookworm-security main"
        );
        assert!(r.files_dir.is_some());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), &format!("{MIN}\npackges = []\n"));
        let e = load(t.path()).unwrap_err();
        assert!(matches!(e, ImageError::RecipeToml { .. }), "{e}");
        let src = std::error::Error::source(&e).unwrap().to_string();
        assert!(src.contains("packges"), "{src}");

        write(t.path(), &format!("{MIN}\nremove_paths = [\"../etc\"]\n"));
        assert!(load(t.path())
            .unwrap_err()
            .to_string()
            .contains("without '..'"));
        write(t.path(), &format!("{MIN}\nremove_paths = [\"var/*/x\"]\n"));
        assert!(load(t.path())
            .unwrap_err()
            .to_string()
            .contains("last component"));
        write(t.path(), &MIN.replace("[\"tini\"]", "[\"a b\"]"));
        assert!(load(t.path()).unwrap_err().to_string().contains("one word"));
        write(t.path(), &MIN.replace("tiny", "Tiny"));
        assert!(load(t.path())
            .unwrap_err()
            .to_string()
            .contains("upper-case"));
    }

    #[test]
    fn hash_covers_recipe_and_files() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), MIN);
        let h1 = load(t.path()).unwrap().hash;
        assert_eq!(load(t.path()).unwrap().hash, h1);
        std::fs::create_dir(t.path().join("files")).unwrap();
        std::fs::write(t.path().join("files/x"), b"1").unwrap();
        let h2 = load(t.path()).unwrap().hash;
        assert_ne!(h1, h2);
        std::fs::set_permissions(
            t.path().join("files/x"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(load(t.path()).unwrap().hash, h2);
    }
}
