//! The OCI bundle of a site: config.json for the site image's contract (see
//! images/wordpress/recipe.toml), and the host directories the stack needs with the owners it
//! needs. The bundle is regenerated at every start from the site's record, so a record
//! change (limits, profile) takes effect at the next start and a hand edit never lingers.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use serde_json::{json, Value};
use sgrun_rootfs::beneath::{self, Owner};

use crate::error::{Result, SiteError};
use crate::record::{Layout, SiteRecord};

/// The init the site image must carry (tini as pid 1, the stack's init under it).
pub const SITE_INIT: [&str; 4] = [
    "/usr/bin/tini",
    "-g",
    "--",
    "/usr/local/sbin/sgrun-site-init",
];
/// Where the site's HTTP socket directory appears inside the container.
pub const HTTP_MOUNT: &str = "/run/sgrun-http";
/// www-data in Debian: a fixed id (base-passwd).
const WWW_DATA: u32 = 33;

/// Ids of the image that the host-side directories must belong to.
#[derive(Debug, Clone, Copy)]
pub struct ImageIds {
    pub mysql_uid: u32,
    pub mysql_gid: u32,
}

/// Reads one file of the image beneath its root without following any symlink (an imported
/// image may carry `/etc/passwd -> /etc/shadow` of the host).
fn read_image_file(rootfs: &Path, rel: &str) -> std::io::Result<String> {
    let root = File::open(rootfs)?;
    let fd = sgrun_rootfs::sys::openat2(
        root.as_fd(),
        rel,
        libc::O_RDONLY,
        0,
        sgrun_rootfs::sys::BENEATH,
    )?;
    let mut text = String::new();
    File::from(fd).take(4 << 20).read_to_string(&mut text)?;
    Ok(text)
}

fn id_of(db: &str, name: &str) -> Option<u32> {
    db.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
}

/// Checks that `rootfs` is a site image and reads the ids the host prepares directories for.
pub fn image_ids(site: &str, image: &str, rootfs: &Path) -> Result<ImageIds> {
    let not_site = |reason: String| SiteError::NotASiteImage {
        site: site.into(),
        image: image.into(),
        reason,
    };
    for exe in [SITE_INIT[0], SITE_INIT[3]] {
        let rel = exe.trim_start_matches('/');
        let root = File::open(rootfs).map_err(SiteError::io("open image root", rootfs))?;
        sgrun_rootfs::sys::openat2(
            root.as_fd(),
            rel,
            libc::O_PATH,
            0,
            sgrun_rootfs::sys::BENEATH,
        )
        .map_err(|e| {
            not_site(format!(
                "it has no {exe} ({e}); build it from images/wordpress"
            ))
        })?;
    }
    let passwd =
        read_image_file(rootfs, "etc/passwd").map_err(|e| not_site(format!("/etc/passwd: {e}")))?;
    let group =
        read_image_file(rootfs, "etc/group").map_err(|e| not_site(format!("/etc/group: {e}")))?;
    let mysql_uid =
        id_of(&passwd, "mysql").ok_or_else(|| not_site("no mysql user in /etc/passwd".into()))?;
    let mysql_gid =
        id_of(&group, "mysql").ok_or_else(|| not_site("no mysql group in /etc/group".into()))?;
    if mysql_uid >= 65536 || mysql_gid >= 65536 {
        return Err(not_site(format!(
            "mysql ids {mysql_uid}:{mysql_gid} are outside the tenant's 65536 ids"
        )));
    }
    Ok(ImageIds {
        mysql_uid,
        mysql_gid,
    })
}

/// The site's data directory on the tenant's volume, with the owners the stack's init
/// checks (it has no CAP_CHOWN): `sites/<site>` root 0755, `mysql/` mysql 0700,
/// `wp-content/` www-data 0755, all in the tenant's ids. Every component is opened beneath
/// the volume without following symlinks; existing directories are left as they are.
pub fn prepare_data(volume: &Path, site: &str, uid_base: u32, ids: ImageIds) -> Result<()> {
    let vol = File::open(volume).map_err(SiteError::io("open tenant volume", volume))?;
    let owner = |uid: u32, gid: u32, mode| Owner {
        uid: uid_base + uid,
        gid: uid_base + gid,
        mode,
    };
    let rel = format!("sites/{site}");
    let data = beneath::ensure_dir(vol.as_fd(), volume, &rel, owner(0, 0, 0o755))?;
    let data_path = volume.join(&rel);
    beneath::ensure_dir(
        data.as_fd(),
        &data_path,
        "mysql",
        owner(ids.mysql_uid, ids.mysql_gid, 0o700),
    )?;
    beneath::ensure_dir(
        data.as_fd(),
        &data_path,
        "wp-content",
        owner(WWW_DATA, WWW_DATA, 0o755),
    )?;
    Ok(())
}

