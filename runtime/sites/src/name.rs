//! Site references (`TENANT/SITE`), site names and domains: pure checks of user input.

use std::fmt;

use crate::error::{Result, SiteError};

/// One site of one tenant. Both parts follow the tenant-name rules (`[a-z][a-z0-9-]{0,62}`):
/// they name directories, a container id, a cgroup and the container's hostname.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteRef {
    pub tenant: String,
    pub site: String,
}

impl SiteRef {
    /// Parses `TENANT/SITE`.
    pub fn parse(input: &str) -> Result<SiteRef> {
        let bad = |reason: &str| SiteError::InvalidRef {
            input: input.chars().take(80).collect(),
            reason: reason.into(),
        };
        let Some((tenant, site)) = input.split_once('/') else {
            return Err(bad("there is no '/' between the tenant and the site"));
        };
        if site.contains('/') {
            return Err(bad("it has more than one '/'"));
        }
        sgrun_tenants::validate::check_name(tenant)?;
        check_site_name(site)?;
        Ok(SiteRef {
            tenant: tenant.into(),
            site: site.into(),
        })
    }

    /// The OCI container id of the site's stack: `tenant.site`. Unique because neither part
    /// may contain a dot.
    pub fn container_id(&self) -> String {
        format!("{}.{}", self.tenant, self.site)
    }
}

impl fmt::Display for SiteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.site)
    }
}

/// A site name: the tenant-name rules, reported as a site name.
pub fn check_site_name(name: &str) -> Result<()> {
    match sgrun_tenants::validate::check_name(name) {
        Ok(()) => Ok(()),
        Err(sgrun_tenants::TenantError::InvalidName { shown, reason }) => {
            Err(SiteError::InvalidName { shown, reason })
        }
        Err(e) => Err(e.into()),
    }
}

/// A domain the front proxy routes to a site: the proxy's own rules (docs/proxy.md), checked
/// at create so that a site never exists with a domain the proxy would refuse.
pub fn check_domain(domain: &str, site: &SiteRef) -> Result<()> {
    sgrun_proxy::validate_domain(domain, &site.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_refs() {
        let r = SiteRef::parse("acme/blog").unwrap();
        assert_eq!(r.container_id(), "acme.blog");
        assert_eq!(r.to_string(), "acme/blog");
        for bad in [
            "acme",
            "acme/",
            "/blog",
            "acme/blog/x",
            "Acme/blog",
            "acme/Blog",
            "acme/b.log",
            "acme/../x",
            "acme/-x",
        ] {
            assert!(SiteRef::parse(bad).is_err(), "{bad}");
        }
        let e = SiteRef::parse("acme/Blog").unwrap_err().to_string();
        assert!(e.contains("site name") && e.contains("upper case"), "{e}");
    }

    #[test]
    fn domains() {
        let r = SiteRef::parse("acme/blog").unwrap();
        for good in ["blog.example.test", "a.localhost", "x-1.acme.localhost"] {
            check_domain(good, &r).unwrap();
        }
        for bad in [
            "",
            "localhost",
            "Blog.example",
            "a..b",
            "*.a.b",
            "a;b.c",
            "a}.b",
            "a\n.b",
        ] {
            assert!(check_domain(bad, &r).is_err(), "{bad:?}");
        }
    }
}
