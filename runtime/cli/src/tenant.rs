//! `sgrun tenant create | ls | show | usage | resize | rm | mount`: the CLI of sgrun-tenants.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sgrun_tenants::validate::{format_size, parse_size};
use sgrun_tenants::{BackendKind, CreateRequest, TenantInfo, Tenants, Usage};

const TENANT_HELP: &str = "\
A tenant is a name, a host UID/GID range of 65536 ids (its processes run in a user namespace
mapped to it) and a storage volume with a block and an inode limit.

Backends (docs/tenants.md has the table: what each enforces, on which kernels):
  loop           (default) one ext4 image per tenant, on a loop device, mounted at
                 <state-dir>/tenants/NAME/volume; ext4 enforces both limits (ENOSPC).
  btrfs          a subvolume per tenant in the btrfs pool, with a qgroup limit (EDQUOT).
                 Blocks only: btrfs has no inode limit.
  ext4-prjquota  a directory per tenant in an ext4 pool (mkfs -O quota,project, mounted
  xfs-prjquota   -o prjquota) or xfs pool (-o prjquota), with a project quota on blocks and
                 inodes (EDQUOT). Needs a kernel with project quota (QFMT_V2 / XFS_QUOTA).
  dir            a plain directory: NO limits. Development only; every command says so.
The pool backends need a pool first: `sgrun tenant pool create KIND --size 20G` (an image
under the state dir, mounted by sgrun) or `sgrun tenant pool add KIND PATH` (a filesystem
the host mounts). Their volumes are bind-mounted at the same place as loop volumes.

Files (--state-dir, env SGRUN_STATE_DIR, default /var/lib/sgrun):
  registry/NAME.json          one record per tenant
  registry/allocations.json   UID/GID ranges (from 1073741824 = 2^30, 65536 each)
  tenants/NAME/volume.ext4    the loop backend's image (sparse)
  tenants/NAME/volume/        the mounted volume, owned by the tenant's mapped root
  pools/KIND.json             a pool; pools/KIND.img and pools/KIND/ for one sgrun made

Examples:
  sgrun tenant create acme --storage 5G --inodes 500000
  sgrun tenant ls
  sgrun tenant show acme --json
  sgrun tenant usage acme
  sgrun tenant resize acme --storage 10G
  sgrun tenant rm acme              unmount; keep data and UID range
  sgrun tenant mount acme           bring it back
  sgrun tenant rm --purge acme      delete data, free the range
  sgrun tenant mount --all          after a host restart: pools first, then volumes
  sgrun tenant pool create btrfs --size 20G
  sgrun tenant create blog --storage 5G --inodes 100000 --backend btrfs

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
    /// Mount a tenant's volume (and bring back a removed tenant), or every pool and every
    /// active tenant's volume with --all (after a host restart)
    #[command(
        after_long_help = "Examples:\n  sgrun tenant mount --all\n  sgrun tenant mount acme"
    )]
    Mount {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Every pool sgrun made, then every active tenant
        #[arg(long)]
        all: bool,
    },
    /// Pools: the filesystems of the btrfs, ext4-prjquota and xfs-prjquota backends
    #[command(subcommand)]
    Pool(PoolCommand),
}

#[derive(Subcommand, Debug)]
#[command(after_long_help = "\
One pool per backend. `create` makes a sparse image under <state-dir>/pools, formats it for
the backend (btrfs with quotas on; ext4 -O quota,project mounted -o prjquota; xfs mounted
-o prjquota), mounts it at <state-dir>/pools/KIND and mounts it again after a restart
(`sgrun tenant mount --all`, or the first command that needs it). `add` registers a
filesystem the host mounts itself (e.g. a disk in /etc/fstab); sgrun checks it, never mounts
it. The pool must be sgrun's alone: tenants live in <pool>/tenants/NAME.

Examples:
  sgrun tenant pool create btrfs --size 20G
  sgrun tenant pool add xfs-prjquota /srv/tenants      (mounted with -o prjquota)
  sgrun tenant pool ls
  sgrun tenant pool rm btrfs                           (only when no tenant uses it)")]
