//! Pure logic on the container's config: which tenant, image and site it asks for (the
//! annotations), and the user namespace it is forced into. No I/O; unit-tested.

use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Spec,
};

use crate::error::{Result, RootfsError};

pub const TENANT: &str = "io.sgrun.tenant";
pub const IMAGE: &str = "io.sgrun.image";
pub const SITE: &str = "io.sgrun.site";

/// Ids per tenant range (sgrun_tenants::RANGE_SIZE), all of them mapped.
pub const MAP_SIZE: u32 = 65536;

/// What a tenant container's annotations ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub tenant: String,
    pub image: String,
    pub site: String,
}

/// Site names name a directory of the tenant's volume: letters, digits and `_ + - .`, not
/// starting with a dot, at most 128 characters (a container id fits, which is the default).
pub fn check_site(site: &str) -> std::result::Result<(), String> {
    if site.is_empty() || site.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if site.starts_with('.') {
        return Err("must not start with `.`".into());
    }
    if let Some((i, c)) = site
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || "_+-.".contains(*c)))
    {
        return Err(format!(
            "character {c:?} at {i} is not allowed (letters, digits and `_ + - .` only)"
        ));
    }
    Ok(())
}

/// `None` when the container is not a tenant's (no io.sgrun.tenant): it runs as the config
/// says, as before. A site or image annotation without a tenant is an error, not ignored.
pub fn request(id: &str, spec: &Spec) -> Result<Option<Request>> {
    let ann = spec.annotations().clone().unwrap_or_default();
    let Some(tenant) = ann.get(TENANT) else {
        for key in [IMAGE, SITE] {
            if ann.contains_key(key) {
                return Err(RootfsError::AnnotationWithoutTenant { key });
            }
        }
        return Ok(None);
    };
    sgrun_tenants::validate::check_name(tenant)?;
    let image = ann.get(IMAGE).ok_or_else(|| RootfsError::InvalidAnnotation {
        key: IMAGE,
        value: String::new(),
        reason: "missing: a tenant's container runs on an image from the store; name one (see `sgrun image ls`)".into(),
    })?;
    crate::image_ref::check_name(image).map_err(|reason| RootfsError::InvalidAnnotation {
        key: IMAGE,
        value: image.clone(),
        reason,
    })?;
    let site = ann.get(SITE).cloned().unwrap_or_else(|| id.to_string());
    check_site(&site).map_err(|reason| RootfsError::InvalidAnnotation {
        key: SITE,
        value: site.clone(),
        reason,
    })?;
    Ok(Some(Request {
        tenant: tenant.clone(),
        image: image.clone(),
        site,
    }))
}

fn mapping(uid_base: u32) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(uid_base)
        .size(MAP_SIZE)
        .build()
        .expect("all fields set")
}

fn describe(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{}->{} ({})", m.container_id(), m.host_id(), m.size()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Put the container into a new user namespace mapped to the tenant's range: 0 -> uid_base,
/// 65536 ids, for uids and gids. A config without a user namespace gets one; a config that
/// already gives exactly this mapping is left as is; anything else (other ids, a user
/// namespace joined by path) is refused: tenants cannot choose their ids.
pub fn force_user_namespace(spec: &mut Spec, tenant: &str, uid_base: u64) -> Result<()> {
    let base = u32::try_from(uid_base).expect("tenant ranges end below 2^31");
    let want = vec![mapping(base)];
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    let foreign = |pointer: &'static str, found: String| RootfsError::ForeignIds {
        tenant: tenant.into(),
        pointer,
        found,
        uid_base,
    };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    match namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User)
    {
        Some(ns) if ns.path().is_some() => {
            return Err(foreign(
                "/linux/namespaces joins the user namespace",
                format!("{:?}", ns.path().as_ref().expect("checked")),
            ))
        }
        Some(_) => {}
        None => {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(LinuxNamespaceType::User);
            namespaces.push(ns);
            linux.set_namespaces(Some(namespaces));
        }
    }
    for (pointer, given) in [
        ("/linux/uidMappings maps", linux.uid_mappings().clone()),
        ("/linux/gidMappings maps", linux.gid_mappings().clone()),
    ] {
        match given {
            None => {}
            Some(g) if g.is_empty() || g == want => {}
            Some(g) => return Err(foreign(pointer, describe(&g))),
        }
    }
    linux.set_uid_mappings(Some(want.clone()));
    linux.set_gid_mappings(Some(want));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn spec(ann: &[(&str, &str)]) -> Spec {
        let mut s = Spec::default();
        s.set_annotations(Some(
            ann.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ));
        s
    }

    #[test]
    fn annotations() {
        assert_eq!(request("c1", &spec(&[])).unwrap(), None);
        let r = request("c1", &spec(&[(TENANT, "acme"), (IMAGE, "wordpress")]))
            .unwrap()
            .unwrap();
        assert_eq!(r.site, "c1");
        let r = request(
            "c1",
            &spec(&[(TENANT, "acme"), (IMAGE, "wp"), (SITE, "blog")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.tenant.as_str(), r.site.as_str()), ("acme", "blog"));
        for bad in [
            vec![(TENANT, "Acme"), (IMAGE, "wp")],
            vec![(TENANT, "acme")],
            vec![(TENANT, "acme"), (IMAGE, "../x")],
            vec![(TENANT, "acme"), (IMAGE, "wp"), (SITE, "..")],
            vec![(TENANT, "acme"), (IMAGE, "wp"), (SITE, "a/b")],
            vec![(TENANT, "acme"), (IMAGE, "wp"), (SITE, ".sgrun")],
            vec![(IMAGE, "wp")],
            vec![(SITE, "blog")],
        ] {
            assert!(request("c1", &spec(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_namespace_is_forced() {
        let base = 1 << 30;
        let mut s = Spec::default();
        let before = s
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .len();
        force_user_namespace(&mut s, "acme", base).unwrap();
        let l = s.linux().as_ref().unwrap();
        assert_eq!(l.namespaces().as_ref().unwrap().len(), before + 1);
        assert_eq!(
            l.uid_mappings().as_ref().unwrap(),
            &vec![mapping(base as u32)]
        );
        assert_eq!(
            l.gid_mappings().as_ref().unwrap(),
            &vec![mapping(base as u32)]
        );
        // the same again is fine (a config that states the tenant's own mapping)
        force_user_namespace(&mut s, "acme", base).unwrap();
        assert_eq!(
            s.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap()
                .len(),
            before + 1
        );

        // foreign ids are refused
        let mut s2 = s.clone();
        let mut other = vec![mapping(100_000)];
        s2.linux_mut()
            .as_mut()
            .unwrap()
            .set_uid_mappings(Some(other.clone()));
        let e = force_user_namespace(&mut s2, "acme", base).unwrap_err();
        assert!(
            e.to_string().contains("tenants cannot choose their ids"),
            "{e}"
        );
        other.push(mapping(base as u32));
        let mut s3 = s.clone();
        s3.linux_mut()
            .as_mut()
            .unwrap()
            .set_gid_mappings(Some(other));
        assert!(force_user_namespace(&mut s3, "acme", base).is_err());
        // joining a user namespace by path is refused
        let mut s4 = Spec::default();
        let l = s4.linux_mut().as_mut().unwrap();
        let mut ns = l.namespaces().clone().unwrap();
        let mut u = LinuxNamespace::default();
        u.set_typ(LinuxNamespaceType::User);
        u.set_path(Some("/proc/1/ns/user".into()));
        ns.push(u);
        l.set_namespaces(Some(ns));
        assert!(force_user_namespace(&mut s4, "acme", base).is_err());
    }
}
