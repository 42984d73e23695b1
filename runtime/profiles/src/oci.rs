//! A resolved profile as OCI config: the `linux.seccomp` section it compiles from, and the
//! changes it makes to a container's config.json (capabilities, no_new_privs, rlimits, masked
//! and read-only paths, the pids ceiling). Applying only ever tightens what the config asks.

use std::collections::{BTreeMap, HashMap, HashSet};

use oci_spec::runtime::{
    Arch, Capability, LinuxCapabilities, LinuxPidsBuilder, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompArgBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
    LinuxSyscallBuilder, PosixRlimitBuilder, PosixRlimitType, Spec,
};

use crate::always::ALWAYS_DENIED;
use crate::error::{ProfileError, Result};
use crate::model::{Cond, Op, When};
use crate::resolve::Profile;

/// What unlisted calls answer: glibc and most programs treat ENOSYS as "this kernel lacks it"
/// and fall back, where EPERM would be a hard failure.
pub const UNLISTED_ERRNO: u32 = 38;

/// How the container's selection tightens the class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tightening {
    /// More calls to deny (EPERM).
    pub deny: Vec<String>,
    /// Capabilities to drop from the class's set.
    pub drop_capabilities: Vec<String>,
    /// Install the filters with SECCOMP_FILTER_FLAG_LOG: denials show as audit lines
    /// (`type=1326`) in the kernel log. Changes no decision.
    pub log_denials: bool,
}

/// The `linux.seccomp` section of a profile: an allowlist, ENOSYS for anything unlisted, the
/// profile's deliberate denials, then the always-denied list.
pub fn seccomp(profile: &Profile, tightening: &Tightening) -> LinuxSeccomp {
    let mut entries: Vec<LinuxSyscall> = Vec::new();
    let tightened: HashSet<&str> = tightening.deny.iter().map(String::as_str).collect();

    // Unconditional allows share one entry; conditional ones get entries of their own.
    let plain: Vec<String> = profile
        .allow
        .iter()
        .filter(|(name, rule)| rule.when == When::Always && !tightened.contains(name.as_str()))
        .map(|(name, _)| name.clone())
        .collect();
    if !plain.is_empty() {
        entries.push(entry(plain, LinuxSeccompAction::ScmpActAllow, None, &[]));
    }
    for (name, rule) in &profile.allow {
        if let (When::AnyOf(_), false) = (&rule.when, tightened.contains(name.as_str())) {
            push_conditional(
                &mut entries,
                name,
                &rule.when,
                LinuxSeccompAction::ScmpActAllow,
                None,
            );
        }
    }

    // Deliberate denials, grouped by errno when unconditional.
    let mut plain_denies: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (name, rule) in &profile.deny {
        match &rule.when {
            When::Always => plain_denies
                .entry(rule.errno)
                .or_default()
                .push(name.clone()),
            when => push_conditional(
                &mut entries,
                name,
                when,
                LinuxSeccompAction::ScmpActErrno,
                Some(errno_u32(rule.errno)),
            ),
        }
    }
    let eperm = sgrun_seccomp::errno_number("EPERM").expect("known");
    for name in &tightening.deny {
        let list = plain_denies.entry(eperm).or_default();
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
    for (errno, names) in plain_denies {
        entries.push(entry(
            names,
            LinuxSeccompAction::ScmpActErrno,
            Some(errno_u32(errno)),
            &[],
        ));
    }

    for denied in ALWAYS_DENIED {
        let names: Vec<String> = denied
            .names
            .iter()
            .filter(|n| {
                // A class that names a reason for an exception allows the family.
                !(denied.exception_allowed && profile.allow.contains_key(**n))
            })
            .map(|n| (*n).to_owned())
            .collect();
        if names.is_empty() {
            continue;
        }
        let action = LinuxSeccompAction::ScmpActErrno;
        let errno = Some(errno_u32(denied.errno));
        match denied.when() {
            When::Always => entries.push(entry(names, action, errno, &[])),
            when => {
                for name in names {
                    push_conditional(&mut entries, &name, &when, action, errno);
                }
            }
        }
    }

    let mut section = LinuxSeccomp::default();
    section.set_default_action(LinuxSeccompAction::ScmpActErrno);
    section.set_default_errno_ret(Some(UNLISTED_ERRNO));
    section.set_architectures(Some(vec![Arch::ScmpArchX86_64]));
    if tightening.log_denials {
        section.set_flags(Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagLog]));
    }
    section.set_syscalls(Some(entries));
    section
}

