//! What may go into nginx.conf. Every string the proxy writes into the configuration comes from
//! a route (domain, socket path, site name) or from the proxy's own settings (state and run
//! directories, listen addresses), and each one is checked here against a character set in
//! which nginx's syntax has no meaning: no whitespace (which separates arguments), no `;`
//! `{` `}` (which end directives and blocks), no quotes or `\` (strings and escapes), no `#`
//! (comments), no `$` (variables), no `:` (which would end the path in a `unix:` upstream).
//! Nothing is escaped: a value either passes unchanged or is refused with a reason.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path};

use crate::error::{ProxyError, Result};
use crate::Route;

/// Longest domain name (RFC 1035, without the trailing dot).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;
/// `sizeof(sockaddr_un.sun_path)` is 108 on Linux, one of which is the terminating NUL; nginx
/// refuses a longer `unix:` path and so would connect(2).
pub const MAX_SOCKET_PATH_LEN: usize = 107;
/// Site names are only for comments, logs and errors; the bound keeps them readable.
pub const MAX_SITE_LEN: usize = 255;

/// The characters allowed in paths written into nginx.conf (sockets, state and run dirs).
fn path_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-')
}

/// A domain as the proxy accepts it: a lower-case DNS host name (see the module docs of the
/// crate). Returns the reason for refusing it as an [`ProxyError::InvalidDomain`].
pub fn validate_domain(domain: &str, site: &str) -> Result<()> {
    let bad = |reason: String| ProxyError::InvalidDomain {
        domain: domain.to_string(),
        site: site.to_string(),
        reason,
    };
    if domain.is_empty() {
        return Err(bad("is empty".into()));
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(bad(format!(
            "is {} bytes long, more than the {MAX_DOMAIN_LEN} a DNS name may have",
            domain.len()
        )));
    }
    if domain.ends_with('.') {
        return Err(bad(
            "ends with a dot; write it without the trailing dot".into()
        ));
    }
    if domain.contains('*') {
        return Err(bad(
            "is a wildcard, which the proxy does not route; add each name as its own route".into(),
        ));
    }
    if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad(format!(
            "has upper-case letters; write it in lower case ({:?})",
            domain.to_ascii_lowercase()
        )));
    }
    if let Some(c) = domain
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(bad(format!(
            "contains {c:?}, which a domain may not (only a-z, 0-9, '-' and '.')"
        )));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad(
            "has a single label; a site's domain has at least two (e.g. example.com)".into(),
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(bad(
                "has an empty label (a leading dot or two dots in a row)".into(),
            ));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(bad(format!(
                "has a label of {} bytes, more than the {MAX_LABEL_LEN} DNS allows",
                label.len()
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad(format!(
                "has the label {label:?}, which starts or ends with '-'"
            )));
        }
    }
    // An all-digit last label is an IPv4 address (or a typo of one), never a registrable name:
    // routing an address by Host would catch requests meant for the default server.
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad(
            "ends in an all-digit label, like an IP address; route a name, not an address".into(),
        ));
    }
    Ok(())
}

/// A socket path as the proxy accepts it (pure checks; [`check_socket_on_disk`] looks at the
/// file system).
pub fn validate_socket_path(path: &Path, site: &str) -> Result<()> {
    let bad = |reason: String| ProxyError::InvalidSocket {
        path: path.to_path_buf(),
        site: site.to_string(),
        reason,
    };
    let bytes = path.as_os_str().as_bytes();
    if !path.is_absolute() {
        return Err(bad("is not absolute".into()));
    }
    if bytes.len() > MAX_SOCKET_PATH_LEN {
        return Err(bad(format!(
            "is {} bytes long, more than the {MAX_SOCKET_PATH_LEN} a unix socket address holds; use a shorter directory",
            bytes.len()
        )));
    }
    if let Some(b) = bytes.iter().find(|b| !path_byte_ok(**b)) {
        return Err(bad(format!(
            "contains {:?}, which could change the meaning of the nginx configuration",
            char::from(*b)
        )));
    }
    check_normal(path).map_err(bad)
}

