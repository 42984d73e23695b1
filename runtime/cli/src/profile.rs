//! Profiles in the CLI: the policy every create applies (`io.sgrun.profile`, or the default
//! class), and `sgrun profile list | show | check | compile | diff | explain`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use oci_spec::runtime::Spec;
use serde_json::json;
use sgrun_engine::{PolicyOutcome, SpecPolicy};
use sgrun_profiles::{oci, Catalog, Profile, Selection, Tightening};

/// Where host-local profiles live (they may only tighten a built-in class).
pub const DEFAULT_PROFILES_DIR: &str = "/etc/sgrun/profiles";

/// The policy create applies: the container's `io.sgrun.profile` class, or the default one.
#[derive(Debug)]
pub struct ProfilePolicy {
    catalog: Catalog,
    /// The default class, resolved once here (which also checks --default-profile) and
    /// reused by apply for the containers that name no other.
    default_class: Option<Profile>,
}

impl ProfilePolicy {
    /// `default_class`: the class for containers that name none; "none" for no profile.
    pub fn new(profiles_dir: &Path, default_class: &str) -> Result<Self> {
        let catalog = catalog(profiles_dir)?;
        let default_class = match default_class {
            "none" => None,
            name => Some(
                catalog
                    .class(name)
                    .with_context(|| format!("--default-profile {name}"))?,
            ),
        };
        Ok(Self {
            catalog,
            default_class,
        })
    }
}

impl SpecPolicy for ProfilePolicy {
    fn apply(
        &self,
        spec: &mut Spec,
    ) -> std::result::Result<Option<PolicyOutcome>, Box<dyn std::error::Error + Send + Sync>> {
        let Some(selection) = Selection::from_annotations(
            spec.annotations().as_ref(),
            self.default_class.as_ref().map(|p| p.name.as_str()),
        )?
        else {
            return Ok(None);
        };
        let profile = match &self.default_class {
            Some(default) if default.name == selection.class => default.clone(),
            _ => self.catalog.class(&selection.class)?,
        };
        let applied = oci::apply(&profile, &selection.tightening, spec)?;
        tracing::debug!(profile = %applied.profile, stacked = applied.extra_seccomp.is_some(), "profile applied");
        Ok(Some(PolicyOutcome {
            profile: applied.profile,
            extra_seccomp: applied.extra_seccomp,
        }))
    }
}

/// The built-in profiles plus the local ones of `dir` (a missing directory adds none).
pub fn catalog(dir: &Path) -> Result<Catalog> {
    let mut catalog = Catalog::builtin();
    catalog
        .add_dir(dir)
        .with_context(|| format!("local profiles in {}", dir.display()))?;
    Ok(catalog)
}

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// List the classes a container can run under
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show a profile with its layers merged: calls, capabilities, limits, paths
    Show {
        /// Class or layer name
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        /// Print the profile's linux.seccomp section (OCI JSON) instead
        #[arg(long, conflicts_with = "json")]
        seccomp: bool,
    },
    /// Check a profile file: syntax, names, conflicts, loosening; exit 1 with file:line if bad
    Check {
        /// The profile file (NAME.toml); it may extend the built-in profiles
        file: PathBuf,
    },
    /// Compile a profile to BPF and report its filters (or write them with --output)
    Compile {
        name: String,
        /// Write the filters (sgrun's cache encoding) to FILE
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Compare two profiles: what one allows that the other does not
    Diff {
        a: String,
        b: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// What a profile answers to one call, e.g. `explain wordpress socket 16 3 0`
    Explain {
        name: String,
        /// System call name
        syscall: String,
        /// Arguments (decimal or 0x-hex), up to six
        #[arg(value_parser = parse_number, num_args = 0..=6)]
        args: Vec<u64>,
    },
}

fn parse_number(s: &str) -> std::result::Result<u64, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("{s:?} is not a number (decimal or 0x-hex)"))
}

