//! The snapshots a mount shows, their directory names, and a matching view of the index.
//!
//! A catalog is immutable; the filesystem swaps in a new one when it refreshes. Refreshing
//! decrypts only snapshot files it has not seen before, and opens the index view *before*
//! listing snapshots: a snapshot file is written after its blobs are in the index, so every
//! snapshot listed has all its blobs in that view.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::index::IndexReader;
use crate::repo::Repository;
use crate::select::Filter;

pub struct SnapInfo {
    pub id: Id,
    pub snap: Snapshot,
    /// Its name in `snapshots/`: the UTC time to the second, with `-2`, `-3`… on collision.
    pub name: String,
    /// Its name in `ids/`: the shortest unique id prefix of at least 8 digits.
    pub short: String,
}

pub struct Catalog {
    /// Matching snapshots, oldest first.
    pub snaps: Vec<Arc<SnapInfo>>,
    by_name: HashMap<String, usize>,
    by_short: HashMap<String, usize>,
    pub index: Arc<IndexReader>,
    pub loaded: Instant,
    /// Snapshot files that could not be read, by file name: reported once, then skipped.
    pub damaged: BTreeSet<String>,
}

/// The UTC time of a snapshot as a directory name, e.g. `2026-11-23T14:05:09Z`.
pub fn time_name(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => format!("@{ns}"),
    }
}

/// Whether a tag or host name can be a directory name.
fn usable_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s != "latest" && !s.contains(['/', '\0'])
}

impl Catalog {
    /// Lists the repository's snapshots matching `filter`, reusing what `prev` already decrypted.
    /// Damaged snapshot files are passed to `warn` the first time they are seen.
    pub fn load(
        repo: &Repository,
        filter: &Filter,
        prev: Option<&Catalog>,
        warn: &mut dyn FnMut(String),
    ) -> Result<Catalog> {
        let known: HashMap<Id, &Snapshot> =
            prev.map(|p| p.snaps.iter().map(|s| (s.id, &s.snap)).collect()).unwrap_or_default();
        let mut snaps = Vec::new();
        let mut damaged = BTreeSet::new();
        let (ids, strays) = repo.snapshot_ids()?;
        // A new snapshot may have been written by a client with another cache: catch up before
        // showing it, so its blobs are found. Its packs were written before it, so they are
        // listed now. The view is opened after that, and after the listing above.
        let fresh =
            ids.iter().any(|id| !known.contains_key(id) && !prev.is_some_and(|p| p.damaged.contains(&id.hex())));
        if prev.is_some()
            && fresh
            && let Err(e) = repo.catch_up()
        {
            warn(format!("index: could not catch up with new packs: {e}"));
        }
        let index = Arc::new(repo.index().reader()?);
        damaged.extend(strays);
        for id in ids {
            let name = id.hex();
            let loaded = match known.get(&id) {
                Some(s) => Ok((id, (*s).clone())),
                None => repo.load_snapshot(&id).map(|s| (id, s)),
            };
            match loaded {
                Ok(s) => snaps.push(s),
                Err(err) => {
                    if !prev.is_some_and(|p| p.damaged.contains(&name)) {
                        warn(format!("snapshot {name} is damaged and not shown: {err}"));
                    }
                    damaged.insert(name);
                }
            }
        }
        snaps.retain(|(_, s)| filter.matches(s));
        snaps.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok(Self::assemble(snaps, index, damaged))
    }

    fn assemble(snaps: Vec<(Id, Snapshot)>, index: Arc<IndexReader>, damaged: BTreeSet<String>) -> Catalog {
        let mut hexes: Vec<String> = snaps.iter().map(|(id, _)| id.hex()).collect();
        hexes.sort();
        let prefix_len = |h: &str| {
            let common = |o: &String| h.bytes().zip(o.bytes()).take_while(|(a, b)| a == b).count();
            let i = hexes.binary_search_by(|x| x.as_str().cmp(h)).unwrap_or(0);
            let before = if i > 0 { common(&hexes[i - 1]) } else { 0 };
            let after = hexes.get(i + 1).map_or(0, common);
            (before.max(after) + 1).max(8)
        };
        let mut by_name = HashMap::new();
        let mut by_short = HashMap::new();
        let mut out = Vec::with_capacity(snaps.len());
        for (i, (id, snap)) in snaps.into_iter().enumerate() {
            let base = time_name(snap.time_ns);
            let mut name = base.clone();
            let mut n = 1;
            while by_name.contains_key(&name) {
                n += 1;
                name = format!("{base}-{n}");
            }
            let hex = id.hex();
            let short = hex[..prefix_len(&hex)].to_string();
            by_name.insert(name.clone(), i);
            by_short.insert(short.clone(), i);
            out.push(Arc::new(SnapInfo { id, snap, name, short }));
        }
        Catalog { snaps: out, by_name, by_short, index, loaded: Instant::now(), damaged }
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<SnapInfo>> {
        self.by_name.get(name).map(|&i| &self.snaps[i])
    }

    /// By the listed short id, or any other unique id prefix of at least 4 digits.
    pub fn by_id(&self, prefix: &str) -> Option<&Arc<SnapInfo>> {
        if let Some(&i) = self.by_short.get(prefix) {
            return Some(&self.snaps[i]);
        }
        let p = prefix.to_ascii_lowercase();
        if p.len() < 4 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut hits = self.snaps.iter().filter(|s| s.id.hex().starts_with(&p));
        match (hits.next(), hits.next()) {
            (Some(s), None) => Some(s),
            _ => None,
        }
    }

    /// Tags (for `top == TAGS`) or hosts that can be directory names.
    pub fn groups(&self, tags: bool) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        for s in &self.snaps {
            if tags {
                out.extend(s.snap.tags.iter().map(String::as_str).filter(|t| usable_name(t)));
            } else if usable_name(&s.snap.hostname) {
                out.insert(s.snap.hostname.as_str());
            }
        }
        out
    }

    /// The snapshots in a tag's or host's directory, oldest first.
    pub fn members<'a>(&'a self, tags: bool, group: &'a str) -> impl Iterator<Item = &'a Arc<SnapInfo>> + 'a {
        self.snaps
            .iter()
            .filter(move |s| if tags { s.snap.tags.iter().any(|t| t == group) } else { s.snap.hostname == group })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_names_are_utc_seconds() {
        assert_eq!(time_name(1_795_442_709_123_456_789), "2026-11-23T14:05:09Z");
        assert_eq!(time_name(-1_000_000_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn odd_group_names_are_left_out() {
        for bad in ["", ".", "..", "a/b", "latest"] {
            assert!(!usable_name(bad), "{bad:?}");
        }
        assert!(usable_name("nightly"));
    }
}
