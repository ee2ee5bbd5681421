//! `forget`: which snapshots a retention policy (or a list of ids) removes, and removing them.
//! Only snapshot objects go here; their data stays until `prune` finds it unreferenced.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::policy::{self, Decision, GroupBy, GroupKey, Policy};
use crate::repo::Repository;
use crate::select::{self, Filter};

pub struct ForgetOptions {
    pub policy: Policy,
    pub group_by: GroupBy,
    pub filter: Filter,
    /// Explicit snapshots (id prefixes or `latest`) instead of a policy.
    pub ids: Vec<String>,
    pub dry_run: bool,
    /// Allow a policy to remove every snapshot of a group (restic's `--unsafe-allow-remove-all`).
    pub allow_remove_all: bool,
}

/// One group's verdict.
pub struct Group {
    pub key: GroupKey,
    /// The snapshots of the group by id, to print them.
    pub snapshots: Vec<(Id, Snapshot)>,
    pub decision: Decision,
}

pub struct Outcome {
    pub groups: Vec<Group>,
    /// What was removed (or, on a dry run, would be).
    pub removed: Vec<Id>,
    /// Snapshot objects that could not be read: never removed by a policy, reported.
    pub damaged: Vec<(String, Error)>,
}

/// Applies the policy per group (or removes the named snapshots) and, unless a dry run,
/// deletes the snapshot objects it removes. The caller holds a prune lock.
pub fn forget<S>(repo: &Repository<S>, opts: &ForgetOptions) -> Result<Outcome> {
    let (snaps, damaged) = repo.snapshots()?;
    let mut out = Outcome { groups: Vec::new(), removed: Vec::new(), damaged };
    if !opts.ids.is_empty() {
        if !opts.policy.is_empty() {
            return Err(Error::Invalid("give snapshot ids or a --keep-* policy, not both".into()));
        }
        for name in &opts.ids {
            let (sel, path) = select::parse_spec(name)?;
            if path.is_some() {
                return Err(Error::Invalid(format!("{name}: forget removes whole snapshots, not paths")));
            }
            let (id, _) = select::pick(&snaps, &sel, &Filter::default())?;
            if !out.removed.contains(id) {
                out.removed.push(*id);
            }
        }
    } else {
        opts.policy.validate()?;
        if opts.policy.is_empty() {
            return Err(Error::Invalid(
                "no policy was given (--keep-last, --keep-daily, --keep-within, …): nothing is removed".into(),
            ));
        }
        let matching: Vec<(Id, Snapshot)> = snaps.into_iter().filter(|(_, s)| opts.filter.matches(s)).collect();
        let (tz, now) = (TimeZone::system(), Timestamp::now());
        for (key, members) in policy::group(&matching, opts.group_by) {
            let decision = policy::apply(&members, &opts.policy, &tz, now);
            if decision.keep.is_empty() && !opts.allow_remove_all {
                return Err(Error::Invalid(format!(
                    "the policy keeps none of the {} snapshots of {}; nothing is removed \
                     (--unsafe-allow-remove-all removes them all)",
                    members.len(),
                    describe(&key)
                )));
            }
            out.removed.extend(decision.remove.iter().copied());
            out.groups.push(Group { key, snapshots: members, decision });
        }
    }
    if !opts.dry_run {
        repo.delete_snapshots(&out.removed)?;
    }
    Ok(out)
}

/// A group in words: `host h, paths /a /b, tags x`.
pub fn describe(key: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &key.host {
        parts.push(format!("host {h}"));
    }
    if let Some(p) = &key.paths {
        parts.push(format!("paths {}", p.join(" ")));
    }
    if let Some(t) = &key.tags {
        parts.push(if t.is_empty() { "no tags".into() } else { format!("tags {}", t.join(",")) });
    }
    if parts.is_empty() { "all snapshots".into() } else { parts.join(", ") }
}
