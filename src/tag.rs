//! `tag`: changing a snapshot's tags or description. Objects are never modified, so the changed
//! snapshot is a new object, with a new id, that records the first id of the chain as
//! `original` (format-spec §8); it is written before the old object is deleted, so a crash in
//! between leaves both, never neither.

use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::Repository;

#[derive(Default, Clone, Debug)]
pub struct TagChange {
    /// Replaces every tag (applied first); `Some(vec![])` removes them all.
    pub set: Option<Vec<String>>,
    pub remove: Vec<String>,
    pub add: Vec<String>,
    pub description: Option<String>,
}

/// Tags as users give them: repeated or comma-separated, blanks dropped.
fn split(items: &[String]) -> impl Iterator<Item = &str> {
    items.iter().flat_map(|t| t.split(',')).map(str::trim).filter(|t| !t.is_empty())
}

impl TagChange {
    /// The snapshot with the change applied (tags keep their order; each appears once).
    pub fn apply(&self, s: &Snapshot) -> Snapshot {
        let mut tags: Vec<String> = match &self.set {
            Some(set) => split(set).map(str::to_string).collect(),
            None => s.tags.clone(),
        };
        let remove: Vec<&str> = split(&self.remove).collect();
        tags.retain(|t| !remove.contains(&t.as_str()));
        for t in split(&self.add) {
            if !tags.iter().any(|x| x == t) {
                tags.push(t.to_string());
            }
        }
        let mut unique = Vec::with_capacity(tags.len());
        for t in tags {
            if !unique.contains(&t) {
                unique.push(t);
            }
        }
        Snapshot {
            tags: unique,
            description: self.description.clone().unwrap_or_else(|| s.description.clone()),
            ..s.clone()
        }
    }
}

/// Applies `change` to the snapshot `id`; returns the new snapshot's id and contents, or `None`
/// when the change leaves it as it was (nothing is written then).
pub fn retag<S>(repo: &Repository<S>, id: &Id, snap: &Snapshot, change: &TagChange) -> Result<Option<(Id, Snapshot)>> {
    let changed = change.apply(snap);
    if (&changed.tags, &changed.description) == (&snap.tags, &snap.description) {
        return Ok(None);
    }
    let new = Snapshot { original: snap.original.or(Some(*id)), ..changed };
    let new_id = repo.save_snapshot(&new)?;
    repo.delete_snapshot(id)?;
    Ok(Some((new_id, new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(tags: &[&str]) -> Snapshot {
        Snapshot {
            time_ns: 0,
            tree: Id::ZERO,
            parent: None,
            hostname: String::new(),
            username: String::new(),
            uid: 0,
            gid: 0,
            paths: vec![],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            description: String::new(),
            program_version: String::new(),
            summary: Default::default(),
            original: None,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn set_then_remove_then_add() {
        let s = snap(&["a", "b"]);
        let c = TagChange { add: strings(&["c,a"]), remove: strings(&["b"]), ..Default::default() };
        assert_eq!(c.apply(&s).tags, ["a", "c"]);
        let c = TagChange { set: Some(strings(&["x", "y,x"])), add: strings(&["z"]), ..Default::default() };
        assert_eq!(c.apply(&s).tags, ["x", "y", "z"]);
        let c = TagChange { set: Some(strings(&[""])), ..Default::default() };
        assert!(c.apply(&s).tags.is_empty());
    }
}
