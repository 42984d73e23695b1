//! Image names, image ids and container ids: pure validation, no I/O.
//!
//! A name becomes a file name under `images/names/`, an id a directory name under
//! `images/sha256/`, a container id a file name under `users/`: each is checked here before it
//! is ever joined to a path, so that no `/`, `..` or NUL can reach the filesystem.

use crate::error::{ImageError, Result};

pub const NAME_MAX: usize = 63;
pub const CONTAINER_ID_MAX: usize = 128;
/// The shortest id prefix `resolve` accepts: 12 hex digits, as `docker images` shows.
pub const MIN_ID_PREFIX: usize = 12;

/// A name as a user can read it in an error: printable, quoted, cut at 80 characters.
pub(crate) fn shown(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let more = if s.chars().count() > 80 { "…" } else { "" };
    format!("{:?}{more}", cut)
}

/// `[a-z0-9][a-z0-9._-]*`, 1 to 63 bytes, no `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: String| ImageError::InvalidName {
        shown: shown(name),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.len() > NAME_MAX {
        return Err(bad(format!(
            "it is {} bytes long, more than {NAME_MAX}",
            name.len()
        )));
    }
    for (i, c) in name.chars().enumerate() {
        let ok =
            c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && matches!(c, '.' | '_' | '-'));
        if !ok {
            let what = match c {
                '\0' => "a NUL byte".to_string(),
                '/' => "'/'".to_string(),
                c if c.is_ascii_uppercase() => format!("upper-case {c:?}"),
                c if i == 0 && matches!(c, '.' | '_' | '-') => format!("{c:?} as first character"),
                c => format!("{c:?}"),
            };
            return Err(bad(format!("character {} ({what}) is not allowed", i + 1)));
        }
    }
    if let Some(pos) = name.find("..") {
        return Err(bad(format!(
            "\"..\" at character {} is not allowed",
            pos + 1
        )));
    }
    Ok(())
}

/// A full image id: 64 lower-case hex digits (the sha256 of the manifest).
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What `resolve` was given, once `sha256:` is taken off: a name, or an id (prefix).
#[derive(Debug, PartialEq, Eq)]
pub enum Reference<'a> {
    Name(&'a str),
    /// 12 to 64 hex digits.
    Id(&'a str),
}

/// Names win over ids: `resolve("deadbeefcafe")` first looks for an image named so. The
/// caller falls back to `Reference::Id` when `id_fallback` is `Some`.
pub fn parse_reference(s: &str) -> Result<(Option<&str>, Option<&str>)> {
    if let Some(hex) = s.strip_prefix("sha256:") {
        if hex.len() >= MIN_ID_PREFIX && hex.len() <= 64 && is_lower_hex(hex) {
            return Ok((None, Some(hex)));
        }
        return Err(ImageError::InvalidName {
            shown: shown(s),
            reason: format!(
                "after \"sha256:\" an image id needs {MIN_ID_PREFIX} to 64 lower-case hex digits"
            ),
        });
    }
    let as_id = (s.len() >= MIN_ID_PREFIX && s.len() <= 64 && is_lower_hex(s)).then_some(s);
    match validate_name(s) {
        Ok(()) => Ok((Some(s), as_id)),
        Err(e) => match as_id {
            Some(id) => Ok((None, Some(id))),
            None => Err(e),
        },
    }
}

/// Container ids as the engine accepts them (runc's rule): letters, digits, `_ + - .`,
/// not `.` or `..`, at most 128 bytes.
pub fn validate_container_id(id: &str) -> Result<()> {
    let bad = |reason: String| ImageError::InvalidContainerId {
        shown: shown(id),
        reason,
    };
    if id.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if id.len() > CONTAINER_ID_MAX {
        return Err(bad(format!("it is {} bytes long", id.len())));
    }
    if id == "." || id == ".." {
        return Err(bad("it is a relative directory name".into()));
    }
    if let Some((i, c)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
    {
        return Err(bad(format!("character {} ({c:?}) is not allowed", i + 1)));
    }
    Ok(())
}

/// The name an import gets when `--name` is not given: the last path component of a
/// reference such as `docker.io/library/busybox:1.36`, without its tag or digest, lower-cased.
/// `None` when nothing valid is left (the image is then reachable by id only).
pub fn derive_name(reference: &str) -> Option<String> {
    let no_digest = reference.split('@').next().unwrap_or("");
    let last = no_digest.rsplit('/').next().unwrap_or("");
    let repo = last.split(':').next().unwrap_or("").to_ascii_lowercase();
    validate_name(&repo).ok().map(|_| repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names() {
        for n in ["wordpress", "php-8.2", "a", "0", "x_y", &"a".repeat(63)] {
            validate_name(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn bad_names_say_which_char_and_where() {
        let cases = [
            ("", "empty"),
            ("Wordpress", "character 1 (upper-case 'W')"),
            ("word/press", "character 5 ('/')"),
            ("-x", "character 1 ('-' as first character)"),
            (".x", "character 1 ('.' as first character)"),
            ("a..b", "\"..\" at character 2"),
            ("a\0b", "character 2 (a NUL byte)"),
            ("a b", "character 2 (' ')"),
            ("é", "character 1 ('é')"),
        ];
        for (n, want) in cases {
            let e = validate_name(n).unwrap_err().to_string();
            assert!(e.contains(want), "{n:?}: {e}");
        }
        let long = "a".repeat(64);
        assert!(validate_name(&long)
            .unwrap_err()
            .to_string()
            .contains("64 bytes long"));
        let e = validate_name(&"x".repeat(300)).unwrap_err().to_string();
        assert!(e.contains('…'), "{e}");
    }

    #[test]
    fn references() {
        let id = "a".repeat(64);
        assert_eq!(
            parse_reference("wordpress").unwrap(),
            (Some("wordpress"), None)
        );
        assert_eq!(
            parse_reference("abcdef012345").unwrap(),
            (Some("abcdef012345"), Some("abcdef012345"))
        );
        assert_eq!(parse_reference(&id).unwrap(), (None, Some(id.as_str())));
        assert_eq!(
            parse_reference("sha256:abcdef012345").unwrap(),
            (None, Some("abcdef012345"))
        );
        assert!(parse_reference("sha256:abc").is_err());
        assert!(parse_reference("../x").is_err());
        assert!(is_full_id(&id));
        assert!(!is_full_id(&"A".repeat(64)));
    }

    #[test]
    fn container_ids() {
        validate_container_id("web1.site_a+b-c").unwrap();
        for bad in ["", ".", "..", "a/b", "a\0", &"x".repeat(129)] {
            assert!(validate_container_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_names() {
        assert_eq!(
            derive_name("docker.io/library/busybox:1.36").as_deref(),
            Some("busybox")
        );
        assert_eq!(derive_name("Alpine:latest").as_deref(), Some("alpine"));
        assert_eq!(derive_name("reg:5000/x/y@sha256:00").as_deref(), Some("y"));
        assert_eq!(derive_name("latest").as_deref(), Some("latest"));
        assert_eq!(derive_name(""), None);
        assert_eq!(derive_name("-bad"), None);
    }
}
