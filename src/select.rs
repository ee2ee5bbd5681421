//! Choosing snapshots, the one way every command does it: `SNAPSHOT[:PATH]` specs, `latest`,
//! an id prefix, the newest at or before a time, and tag/host/path filters.

use std::path::PathBuf;

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

/// How a command names one snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    Latest,
    /// A unique prefix of its id (hex).
    Id(String),
    /// The newest snapshot taken at or before this time.
    AtOrBefore(Timestamp),
}

/// Splits `SNAPSHOT[:PATH]` (`latest:/home/me/docs`); the path must be absolute.
pub fn parse_spec(spec: &str) -> Result<(Selector, Option<PathBuf>)> {
    let (name, path) = match spec.split_once(':') {
        Some((n, p)) => (n, Some(PathBuf::from(p))),
        None => (spec, None),
    };
    if path.as_ref().is_some_and(|p| !p.is_absolute()) {
        return Err(Error::Invalid(
            "the path after `:` must be absolute, as the snapshot stores it (e.g. latest:/home/me/docs)".into(),
        ));
    }
    let sel = if name == "latest" {
        Selector::Latest
    } else if !name.is_empty() && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        Selector::Id(name.to_ascii_lowercase())
    } else {
        return Err(Error::Invalid(format!("{name:?} is neither `latest` nor a snapshot id")));
    };
    Ok((sel, path))
}

/// The one snapshot `sel` names among `snaps` (sorted oldest first) that pass `filter`.
pub fn pick<'a>(snaps: &'a [(Id, Snapshot)], sel: &Selector, filter: &Filter) -> Result<&'a (Id, Snapshot)> {
    match sel {
        Selector::Latest => by_name(snaps, "latest", filter),
        Selector::Id(p) => by_name(snaps, p, filter),
        Selector::AtOrBefore(t) => at_or_before(snaps, *t, filter),
    }
}

/// Of snapshot times sorted oldest first, the position of the newest at or before `t`.
pub fn newest_at_or_before(
    times: impl DoubleEndedIterator<Item = i64> + ExactSizeIterator,
    t: Timestamp,
) -> Option<usize> {
    let t_ns = t.as_nanosecond();
    let n = times.len();
    times.rev().position(|s| i128::from(s) <= t_ns).map(|back| n - 1 - back)
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
    let matching: Vec<_> = snaps.iter().filter(|(_, s)| filter.matches(s)).collect();
    if let Some(i) = newest_at_or_before(matching.iter().map(|(_, s)| s.time_ns), t) {
        return Ok(matching[i]);
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
