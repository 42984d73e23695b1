//! The subcommands. Each parses its flags the way runc does and calls the engine.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sgrun_engine::exec::{ExecOptions, ExecOverrides};
use sgrun_engine::{CreateOptions, Runtime, Stdio};

use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`
    Create(CreateArgs),
    /// Start the process of a created container
    Start {
        /// Container id
        id: String,
    },
    /// Create and start a container; in the foreground, wait for it and exit with its status
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started; the container keeps running
        #[arg(short, long)]
        detach: bool,
        /// Do not delete the container after it exits (foreground only)
        #[arg(long)]
        keep: bool,
    },
    /// Print the state of a container as JSON
    State {
        /// Container id
        id: String,
    },
    /// Send a signal to the container's init (or to all its processes)
    Kill {
        /// Container id
        id: String,
        /// Signal name (TERM, SIGKILL) or number
        #[arg(default_value = "TERM")]
        signal: String,
        /// Signal every process of the container
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and everything it holds (state, cgroups)
    Delete {
        /// Container id
        id: String,
        /// Kill a running container first; succeed if it does not exist
        #[arg(short, long)]
        force: bool,
    },
    /// Run a process inside a running container, in all its namespaces and under its profile
    ///
    /// The process joins the container's user namespace first, then its mount, cgroup, ipc,
    /// uts, net and pid namespaces and its cgroups, and runs with the container's capabilities
    /// (at most its bounding set), rlimits, no_new_privs and seccomp profile. Until it execs,
    /// nothing in the container can ptrace it, and it carries no host file descriptor.
    /// A paused container is refused (resume it, or pass --ignore-paused).
    ///
    /// Examples:
    ///   sgrun exec web1 ps
    ///   sgrun exec -t -u 33:33 -w /var/www web1 sh
    ///   sgrun exec -d --pid-file /run/x.pid web1 sleep 60
    #[command(verbatim_doc_comment)]
    Exec(ExecArgs),
    /// List containers
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        /// Print ids only
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container
    Pause {
        /// Container id
        id: String,
    },
    /// Thaw a paused container
    Resume {
        /// Container id
        id: String,
    },
    /// Change the resource limits of a running container
    Update(UpdateArgs),
    /// Print what this runtime supports, as JSON (OCI features document)
    Features,
    /// (internal) createContainer hook: copy the image's contents into tmpfs mounts that had
    /// the tmpcopyup option
    #[command(name = "tmpcopyup", hide = true)]
    TmpCopyUp {
        #[arg(long)]
        rootfs: PathBuf,
        destinations: Vec<PathBuf>,
    },
    /// Write a starter config.json into a bundle directory
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for a rootless container (user namespace mapping the caller)
        #[arg(long)]
        rootless: bool,
        /// Apply a profile class: its seccomp, capabilities, rlimits, paths and pids ceiling,
        /// and the io.sgrun.profile annotation
        #[arg(long, value_name = "CLASS")]
        profile: Option<String>,
    },
    /// Tenant profiles: list, show, check, compile, diff, explain
    #[command(subcommand)]
    Profile(crate::profile::ProfileCommand),
    /// Tenants: create, ls, show, usage, resize, rm, mount (UID ranges and storage volumes)
    #[command(subcommand)]
    Tenant(crate::tenant::TenantCommand),
    /// Images: build, import, ls, inspect, verify, rm (read-only base trees, content-addressed)
    #[command(subcommand)]
    Image(crate::image::ImageCommand),
    /// Sites: a tenant's WordPress stack; create, start, stop, restart, status, ls, logs,
    /// stats, rm
    #[command(subcommand)]
    Site(crate::site::SiteCommand),
    /// The front proxy (nginx) routing each site's domain to its socket: start, reload,
    /// stop, status
    #[command(subcommand)]
    Proxy(crate::proxy::ProxyCommand),
    /// ps, stats, events, inspect, logs (runtime/cli/src/toolbox.rs)
    #[command(flatten)]
    Toolbox(crate::toolbox::ToolboxCommand),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Container id: letters, digits and `_ + - .`, at most 128 characters
    pub id: String,
    /// Path to the bundle directory (holding config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the container's init pid to FILE
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Use chroot instead of pivot_root (only where pivot_root cannot work)
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility: sgrun never creates session keyrings
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra file descriptors (3..3+N) to the container
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: i32,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Container id
    pub id: String,
    /// The command and its arguments (or use --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// process.json describing the process (as runc --process)
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open (accepted; stdin is always passed through)
    #[arg(short, long)]
    pub interactive: bool,
    /// Return at once; the process keeps running
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process pid to FILE
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container
    #[arg(long, short = 'w')]
    pub cwd: Option<String>,
    /// Set an environment variable (KEY=VALUE), repeatable
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// User and group: USER[:GROUP], names (from the container's /etc/passwd and /etc/group)
    /// or numbers
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (e.g. CAP_KILL); it must be in the container's bounding set
    #[arg(short = 'c', long = "cap", value_name = "CAP")]
    pub caps: Vec<String>,
    /// Set no_new_privs (always set when the container has seccomp)
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass N extra file descriptors (3..3+N)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: i32,
    /// Accepted for runc compatibility (no SELinux on sgrun hosts)
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    /// Accepted for runc compatibility (no AppArmor on sgrun hosts)
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    /// Exec even into a paused container
    #[arg(long)]
    pub ignore_paused: bool,
}

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Container id
    pub id: String,
    /// Resources as OCI linux.resources JSON, from FILE or `-` for stdin
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g accepted)
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Memory + swap limit (-1 for unlimited)
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Maximum number of pids (-1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// CPUs the container may use (e.g. 0-1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Block IO weight (10-1000)
    #[arg(long)]
    pub blkio_weight: Option<u16>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

impl Command {
    /// Commands whose processes run inside a container before its workload does.
    pub fn enters_container(&self) -> bool {
        matches!(
            self,
            Command::Create(_) | Command::Run { .. } | Command::Exec(_)
        )
    }
}

pub fn run(mut cli: Cli) -> Result<u8> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: sgrun manages cgroups through cgroupfs; drop the flag (containerd: SystemdCgroup = false)");
    }
    // Absolute from here on: the backends compare the volume paths with mountinfo's, which
    // are absolute (a relative --state-dir would never match, and a second mount be stacked).
    cli.state_dir = std::path::absolute(&cli.state_dir)
        .with_context(|| format!("--state-dir {}", cli.state_dir.display()))?;
    // A site's name (TENANT/SITE) stands for its container wherever a container id is
    // taken by exec and the toolbox: a '/' never occurs in a container id.
    crate::site::resolve_site_names(&mut cli.command, &cli.state_dir)?;
    // Tenants' containers (io.sgrun.tenant) get their root filesystem from sgrun-rootfs.
    let rootfs = std::sync::Arc::new(crate::rootfs::TenantRootfsProvider(
        sgrun_rootfs::TenantRootfs::new(&cli.state_dir),
    ));
    let rt = || {
        Runtime::new(&cli.root)
            .map(|r| r.with_rootfs_provider(rootfs.clone()))
            .with_context(|| format!("state root {}", cli.root.display()))
    };
    let policy = || -> Result<std::sync::Arc<dyn sgrun_engine::SpecPolicy>> {
        Ok(std::sync::Arc::new(crate::profile::ProfilePolicy::new(
            &cli.profiles_dir,
            &cli.default_profile,
        )?))
    };
    match cli.command {
        Command::Create(a) => {
            let opts = create_options(&a, true, policy()?);
            rt()?.create(&a.id, &opts, Stdio::default())?;
            Ok(0)
        }
        Command::Start { id } => {
            rt()?.start(&id)?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep,
        } => {
            let opts = create_options(&create, detach, policy()?);
            let rt = rt()?;
            if detach {
                rt.create(&create.id, &opts, Stdio::default())?;
                if let Err(e) = rt.start(&create.id) {
                    let _ = rt.delete(&create.id, true);
                    return Err(e.into());
                }
                Ok(0)
            } else {
                let code = sgrun_engine::run::run_foreground(&rt, &create.id, &opts, keep)?;
                Ok(code as u8)
            }
        }
        Command::State { id } => {
            let state = rt()?.state(&id)?;
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(0)
        }
        Command::Kill { id, signal, all } => {
            let sig = sgrun_engine::signal::parse_signal(&signal)?;
            rt()?.kill(&id, sig, all)?;
            Ok(0)
        }
        Command::Delete { id, force } => {
            rt()?.delete(&id, force)?;
            Ok(0)
        }
        Command::Exec(a) => exec(rt()?, a),
        Command::List { format, quiet } => {
            let list = rt()?.list()?;
            let mut out = std::io::stdout().lock();
            if quiet {
                for s in &list {
                    writeln!(out, "{}", s.id)?;
                }
            } else if format == Format::Json {
                writeln!(out, "{}", serde_json::to_string(&list)?)?;
            } else {
                let w = list.iter().map(|s| s.id.len()).max().unwrap_or(2).max(2);
                writeln!(
                    out,
                    "{:w$}  {:>8}  {:8}  {:40}  {:30}  OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                )?;
                for s in &list {
                    writeln!(
                        out,
                        "{:w$}  {:>8}  {:8}  {:40}  {:30}  {}",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created,
                        if s.owner.is_empty() { "root" } else { &s.owner }
                    )?;
                }
            }
            Ok(0)
        }
        Command::Pause { id } => {
            rt()?.pause(&id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            rt()?.resume(&id)?;
            Ok(0)
        }
        Command::Update(a) => {
            let rt = rt()?;
            let resources = update_resources(&a)?;
            sgrun_engine::cgroups::update(&rt, &a.id, &resources)?;
            Ok(0)
        }
        Command::TmpCopyUp {
            rootfs,
            destinations,
        } => {
            sgrun_engine::tmpcopyup::copy_up(&rootfs, &destinations)?;
            Ok(0)
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&sgrun_engine::features::features())?
            );
            Ok(0)
        }
        Command::Profile(cmd) => crate::profile::run(cmd, &cli.profiles_dir),
        Command::Tenant(cmd) => crate::tenant::run(cmd, &cli.state_dir),
        Command::Image(cmd) => crate::image::run(cmd, &cli.state_dir),
        Command::Proxy(cmd) => crate::proxy::run(
            cmd,
            &crate::site::Ctx {
                state_dir: &cli.state_dir,
                root: &cli.root,
                profiles_dir: &cli.profiles_dir,
            },
        ),
        Command::Site(cmd) => crate::site::run(
            cmd,
            &crate::site::Ctx {
                state_dir: &cli.state_dir,
                root: &cli.root,
                profiles_dir: &cli.profiles_dir,
            },
        ),
        Command::Toolbox(cmd) => crate::toolbox::run(cmd, rt()?, &cli.state_dir),
        Command::Spec {
            bundle,
            rootless,
            profile,
        } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!(
                    "{} already exists; remove it first (sgrun spec never overwrites)",
                    path.display()
                );
            }
            let mut spec = sgrun_engine::features::default_spec(rootless);
            if let Some(name) = profile {
                let class = crate::profile::catalog(&cli.profiles_dir)?.class(&name)?;
                let base: oci_spec::runtime::Spec = serde_json::from_value(spec)?;
                let profiled = sgrun_profiles::oci::spec_with_profile(&class, base)?;
                spec = serde_json::to_value(profiled)?;
            }
            std::fs::write(&path, serde_json::to_string_pretty(&spec)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(0)
        }
    }
}

fn create_options(
    a: &CreateArgs,
    detach: bool,
    policy: std::sync::Arc<dyn sgrun_engine::SpecPolicy>,
) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        policy: Some(policy),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        detach,
    }
}

fn exec(rt: Runtime, a: ExecArgs) -> Result<u8> {
    if a.process.is_none() && a.command.is_empty() {
        bail!("exec needs a command after the container id, or --process FILE");
    }
    let user = match &a.user {
        Some(u) => Some(sgrun_engine::users::UserSpec::parse(u).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let overrides = ExecOverrides {
        process_file: a.process.clone(),
        args: a.command.clone(),
        tty: a.tty,
        cwd: a.cwd.clone(),
        env: a.env.clone(),
        user,
        additional_gids: a.additional_gids.clone(),
        caps: a.caps.clone(),
        no_new_privs: a.no_new_privs,
    };
    let opts = ExecOptions {
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
    };
    let code = sgrun_engine::exec::exec(&rt, &a.id, &overrides, &opts)?;
    Ok(code as u8)
}

pub fn ps_table(pids: &[i32], ps_args: &[String]) -> Result<()> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps(1)")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for line in lines {
        if let Some(pid) = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&pid) {
                println!("{line}");
            }
        }
    }
    Ok(())
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .with_context(|| format!("--interval {s:?}: expected a duration like 5s or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => bail!("--interval {s:?}: unknown unit {unit:?} (use ms, s or m)"),
    };
    if secs <= 0.0 {
        bail!("--interval {s:?}: must be positive");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn parse_bytes(flag: &str, s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.trim_end_matches('b').chars().last() {
        Some('k') => (&lower[..lower.trim_end_matches('b').len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (lower.trim_end_matches('b'), 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("{flag} {s:?}: expected bytes, e.g. 512m or 1073741824"))?;
    n.checked_mul(mult)
        .with_context(|| format!("{flag} {s:?}: too large"))
}

fn update_resources(a: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::*;
    let mut r: LinuxResources = match &a.resources {
        Some(p) if p.as_os_str() == "-" => serde_json::from_reader(std::io::stdin())
            .context("--resources -: stdin is not OCI linux.resources JSON")?,
        Some(p) => {
            let text =
                std::fs::read(p).with_context(|| format!("reading --resources {}", p.display()))?;
            serde_json::from_slice(&text).with_context(|| {
                format!("--resources {}: not OCI linux.resources JSON", p.display())
            })?
        }
        None => LinuxResources::default(),
    };
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut m = r.memory().unwrap_or_default();
        if let Some(v) = &a.memory {
            m.set_limit(Some(parse_bytes("--memory", v)?));
        }
        if let Some(v) = &a.memory_reservation {
            m.set_reservation(Some(parse_bytes("--memory-reservation", v)?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(parse_bytes("--memory-swap", v)?));
        }
        r.set_memory(Some(m));
    }
    if let Some(p) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        r.set_pids(Some(pids));
    }
    if a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_share.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if let Some(v) = a.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = a.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = a.cpu_share {
            c.set_shares(Some(v));
        }
        if let Some(v) = &a.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &a.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        r.set_cpu(Some(c));
    }
    if let Some(w) = a.blkio_weight {
        if !(10..=1000).contains(&w) {
            bail!("--blkio-weight {w}: must be between 10 and 1000");
        }
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_durations() {
        assert_eq!(parse_bytes("--memory", "512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("--memory", "4096").unwrap(), 4096);
        assert_eq!(parse_bytes("--memory", "-1").unwrap(), -1);
        assert!(parse_bytes("--memory", "lots").is_err());
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2").unwrap().as_secs(), 2);
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
