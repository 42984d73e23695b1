//! Layers merged into one profile, with every check on the way: names, arguments, duplicates,
//! conflicts between layers, loosening, the always-denied list.
//!
//! Order of merging: a file's `extends` are resolved first, each fully, and merged side by side
//! (siblings must agree: a call one allows and another denies is a conflict); then the file's
//! own rules are applied on top, where adding is fine and undoing is "loosens".

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{Capability, PosixRlimitType};
use toml::Spanned;

use crate::always::{self, ALWAYS_DENIED, FORBIDDEN_CAPABILITIES};
use crate::catalog::Source;
use crate::constants::{self, CLONE_NAMESPACES};
use crate::error::{Origin, ProfileError, Result};
use crate::format::{self, ArgRule, Kind, Op, Scalar, Value};
use crate::model::{Cond, Group, When};

/// A rule as merged, with where it came from.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub when: When,
    pub at: Origin,
    pub why: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Denial {
    pub errno: i32,
    pub when: When,
    pub at: Origin,
    pub why: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Rlimit {
    pub soft: u64,
    pub hard: u64,
    pub at: Origin,
}

/// A profile with all its layers merged.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub kind: Kind,
    pub description: String,
    /// Every file merged, dependencies first, this one last.
    pub layers: Vec<String>,
    pub allow: BTreeMap<String, Allowed>,
    pub deny: BTreeMap<String, Denial>,
    pub capabilities: BTreeMap<String, Origin>,
    pub rlimits: BTreeMap<String, Rlimit>,
    pub masked: BTreeMap<String, Origin>,
    pub readonly: BTreeMap<String, Origin>,
    pub pids: Option<(i64, Origin)>,
}

impl Profile {
    fn empty(name: &str, kind: Kind, description: String) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            description,
            layers: Vec::new(),
            allow: BTreeMap::new(),
            deny: BTreeMap::new(),
            capabilities: BTreeMap::new(),
            rlimits: BTreeMap::new(),
            masked: BTreeMap::new(),
            readonly: BTreeMap::new(),
            pids: None,
        }
    }
}

/// Resolves `name` from `sources`, memoising layers already resolved.
pub fn resolve(sources: &BTreeMap<String, Source>, name: &str) -> Result<Profile> {
    let mut done = BTreeMap::new();
    resolve_in(sources, name, &mut Vec::new(), &mut done, None)
}

fn resolve_in(
    sources: &BTreeMap<String, Source>,
    name: &str,
    stack: &mut Vec<String>,
    done: &mut BTreeMap<String, Profile>,
    referenced_at: Option<&Origin>,
) -> Result<Profile> {
    if let Some(p) = done.get(name) {
        return Ok(p.clone());
    }
    let Some(source) = sources.get(name) else {
        let available: Vec<String> = sources.keys().cloned().collect();
        let hint = match referenced_at {
            Some(at) => format!(" (named in `extends` at {at})"),
            None => String::new(),
        };
        return Err(ProfileError::NotFound {
            name: name.to_owned(),
            available,
            hint,
        });
    };
    if stack.iter().any(|n| n == name) {
        let mut chain = stack.clone();
        chain.push(name.to_owned());
        return Err(ProfileError::Cycle {
            at: referenced_at.cloned().unwrap_or(Origin {
                file: source.origin.clone(),
                line: 1,
            }),
            chain,
        });
    }
    let file = parse(source)?;
    let at = |span: std::ops::Range<usize>| source.origin_at(span.start);
    let header_name = file.profile.name.get_ref();
    if header_name != name {
        return Err(ProfileError::NameMismatch {
            at: at(file.profile.name.span()),
            name: header_name.clone(),
            expected: name.to_owned(),
        });
    }

    stack.push(name.to_owned());
    let mut merged = Profile::empty(name, file.profile.kind, file.profile.description.clone());
    for parent in &file.profile.extends {
        let parent_at = at(parent.span());
        let resolved = resolve_in(sources, parent.get_ref(), stack, done, Some(&parent_at))?;
        merge_sibling(&mut merged, resolved)?;
    }
    stack.pop();
    if !source.builtin && file.profile.extends.is_empty() {
        return Err(ProfileError::LocalMayOnlyTighten {
            at: at(file.profile.name.span()),
            what: "it extends nothing".into(),
        });
    }
    apply_own(&mut merged, &file, source)?;
    merged.layers.push(name.to_owned());
    done.insert(name.to_owned(), merged.clone());
    Ok(merged)
}

