//! sgrun images: the read-only base trees that tenants' sites run on.
//!
//! - [`Store`]: the content-addressed store under `<state-dir>/images/` (layout, locking and
//!   the contract with the runtime: [`Store::resolve`], [`Store::acquire`],
//!   [`Store::release`]); see docs/images.md;
//! - [`build`]: recipes (`images/<name>/recipe.toml`) built with mmdebstrap;
//! - [`import`] + [`unpack`]: docker-archive and OCI layouts, unpacked with fd-relative calls
//!   that refuse every hostile entry;
//! - [`manifest`]: the canonical tree manifest whose sha256 is the image id, and `verify`.

pub mod build;
mod erofs;
pub mod error;
mod fsutil;
pub mod import;
pub mod manifest;
pub mod names;
pub mod recipe;
pub mod store;
pub mod unpack;

pub use error::{ImageError, Result};
pub use store::{
    Committed, Image, ImageMeta, ImageSource, ImportOptions, ImportOutcome, RemoveOutcome, Store,
    User, VerifyReport,
};

/// Default state directory, the same as the tenants' (`--state-dir`, env SGRUN_STATE_DIR).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sgrun";

/// Bytes for people: 1023 B, 12.3 MiB, 1.5 GiB.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Sizes as people write them: 500M, 2G, 1024 (bytes); K, M, G, T are powers of 1024.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let mul = match s[i..]
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return None,
            };
            (&s[..i], mul)
        }
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("5Q"), None);
    }
}