pub fn run(cmd: ProfileCommand, profiles_dir: &Path) -> Result<u8> {
    let catalog = catalog(profiles_dir)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        ProfileCommand::List { json } => {
            let classes: Vec<Profile> = catalog
                .classes()
                .iter()
                .map(|n| catalog.class(n))
                .collect::<std::result::Result<_, _>>()?;
            if json {
                let list: Vec<_> = classes.iter().map(summary).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                // Local profiles can have long names: the column is as wide as the longest.
                let width = classes
                    .iter()
                    .map(|p| p.name.len())
                    .max()
                    .unwrap_or(0)
                    .max(5);
                writeln!(
                    out,
                    "{:<width$} {:>5} {:>4} {:>5}  DESCRIPTION",
                    "CLASS", "CALLS", "CAPS", "PIDS"
                )?;
                for p in &classes {
                    writeln!(
                        out,
                        "{:<width$} {:>5} {:>4} {:>5}  {}",
                        p.name,
                        p.allow.len(),
                        p.capabilities.len(),
                        p.pids.as_ref().map_or("-".into(), |(n, _)| n.to_string()),
                        p.description
                    )?;
                }
            }
        }
        ProfileCommand::Show {
            name,
            json,
            seccomp,
        } => {
            let p = catalog.resolve(&name)?;
            if seccomp {
                let section = oci::seccomp(&p, &Tightening::default());
                writeln!(out, "{}", serde_json::to_string_pretty(&section)?)?;
            } else if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&detail(&p))?)?;
            } else {
                show(&mut out, &p)?;
            }
        }
        ProfileCommand::Check { file } => {
            let mut catalog = catalog;
            let name = catalog.add_file(&file)?;
            let p = catalog.resolve(&name)?;
            let compiled = sgrun_profiles::compile(&p, &Tightening::default())?;
            writeln!(
                out,
                "{}: ok: {} ({}), {} calls allowed, {} capabilities, {} BPF instructions",
                file.display(),
                p.name,
                p.layers.join(" > "),
                p.allow.len(),
                p.capabilities.len(),
                compiled.instruction_count()
            )?;
        }
        ProfileCommand::Compile { name, output, json } => {
            let p = catalog.resolve(&name)?;
            let compiled = sgrun_profiles::compile(&p, &Tightening::default())?;
            if let Some(path) = &output {
                std::fs::write(path, compiled.to_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let filters: Vec<_> = compiled
                .filters()
                .map(|(label, n)| json!({ "label": label, "instructions": n }))
                .collect();
            if json {
                let doc = json!({
                    "profile": p.name,
                    "hash": compiled.content_hash(),
                    "instructions": compiled.instruction_count(),
                    "filters": filters,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
            } else {
                writeln!(
                    out,
                    "profile {}  sha256 {}",
                    p.name,
                    compiled.content_hash()
                )?;
                for (label, n) in compiled.filters() {
                    writeln!(out, "  {n:>5} instructions  {label}")?;
                }
                writeln!(out, "  {:>5} in all", compiled.instruction_count())?;
            }
        }
        ProfileCommand::Diff { a, b, json } => {
            let (pa, pb) = (catalog.resolve(&a)?, catalog.resolve(&b)?);
            let d = diff(&pa, &pb);
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&d)?)?;
            } else {
                for (key, sign) in [("only_in_a", '-'), ("only_in_b", '+')] {
                    for (what, items) in d[key].as_object().expect("object") {
                        for item in items.as_array().expect("array") {
                            writeln!(out, "{sign} {what} {}", item.as_str().unwrap_or_default())?;
                        }
                    }
                }
                for item in d["conditions_differ"].as_array().expect("array") {
                    writeln!(out, "~ syscall {}", item.as_str().unwrap_or_default())?;
                }
                if d["same"] == json!(true) {
                    writeln!(out, "{a} and {b} allow the same")?;
                }
            }
        }
        ProfileCommand::Explain {
            name,
            syscall,
            args,
        } => {
            let p = catalog.resolve(&name)?;
            let compiled = sgrun_profiles::compile(&p, &Tightening::default())?;
            let Some(outcome) = sgrun_seccomp::simulate::call(&compiled, &syscall, &args) else {
                bail!("{syscall:?} is not an x86_64 system call");
            };
            let mut all = [0u64; 6];
            all[..args.len()].copy_from_slice(&args);
            let why = sgrun_profiles::always::ALWAYS_DENIED
                .iter()
                .find(|d| d.names.contains(&syscall.as_str()) && d.when().matches(&all))
                .map(|d| format!("always denied: {}", d.why))
                .or_else(|| {
                    p.deny
                        .get(&syscall)
                        .filter(|r| r.when.matches(&all))
                        .map(|r| format!("denied {} at {}", r.when, r.at))
                })
                .or_else(|| {
                    p.allow
                        .get(&syscall)
                        .filter(|r| r.when.matches(&all))
                        .map(|r| format!("allowed {} at {}", r.when, r.at))
                })
                .unwrap_or_else(|| "no rule matches: unlisted calls answer ENOSYS".into());
            writeln!(out, "{name}: {syscall}{args:x?} -> {outcome}  ({why})")?;
        }
    }
    Ok(0)
}

fn summary(p: &Profile) -> serde_json::Value {
    json!({
        "name": p.name,
        "description": p.description,
        "layers": p.layers,
        "allowed_calls": p.allow.len(),
        "capabilities": p.capabilities.keys().collect::<Vec<_>>(),
        "pids": p.pids.as_ref().map(|(n, _)| n),
    })
}

