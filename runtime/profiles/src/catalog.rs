//! Where profiles come from: the built-in set under `profiles/` (compiled into the binary, so
//! what was reviewed is what runs), plus local profiles from a directory or a file, which may
//! only tighten a built-in class.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Origin, ProfileError, Result};
use crate::format::Kind;
use crate::resolve::{self, Profile};

/// The built-in profiles: `(name, file text)`. A unit test checks this matches `profiles/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("base", include_str!("../../../profiles/base.toml")),
    ("shell", include_str!("../../../profiles/shell.toml")),
    ("init", include_str!("../../../profiles/init.toml")),
    ("strict", include_str!("../../../profiles/strict.toml")),
    ("nginx", include_str!("../../../profiles/nginx.toml")),
    ("static", include_str!("../../../profiles/static.toml")),
    ("php-fpm", include_str!("../../../profiles/php-fpm.toml")),
    ("mariadb", include_str!("../../../profiles/mariadb.toml")),
    (
        "wordpress",
        include_str!("../../../profiles/wordpress.toml"),
    ),
    (
        "oci-default",
        include_str!("../../../profiles/oci-default.toml"),
    ),
];

/// One profile file's text and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Shown in errors: `profiles/base.toml` or the local file's path.
    pub origin: String,
    pub text: String,
    pub builtin: bool,
    /// Byte offsets of the text's newlines. Every rule keeps its file:line, and counting
    /// newlines from the start for each of a class's ~300 names made resolving a profile
    /// the largest part of `sgrun run`'s own CPU time.
    newlines: Vec<usize>,
}

impl Source {
    pub fn new(origin: String, text: String, builtin: bool) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Self {
            origin,
            text,
            builtin,
            newlines,
        }
    }

    /// The 1-based line of a byte offset, as an error position.
    pub fn origin_at(&self, offset: usize) -> Origin {
        let upto = offset.min(self.text.len());
        Origin {
            file: self.origin.clone(),
            // newlines before `upto`, plus one
            line: self.newlines.partition_point(|&nl| nl < upto) + 1,
        }
    }
}

/// The profiles sgrun knows.
#[derive(Debug, Clone)]
pub struct Catalog {
    sources: BTreeMap<String, Source>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Catalog {
    pub fn builtin() -> Self {
        let sources = BUILTIN
            .iter()
            .map(|(name, text)| {
                (
                    (*name).to_owned(),
                    Source::new(format!("profiles/{name}.toml"), (*text).to_owned(), true),
                )
            })
            .collect();
        Self { sources }
    }

    /// Adds a local profile file; its name is its stem. It may not replace a built-in one.
    pub fn add_file(&mut self, path: &Path) -> Result<String> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "toml"))
            .ok_or_else(|| ProfileError::BadRule {
                at: Origin {
                    file: origin.clone(),
                    line: 1,
                },
                detail: "a profile file is NAME.toml".into(),
            })?
            .to_owned();
        self.insert(&name, &origin, &text, false)?;
        Ok(name)
    }

    /// Adds a profile given as text (a tenant's layer kept in a registry, a test). Built-in
    /// profiles are what `profiles/` held at build time; anything added is local: it may only
    /// tighten what it extends.
    pub fn add_text(&mut self, name: &str, origin: &str, text: &str) -> Result<()> {
        self.insert(name, origin, text, false)
    }

    fn insert(&mut self, name: &str, origin: &str, text: &str, builtin: bool) -> Result<()> {
        let at = Origin {
            file: origin.to_owned(),
            line: 1,
        };
        if !valid_name(name) {
            return Err(ProfileError::BadRule {
                at,
                detail: format!(
                    "{name:?} is not a profile name: lower-case letters, digits and dashes, at \
                     most 64"
                ),
            });
        }
        if self.sources.get(name).is_some_and(|s| s.builtin) {
            return Err(ProfileError::BadRule {
                at,
                detail: format!(
                    "{name} is a built-in profile; a local profile needs a name of its own (and \
                     extends {name} to tighten it)"
                ),
            });
        }
        self.sources.insert(
            name.to_owned(),
            Source::new(origin.to_owned(), text.to_owned(), builtin),
        );
        Ok(())
    }

    /// Test support: a file that counts as built-in (classes, loosening checks).
    #[cfg(test)]
    pub(crate) fn add_builtin_for_test(&mut self, name: &str, text: &str) {
        self.insert(name, &format!("test/{name}.toml"), text, true)
            .expect("test profile name is valid");
    }

    /// Adds every `*.toml` of a directory (for example /etc/sgrun/profiles). A missing
    /// directory adds nothing.
    pub fn add_dir(&mut self, dir: &Path) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ProfileError::Io {
                    path: dir.to_owned(),
                    source,
                })
            }
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            self.add_file(&path)?;
        }
        Ok(())
    }

    /// Every name, layers included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.get(name)
    }

    /// The profile `name` with all its layers merged and checked. Layers cannot be selected.
    pub fn class(&self, name: &str) -> Result<Profile> {
        let profile = self.resolve(name)?;
        if profile.kind != Kind::Class {
            return Err(ProfileError::NotAClass {
                name: name.to_owned(),
                classes: self.classes(),
            });
        }
        Ok(profile)
    }

    /// Like [`Catalog::class`], for layers too (`sgrun profile show base`).
    pub fn resolve(&self, name: &str) -> Result<Profile> {
        resolve::resolve(&self.sources, name)
    }

    /// The names of the classes (not layers), for messages and `sgrun profile list`.
    pub fn classes(&self) -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct KindOnly {
            profile: HeaderKind,
        }
        #[derive(serde::Deserialize)]
        struct HeaderKind {
            kind: Kind,
        }
        self.sources
            .iter()
            .filter(|(_, s)| {
                toml::from_str::<KindOnly>(&s.text).is_ok_and(|k| k.profile.kind == Kind::Class)
            })
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Profile names: what a file stem and an annotation may carry.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}