/// `..`, `.`, `//` and a trailing `/` are refused so that one socket has one spelling (the
/// route shown by `status` is the path nginx connects to) and no path climbs out of a site's
/// directory.
fn check_normal(path: &Path) -> std::result::Result<(), String> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.windows(2).any(|w| w == b"//") || (bytes.len() > 1 && bytes.ends_with(b"/")) {
        return Err("has an empty component ('//' or a trailing '/')".into());
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || bytes.ends_with(b"/.")
        || bytes.windows(3).any(|w| w == b"/./")
    {
        return Err("has a '.' or '..' component; give the normalised path".into());
    }
    Ok(())
}

/// The file system side of a socket path. A missing socket is fine (the site is stopped, and
/// nginx answers "not running" until it starts). An existing path must be a socket, not a
/// symlink: nginx follows symlinks on connect(2), so a link planted by a tenant in its own
/// socket directory would point the proxy's workers at any socket www-data can reach.
pub fn check_socket_on_disk(path: &Path, site: &str) -> Result<()> {
    let bad = |reason: String| ProxyError::InvalidSocket {
        path: path.to_path_buf(),
        site: site.to_string(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(bad(
            "is a symbolic link; the proxy connects only to the socket itself".into(),
        )),
        Ok(m) if !m.file_type().is_socket() => Err(bad(
            "exists but is not a unix socket (a site's nginx creates it there)".into(),
        )),
        Ok(_) => Ok(()),
        // Missing, or not reachable right now (a tenant's volume being remounted): the route
        // stays, and nginx answers "not running" until the socket is there.
        Err(_) => Ok(()),
    }
}

/// A site name is written into a comment above its server block.
pub fn validate_site(site: &str) -> Result<()> {
    let bad = |reason: String| ProxyError::InvalidSite {
        site: site.to_string(),
        reason,
    };
    if site.is_empty() {
        return Err(bad("is empty".into()));
    }
    if site.len() > MAX_SITE_LEN {
        return Err(bad(format!(
            "is {} bytes long, more than {MAX_SITE_LEN}",
            site.len()
        )));
    }
    if let Some(c) = site
        .chars()
        .find(|c| !(c.is_ascii() && path_byte_ok(*c as u8)))
    {
        return Err(bad(format!("contains {c:?}")));
    }
    Ok(())
}

/// Everything about one route that can be decided without nginx.
pub fn validate_route(route: &Route) -> Result<()> {
    validate_site(&route.site)?;
    validate_domain(&route.domain, &route.site)?;
    validate_socket_path(&route.socket, &route.site)?;
    check_socket_on_disk(&route.socket, &route.site)
}

/// The proxy's own directories are written into nginx.conf too (pid, logs, temp paths).
pub fn validate_setting_dir(what: &'static str, path: &Path) -> Result<()> {
    let bad = |reason: String| ProxyError::InvalidSetting {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let bytes = path.as_os_str().as_bytes();
    if !path.is_absolute() {
        return Err(bad("is not absolute; give an absolute path".into()));
    }
    if let Some(b) = bytes.iter().find(|b| !path_byte_ok(**b)) {
        return Err(bad(format!(
            "contains {:?}; the proxy writes it into nginx.conf, so only A-Z a-z 0-9 / . _ - are allowed",
            char::from(*b)
        )));
    }
    check_normal(path).map_err(bad)
}

/// Listen addresses: at least one, no duplicates (nginx refuses a duplicate `listen` in one
/// server), and no IPv6 scope id, which nginx's `listen` does not parse.
pub fn validate_listen(listen: &[SocketAddr]) -> Result<()> {
    if listen.is_empty() {
        return Err(ProxyError::InvalidListen {
            addr: "(none)".into(),
            reason: "the proxy needs at least one listen address, e.g. 127.0.0.1:8080".into(),
        });
    }
    let mut seen = HashSet::new();
    for addr in listen {
        if addr.port() == 0 {
            return Err(ProxyError::listen(
                addr,
                "port 0 is not a port to serve on; give a fixed port",
            ));
        }
        if let SocketAddr::V6(v6) = addr {
            if v6.scope_id() != 0 || v6.flowinfo() != 0 {
                return Err(ProxyError::listen(
                    addr,
                    "an IPv6 scope id or flow label cannot be given to nginx; use a global or loopback address",
                ));
            }
        }
        if !seen.insert(addr) {
            return Err(ProxyError::listen(addr, "is listed twice; list it once"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn domain_ok(d: &str) -> bool {
        validate_domain(d, "t/s").is_ok()
    }

    #[test]
    fn domains() {
        for good in [
            "example.com",
            "www.example.com",
            "a-b.example.co.uk",
            "xn--bcher-kva.example",
            "1password.com",
            "a.b",
        ] {
            assert!(domain_ok(good), "{good} should pass");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        let max_label = format!("{}.com", "a".repeat(63));
        assert!(!domain_ok(&long_label));
        assert!(domain_ok(&max_label));
        // 253 bytes exactly: four 62-byte labels, three dots, and "a.b" style tail.
        let l = "a".repeat(62);
        let max = format!("{l}.{l}.{l}.{l}.com");
        assert_eq!(max.len(), 255);
        assert!(!domain_ok(&max));
        let max = format!("{l}.{l}.{l}.{}.com", "a".repeat(60));
        assert_eq!(max.len(), 253);
        assert!(domain_ok(&max));
        for bad in [
            "",
            "com",
            "example.com.",
            "*.example.com",
            "Example.com",
            ".example.com",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "127.0.0.1",
            "a.com;",
            "a.com}",
            "a.com\nreturn 200 x",
            "a.com b.com",
            "\"a.com\"",
            "'a.com'",
            "$host.com",
            "a.com#",
            "ex\u{e4}mple.com",
        ] {
            assert!(!domain_ok(bad), "{bad:?} should be refused");
        }
    }

    #[test]
    fn socket_paths() {
        let ok = |p: &str| validate_socket_path(Path::new(p), "t/s").is_ok();
        assert!(ok("/run/sgrun/sites/acme/blog/http/http.sock"));
        assert!(ok(&format!("/{}", "a".repeat(106))));
        assert!(!ok(&format!("/{}", "a".repeat(107))));
        for bad in [
            "relative/http.sock",
            "/run/a b/http.sock",
            "/run/a;b",
            "/run/a}b",
            "/run/a\nb",
            "/run/a:b",
            "/run/$x",
            "/run/\"x\"",
            "/run/../etc/x.sock",
            "/run/./x.sock",
            "/run//x.sock",
            "/run/x/",
        ] {
            assert!(!ok(bad), "{bad:?} should be refused");
        }
        // Not UTF-8 at all: refused by the byte check, shown escaped.
        let raw = PathBuf::from(std::ffi::OsStr::from_bytes(b"/run/\xff.sock"));
        let e = validate_socket_path(&raw, "t/s").unwrap_err().to_string();
        assert!(e.contains("\\xFF") || e.contains("\\u{ff}"), "{e}");
    }

    #[test]
    fn hostile_input_is_shown_escaped() {
        let e = validate_domain("a.com;\n}", "t/s").unwrap_err().to_string();
        assert!(e.contains("\"a.com;\\n}\""), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn sites_and_settings() {
        assert!(validate_site("acme/blog").is_ok());
        assert!(validate_site("acme/blog\n").is_err());
        assert!(validate_site("acme blog").is_err());
        assert!(validate_setting_dir("state dir", Path::new("/var/lib/sgrun/proxy")).is_ok());
        assert!(validate_setting_dir("state dir", Path::new("/var/lib/sg run")).is_err());
        assert!(validate_setting_dir("state dir", Path::new("var/lib")).is_err());
    }

    #[test]
    fn listen_addresses() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let b: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(validate_listen(&[a, b]).is_ok());
        assert!(validate_listen(&[]).is_err());
        assert!(validate_listen(&[a, a]).is_err());
        assert!(validate_listen(&["127.0.0.1:0".parse().unwrap()]).is_err());
        assert!(validate_listen(&["[fe80::1%2]:80".parse().unwrap()]).is_err());
    }
}