pub enum PoolCommand {
    /// Make a pool: a sparse image under the state directory, formatted and mounted
    Create {
        #[arg(value_enum)]
        backend: PoolArg,
        /// Size of the image (sparse), at least 300M
        #[arg(long, value_name = "SIZE")]
        size: String,
    },
    /// Register a mounted filesystem as the pool of a backend
    Add {
        #[arg(value_enum)]
        backend: PoolArg,
        /// Its mount point
        path: std::path::PathBuf,
    },
    /// List pools: backend, path, image, mounted, size and free space
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Forget a pool no tenant uses; a pool sgrun made is unmounted and its image deleted
    Rm {
        #[arg(value_enum)]
        backend: PoolArg,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PoolArg {
    Btrfs,
    Ext4Prjquota,
    XfsPrjquota,
}

impl From<PoolArg> for BackendKind {
    fn from(b: PoolArg) -> Self {
        match b {
            PoolArg::Btrfs => BackendKind::Btrfs,
            PoolArg::Ext4Prjquota => BackendKind::Ext4Prjquota,
            PoolArg::XfsPrjquota => BackendKind::XfsPrjquota,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum BackendArg {
    Loop,
    Dir,
    Btrfs,
    Ext4Prjquota,
    XfsPrjquota,
}

impl From<BackendArg> for BackendKind {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Loop => BackendKind::Loop,
            BackendArg::Dir => BackendKind::Dir,
            BackendArg::Btrfs => BackendKind::Btrfs,
            BackendArg::Ext4Prjquota => BackendKind::Ext4Prjquota,
            BackendArg::XfsPrjquota => BackendKind::XfsPrjquota,
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

/// What the inode column says: the limit, or that nothing enforces one.
fn inodes_str(t: &TenantInfo) -> String {
    if t.enforces_inode_limit {
        t.record.inodes.to_string()
    } else {
        "no limit".to_string()
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
                if info.enforces_inode_limit {
                    info.record.inodes.to_string()
                } else {
                    format!(
                        "{} (NOT enforced: btrfs has no inode limit)",
                        info.record.inodes
                    )
                },
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
                    "{:<20} {:<9} {:<13} {:<23} {:>8} {:>10} MOUNTED",
                    "NAME", "STATE", "BACKEND", "UIDS", "STORAGE", "INODES"
                );
                for t in &list {
                    println!(
                        "{:<20} {:<9} {:<13} {:<23} {:>8} {:>10} {}",
                        t.record.name,
                        state_str(t),
                        t.record.backend.as_str(),
                        t.uid_range,
                        format_size(t.record.storage_bytes),
                        inodes_str(t),
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
                    if !t.enforces_limits {
                        " (NO limits enforced)"
                    } else if !t.enforces_inode_limit {
                        " (enforces the block limit only: btrfs has no inode limit)"
                    } else {
                        ""
                    }
                );
                if let Some(p) = &t.pool {
                    println!("pool:        {}", p.display());
                }
                if let Some(id) = r.project_id {
                    println!("project id:  {id}");
                }
                println!(
                    "storage:     {} ({} bytes)",
                    format_size(r.storage_bytes),
                    r.storage_bytes
                );
                println!("inodes:      {}", inodes_str(&t));
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
            let all = tenants.mount_all()?;
            for (kind, path, r) in all.pools {
                let kind = kind.as_str();
                match r {
                    Ok(true) => println!("pool {kind}: mounted at {}", path.display()),
                    Ok(false) => println!("pool {kind}: already mounted at {}", path.display()),
                    Err(e) => {
                        eprintln!("sgrun: pool {kind}: {}", error_chain(&e));
                        failed.push(format!("pool {kind}"));
                    }
                }
            }
            for (name, r) in all.tenants {
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
                bail!("cannot mount {}", failed.join(", "));
            }
        }
        TenantCommand::Pool(cmd) => pool(cmd, &tenants)?,
    }
    Ok(0)
}

fn pool(cmd: PoolCommand, tenants: &Tenants) -> Result<()> {
    match cmd {
        PoolCommand::Create { backend, size } => {
            let size = parse_size(&size).context("--size")?;
            let started = std::time::Instant::now();
            let p = tenants.create_pool(backend.into(), size)?;
            println!(
                "pool {} created in {} ms: {} image {}, mounted at {}",
                p.record.backend.as_str(),
                started.elapsed().as_millis(),
                format_size(size),
                p.record
                    .image
                    .as_deref()
                    .map(|i| i.display().to_string())
                    .unwrap_or_default(),
                p.record.path.display()
            );
        }
        PoolCommand::Add { backend, path } => {
            let p = tenants.add_pool(backend.into(), &path)?;
            println!(
                "pool {} registered: {} (mounted by the host; sgrun never mounts or unmounts it)",
                p.record.backend.as_str(),
                p.record.path.display()
            );
        }
        PoolCommand::Ls { json } => {
            let list = tenants.pools()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<13} {:<40} {:<8} {:>8} {:>8} MOUNTED",
                    "BACKEND", "PATH", "MADE BY", "SIZE", "FREE"
                );
                for p in &list {
                    let sz = |b: Option<u64>| b.map(format_size).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<13} {:<40} {:<8} {:>8} {:>8} {}",
                        p.record.backend.as_str(),
                        p.record.path.display(),
                        if p.record.image.is_some() {
                            "sgrun"
                        } else {
                            "host"
                        },
                        sz(p.bytes_total),
                        sz(p.bytes_free),
                        if p.mounted { "yes" } else { "no" }
                    );
                }
            }
        }
        PoolCommand::Rm { backend } => {
            let kind = BackendKind::from(backend);
            tenants.remove_pool(kind)?;
            println!("pool {} removed", kind.as_str());
        }
    }
    Ok(())
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
