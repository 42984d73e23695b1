//! The SRE's toolbox beside `exec`: `ps`, `stats`, `events`, `inspect` and `logs`. The
//! engine reads the counters (engine::stats); this module formats and loops.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sgrun_engine::stats::{self, Sample};
use sgrun_engine::Runtime;

use crate::commands::Format;

#[derive(Subcommand, Debug)]
pub enum ToolboxCommand {
    /// List the processes of a container: host and container pids, users, state, commands
    ///
    /// Without PS_ARGS, sgrun's own table: PID (host), CPID (in the container's pid
    /// namespace), USER and UID as the container sees them, HOSTUID, STAT, TIME, COMMAND.
    /// With PS_ARGS, ps(1) with those arguments, filtered to the container (as runc).
    /// `--format json` prints the host pids (runc's format, which containerd reads);
    /// `--format json --detail` the full rows.
    #[command(verbatim_doc_comment)]
    Ps {
        /// Container id
        id: String,
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        /// With --format json: every column, not just the pids
        #[arg(long)]
        detail: bool,
        /// Arguments passed to ps(1) for the table format
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Live resource use per container: CPU %, memory, pids, block IO, network
    ///
    /// Without ids, every running container under --root. CPU % is of one CPU (200% = two
    /// busy CPUs), from the cgroup's CPU time between two readings; memory excludes the
    /// inactive page cache; network is every interface of the container's network namespace.
    ///
    /// Examples:
    ///   sgrun stats                      a table, refreshed every second
    ///   sgrun stats --no-stream --json web1 web2
    #[command(verbatim_doc_comment)]
    Stats {
        /// Container ids (default: all running containers)
        ids: Vec<String>,
        /// Print one reading and exit
        #[arg(long)]
        no_stream: bool,
        /// JSON: one array per reading (one line each when streaming)
        #[arg(long)]
        json: bool,
        /// Time between readings (e.g. 1s, 500ms)
        #[arg(long, default_value = "1s")]
        interval: String,
    },
    /// Container events as JSON lines: start, exit, oom, pids-limit, restart, pause, resume,
    /// delete
    ///
    /// Without an id, every container under --root. `oom` carries the number of processes
    /// the kernel's OOM killer ended in the container's memory cgroup; `pids-limit` the forks
    /// refused at the pids limit. With --stats, one statistics record in runc's format
    /// instead (runc's `events --stats`).
    #[command(verbatim_doc_comment)]
    Events {
        /// Container id (default: all)
        id: Option<String>,
        /// Print one statistics record (runc's format) and exit
        #[arg(long)]
        stats: bool,
        /// Time between two looks at the containers (e.g. 250ms, 1s)
        #[arg(long, default_value = "250ms")]
        interval: String,
    },
    /// The resolved configuration of a container, as JSON: tenant, UID range, profile,
    /// capabilities, rlimits, seccomp, limits, namespaces, mounts, annotations
    Inspect {
        /// Container id
        id: String,
    },
    /// The output log of a site (TENANT/SITE, or its container TENANT.SITE)
    ///
    /// A site's shim hands the stack a console log (<state-dir>/sites/TENANT/SITE/console.log)
    /// and this prints it. Other containers have none: sgrun keeps no copy of a container's
    /// output (a detached container writes to the stdout and stderr it was started with;
    /// containerd's shim keeps those for the containers it runs), and this command says so.
    #[command(verbatim_doc_comment)]
    Logs {
        /// Container id, or a site (TENANT/SITE): its console log
        id: String,
        /// Keep printing new lines
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines
        #[arg(short = 'n', long)]
        tail: Option<usize>,
        /// Only lines newer than this (e.g. 10m, 1h, or an RFC 3339 time)
        #[arg(long)]
        since: Option<String>,
    },
}

pub fn run(cmd: ToolboxCommand, rt: Runtime, state_dir: &std::path::Path) -> Result<u8> {
    match cmd {
        ToolboxCommand::Ps {
            id,
            format,
            detail,
            ps_args,
        } => ps(&rt, &id, format, detail, &ps_args),
        ToolboxCommand::Stats {
            ids,
            no_stream,
            json,
            interval,
        } => stats_cmd(
            &rt,
            &ids,
            no_stream,
            json,
            crate::commands::parse_duration(&interval)?,
        ),
        ToolboxCommand::Events {
            id,
            stats,
            interval,
        } => {
            if stats {
                let id = id.context("events --stats needs a container id")?;
                let ev = sgrun_engine::cgroups::stats_event(&rt, &id)?;
                println!("{}", serde_json::to_string(&ev)?);
                return Ok(0);
            }
            events(
                &rt,
                id.as_deref(),
                crate::commands::parse_duration(&interval)?,
            )
        }
        ToolboxCommand::Inspect { id } => {
            let mut v = stats::inspect(&rt, &id)?;
            v["tenant"] = tenant_of(&v, state_dir);
            writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&v)?)?;
            Ok(0)
        }
        ToolboxCommand::Logs {
            id,
            since,
            follow,
            tail,
        } => {
            if let Some(s) = &since {
                parse_since(s)?;
            }
            let site_name = match id.split_once('.') {
                Some((t, s)) if !id.contains('/') => format!("{t}/{s}"),
                _ => id.clone(),
            };
            let is_site = id.contains('/')
                || sgrun_sites::SiteRef::parse(&site_name).is_ok_and(|r| {
                    sgrun_sites::Layout::new(state_dir, std::path::Path::new("/"))
                        .load(&r)
                        .is_ok()
                });
            if is_site {
                let id = site_name;
                if since.is_some() {
                    bail!("--since: a site's console log carries no timestamps (its processes write it directly); use --tail N, or `sgrun events {id}` for timed events");
                }
                crate::site::site_logs(&id, state_dir, follow, tail)?;
                return Ok(0);
            }
            // The container must exist: an unknown id is its own error.
            rt.state(&id)?;
            bail!(
                "container {id:?} has no log: sgrun keeps no copy of a container's output; a \
                 detached container writes to the stdout/stderr it was started with (for \
                 containers run by containerd, its shim keeps them: `ctr task logs` / the \
                 log path given to the shim)"
            )
        }
    }
}

