//! `sgrun tenant create | ls | show | usage | resize | rm | mount`: the CLI of sgrun-tenants.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sgrun_tenants::validate::{format_size, parse_size};
use sgrun_tenants::{BackendKind, CreateRequest, TenantInfo, Tenants, Usage};

const TENANT_HELP: &str = "\
A tenant is a name, a host UID/GID range of 65536 ids (its processes run in a user namespace
mapped to it) and a storage volume with a block and an inode limit.

Backends:
  loop  (default) one ext4 image per tenant, on a loop device, mounted at
        <state-dir>/tenants/NAME/volume; ext4 enforces both limits (ENOSPC).
  dir   a plain directory: NO limits. Development only; every command says so.

Files (--state-dir, env SGRUN_STATE_DIR, default /var/lib/sgrun):
  registry/NAME.json          one record per tenant
  registry/allocations.json   UID/GID ranges (from 1073741824 = 2^30, 65536 each)
  tenants/NAME/volume.ext4    the loop backend's image (sparse)
  tenants/NAME/volume/        the mounted volume, owned by the tenant's mapped root

Examples:
  sgrun tenant create acme --storage 5G --inodes 500000
  sgrun tenant ls
  sgrun tenant show acme --json
  sgrun tenant usage acme
  sgrun tenant resize acme --storage 10G
  sgrun tenant rm acme              unmount; keep data and UID range
  sgrun tenant mount acme           bring it back
  sgrun tenant rm --purge acme      delete data, free the range
  sgrun tenant mount --all          after a host restart

See docs/tenants.md.";

#[derive(Subcommand, Debug)]
#[command(after_long_help = TENANT_HELP)]
pub enum TenantCommand {
    /// Create a tenant: a UID/GID range and a volume with block and inode limits, mounted
    #[command(after_long_help = "\
Names: 1 to 63 lower-case letters, digits and dashes, starting with a letter.
Sizes: K, M, G, T (powers of 1024); at least 64M, at most the free space of the filesystem
holding the state directory. Inodes: at least 1024, at most one per KiB of storage; ext4
rounds the count up to whole inode tables (`show` reports the real limit).
A create that fails leaves nothing behind: no loop device, mount, image, registry entry or
UID range.

Examples:
  sgrun tenant create acme --storage 5G --inodes 500000
  sgrun tenant create dev1 --storage 1G --inodes 10000 --backend dir   (no limits!)")]
    Create {
        /// Tenant name, e.g. acme-blog
        name: String,
        /// Block limit, e.g. 500M, 5G
        #[arg(long, value_name = "SIZE")]
        storage: String,
        /// Inode limit (number of files and directories)
        #[arg(long, value_name = "N")]
        inodes: u64,
        /// Storage backend
        #[arg(long, value_enum, default_value = "loop")]
        backend: BackendArg,
        /// First host uid of the ranges handed out (a multiple of 65536)
        #[arg(long, env = "SGRUN_TENANT_UID_BASE", default_value_t = sgrun_tenants::DEFAULT_RANGE_BASE, value_name = "UID")]
        uid_base: u64,
    },
    /// List tenants: name, state, backend, UID range, limits, mounted
    #[command(visible_alias = "list")]
    Ls {
        /// Print JSON (an array of the records `show --json` prints)
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant: UID range, backend, limits, mount path, whether it is mounted
    Show {
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Blocks and inodes used against the limits
    Usage {
        name: String,
        /// Print JSON (bytes_used, bytes_limit, inodes_used, inodes_limit)
        #[arg(long)]
        json: bool,
    },
    /// Grow a tenant's volume (online; shrinking is refused). The inode limit grows in
    /// proportion
    #[command(after_long_help = "Example:\n  sgrun tenant resize acme --storage 10G")]
    Resize {
        name: String,
        /// The new block limit, larger than the current one
        #[arg(long, value_name = "SIZE")]
        storage: String,
    },
    /// Remove a tenant: unmount and detach its volume, keeping data and UID range; with
    /// --purge, delete its data and free its range
    #[command(
        visible_alias = "remove",
        after_long_help = "\
Without --purge the tenant is only taken off line: `sgrun tenant mount NAME` brings it back,
and its UID range is never handed to another tenant. --purge deletes its volume for good.

Examples:
  sgrun tenant rm acme
  sgrun tenant rm --purge acme"
    )]
    Rm {
        name: String,
        /// Delete the data and free the UID range
        #[arg(long)]
        purge: bool,
    },
    /// Mount a tenant's volume (and bring back a removed tenant), or every active tenant's
    /// volume with --all (after a host restart)
    #[command(
        after_long_help = "Examples:\n  sgrun tenant mount --all\n  sgrun tenant mount acme"
    )]
    Mount {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Every active tenant
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum BackendArg {
    Loop,
    Dir,
}

impl From<BackendArg> for BackendKind {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Loop => BackendKind::Loop,
            BackendArg::Dir => BackendKind::Dir,
        }
    }
}

fn warn_dir(name: &str) {
    eprintln!(
        "sgrun: warning: tenant {name} uses the dir backend, which enforces NO storage or inode limits (development only)"
    );
}

fn warn_if_dir(info: &TenantInfo) {
    if !info.enforces_limits {
        warn_dir(&info.record.name);
    }
}

