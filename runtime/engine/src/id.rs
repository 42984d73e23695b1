//! Container id validation: pure, no I/O. An id becomes a directory name under the state root
//! and part of a cgroup path, so anything that could name another directory is refused.

use crate::error::{EngineError, Result};

/// Longest accepted id. A directory entry may have 255 bytes; cgroup and unix-socket paths
/// built from the id must stay well under PATH_MAX and sun_path, hence a lower bound.
pub const MAX_ID_LEN: usize = 128;

pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(EngineError::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("it is longer than 128 characters");
    }
    if id == "." || id == ".." {
        return bad("it names a directory (`.` or `..`)");
    }
    if id.contains('\0') {
        return bad("it contains a NUL byte");
    }
    if id.contains('/') {
        return bad("it contains `/`");
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("it must start with a letter or digit");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
    {
        return bad("only letters, digits and `_ + - .` are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_ids() {
        for id in ["a", "web-1", "c0ffee", "site.blog_1+x", &"a".repeat(128)] {
            validate_id(id).unwrap();
        }
    }

    #[test]
    fn refuses_hostile_ids() {
        for (id, needle) in [
            ("", "empty"),
            ("..", "directory"),
            (".", "directory"),
            ("a/b", "`/`"),
            ("../etc", "`/`"),
            ("a\0b", "NUL"),
            (&"x".repeat(300), "longer"),
            ("-rf", "start"),
            ("a b", "only"),
            ("ü", "start"),
        ] {
            let err = validate_id(id).unwrap_err().to_string();
            assert!(err.contains(needle), "{id:?}: {err}");
        }
    }
}