fn errno_u32(errno: i32) -> u32 {
    u32::try_from(errno).expect("errno values are positive")
}

fn entry(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno: Option<u32>,
    conds: &[Cond],
) -> LinuxSyscall {
    let mut builder = LinuxSyscallBuilder::default().names(names).action(action);
    if let Some(e) = errno {
        builder = builder.errno_ret(e);
    }
    if !conds.is_empty() {
        builder = builder.args(conds.iter().map(oci_arg).collect::<Vec<_>>());
    }
    builder.build().expect("every field of the entry is set")
}

/// An OCI entry cannot AND two conditions on one argument (runc and sgrun read a repeated
/// index as OR), so: single conditions all on one argument share an entry (OR); anything else
/// is an entry per group (AND within it).
fn push_conditional(
    entries: &mut Vec<LinuxSyscall>,
    name: &str,
    when: &When,
    action: LinuxSeccompAction,
    errno: Option<u32>,
) {
    let Some(groups) = when.groups() else {
        entries.push(entry(vec![name.to_owned()], action, errno, &[]));
        return;
    };
    let singles: Vec<Cond> = groups
        .iter()
        .filter(|g| g.len() == 1)
        .map(|g| g[0])
        .collect();
    let one_index =
        singles.len() == groups.len() && singles.windows(2).all(|w| w[0].index == w[1].index);
    if one_index && singles.len() > 1 {
        entries.push(entry(vec![name.to_owned()], action, errno, &singles));
    } else {
        for group in groups {
            entries.push(entry(vec![name.to_owned()], action, errno, group));
        }
    }
}

fn oci_arg(c: &Cond) -> oci_spec::runtime::LinuxSeccompArg {
    let op = match c.op {
        Op::Eq => LinuxSeccompOperator::ScmpCmpEq,
        Op::Ne => LinuxSeccompOperator::ScmpCmpNe,
        Op::Lt => LinuxSeccompOperator::ScmpCmpLt,
        Op::Le => LinuxSeccompOperator::ScmpCmpLe,
        Op::Gt => LinuxSeccompOperator::ScmpCmpGt,
        Op::Ge => LinuxSeccompOperator::ScmpCmpGe,
        Op::MaskedEq => LinuxSeccompOperator::ScmpCmpMaskedEq,
    };
    let builder = LinuxSeccompArgBuilder::default()
        .index(usize::from(c.index))
        .op(op);
    let builder = if c.op == Op::MaskedEq {
        // OCI's MASKED_EQ: the mask in `value`, the expected value in `valueTwo`.
        builder.value(c.mask).value_two(c.value)
    } else {
        builder.value(c.value)
    };
    builder
        .build()
        .expect("every field of the condition is set")
}

/// What applying a profile did, for the caller to record and enforce.
#[derive(Debug, Clone)]
pub struct Applied {
    pub profile: String,
    /// A second seccomp section to enforce beside the config's own `linux.seccomp`, when the
    /// config brought a different one (both then apply: the kernel keeps the strictest).
    pub extra_seccomp: Option<LinuxSeccomp>,
}

/// The capabilities a profile grants, as OCI values, less those `drop` names.
pub fn capabilities(profile: &Profile, drop: &[String]) -> HashSet<Capability> {
    profile
        .capabilities
        .keys()
        .filter(|c| !drop.contains(c))
        .map(|c| serde_json::from_value(serde_json::Value::String(c.clone())).expect("validated"))
        .collect()
}

