//! Choosing snapshots: by id prefix, `latest`, time, and tag/host/path filters.

use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;

#[derive(Default, Clone)]
pub struct Filter {
    /// Each entry is a comma-separated set of tags that must all be present; any entry may match.
    pub tags: Vec<String>,
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
}

impl Filter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.paths.is_empty() || self.paths.iter().all(|p| s.paths.contains(p)))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|set| set.split(',').filter(|t| !t.is_empty()).all(|t| s.tags.iter().any(|x| x == t))))
    }
}

/// Finds one snapshot among `snaps` (sorted oldest first) by `latest` or an id prefix.
pub fn by_name<'a>(snaps: &'a [(Id, Snapshot)], name: &str, filter: &Filter) -> Result<&'a (Id, Snapshot)> {
    if name == "latest" {
        return snaps
            .iter()
            .rev()
            .find(|(_, s)| filter.matches(s))
            .ok_or_else(|| Error::NoSnapshot("latest (the repository has no matching snapshot)".into()));
    }
    let name = name.to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!("{name:?} is neither `latest` nor a snapshot id")));
    }
    let mut hits = snaps.iter().filter(|(id, _)| id.hex().starts_with(&name));
    match (hits.next(), hits.next()) {
        (Some(s), None) => Ok(s),
        (None, _) => Err(Error::NoSnapshot(name)),
        (Some(_), Some(_)) => Err(Error::AmbiguousSnapshot(name)),
    }
}

/// The newest matching snapshot taken at or before `t`.
pub fn at_or_before<'a>(snaps: &'a [(Id, Snapshot)], t: Timestamp, filter: &Filter) -> Result<&'a (Id, Snapshot)> {
    let t_ns = t.as_nanosecond();
    let matching: Vec<_> = snaps.iter().filter(|(_, s)| filter.matches(s)).collect();
    if let Some(s) = matching.iter().rev().find(|(_, s)| i128::from(s.time_ns) <= t_ns) {
        return Ok(s);
    }
    Err(Error::NoSnapshot(match matching.first() {
        Some((id, s)) => format!(
            "at or before {t}: the oldest matching snapshot is {} from {}",
            id.short(),
            crate::timespec::rfc3339(s.time_ns)
        ),
        None => "the filters (the repository has no matching snapshot)".to_string(),
    }))
}