fn parse_since(s: &str) -> Result<()> {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(());
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    if num.parse::<u64>().is_ok() && ["s", "m", "h", "d"].contains(&unit) {
        return Ok(());
    }
    bail!("--since {s:?}: expected a duration (30s, 10m, 2h, 1d) or an RFC 3339 time")
}

/// The tenant whose UID range the container's root maps to, from the tenants registry.
fn tenant_of(v: &serde_json::Value, state_dir: &std::path::Path) -> serde_json::Value {
    let host_root = v["user_namespace"]["uid_mappings"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["container"] == 0))
        .and_then(|m| m["host"].as_u64());
    let Some(host) = host_root else {
        return serde_json::Value::Null;
    };
    let reg = sgrun_tenants::registry::Registry::new(state_dir);
    reg.list()
        .ok()
        .and_then(|l| {
            l.into_iter()
                .find(|t| host >= t.uid_base && host < t.uid_base + t.uid_count)
        })
        .map(|t| serde_json::json!({"name": t.name, "uid_base": t.uid_base, "uid_count": t.uid_count}))
        .unwrap_or(serde_json::Value::Null)
}

fn ps(rt: &Runtime, id: &str, format: Format, detail: bool, ps_args: &[String]) -> Result<u8> {
    if format == Format::Json {
        if detail {
            println!("{}", serde_json::to_string(&stats::processes(rt, id)?)?);
        } else {
            // runc's format: the host pids.
            println!(
                "{}",
                serde_json::to_string(&sgrun_engine::cgroups::pids(rt, id)?)?
            );
        }
        return Ok(0);
    }
    if !ps_args.is_empty() {
        let pids = sgrun_engine::cgroups::pids(rt, id)?;
        crate::commands::ps_table(&pids, ps_args)?;
        return Ok(0);
    }
    let rows = stats::processes(rt, id)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>8} {:>6} {:10} {:>6} {:>8} {:4} {:>9} COMMAND",
        "PID", "CPID", "USER", "UID", "HOSTUID", "STAT", "TIME"
    )?;
    for p in rows {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:>8} {:>6} {:10} {:>6} {:>8} {:4} {:>9} {}",
            p.pid,
            opt(p.container_pid.map(|v| v.to_string())),
            opt(p.user.clone()),
            opt(p.uid.map(|v| v.to_string())),
            p.host_uid,
            p.state,
            format!(
                "{}:{:05.2}",
                (p.cpu_seconds / 60.0) as u64,
                p.cpu_seconds % 60.0
            ),
            p.command
        )?;
    }
    Ok(0)
}

