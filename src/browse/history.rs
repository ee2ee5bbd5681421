//! `history`: every distinct version of one path across the snapshots, oldest first.
//!
//! The path is resolved in each snapshot, but the answer below a tree id is worked out once:
//! when a snapshot's tree on the way to the path has an id seen before, the answer is known
//! without reading further. So a path that changed five times in a thousand snapshots costs the
//! roots that differ plus the few trees that changed on its way, not a thousand walks.

use std::collections::HashMap;
use std::path::{Component, Path};

use super::fingerprint;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, Time};
use crate::id::Id;
use crate::repo::Repository;
use crate::trees::{Counting, Trees};

/// One distinct version: the same content (by its keyed fingerprint) and the same mtime.
#[derive(Debug, Clone)]
pub struct Version {
    pub node: Node,
    pub fingerprint: String,
    /// Positions in the snapshot list of the snapshots that hold this version, oldest first.
    pub snapshots: Vec<usize>,
}

/// A stretch of snapshots without the path, after it had been there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The first snapshot without it.
    pub deleted_in: usize,
    /// The first snapshot with it again, if any.
    pub back_in: Option<usize>,
}

#[derive(Debug)]
pub struct History {
    /// Oldest first, by the first snapshot that holds each.
    pub versions: Vec<Version>,
    pub gaps: Vec<Gap>,
    pub trees_read: u64,
}

/// The versions of the absolute `path` in `snaps` (sorted oldest first). A path that is in
/// none of them is an error naming the closest path in the newest.
pub fn history(repo: &Repository, snaps: &[(Id, Snapshot)], path: &Path) -> Result<History> {
    let names: Vec<&[u8]> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_encoded_bytes()),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        return Err(Error::Invalid("history needs a path below /, such as /home/me/report.odt".into()));
    }
    let trees = Trees::new(Counting::new(repo), 8 << 20);
    // (tree id, depth) → what the rest of the path is below that tree.
    let mut memo: HashMap<(Id, usize), Option<Node>> = HashMap::new();
    let mut versions: Vec<Version> = Vec::new();
    let mut by_key: HashMap<(String, Time), usize> = HashMap::new();
    let mut gaps = Vec::new();
    let mut seen = false;
    for (i, (_, snap)) in snaps.iter().enumerate() {
        match resolve(&trees, &mut memo, snap.tree, &names)? {
            Some(node) => {
                if let Some(g) = gaps.last_mut().filter(|g: &&mut Gap| g.back_in.is_none()) {
                    g.back_in = Some(i);
                }
                seen = true;
                let fp = fingerprint(&node);
                let key = (fp.clone(), node.mtime);
                let v = *by_key.entry(key).or_insert_with(|| {
                    versions.push(Version { node, fingerprint: fp, snapshots: Vec::new() });
                    versions.len() - 1
                });
                versions[v].snapshots.push(i);
            }
            None if seen && gaps.last().is_none_or(|g: &Gap| g.back_in.is_some()) => {
                gaps.push(Gap { deleted_in: i, back_in: None });
            }
            None => {}
        }
    }
    if versions.is_empty() {
        let closest = snaps.last().and_then(|(_, s)| super::closest(&trees, s.tree, path));
        return Err(Error::PathNotFound {
            path: path.display().to_string(),
            place: format!("any of the {} snapshots", snaps.len()),
            closest: closest.map(|p| p.display().to_string()),
        });
    }
    Ok(History { versions, gaps, trees_read: trees.source().loads() })
}

/// The entry at `names` below `root`, remembering the answer for every tree on the way.
fn resolve(
    trees: &Trees<Counting<&Repository>>,
    memo: &mut HashMap<(Id, usize), Option<Node>>,
    root: Id,
    names: &[&[u8]],
) -> Result<Option<Node>> {
    let mut on_the_way = Vec::new();
    let mut tree = root;
    let mut found = None;
    for (depth, name) in names.iter().enumerate() {
        if let Some(known) = memo.get(&(tree, depth)) {
            found = known.clone();
            break;
        }
        on_the_way.push((tree, depth));
        let listing = trees.get(&tree)?;
        let Ok(i) = listing.binary_search_by(|n| n.name.as_slice().cmp(name)) else { break };
        let node = &listing[i];
        if depth + 1 == names.len() {
            found = Some(node.clone());
            break;
        }
        match node.subtree() {
            Some(sub) => tree = sub,
            None => break,
        }
    }
    for key in on_the_way {
        memo.insert(key, found.clone());
    }
    Ok(found)
}