fn parse(source: &Source) -> Result<format::File> {
    toml::from_str(&source.text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        ProfileError::Syntax {
            at: source.origin_at(offset),
            message: e.message().trim_end().to_owned(),
        }
    })
}

/// Merges a fully resolved parent into `acc`, beside the parents merged before it. Allows add
/// up (the class runs every parent's workload); a call one parent denies outright and another
/// allows is a conflict, since the denial would break the other.
fn merge_sibling(acc: &mut Profile, other: Profile) -> Result<()> {
    for (name, rule) in other.allow {
        if let Some(d) = acc.deny.get(&name).filter(|d| d.when == When::Always) {
            return Err(conflict(&rule.at, &name, "allowed", "denied", &d.at));
        }
        match acc.allow.get_mut(&name) {
            Some(mine) => union(&mut mine.when, &rule.when),
            None => {
                acc.allow.insert(name, rule);
            }
        }
    }
    for (name, rule) in other.deny {
        if rule.when == When::Always {
            if let Some(a) = acc.allow.get(&name) {
                return Err(conflict(&rule.at, &name, "denied", "allowed", &a.at));
            }
        }
        merge_deny(acc, name, rule)?;
    }
    acc.capabilities.extend(other.capabilities);
    // Limits of siblings: the larger, since the class runs both workloads (each is already no
    // higher than the layers beneath it).
    for (kind, limit) in other.rlimits {
        match acc.rlimits.get_mut(&kind) {
            Some(mine) => {
                mine.soft = mine.soft.max(limit.soft);
                mine.hard = mine.hard.max(limit.hard);
            }
            None => {
                acc.rlimits.insert(kind, limit);
            }
        }
    }
    acc.masked.extend(other.masked);
    acc.readonly.extend(other.readonly);
    acc.pids = match (acc.pids.take(), other.pids) {
        (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
        (a, b) => a.or(b),
    };
    for layer in other.layers {
        if !acc.layers.contains(&layer) {
            acc.layers.push(layer);
        }
    }
    Ok(())
}

/// Either condition: `Always` absorbs, otherwise the groups add up.
fn union(mine: &mut When, theirs: &When) {
    match (&mut *mine, theirs) {
        (When::Always, _) => {}
        (_, When::Always) => *mine = When::Always,
        (When::AnyOf(a), When::AnyOf(b)) => a.extend(b.iter().cloned()),
    }
}

fn merge_deny(acc: &mut Profile, name: String, rule: Denial) -> Result<()> {
    match acc.deny.get_mut(&name) {
        Some(mine) if mine.errno != rule.errno => Err(conflict(
            &rule.at,
            &name,
            &format!("denied with errno {}", rule.errno),
            &format!("denied with errno {}", mine.errno),
            &mine.at,
        )),
        Some(mine) => {
            union(&mut mine.when, &rule.when);
            Ok(())
        }
        None => {
            acc.deny.insert(name, rule);
            Ok(())
        }
    }
}

fn conflict(at: &Origin, name: &str, here: &str, there: &str, other: &Origin) -> ProfileError {
    ProfileError::Conflict {
        at: at.clone(),
        name: name.to_owned(),
        detail: format!("{here} here but {there}"),
        other: Box::new(other.clone()),
    }
}

/// Applies a file's own rules on top of its merged parents.
fn apply_own(acc: &mut Profile, file: &format::File, source: &Source) -> Result<()> {
    let at = |offset: usize| source.origin_at(offset);
    let local = !source.builtin;

    // Syscall rules: first gathered per name within the file (duplicates, OR of conditions),
    // then checked against the parents.
    let mut own_allow: BTreeMap<String, Allowed> = BTreeMap::new();
    for rule in &file.allow {
        let rule_at = at(rule.span().start);
        let r = rule.get_ref();
        if local {
            return Err(ProfileError::LocalMayOnlyTighten {
                at: rule_at,
                what: "it has an [[allow]] rule".into(),
            });
        }
        let when = conditions(&r.args, source)?;
        check_names(&r.names, source)?;
        for name in &r.names {
            let name_at = at(name.span().start);
            let name = name.get_ref();
            check_allowable(name, &when, r.exception.as_deref(), &name_at)?;
            add_rule(&mut own_allow, name, &when, &name_at, "allowed", |when| {
                Allowed {
                    when,
                    at: name_at.clone(),
                    why: r.why.clone(),
                }
            })?;
        }
    }
    let mut own_deny: BTreeMap<String, Denial> = BTreeMap::new();
    for rule in &file.deny {
        let r = rule.get_ref();
        let when = conditions(&r.args, source)?;
        check_names(&r.names, source)?;
        let errno = match &r.errno {
            None => libc_eperm(),
            Some(e) => {
                sgrun_seccomp::errno_number(e.get_ref()).ok_or_else(|| ProfileError::Unknown {
                    at: at(e.span().start),
                    what: "errno",
                    name: e.get_ref().clone(),
                    hint: "; use a name such as EPERM, EACCES or ENOSYS".into(),
                })?
            }
        };
        for name in &r.names {
            let name_at = at(name.span().start);
            let name = name.get_ref();
            if let (Some(a), When::Always) = (own_allow.get(name), &when) {
                return Err(conflict(&name_at, name, "denied", "allowed", &a.at));
            }
            if let Some(d) = own_deny.get(name).filter(|d| d.errno != errno) {
                return Err(conflict(
                    &name_at,
                    name,
                    "denied with another errno",
                    "denied",
                    &d.at,
                ));
            }
            add_rule(&mut own_deny, name, &when, &name_at, "denied", |when| {
                Denial {
                    errno,
                    when,
                    at: name_at.clone(),
                    why: r.why.clone(),
                }
            })?;
        }
    }

    for (name, rule) in own_allow {
        // A call a parent denies outright stays denied (EPERM beats ALLOW in the kernel): an
        // allow here would be dead text that reads as a loosening, so it is refused as one.
        if let Some(d) = acc.deny.get(&name).filter(|d| d.when == When::Always) {
            return Err(ProfileError::Loosens {
                at: rule.at,
                base: d.at.clone(),
                detail: format!("{name} is denied there and allowed here"),
            });
        }
        match acc.allow.get_mut(&name) {
            Some(mine) => union(&mut mine.when, &rule.when),
            None => {
                acc.allow.insert(name, rule);
            }
        }
    }
    for (name, rule) in own_deny {
        // Denying what a parent allows tightens: fine. An unconditional denial replaces the
        // allow; a conditional one sits beside it (the kernel's strictest-wins decides).
        if rule.when == When::Always {
            acc.allow.remove(&name);
        }
        merge_deny(acc, name, rule)?;
    }

    for cap in &file.capability {
        let cap_at = at(cap.span().start);
        let name = cap.get_ref().name.get_ref();
        let canonical = capability(name, &cap_at)?;
        if FORBIDDEN_CAPABILITIES.contains(&canonical.as_str()) {
            return Err(ProfileError::ForbiddenCapability {
                at: cap_at,
                name: canonical,
            });
        }
        if local {
            return Err(ProfileError::LocalMayOnlyTighten {
                at: cap_at,
                what: format!("it grants {canonical}"),
            });
        }
        if let Some(first) = acc.capabilities.get(&canonical) {
            if first.file == cap_at.file {
                return Err(ProfileError::DuplicateRule {
                    at: cap_at,
                    name: canonical,
                    what: "granted",
                    first_line: first.line,
                });
            }
        }
        acc.capabilities.insert(canonical, cap_at);
    }

    let mut seen_rlimits: BTreeMap<String, usize> = BTreeMap::new();
    for rl in &file.rlimit {
        let rl_at = at(rl.span().start);
        let r = rl.get_ref();
        let kind = r.kind.get_ref();
        if kind.parse::<PosixRlimitType>().is_err() || !kind.starts_with("RLIMIT_") {
            return Err(ProfileError::Unknown {
                at: rl_at,
                what: "rlimit",
                name: kind.clone(),
                hint: "; use the getrlimit(2) names, e.g. RLIMIT_NOFILE".into(),
            });
        }
        if let Some(first) = seen_rlimits.insert(kind.clone(), rl_at.line) {
            return Err(ProfileError::DuplicateRule {
                at: rl_at,
                name: kind.clone(),
                what: "limited",
                first_line: first,
            });
        }
        if r.soft > r.hard {
            return Err(ProfileError::BadRule {
                at: rl_at,
                detail: format!(
                    "{kind}: soft limit {} is above hard limit {}",
                    r.soft, r.hard
                ),
            });
        }
        if let Some(base) = acc.rlimits.get(kind) {
            if r.soft > base.soft || r.hard > base.hard {
                return Err(ProfileError::Loosens {
                    at: rl_at,
                    base: base.at.clone(),
                    detail: format!(
                        "{kind} is {}/{} there and {}/{} here (soft/hard)",
                        base.soft, base.hard, r.soft, r.hard
                    ),
                });
            }
        }
        acc.rlimits.insert(
            kind.clone(),
            Rlimit {
                soft: r.soft,
                hard: r.hard,
                at: rl_at,
            },
        );
    }

    for (list, target) in [
        (&file.masked, &mut acc.masked),
        (&file.readonly, &mut acc.readonly),
    ] {
        for rule in list {
            let path_at = at(rule.span().start);
            let path = rule.get_ref().path.get_ref();
            check_path(path, &path_at)?;
            if let Some(first) = target.get(path) {
                if first.file == path_at.file {
                    return Err(ProfileError::DuplicateRule {
                        at: path_at,
                        name: path.clone(),
                        what: "listed",
                        first_line: first.line,
                    });
                }
            }
            target.insert(path.clone(), path_at);
        }
    }

    if let Some(limits) = &file.limits {
        let limits_at = at(limits.span().start);
        if let Some(pids) = limits.get_ref().pids {
            if pids < 1 {
                return Err(ProfileError::BadRule {
                    at: limits_at,
                    detail: format!("limits.pids is {pids}; it must be at least 1"),
                });
            }
            if let Some((base, base_at)) = &acc.pids {
                if pids > *base {
                    return Err(ProfileError::Loosens {
                        at: limits_at,
                        base: base_at.clone(),
                        detail: format!("limits.pids is {base} there and {pids} here"),
                    });
                }
            }
            acc.pids = Some((pids, limits_at));
        }
    }
    Ok(())
}

fn libc_eperm() -> i32 {
    sgrun_seccomp::errno_number("EPERM").expect("EPERM is known")
}

/// Adds `name` to a per-file rule map: a second unconditional rule, or a conditional rule
/// beside an unconditional one, is a duplicate; two conditional rules are OR-ed.
fn add_rule<T: HasWhen>(
    map: &mut BTreeMap<String, T>,
    name: &str,
    when: &When,
    at: &Origin,
    what: &'static str,
    make: impl FnOnce(When) -> T,
) -> Result<()> {
    match map.get_mut(name) {
        None => {
            map.insert(name.to_owned(), make(when.clone()));
            Ok(())
        }
        Some(existing) => match (existing.when_mut(), when) {
            (When::AnyOf(mine), When::AnyOf(theirs)) => {
                mine.extend(theirs.iter().cloned());
                Ok(())
            }
            _ => Err(ProfileError::DuplicateRule {
                at: at.clone(),
                name: name.to_owned(),
                what,
                first_line: existing.at().line,
            }),
        },
    }
}

trait HasWhen {
    fn when_mut(&mut self) -> &mut When;
    fn at(&self) -> &Origin;
}

impl HasWhen for Allowed {
    fn when_mut(&mut self) -> &mut When {
        &mut self.when
    }
    fn at(&self) -> &Origin {
        &self.at
    }
}

impl HasWhen for Denial {
    fn when_mut(&mut self) -> &mut When {
        &mut self.when
    }
    fn at(&self) -> &Origin {
        &self.at
    }
}

fn check_names(names: &[Spanned<String>], source: &Source) -> Result<()> {
    if names.is_empty() {
        return Err(ProfileError::BadRule {
            at: source.origin_at(0),
            detail: "a rule with an empty `names` list".into(),
        });
    }
    for name in names {
        if sgrun_seccomp::syscall_number(name.get_ref()).is_none() {
            let hint = closest_syscall(name.get_ref())
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            return Err(ProfileError::UnknownSyscall {
                at: source.origin_at(name.span().start),
                name: name.get_ref().clone(),
                hint,
            });
        }
    }
    Ok(())
}

/// A known name that differs from `name` by one edit, for the error message.
fn closest_syscall(name: &str) -> Option<&'static str> {
    sgrun_seccomp::x86_64_names().find(|candidate| within_one_edit(name, candidate))
}

fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[prefix..], &b[prefix..]);
    ra.get(1..) == rb.get(1..) || ra.get(1..) == Some(rb) || Some(ra) == rb.get(1..)
}

/// Refuses an allow rule that would let through a call from the always-denied list.
fn check_allowable(name: &str, when: &When, exception: Option<&str>, at: &Origin) -> Result<()> {
    if let Some(denied) = always::unconditionally_denied(name) {
        match exception {
            Some(reason) if denied.exception_allowed && !reason.trim().is_empty() => {
                return Ok(());
            }
            _ if denied.exception_allowed => {
                return Err(ProfileError::BadRule {
                    at: at.clone(),
                    detail: format!(
                        "{name} is denied in every profile unless the class names a reason: \
                         add `exception = \"why this class needs it\"` to the rule"
                    ),
                })
            }
            _ => {
                return Err(ProfileError::AlwaysDenied {
                    at: at.clone(),
                    name: name.to_owned(),
                    why: denied.why,
                })
            }
        }
    }
    if exception.is_some() {
        return Err(ProfileError::BadRule {
            at: at.clone(),
            detail: format!(
                "`exception` is only for calls the always-denied list lets a class allow with a \
                 reason (io_uring); {name} needs no exception"
            ),
        });
    }
    if name == "clone" {
        // Every way of allowing clone must say "no namespace flags".
        let safe = when.groups().is_some_and(|groups| {
            groups.iter().all(|g| {
                g.iter().any(|c| {
                    c.index == 0
                        && c.op == Op::MaskedEq
                        && c.mask & CLONE_NAMESPACES == CLONE_NAMESPACES
                        && c.value & CLONE_NAMESPACES == 0
                })
            })
        });
        if !safe {
            let denied = ALWAYS_DENIED.iter().find(|d| d.names == ["clone"]);
            return Err(ProfileError::AlwaysDenied {
                at: at.clone(),
                name: "clone with namespace flags (add args = [{ index = 0, op = \"masked_eq\", \
                       mask = \"CLONE_NAMESPACES\", value = 0 }])"
                    .into(),
                why: denied.map_or("", |d| d.why),
            });
        }
    }
    if name == "personality" {
        let allowed_values_only = when.groups().is_some_and(|groups| {
            groups.iter().all(|g| {
                g.iter()
                    .any(|c| c.index == 0 && c.op == Op::Eq && always::personality_allowed(c.value))
            })
        });
        if !allowed_values_only {
            return Err(ProfileError::AlwaysDenied {
                at: at.clone(),
                name: "personality with flags (allow only value PER_LINUX, PER_LINUX32 or \
                       PERSONALITY_QUERY)"
                    .into(),
                why: "personality flags switch off ASLR or make data executable",
            });
        }
    }
    Ok(())
}

