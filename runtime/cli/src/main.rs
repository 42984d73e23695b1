//! `sgrun`: the OCI runtime command line, flag for flag what runc offers, so that containerd,
//! Podman and Docker can use sgrun in its place.

mod commands;
mod image;
mod log;
mod profile;
mod proxy;
mod rootfs;
mod site;
mod tenant;
mod toolbox;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub const DEFAULT_ROOT: &str = "/run/sgrun";

const AFTER_HELP: &str = "\
Exit status:
  0 on success; 1 when sgrun itself fails (the message names what and where, and its last
  part is the root cause); for a foreground `run` or `exec`, the process's own status, or
  128+N when a signal N ended it.

Profiles:
  Every container runs under a profile (seccomp, capabilities, rlimits, masked paths, a pids
  ceiling): the class its config.json names in the annotation io.sgrun.profile, or
  --default-profile. Annotations can only tighten (io.sgrun.profile.deny,
  io.sgrun.profile.drop-capabilities). See `sgrun profile list` and docs/profiles.md.

Files:
  /run/sgrun/<id>/   state of each container (--root changes the directory)
  /run/sgrun/.sgrun-cache/seccomp/   compiled filters, by content hash
  /etc/sgrun/profiles/   local profiles (--profiles-dir)

Examples:
  sgrun spec --bundle web && edit web/config.json
  sgrun spec --profile wordpress --bundle site    config.json under the wordpress class
  sgrun profile explain wordpress socket 16 3 0   what the class answers to one call
  sgrun run -d --bundle web web1          create and start, detached
  sgrun exec -t web1 sh                   a shell inside web1
  sgrun events --stats web1               one statistics record, as JSON
  sgrun kill web1 TERM && sgrun delete web1

See docs/runtime.md for how sgrun differs from runc, and `sgrun features`.";

/// sgrun runs OCI containers for WordPress hosting tenants.
///
/// It is a drop-in for runc: the same commands, flags, state JSON, exit codes and JSON log
/// lines, so containerd (`ctr run --runc-binary`), Podman (`--runtime`) and Docker
/// (`--add-runtime`) can drive it. Where it differs, it is stricter: a seccomp profile is
/// applied exactly or the container does not start, no_new_privs is set whenever seccomp is,
/// and `exec` joins every namespace of the container, the user namespace first.
#[derive(Parser, Debug)]
#[command(name = "sgrun", version, about, max_term_width = 100, after_long_help = AFTER_HELP)]
pub struct Cli {
    /// Directory for container state (tmpfs recommended)
    #[arg(long, global = true, default_value = DEFAULT_ROOT, value_name = "DIR", help_heading = "Global options")]
    pub root: PathBuf,
    /// Write log messages to FILE instead of stderr (containerd reads errors from it)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub log: Option<PathBuf>,
    /// Log format
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        help_heading = "Global options"
    )]
    pub log_format: log::LogFormat,
    /// Log debug messages too
    #[arg(long, global = true, help_heading = "Global options")]
    pub debug: bool,
    /// Profile for containers that name none in the io.sgrun.profile annotation ("none": the
    /// config's own seccomp and capabilities only, as runc)
    #[arg(
        long,
        global = true,
        env = "SGRUN_DEFAULT_PROFILE",
        default_value = sgrun_profiles::DEFAULT_CLASS,
        value_name = "CLASS",
        help_heading = "Global options"
    )]
    pub default_profile: String,
    /// Directory of local profiles (NAME.toml), which may only tighten a built-in class
    #[arg(
        long,
        global = true,
        env = "SGRUN_PROFILES_DIR",
        default_value = profile::DEFAULT_PROFILES_DIR,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub profiles_dir: PathBuf,
    /// Directory for tenants' registry and volumes and the image store (`sgrun tenant`,
    /// `sgrun image`)
    #[arg(
        long,
        global = true,
        env = "SGRUN_STATE_DIR",
        default_value = sgrun_tenants::DEFAULT_STATE_DIR,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub state_dir: PathBuf,
    /// Use systemd cgroups (not supported: sgrun manages cgroupfs paths only)
    #[arg(long, global = true, help_heading = "Global options")]
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
