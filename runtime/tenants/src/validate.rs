//! Pure checks of user input: tenant names, storage sizes, inode counts.

use crate::error::{Result, TenantError};

/// Smallest volume: below this, ext4's journal and metadata leave little room for a site.
pub const MIN_STORAGE: u64 = 64 << 20;
/// Fewest inodes: a WordPress install alone has about 3,000 files; 1024 is a floor for tests.
pub const MIN_INODES: u64 = 1024;
pub const MAX_NAME_LEN: usize = 63;

/// How a refused name is shown: quoted and escaped (NUL, control characters), and cut after
/// 40 characters so that a 300-character name does not flood the terminal.
fn shown(name: &str) -> String {
    let count = name.chars().count();
    if count > 40 {
        let head: String = name.chars().take(40).collect();
        format!("{head:?}… ({count} characters)")
    } else {
        format!("{name:?}")
    }
}

/// A tenant name names files and directories under the state directory and will be part of
/// cgroup paths and hostnames: so only `[a-z][a-z0-9-]{0,62}`, like a DNS label.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |reason: String| {
        Err(TenantError::InvalidName {
            shown: shown(name),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return bad(format!(
            "it is {} characters long, the limit is {MAX_NAME_LEN}",
            name.chars().count()
        ));
    }
    if name.contains("..") {
        return bad("it contains \"..\"".into());
    }
    for (i, c) in name.char_indices() {
        let pos = i + 1;
        match c {
            'a'..='z' => {}
            '0'..='9' | '-' if i > 0 => {}
            '0'..='9' | '-' => return bad(format!("it starts with {c:?}, not a letter")),
            '/' => return bad(format!("character {pos} is '/'")),
            '\0' => return bad(format!("character {pos} is NUL")),
            'A'..='Z' => {
                return bad(format!(
                    "character {pos} is upper case {c:?} (use {:?})",
                    c.to_ascii_lowercase()
                ))
            }
            _ => return bad(format!("character {pos} is {c:?}")),
        }
    }
    if name.ends_with('-') {
        return bad("it ends with '-'".into());
    }
    Ok(())
}

/// Parse a size such as `5G`, `500M`, `64MiB`, `1T` or a plain byte count. Units are
/// powers of 1024 (what `df -h` and ext4 tools mean).
pub fn parse_size(input: &str) -> Result<u64> {
    let bad = |reason: &str| TenantError::InvalidSize {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let s = input.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return Err(bad("it does not start with a number"));
    }
    let n: u64 = s[..digits_end]
        .parse()
        .map_err(|_| bad("the number is too large"))?;
    let unit = s[digits_end..].to_ascii_lowercase();
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad("unknown unit (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| bad("the size overflows 64 bits"))
}

/// `bytes` as the largest unit that divides it, for messages and tables.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes & ((1 << shift) - 1) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1}M", bytes as f64 / (1u64 << 20) as f64);
    }
    format!("{bytes}")
}

/// Size and inode limits for a new volume. `free` is what the filesystem holding the state
/// directory has free (None: not checked, for the dir backend).
pub fn check_limits(size: u64, inodes: u64, free: Option<(u64, &std::path::Path)>) -> Result<()> {
    if size < MIN_STORAGE {
        return Err(TenantError::SizeTooSmall {
            size,
            min: MIN_STORAGE,
        });
    }
    if let Some((free, path)) = free {
        if size > free {
            return Err(TenantError::SizeTooLarge {
                size,
                free,
                path: path.to_path_buf(),
            });
        }
    }
    if inodes < MIN_INODES {
        return Err(TenantError::InodesTooFew {
            inodes,
            min: MIN_INODES,
        });
    }
    // mke2fs accepts at most one inode per 1 KiB block (its smallest inode ratio).
    let max = size / 1024;
    if inodes > max {
        return Err(TenantError::InodesTooMany { inodes, max, size });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names() {
        for n in ["a", "acme", "acme-blog", "a1", "x-2-y", &"a".repeat(63)] {
            check_name(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn bad_names_say_what_and_where() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("a/b", "character 2 is '/'"),
            ("..", "\"..\""),
            ("a..b", "\"..\""),
            ("a\0b", "character 2 is NUL"),
            ("Acme", "upper case 'A'"),
            ("acMe", "character 3 is upper case 'M'"),
            ("1abc", "starts with '1'"),
            ("-abc", "starts with '-'"),
            ("abc-", "ends with '-'"),
            ("a_b", "character 2 is '_'"),
            ("a.b", "character 2 is '.'"),
            ("é", "character 1"),
        ];
        for (name, want) in cases {
            let e = check_name(name).expect_err(name).to_string();
            assert!(e.contains(want), "{name:?}: {e}");
            assert!(e.contains("lower-case letters"), "{e}: says how to fix");
        }
        let long = "a".repeat(300);
        let e = check_name(&long).unwrap_err().to_string();
        assert!(e.contains("300 characters long"), "{e}");
        assert!(e.len() < 400, "the name is cut in the message: {e}");
        assert!(check_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5G").unwrap(), 5 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("500m").unwrap(), 500 << 20);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("8k").unwrap(), 8192);
        for bad in [
            "",
            "G",
            "-5G",
            "5X",
            "5.5G",
            "99999999999999999999",
            "17179869184T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(format_size(5 << 30), "5G");
        assert_eq!(format_size(96 << 20), "96M");
        assert_eq!(format_size(1536 << 20), "1536M");
    }

    #[test]
    fn limits() {
        let p = std::path::Path::new("/var/lib/sgrun");
        check_limits(64 << 20, 2048, Some((1 << 30, p))).unwrap();
        let e = check_limits(63 << 20, 2048, None).unwrap_err();
        assert!(matches!(e, TenantError::SizeTooSmall { .. }), "{e}");
        let e = check_limits(2 << 30, 2048, Some((1 << 30, p))).unwrap_err();
        assert!(e.to_string().contains("/var/lib/sgrun"), "{e}");
        let e = check_limits(64 << 20, 1023, None).unwrap_err();
        assert!(matches!(e, TenantError::InodesTooFew { .. }), "{e}");
        let e = check_limits(64 << 20, 65537, None).unwrap_err();
        assert!(matches!(e, TenantError::InodesTooMany { .. }), "{e}");
    }
}