/// Parses a rule's argument conditions: AND across arguments, a list of values is OR, so the
/// result is an OR of AND-groups.
fn conditions(args: &[Spanned<ArgRule>], source: &Source) -> Result<When> {
    if args.is_empty() {
        return Ok(When::Always);
    }
    let mut groups: Vec<Group> = vec![Vec::new()];
    let mut indexes = BTreeSet::new();
    for arg in args {
        let at = source.origin_at(arg.span().start);
        let a = arg.get_ref();
        if a.index > 5 {
            return Err(ProfileError::BadRule {
                at,
                detail: format!(
                    "argument index {} is out of range; system calls have arguments 0 to 5",
                    a.index
                ),
            });
        }
        if !indexes.insert(a.index) {
            return Err(ProfileError::BadRule {
                at,
                detail: format!(
                    "two conditions on argument {}; give one condition a list of values, or \
                     write two rules",
                    a.index
                ),
            });
        }
        let mask = match (a.op, &a.mask) {
            (Op::MaskedEq, Some(m)) => scalar(m, &at)?,
            (Op::MaskedEq, None) => {
                return Err(ProfileError::BadRule {
                    at,
                    detail: "op masked_eq needs a `mask`".into(),
                })
            }
            (_, Some(_)) => {
                return Err(ProfileError::BadRule {
                    at,
                    detail: "`mask` only goes with op masked_eq".into(),
                })
            }
            (_, None) => 0,
        };
        let values: Vec<u64> = match &a.value {
            Value::One(s) => vec![scalar(s, &at)?],
            Value::AnyOf(list) if list.is_empty() => {
                return Err(ProfileError::BadRule {
                    at,
                    detail: "an empty list of values matches nothing".into(),
                })
            }
            Value::AnyOf(list) => list.iter().map(|s| scalar(s, &at)).collect::<Result<_>>()?,
        };
        if a.op == Op::MaskedEq {
            if let Some(v) = values.iter().find(|v| **v & !mask != 0) {
                return Err(ProfileError::BadRule {
                    at,
                    detail: format!(
                        "masked_eq value {v:#x} has bits outside mask {mask:#x}, so it never \
                         matches"
                    ),
                });
            }
        }
        groups = groups
            .into_iter()
            .flat_map(|g| {
                values.iter().map(move |v| {
                    let mut g = g.clone();
                    g.push(Cond {
                        index: a.index,
                        op: a.op,
                        value: *v,
                        mask,
                    });
                    g
                })
            })
            .collect();
    }
    for g in &mut groups {
        g.sort();
    }
    Ok(When::AnyOf(groups.into_iter().collect()))
}