fn human(bytes: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", U[i])
    }
}

/// The ids to show: the given ones, or every running container.
fn stats_ids(rt: &Runtime, ids: &[String]) -> Result<Vec<String>> {
    if !ids.is_empty() {
        return Ok(ids.to_vec());
    }
    Ok(rt
        .list()?
        .into_iter()
        .filter(|s| s.status == "running" || s.status == "paused")
        .map(|s| s.id)
        .collect())
}

fn sample_all(rt: &Runtime, ids: &[String], given: bool) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for id in ids {
        match stats::sample(rt, id) {
            Ok(s) => out.push(s),
            // A container listed a moment ago may have gone; one named by the caller is an
            // error.
            Err(e) if given => return Err(e.into()),
            Err(_) => {}
        }
    }
    Ok(out)
}

fn stats_json(s: &Sample, prev: Option<&Sample>) -> serde_json::Value {
    let pct = prev.map(|p| s.cpu_percent(p));
    serde_json::json!({
        "id": s.id,
        "status": s.status,
        "pid": s.pid,
        "cpu_percent": pct.map(|v| (v * 100.0).round() / 100.0),
        "cpu_ns": s.cpu_ns,
        "memory_bytes": s.memory_bytes,
        "memory_raw_bytes": s.memory_raw_bytes,
        "memory_limit_bytes": s.memory_limit_bytes,
        "memory_percent": s.memory_limit_bytes.map(|l| (s.memory_bytes as f64 * 10000.0 / l as f64).round() / 100.0),
        "oom_kills": s.oom_kills,
        "pids": s.pids,
        "pids_limit": s.pids_limit,
        "pids_limit_hits": s.pids_limit_hits,
        "io_read_bytes": s.io_read_bytes,
        "io_write_bytes": s.io_write_bytes,
        "net_rx_bytes": s.net_rx(),
        "net_tx_bytes": s.net_tx(),
        "net": s.net.iter().map(|(k, (rx, tx))| (k.clone(), serde_json::json!({"rx_bytes": rx, "tx_bytes": tx}))).collect::<serde_json::Map<_, _>>(),
    })
}

fn stats_table(now: &[Sample], prev: &[Sample]) -> String {
    let w = now.iter().map(|s| s.id.len()).max().unwrap_or(2).max(2);
    let mut t = format!(
        "{:w$}  {:>7}  {:>21}  {:>6}  {:>11}  {:>19}  {:>19}\n",
        "ID",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "PIDS",
        "BLOCK I/O (R / W)",
        "NET I/O (RX / TX)"
    );
    for s in now {
        let p = prev.iter().find(|p| p.id == s.id);
        let cpu = p
            .map(|p| format!("{:.2}%", s.cpu_percent(p)))
            .unwrap_or_else(|| "-".into());
        let lim = s
            .memory_limit_bytes
            .map(human)
            .unwrap_or_else(|| "unlimited".into());
        let mpct = s
            .memory_limit_bytes
            .map(|l| format!("{:.2}%", s.memory_bytes as f64 * 100.0 / l as f64))
            .unwrap_or_else(|| "-".into());
        let pids = match s.pids_limit {
            Some(l) => format!("{} / {l}", s.pids),
            None => s.pids.to_string(),
        };
        t.push_str(&format!(
            "{:w$}  {:>7}  {:>21}  {:>6}  {:>11}  {:>19}  {:>19}\n",
            s.id,
            cpu,
            format!("{} / {lim}", human(s.memory_bytes)),
            mpct,
            pids,
            format!("{} / {}", human(s.io_read_bytes), human(s.io_write_bytes)),
            format!("{} / {}", human(s.net_rx()), human(s.net_tx())),
        ));
    }
    t
}

