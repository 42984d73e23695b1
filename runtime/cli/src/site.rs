//! `sgrun site create | start | stop | restart | status | ls | logs | stats | rm`: the CLI of
//! sgrun-sites. A site is one tenant's WordPress stack, supervised by its own shim.

use std::io::{BufRead, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sgrun_sites::{limits, CreateRequest, Limits, RestartPolicy, SiteRef, Sites, State, Status};

const SITE_HELP: &str = "\
A site is one tenant's running stack: a tenant (`sgrun tenant create`), an image from sgrun's
store (`sgrun image build images/wordpress`), a profile (`sgrun profile list`), limits and a
domain. Sites are named TENANT/SITE; the container that runs one is TENANT.SITE (so `sgrun
exec acme.blog sh`, `sgrun ps acme/blog` work on it).

`site start` writes the site's OCI bundle, prepares its data directory on the tenant's volume
(sites/SITE: MariaDB's datadir, wp-content), starts its shim (containerd-shim-sgrun-v1, one per
site) and drives it over the shim's socket as containerd would. The shim restarts a stack that
crashes (--restart, with back-off), keeps its output in console.log and every event in
events.jsonl. Each site has its own network namespace (loopback only) and serves HTTP on a
unix socket; `sgrun proxy` routes each domain to its site.

Files (--state-dir, default /var/lib/sgrun; --root, default /run/sgrun):
  <state-dir>/sites/TENANT/SITE/site.json      the site's record
  <state-dir>/sites/TENANT/SITE/bundle/        its OCI bundle (rewritten at every start)
  <state-dir>/sites/TENANT/SITE/console.log    the stack's output (`sgrun site logs`)
  <state-dir>/sites/TENANT/SITE/events.jsonl   start, exit, OOM, restart (`sgrun events`)
  <root>/.sites/TENANT/SITE/http/http.sock     its HTTP socket (the proxy's upstream)
  <root>/.sites/TENANT/SITE/shim.sock          its shim's ttrpc socket

Examples:
  sgrun site create acme/blog --image wordpress --domain blog.acme.localhost --memory 512M
  sgrun site start acme/blog
  sgrun site ls
  sgrun site status acme/blog --json
  sgrun site logs -f acme/blog
  sgrun site stop acme/blog
  sgrun site start --all            after a host restart: every site that was running
  sgrun site rm --purge acme/blog   also delete its database and uploads

See docs/sites.md.";

#[derive(Subcommand, Debug)]
#[command(after_long_help = SITE_HELP)]
pub enum SiteCommand {
    /// Create a site: check its tenant, image, profile, domain and limits, and record it
    #[command(after_long_help = "\
Nothing runs until `sgrun site start`. Refused: an unknown tenant, image or profile; an image
that is not a site image; a site that exists; a domain another site has; limits below what
the stack needs (--memory 192M, --pids 64, --cpus 0.1).

Restart policies: on-failure (default: a crash, an exit status other than 0, is restarted
after a back-off that doubles from --restart-backoff up to 30 s), always, no.")]
    Create {
        /// TENANT/SITE
        site: String,
        /// Image name or id in sgrun's store
        #[arg(long, default_value = "wordpress")]
        image: String,
        /// Profile class (seccomp, capabilities, rlimits); tenants can only tighten it
        #[arg(long, default_value = "wordpress")]
        profile: String,
        /// The domain the front proxy routes to this site (lower-case DNS name)
        #[arg(long)]
        domain: String,
        /// Memory limit (K, M, G: powers of 1024)
        #[arg(long, default_value = "512M")]
        memory: String,
        /// CPU limit in CPUs (e.g. 0.5, 1, 2)
        #[arg(long, default_value = "1")]
        cpus: String,
        /// Most processes and threads the site may run
        #[arg(long, default_value = "256")]
        pids: String,
        /// What the shim does when the stack exits on its own: on-failure, always, no
        #[arg(long, default_value = "on-failure")]
        restart: String,
        /// First restart back-off (e.g. 1s, 200ms); doubles per crash up to 30 s
        #[arg(long, default_value = "1s")]
        restart_backoff: String,
        /// Print the record as JSON
        #[arg(long)]
        json: bool,
    },
    /// Start sites and wait until each answers HTTP
    #[command(after_long_help = "\
A stack that does not come up (it exits, or gives no HTTP answer within --timeout) is stopped
again and the error shows the last lines of its log. With --all: every site whose record says
it should run (it was started and not stopped), e.g. after a host restart; tenants' volumes
are mounted first. One site failing does not stop the others; the exit status is 1 if any
failed.")]
    Start {
        /// TENANT/SITE (several allowed)
        sites: Vec<String>,
        /// Every site that should be running
        #[arg(long, conflicts_with = "sites")]
        all: bool,
        /// Seconds to wait for the first HTTP answer
        #[arg(long, default_value_t = sgrun_sites::DEFAULT_START_TIMEOUT.as_secs())]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// Stop sites: SIGTERM to the stack, SIGKILL after --timeout, then its shim ends
    Stop {
        /// TENANT/SITE (several allowed)
        #[arg(required = true)]
        sites: Vec<String>,
        /// Seconds between SIGTERM and SIGKILL
        #[arg(long, default_value_t = sgrun_sites::DEFAULT_STOP_TIMEOUT.as_secs())]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// Stop, then start
    Restart {
        /// TENANT/SITE
        site: String,
        /// Seconds between SIGTERM and SIGKILL
        #[arg(long, default_value_t = sgrun_sites::DEFAULT_STOP_TIMEOUT.as_secs())]
        stop_timeout: u64,
        /// Seconds to wait for the first HTTP answer
        #[arg(long, default_value_t = sgrun_sites::DEFAULT_START_TIMEOUT.as_secs())]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// What a site is doing: running, restarting, exited, stopped, or shim-lost (its shim was
    /// killed), with pids, restarts and the last exit status
    Status {
        /// TENANT/SITE
        site: String,
        #[arg(long)]
        json: bool,
    },
    /// Every site with its state, domain, image and limits
    Ls {
        /// Only this tenant's sites
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The stack's output (MariaDB, php-fpm, nginx and the init write to it)
    Logs {
        /// TENANT/SITE
        site: String,
        /// Keep printing new lines
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines
        #[arg(short = 'n', long)]
        tail: Option<usize>,
    },
    /// CPU, memory, pids, IO and network of sites (`sgrun stats` for their containers)
    Stats {
        /// TENANT/SITE (default: every running site)
        sites: Vec<String>,
        /// Print one reading and exit
        #[arg(long)]
        no_stream: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove a site: its record, bundle, logs and root filesystem changes; its data
    /// (database, uploads) only with --purge
    Rm {
        /// TENANT/SITE
        site: String,
        /// Stop it first if it runs
        #[arg(long)]
        force: bool,
        /// Also delete the site's data on the tenant's volume (sites/SITE)
        #[arg(long)]
        purge: bool,
        #[arg(long)]
        json: bool,
    },
}

pub struct Ctx<'a> {
    pub state_dir: &'a Path,
    pub root: &'a Path,
    pub profiles_dir: &'a Path,
}

pub fn sites(ctx: &Ctx) -> Result<Sites> {
    let exe = std::env::current_exe().context("finding the sgrun binary (/proc/self/exe)")?;
    let mut s = Sites::new(ctx.state_dir, ctx.root, ctx.profiles_dir, exe);
    if let Some(shim) = std::env::var_os("SGRUN_SHIM") {
        s = s.with_shim(PathBuf::from(shim));
    }
    Ok(s)
}

fn parse_ms(s: &str) -> Result<u64> {
    let d = crate::commands::parse_duration(s)?;
    Ok(d.as_millis() as u64)
}

pub fn run(cmd: SiteCommand, ctx: &Ctx) -> Result<u8> {
    let sites = sites(ctx)?;
    match cmd {
        SiteCommand::Create {
            site,
            image,
            profile,
            domain,
            memory,
            cpus,
            pids,
            restart,
            restart_backoff,
            json,
        } => {
            let r = SiteRef::parse(&site)?;
            let backoff = parse_ms(&restart_backoff)?;
            if !(10..=60_000).contains(&backoff) {
                bail!("--restart-backoff {restart_backoff}: between 10ms and 60s");
            }
            let req = CreateRequest {
                site: r,
                image,
                profile,
                domain,
                limits: Limits {
                    memory_bytes: limits::parse_memory(&memory)?,
                    cpu_milli: limits::parse_cpus(&cpus)?,
                    pids: limits::parse_pids(&pids)?,
                },
                restart: RestartPolicy::parse(&restart)?,
                restart_backoff_ms: backoff,
            };
            let catalog = crate::profile::catalog(ctx.profiles_dir)?;
            let rec = sites.create(&req, &catalog)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rec)?);
            } else {
                println!(
                    "site {} created: {} on image {}, profile {}, memory {}, cpus {}, pids {}; `sgrun site start {}`",
                    rec.site_ref(),
                    rec.domain,
                    rec.image,
                    rec.profile,
                    sgrun_tenants::validate::format_size(rec.limits.memory_bytes),
                    rec.limits.cpus_text(),
                    rec.limits.pids,
                    rec.site_ref()
                );
            }
            crate::proxy::sync(ctx)?;
            Ok(0)
        }
        SiteCommand::Start {
            sites: names,
            all,
            timeout,
            json,
        } => {
            let targets: Vec<SiteRef> = if all {
                // volumes (and pools) first: a site's start would mount its tenant's anyway,
                // but a broken pool is reported once here
                let mounted = sgrun_tenants::Tenants::new(ctx.state_dir).mount_all();
                if let Err(e) = mounted {
                    eprintln!("sgrun: mounting tenants' volumes: {e}");
                }
                sites
                    .list()?
                    .into_iter()
                    .filter(|r| r.desired == sgrun_sites::Desired::Running)
                    .map(|r| r.site_ref())
                    .collect()
            } else {
                if names.is_empty() {
                    bail!("name the sites to start (TENANT/SITE), or --all");
                }
                names
                    .iter()
                    .map(|n| SiteRef::parse(n))
                    .collect::<Result<_, _>>()?
            };
            let mut out = Vec::new();
            let mut failed = 0;
            for r in &targets {
                let t0 = std::time::Instant::now();
                match sites.start(r, Duration::from_secs(timeout)) {
                    Ok(st) => {
                        if !json {
                            println!(
                                "site {r} started in {:.2} s (pid {}, shim {}): {}",
                                t0.elapsed().as_secs_f64(),
                                st.pid.unwrap_or(0),
                                st.shim_pid.unwrap_or(0),
                                crate::proxy::where_served(ctx, &st.domain, &st.http_socket)
                            );
                        }
                        out.push(serde_json::to_value(&st)?);
                    }
                    Err(e) if all && matches!(e, sgrun_sites::SiteError::AlreadyStarted { .. }) => {
                        if !json {
                            println!("site {r} already running");
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        if targets.len() == 1 {
                            return Err(e.into());
                        }
                        eprintln!("sgrun: {e}");
                        out.push(
                            serde_json::json!({"site": r.to_string(), "error": e.to_string()}),
                        );
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            crate::proxy::sync(ctx)?;
            Ok(if failed > 0 { 1 } else { 0 })
        }
        SiteCommand::Stop {
            sites: names,
            timeout,
            json,
        } => {
            let mut out = Vec::new();
            for n in &names {
                let r = SiteRef::parse(n)?;
                let st = sites.stop(&r, Duration::from_secs(timeout))?;
                if !json {
                    println!("site {r} stopped");
                }
                out.push(st);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(0)
        }
        SiteCommand::Restart {
            site,
            stop_timeout,
            timeout,
            json,
        } => {
            let r = SiteRef::parse(&site)?;
            sites.stop(&r, Duration::from_secs(stop_timeout))?;
            let st = sites.start(&r, Duration::from_secs(timeout))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!(
                    "site {r} restarted (pid {}): {}",
                    st.pid.unwrap_or(0),
                    crate::proxy::where_served(ctx, &st.domain, &st.http_socket)
                );
            }
            Ok(0)
        }
        SiteCommand::Status { site, json } => {
            let r = SiteRef::parse(&site)?;
            let st = sites.status(&r)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print_status(&st);
            }
            Ok(0)
        }
        SiteCommand::Ls { tenant, json } => {
            let mut rows = Vec::new();
            for rec in sites.list()? {
                if tenant.as_deref().is_some_and(|t| t != rec.tenant) {
                    continue;
                }
                rows.push(sites.status(&rec.site_ref())?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows);
            }
            Ok(0)
        }
        SiteCommand::Logs { site, follow, tail } => {
            let r = SiteRef::parse(&site)?;
            sites.load(&r)?;
            print_log(&sites.layout().console_log(&r), follow, tail)?;
            Ok(0)
        }
        SiteCommand::Stats {
            sites: names,
            no_stream,
            json,
        } => {
            let ids = if names.is_empty() {
                let mut ids = Vec::new();
                for rec in sites.list()? {
                    let st = sites.status(&rec.site_ref())?;
                    if st.state == State::Running || st.state == State::Paused {
                        ids.push(st.container);
                    }
                }
                if ids.is_empty() {
                    bail!("no site is running");
                }
                ids
            } else {
                let mut ids = Vec::new();
                for n in &names {
                    let r = SiteRef::parse(n)?;
                    sites.load(&r)?;
                    ids.push(r.container_id());
                }
                ids
            };
            let rt = sgrun_engine::Runtime::new(ctx.root)?;
            crate::toolbox::stats_cmd(&rt, &ids, no_stream, json, Duration::from_secs(1))
        }
        SiteCommand::Rm {
            site,
            force,
            purge,
            json,
        } => {
            let r = SiteRef::parse(&site)?;
            sites.remove(&r, force, purge)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"site": r.to_string(), "removed": true, "data_purged": purge})
                );
                crate::proxy::sync(ctx)?;
                return Ok(0);
            }
            println!(
                "site {r} removed{}",
                if purge {
                    " with its data"
                } else {
                    "; its data stays in the tenant's volume (sites/SITE): --purge deletes it"
                }
            );
            crate::proxy::sync(ctx)?;
            Ok(0)
        }
    }
}

fn ago(since: Option<u64>) -> String {
    let Some(t) = since else { return "-".into() };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(t);
    let s = now.saturating_sub(t);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn print_status(st: &Status) {
    println!("site:       {}", st.site);
    if st.detail == st.state.as_str() {
        println!("state:      {}", st.detail);
    } else {
        println!("state:      {} ({})", st.state.as_str(), st.detail);
    }
    println!("domain:     {}", st.domain);
    println!("container:  {}", st.container);
    println!("image:      {}   profile: {}", st.image, st.profile);
    println!(
        "limits:     memory {}, cpus {}, pids {}",
        sgrun_tenants::validate::format_size(st.limits.memory_bytes),
        st.limits.cpus_text(),
        st.limits.pids
    );
    if let Some(pid) = st.pid {
        println!("pid:        {pid}");
    }
    if let Some(pid) = st.shim_pid {
        println!("shim pid:   {pid}   up {}", ago(st.since));
    }
    println!("restarts:   {}", st.restarts);
    if let Some(code) = st.last_exit {
        println!("last exit:  {code}");
    }
    println!("socket:     {}", st.http_socket.display());
}

fn print_table(rows: &[Status]) {
    let header = [
        "SITE", "STATE", "DOMAIN", "UP", "RESTARTS", "MEMORY", "CPUS", "PIDS", "PROFILE",
    ];
    let lines: Vec<[String; 9]> = rows
        .iter()
        .map(|s| {
            [
                s.site.clone(),
                s.state.as_str().to_string(),
                s.domain.clone(),
                if s.state == State::Stopped {
                    "-".into()
                } else {
                    ago(s.since)
                },
                s.restarts.to_string(),
                sgrun_tenants::validate::format_size(s.limits.memory_bytes),
                s.limits.cpus_text(),
                s.limits.pids.to_string(),
                s.profile.clone(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for l in &lines {
        for (w, c) in width.iter_mut().zip(l.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = std::io::stdout().lock();
    let row = |out: &mut std::io::StdoutLock, cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(width.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    row(&mut out, header.to_vec());
    for l in &lines {
        row(&mut out, l.iter().map(String::as_str).collect());
    }
}

/// Prints the log (the last `tail` lines, or all), then with `follow` new lines as they come.
fn print_log(path: &Path, follow: bool, tail: Option<usize>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let mut pos = 0u64;
    match std::fs::File::open(path) {
        Ok(f) => {
            let len = f.metadata()?.len();
            match tail {
                Some(n) => {
                    let text = sgrun_sites::log_tail(path, n);
                    if !text.is_empty() {
                        writeln!(out, "{text}")?;
                    }
                }
                None => {
                    let mut r = std::io::BufReader::new(f);
                    std::io::copy(&mut r, &mut out)?;
                }
            }
            pos = len;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && follow => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "the site has no log yet ({}): it has never started",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(mut f) = std::fs::File::open(path) else {
            continue;
        };
        let len = f.metadata()?.len();
        if len < pos {
            pos = 0; // truncated or replaced: start over
        }
        if len > pos {
            f.seek(SeekFrom::Start(pos))?;
            let mut r = std::io::BufReader::new(f);
            let mut line = String::new();
            while r.read_line(&mut line)? > 0 {
                out.write_all(line.as_bytes())?;
                pos += line.len() as u64;
                line.clear();
            }
            out.flush()?;
        }
    }
}

/// The container id a name stands for: `TENANT/SITE` is the site's container (the site must
/// exist); anything else is taken as a container id.
pub fn container_of(name: &str, state_dir: &Path) -> Result<String> {
    if !name.contains('/') {
        return Ok(name.to_string());
    }
    let r = SiteRef::parse(name)?;
    sgrun_sites::Layout::new(state_dir, Path::new("/")).load(&r)?;
    Ok(r.container_id())
}

/// Rewrites site names to container ids in the commands that take a container: exec, ps,
/// stats, events, inspect, logs.
pub fn resolve_site_names(cmd: &mut crate::commands::Command, state_dir: &Path) -> Result<()> {
    use crate::commands::Command;
    use crate::toolbox::ToolboxCommand as T;
    let fix = |id: &mut String| -> Result<()> {
        *id = container_of(id, state_dir)?;
        Ok(())
    };
    match cmd {
        Command::Exec(a) => fix(&mut a.id)?,
        Command::Toolbox(t) => match t {
            T::Ps { id, .. } | T::Inspect { id } => fix(id)?,
            T::Events { id: Some(id), .. } => fix(id)?,
            T::Stats { ids, .. } => {
                for id in ids.iter_mut() {
                    fix(id)?;
                }
            }
            // logs of a site are its console log: handled by the toolbox itself
            _ => {}
        },
        _ => {}
    }
    Ok(())
}

/// `sgrun logs TENANT/SITE`: the site's console log.
pub fn site_logs(name: &str, state_dir: &Path, follow: bool, tail: Option<usize>) -> Result<()> {
    let r = SiteRef::parse(name)?;
    let layout = sgrun_sites::Layout::new(state_dir, Path::new("/"));
    layout.load(&r)?;
    print_log(&layout.console_log(&r), follow, tail)
}