fn detail(p: &Profile) -> serde_json::Value {
    json!({
        "name": p.name,
        "description": p.description,
        "layers": p.layers,
        "allow": p.allow.iter().map(|(n, r)| json!({"syscall": n, "when": r.when.to_string(), "at": r.at.to_string(), "why": r.why})).collect::<Vec<_>>(),
        "deny": p.deny.iter().map(|(n, r)| json!({"syscall": n, "errno": sgrun_seccomp::errno_name(r.errno), "when": r.when.to_string(), "at": r.at.to_string(), "why": r.why})).collect::<Vec<_>>(),
        "always_denied": sgrun_profiles::always::ALWAYS_DENIED.iter().map(|d| json!({"syscalls": d.names, "errno": sgrun_seccomp::errno_name(d.errno), "when": d.when().to_string(), "why": d.why})).collect::<Vec<_>>(),
        "capabilities": p.capabilities.iter().map(|(c, at)| json!({"name": c, "at": at.to_string()})).collect::<Vec<_>>(),
        "rlimits": p.rlimits.iter().map(|(k, r)| json!({"type": k, "soft": r.soft, "hard": r.hard, "at": r.at.to_string()})).collect::<Vec<_>>(),
        "masked_paths": p.masked.keys().collect::<Vec<_>>(),
        "readonly_paths": p.readonly.keys().collect::<Vec<_>>(),
        "pids": p.pids.as_ref().map(|(n, _)| n),
    })
}

fn show(out: &mut impl Write, p: &Profile) -> Result<()> {
    writeln!(out, "{}: {}", p.name, p.description)?;
    writeln!(out, "layers: {}", p.layers.join(" > "))?;
    writeln!(out, "\nallowed ({}):", p.allow.len())?;
    for (name, r) in &p.allow {
        match &r.when {
            sgrun_profiles::model::When::Always => writeln!(out, "  {name:<24} {}", r.at)?,
            when => writeln!(out, "  {name:<24} {}  when {when}", r.at)?,
        }
    }
    writeln!(out, "\ndenied:")?;
    for (name, r) in &p.deny {
        let errno = sgrun_seccomp::errno_name(r.errno).unwrap_or("?");
        writeln!(out, "  {name:<24} {errno:<7} {}  {}", r.at, r.when)?;
    }
    for d in sgrun_profiles::always::ALWAYS_DENIED {
        let errno = sgrun_seccomp::errno_name(d.errno).unwrap_or("?");
        writeln!(
            out,
            "  {:<24} {errno:<7} always: {}",
            d.names.join(" "),
            d.why
        )?;
    }
    writeln!(out, "  (anything else)          ENOSYS")?;
    let caps: Vec<_> = p.capabilities.keys().map(String::as_str).collect();
    writeln!(
        out,
        "\ncapabilities: {}",
        if caps.is_empty() {
            "none".into()
        } else {
            caps.join(" ")
        }
    )?;
    writeln!(out, "no_new_privs: always")?;
    for (kind, r) in &p.rlimits {
        writeln!(
            out,
            "rlimit {kind}: soft {} hard {}  ({})",
            r.soft, r.hard, r.at
        )?;
    }
    if let Some((n, at)) = &p.pids {
        writeln!(out, "pids: at most {n}  ({at})")?;
    }
    writeln!(
        out,
        "masked: {}",
        p.masked.keys().cloned().collect::<Vec<_>>().join(" ")
    )?;
    writeln!(
        out,
        "read-only: {}",
        p.readonly.keys().cloned().collect::<Vec<_>>().join(" ")
    )?;
    Ok(())
}

fn diff(a: &Profile, b: &Profile) -> serde_json::Value {
    let set = |it: Vec<String>| it.into_iter().collect::<BTreeSet<_>>();
    let sides = |pa: &Profile| {
        [
            ("syscall", set(pa.allow.keys().cloned().collect())),
            ("capability", set(pa.capabilities.keys().cloned().collect())),
            ("masked", set(pa.masked.keys().cloned().collect())),
            ("readonly", set(pa.readonly.keys().cloned().collect())),
            (
                "rlimit",
                set(pa
                    .rlimits
                    .iter()
                    .map(|(k, r)| format!("{k}={}/{}", r.soft, r.hard))
                    .collect()),
            ),
            (
                "pids",
                set(pa.pids.iter().map(|(n, _)| n.to_string()).collect()),
            ),
        ]
    };
    let (sa, sb) = (sides(a), sides(b));
    let mut only_a = serde_json::Map::new();
    let mut only_b = serde_json::Map::new();
    for ((what, x), (_, y)) in sa.iter().zip(sb.iter()) {
        only_a.insert((*what).into(), json!(x.difference(y).collect::<Vec<_>>()));
        only_b.insert((*what).into(), json!(y.difference(x).collect::<Vec<_>>()));
    }
    let conditions: Vec<String> = a
        .allow
        .iter()
        .filter_map(|(n, r)| {
            b.allow
                .get(n)
                .filter(|rb| rb.when != r.when)
                .map(|rb| format!("{n}: {} vs {}", r.when, rb.when))
        })
        .collect();
    let same = only_a
        .values()
        .chain(only_b.values())
        .all(|v| v.as_array().is_some_and(Vec::is_empty))
        && conditions.is_empty();
    json!({ "a": a.name, "b": b.name, "only_in_a": only_a, "only_in_b": only_b, "conditions_differ": conditions, "same": same })
}