fn tmpfs(dst: &str, extra: &[&str]) -> Value {
    let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
    options.extend(extra.iter().map(|s| s.to_string()));
    json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": options})
}

/// config.json for the site. The tenant, image and site annotations make sgrun run it on
/// the image's EROFS (the root is read-only), idmapped into the tenant's ids, with the data
/// at /srv/site (docs/rootfs.md); the profile annotation picks its seccomp class.
pub fn config(layout: &Layout, rec: &SiteRecord, image_rootfs: &Path, ids: ImageIds) -> Value {
    let r = rec.site_ref();
    let id = r.container_id();
    let caps = ["CAP_SETUID", "CAP_SETGID", "CAP_KILL"];
    let mut spec = sgrun_engine::features::default_spec(false);
    spec["root"] = json!({"path": image_rootfs, "readonly": true});
    spec["hostname"] = json!(rec.site);
    spec["process"] = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": SITE_INIT,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
                format!("SGRUN_SITE={r}"), format!("SGRUN_SITE_DOMAIN={}", rec.domain)],
        "cwd": "/",
        // root in the container with three capabilities (measured: tests/wordpress/README.md);
        // no ambient set: execve keeps a root process's bounding set
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                         "inheritable": [], "ambient": []},
        "noNewPrivileges": true,
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096}],
    });
    let muid = format!("uid={}", ids.mysql_uid);
    let mgid = format!("gid={}", ids.mysql_gid);
    let mounts = spec["mounts"]
        .as_array_mut()
        .expect("default spec has mounts");
    mounts.extend([
        tmpfs("/tmp", &["mode=1777", "size=128m"]),
        tmpfs("/run", &["noexec", "mode=755", "size=16m"]),
        // after /run: on top of it
        tmpfs(
            "/run/mysqld",
            &["noexec", "mode=755", "size=1m", &muid, &mgid],
        ),
        json!({"destination": HTTP_MOUNT, "type": "bind", "source": layout.http_dir(&r),
               "options": ["bind", "rw", "nosuid", "nodev", "noexec"]}),
        tmpfs("/var/log", &["noexec", "mode=755", "size=16m"]),
        // nginx's request-body buffers, up to client_max_body_size; 755: the nginx master
        // (root without CAP_DAC_OVERRIDE) must search it
        tmpfs(
            "/var/lib/nginx",
            &["noexec", "mode=755", "size=128m", "uid=33", "gid=33"],
        ),
        tmpfs(
            "/var/lib/php/sessions",
            &["noexec", "mode=1733", "size=16m"],
        ),
    ]);
    let linux = &mut spec["linux"];
    linux["cgroupsPath"] = json!(format!("/sgrun/{id}"));
    linux["resources"] = json!({
        "memory": {"limit": rec.limits.memory_bytes},
        "pids": {"limit": rec.limits.pids},
        "cpu": {"quota": rec.limits.cpu_milli as i64 * 100, "period": 100_000u64},
    });
    spec["annotations"] = json!({
        "io.sgrun.tenant": rec.tenant,
        "io.sgrun.image": rec.image,
        "io.sgrun.site": rec.site,
        "io.sgrun.profile": rec.profile,
        "io.sgrun.restart": rec.restart.as_str(),
        "io.sgrun.restart-backoff-ms": rec.restart_backoff_ms.to_string(),
        "io.sgrun.domain": rec.domain,
    });
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_passwd() {
        let db = "root:x:0:0::/root:/bin/sh\nmysql:x:101:102::/nonexistent:/bin/false\n";
        assert_eq!(id_of(db, "mysql"), Some(101));
        assert_eq!(id_of(db, "nobody"), None);
    }
}