fn scalar(s: &Scalar, at: &Origin) -> Result<u64> {
    match s {
        Scalar::Number(n) => u64::try_from(*n).map_err(|_| ProfileError::BadRule {
            at: at.clone(),
            detail: format!("{n} is negative; write the value as an unsigned number"),
        }),
        Scalar::Name(expr) => constants::resolve(expr).map_err(|part| ProfileError::Unknown {
            at: at.clone(),
            what: "constant",
            name: part,
            hint: " (see runtime/profiles/src/constants.rs, or write the number)".into(),
        }),
    }
}

fn capability(name: &str, at: &Origin) -> Result<String> {
    let parsed: std::result::Result<Capability, _> =
        serde_json::from_value(serde_json::Value::String(name.to_owned()));
    match parsed {
        Ok(_) if name.starts_with("CAP_") && name == name.to_ascii_uppercase() => {
            Ok(name.to_owned())
        }
        _ => Err(ProfileError::Unknown {
            at: at.clone(),
            what: "capability",
            name: name.to_owned(),
            hint: "; use the capabilities(7) names, e.g. CAP_SETUID".into(),
        }),
    }
}

fn check_path(path: &str, at: &Origin) -> Result<()> {
    let reason = if !path.starts_with('/') {
        "it is not absolute"
    } else if path.split('/').any(|c| c == ".." || c == ".") {
        "it has a `.` or `..` component"
    } else if path.contains('\0') {
        "it has a NUL byte"
    } else {
        return Ok(());
    };
    Err(ProfileError::BadRule {
        at: at.clone(),
        detail: format!("path {path:?} is not usable: {reason}"),
    })
}
