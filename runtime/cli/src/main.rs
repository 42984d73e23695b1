//! `sgrun`: the OCI runtime command line, flag for flag what runc offers, so that containerd,
//! Podman and Docker can use sgrun in its place.

mod commands;
mod log;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub const DEFAULT_ROOT: &str = "/run/sgrun";

/// sgrun runs OCI containers for WordPress hosting tenants: a drop-in for runc with seccomp
/// applied exactly, exec that joins every namespace, and tenant isolation by default.
#[derive(Parser, Debug)]
#[command(name = "sgrun", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// Directory for container state (tmpfs recommended)
    #[arg(long, global = true, default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub root: PathBuf,
    /// Write log messages to FILE instead of stderr (containerd reads errors from it)
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log format
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: log::LogFormat,
    /// Log debug messages too
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd cgroups (not supported: sgrun manages cgroupfs paths only)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility; sgrun does not use CRIU
    #[arg(long, global = true, hide = true, value_name = "PATH")]
    pub criu: Option<PathBuf>,
    /// Accepted for runc compatibility ("auto", "true", "false"); sgrun runs as root
    #[arg(
        long = "rootless",
        id = "global_rootless",
        hide = true,
        value_name = "BOOL"
    )]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that run sgrun code inside a container first make sure this process runs
    // from a read-only mount of its binary (CVE-2019-5736); see engine::selfprotect.
    if cli.command.enters_container() {
        if let Err(e) = sgrun_engine::selfprotect::ensure_readonly_exe() {
            eprintln!(
                "sgrun: {e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            return ExitCode::from(1);
        }
    }
    let errlog = match log::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sgrun: cannot open log file {:?}: {e}", cli.log);
            return ExitCode::from(1);
        }
    };
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // One line per cause: the last one is the root cause.
            let mut text = format!("{err}");
            for cause in err.chain().skip(1) {
                text.push_str(&format!("\n  caused by: {cause}"));
            }
            errlog.error(&text.replace("\n  caused by: ", ": "));
            eprintln!("sgrun: {text}");
            ExitCode::from(1)
        }
    }
}

#[allow(unused)]
use Subcommand as _;