pub fn run(cmd: TenantCommand, state_dir: &Path) -> Result<u8> {
    let tenants = Tenants::new(state_dir);
    match cmd {
        TenantCommand::Create {
            name,
            storage,
            inodes,
            backend,
            uid_base,
        } => {
            let size = parse_size(&storage).context("--storage")?;
            let backend = BackendKind::from(backend);
            if backend == BackendKind::Dir {
                warn_dir(&name);
            }
            let started = std::time::Instant::now();
            let info = tenants.with_range_base(uid_base).create(&CreateRequest {
                name,
                storage_bytes: size,
                inodes,
                backend,
            })?;
            println!(
                "tenant {} created in {} ms: uids/gids {}, {} storage, {} inodes, mounted at {}",
                info.record.name,
                started.elapsed().as_millis(),
                info.uid_range,
                format_size(info.record.storage_bytes),
                info.record.inodes,
                info.mount_path.display()
            );
        }
        TenantCommand::Ls { json } => {
            let list = tenants.list()?;
            for t in &list {
                warn_if_dir(t);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<20} {:<9} {:<7} {:<23} {:>8} {:>10} MOUNTED",
                    "NAME", "STATE", "BACKEND", "UIDS", "STORAGE", "INODES"
                );
                for t in &list {
                    println!(
                        "{:<20} {:<9} {:<7} {:<23} {:>8} {:>10} {}",
                        t.record.name,
                        state_str(t),
                        t.record.backend.as_str(),
                        t.uid_range,
                        format_size(t.record.storage_bytes),
                        t.record.inodes,
                        if t.mounted { "yes" } else { "no" }
                    );
                }
            }
        }
        TenantCommand::Show { name, json } => {
            let t = tenants.show(&name)?;
            warn_if_dir(&t);
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                let r = &t.record;
                println!("name:        {}", r.name);
                println!("state:       {}", state_str(&t));
                println!("uid range:   {} ({} ids)", t.uid_range, r.uid_count);
                println!("gid range:   {} ({} ids)", t.uid_range, r.uid_count);
                println!(
                    "backend:     {}{}",
                    r.backend.as_str(),
                    if t.enforces_limits {
                        ""
                    } else {
                        " (NO limits enforced)"
                    }
                );
                println!(
                    "storage:     {} ({} bytes)",
                    format_size(r.storage_bytes),
                    r.storage_bytes
                );
                println!("inodes:      {}", r.inodes);
                println!("mount path:  {}", t.mount_path.display());
                if let Some(img) = &t.image {
                    println!("image:       {}", img.display());
                }
                println!(
                    "mounted:     {}{}",
                    if t.mounted { "yes" } else { "no" },
                    t.device
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                );
            }
        }
        TenantCommand::Usage { name, json } => {
            let t = tenants.show(&name)?;
            warn_if_dir(&t);
            let u = tenants.usage(&name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&u)?);
            } else {
                print_usage(&u);
            }
        }
        TenantCommand::Resize { name, storage } => {
            let size = parse_size(&storage).context("--storage")?;
            let before = tenants.show(&name)?;
            warn_if_dir(&before);
            if size == before.record.storage_bytes {
                println!("tenant {name} already has {}", format_size(size));
                return Ok(0);
            }
            let t = tenants.resize(&name, size)?;
            println!(
                "tenant {name} resized: {} -> {} storage, {} inodes",
                format_size(before.record.storage_bytes),
                format_size(t.record.storage_bytes),
                t.record.inodes
            );
        }
        TenantCommand::Rm { name, purge } => {
            if let Ok(t) = tenants.show(&name) {
                warn_if_dir(&t);
            }
            let started = std::time::Instant::now();
            tenants.remove(&name, purge)?;
            if purge {
                println!(
                    "tenant {name} purged in {} ms: data deleted, UID range freed",
                    started.elapsed().as_millis()
                );
            } else {
                println!(
                    "tenant {name} removed in {} ms: volume unmounted; data and UID range kept (`sgrun tenant mount {name}` brings it back, `--purge` deletes it)",
                    started.elapsed().as_millis()
                );
            }
        }
        TenantCommand::Mount {
            name: Some(name), ..
        } => {
            let mounted = tenants.mount(&name)?;
            let t = tenants.show(&name)?;
            warn_if_dir(&t);
            println!(
                "tenant {name}: {} at {}",
                if mounted {
                    "mounted"
                } else {
                    "already mounted"
                },
                t.mount_path.display()
            );
        }
        TenantCommand::Mount { name: None, .. } => {
            let mut failed = Vec::new();
            for (name, r) in tenants.mount_all()? {
                match r {
                    Ok(true) => println!("tenant {name}: mounted"),
                    Ok(false) => println!("tenant {name}: already mounted"),
                    Err(e) => {
                        eprintln!("sgrun: tenant {name}: {}", error_chain(&e));
                        failed.push(name);
                    }
                }
            }
            if !failed.is_empty() {
                bail!("cannot mount the volumes of {}", failed.join(", "));
            }
        }
    }
    Ok(0)
}

fn state_str(t: &TenantInfo) -> &'static str {
    match t.record.state {
        sgrun_tenants::TenantState::Creating => "creating",
        sgrun_tenants::TenantState::Active => "active",
        sgrun_tenants::TenantState::Removed => "removed",
    }
}

fn print_usage(u: &Usage) {
    let pct = |used: u64, limit: Option<u64>| match limit {
        Some(l) if l > 0 => format!("{:.1}%", used as f64 * 100.0 / l as f64),
        _ => "no limit".to_string(),
    };
    let lim = |l: Option<u64>, f: &dyn Fn(u64) -> String| l.map(f).unwrap_or_else(|| "-".into());
    println!(
        "blocks: {} used of {} ({})",
        format_size(u.bytes_used),
        lim(u.bytes_limit, &format_size),
        pct(u.bytes_used, u.bytes_limit)
    );
    println!(
        "inodes: {} used of {} ({})",
        u.inodes_used,
        lim(u.inodes_limit, &|n| n.to_string()),
        pct(u.inodes_used, u.inodes_limit)
    );
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}