/// Applies `profile` to `spec`, only ever tightening:
/// * seccomp: the profile's section becomes `linux.seccomp` if the config has none; a
///   different one already there is kept, and the profile's is returned to enforce as well;
/// * capabilities: every set is intersected with the profile's;
/// * no_new_privs: always on;
/// * rlimits: the lower of the config's and the profile's;
/// * masked and read-only paths: the profile's are added;
/// * pids: the config's limit, capped by the profile's ceiling.
pub fn apply(profile: &Profile, tightening: &Tightening, spec: &mut Spec) -> Result<Applied> {
    let want = seccomp(profile, tightening);
    let granted = capabilities(profile, &tightening.drop_capabilities);

    let process = spec
        .process_mut()
        .as_mut()
        .ok_or_else(|| ProfileError::Apply {
            profile: profile.name.clone(),
            detail: "config.json has no process section to apply it to".into(),
        })?;
    process.set_no_new_privileges(Some(true));
    if let Some(caps) = process.capabilities().clone() {
        let keep = |set: &Option<HashSet<Capability>>| {
            set.as_ref()
                .map(|s| s.intersection(&granted).copied().collect::<HashSet<_>>())
        };
        let mut narrowed = LinuxCapabilities::default();
        narrowed.set_bounding(keep(caps.bounding()));
        narrowed.set_effective(keep(caps.effective()));
        narrowed.set_permitted(keep(caps.permitted()));
        narrowed.set_inheritable(keep(caps.inheritable()));
        narrowed.set_ambient(keep(caps.ambient()));
        if narrowed != caps {
            tracing::info!(profile = %profile.name, "capabilities outside the profile dropped");
        }
        process.set_capabilities(Some(narrowed));
    }
    let mut rlimits = process.rlimits().clone().unwrap_or_default();
    for (kind, limit) in &profile.rlimits {
        let typ: PosixRlimitType = kind.parse().expect("validated");
        let (soft, hard) = match rlimits.iter().position(|r| r.typ() == typ) {
            Some(i) => {
                let r = rlimits.remove(i);
                (r.soft().min(limit.soft), r.hard().min(limit.hard))
            }
            None => (limit.soft, limit.hard),
        };
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()
                .expect("every field of the rlimit is set"),
        );
    }
    process.set_rlimits(Some(rlimits));

    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    let add_paths = |existing: &Option<Vec<String>>, more: &BTreeMap<String, _>| {
        let mut list = existing.clone().unwrap_or_default();
        for p in more.keys() {
            if !list.contains(p) {
                list.push(p.clone());
            }
        }
        Some(list)
    };
    let masked = add_paths(linux.masked_paths(), &profile.masked);
    linux.set_masked_paths(masked);
    let readonly = add_paths(linux.readonly_paths(), &profile.readonly);
    linux.set_readonly_paths(readonly);

    if let Some((ceiling, _)) = profile.pids {
        let mut resources = linux.resources().clone().unwrap_or_default();
        let current = resources
            .pids()
            .as_ref()
            .map(|p| p.limit())
            .filter(|l| *l > 0);
        let limit = current.map_or(ceiling, |c| c.min(ceiling));
        resources.set_pids(Some(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .expect("limit is set"),
        ));
        linux.set_resources(Some(resources));
    }

    let extra_seccomp = match linux.seccomp() {
        None => {
            linux.set_seccomp(Some(want));
            None
        }
        Some(own) if same_seccomp(own, &want) => None,
        Some(_) => Some(want),
    };

    let mut annotations: HashMap<String, String> = spec.annotations().clone().unwrap_or_default();
    annotations.insert(crate::ANNOTATION.into(), profile.name.clone());
    spec.set_annotations(Some(annotations));

    Ok(Applied {
        profile: profile.name.clone(),
        extra_seccomp,
    })
}

fn same_seccomp(a: &LinuxSeccomp, b: &LinuxSeccomp) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// A config.json for `sgrun spec --profile`: `base` (the runtime's default spec) with the
/// profile's capabilities as the process's, then the profile applied.
pub fn spec_with_profile(profile: &Profile, mut base: Spec) -> Result<Spec> {
    let granted = capabilities(profile, &[]);
    if let Some(process) = base.process_mut().as_mut() {
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(granted.clone()));
        caps.set_effective(Some(granted.clone()));
        caps.set_permitted(Some(granted));
        caps.set_inheritable(Some(HashSet::new()));
        caps.set_ambient(Some(HashSet::new()));
        process.set_capabilities(Some(caps));
    }
    apply(profile, &Tightening::default(), &mut base)?;
    Ok(base)
}