pub(crate) fn stats_cmd(
    rt: &Runtime,
    ids: &[String],
    no_stream: bool,
    json: bool,
    interval: Duration,
) -> Result<u8> {
    let given = !ids.is_empty();
    let mut prev = sample_all(rt, &stats_ids(rt, ids)?, given)?;
    // CPU % needs two readings: the first frame comes after a short first interval.
    std::thread::sleep(interval.min(Duration::from_millis(500)));
    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    loop {
        let now = sample_all(rt, &stats_ids(rt, ids)?, given)?;
        if json {
            let arr: Vec<_> = now
                .iter()
                .map(|s| stats_json(s, prev.iter().find(|p| p.id == s.id)))
                .collect();
            writeln!(out, "{}", serde_json::to_string(&arr)?)?;
        } else {
            if tty && !no_stream {
                // Clear the screen and go home: a live table, as top.
                write!(out, "\x1b[2J\x1b[H")?;
            }
            write!(out, "{}", stats_table(&now, &prev))?;
            if !tty && !no_stream {
                writeln!(out)?;
            }
        }
        out.flush()?;
        if no_stream {
            return Ok(0);
        }
        prev = now;
        std::thread::sleep(interval);
    }
}

fn events(rt: &Runtime, id: Option<&str>, interval: Duration) -> Result<u8> {
    use std::collections::BTreeMap;
    let look = |rt: &Runtime| -> Result<BTreeMap<String, stats::Watch>> {
        let ids: Vec<String> = match id {
            Some(i) => vec![i.to_string()],
            None => rt.list()?.into_iter().map(|s| s.id).collect(),
        };
        let mut m = BTreeMap::new();
        for i in ids {
            match stats::watch(rt, &i) {
                Ok(w) => {
                    m.insert(i, w);
                }
                Err(sgrun_engine::EngineError::NotFound { .. }) => {}
                Err(e) if id.is_some() => return Err(e.into()),
                Err(_) => {}
            }
        }
        Ok(m)
    };
    let mut before = look(rt)?;
    if let Some(i) = id {
        if !before.contains_key(i) {
            // The engine's own message names the id and the root.
            rt.state(i)?;
        }
    }
    let mut out = std::io::stdout().lock();
    loop {
        std::thread::sleep(interval);
        let now = look(rt)?;
        let mut keys: Vec<&String> = before.keys().chain(now.keys()).collect();
        keys.sort();
        keys.dedup();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for k in keys {
            for mut ev in stats::events_between(k, before.get(k), now.get(k)) {
                ev["time"] = serde_json::Value::String(time.clone());
                writeln!(out, "{}", serde_json::to_string(&ev)?)?;
            }
        }
        out.flush()?;
        if let Some(i) = id {
            if !now.contains_key(i) {
                // Deleted: nothing more will happen to it.
                return Ok(0);
            }
        }
        before = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_sizes() {
        assert!(parse_since("10m").is_ok());
        assert!(parse_since("2026-11-27T03:00:00Z").is_ok());
        assert!(parse_since("yesterday").is_err());
        assert_eq!(human(512), "512B");
        assert_eq!(human(3 << 20), "3.0MiB");
    }
}
