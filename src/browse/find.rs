//! `find`: entries matching name or path patterns, or using given blobs, in every chosen
//! snapshot.
//!
//! Snapshots of a slowly changing tree share most subtrees, so what a subtree holds is worked
//! out once per (tree id, path) and reused by every later snapshot that holds the same tree at
//! the same place: 50 snapshots cost about as much as the distinct trees among them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::{MAX_DEPTH, child, time_ns};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Node;
use crate::id::{BlobIdSet, Id};
use crate::repo::Repository;
use crate::trees::{Counting, Trees};

/// What to look for.
pub enum Target {
    /// Glob patterns: one without `/` is matched against the entry's name, one with `/`
    /// against its absolute path.
    Patterns { names: GlobSet, paths: GlobSet },
    /// Entries whose content (chunks, or a directory's subtree) uses one of these blob ids
    /// (hex prefixes).
    Blobs(Vec<IdPrefix>),
    /// Entries whose content uses a blob of this set (a pack's blobs).
    BlobSet(BlobIdSet),
}

pub struct Query {
    pub target: Target,
    /// Only entries whose absolute path matches.
    pub within: Option<GlobSet>,
    /// Only entries modified at or after / at or before these times (ns).
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
}

fn glob_set(patterns: &[&str]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::Invalid(format!("bad pattern {p:?}: {e}")))?;
        b.add(g);
    }
    b.build().map_err(|e| Error::Invalid(format!("bad patterns: {e}")))
}

impl Target {
    pub fn patterns(patterns: &[String]) -> Result<Target> {
        let (paths, names): (Vec<&str>, Vec<&str>) = patterns.iter().map(String::as_str).partition(|p| p.contains('/'));
        Ok(Target::Patterns { names: glob_set(&names)?, paths: glob_set(&paths)? })
    }
}

impl Query {
    /// `--path GLOB`, matched against absolute paths.
    pub fn within(glob: &str) -> Result<GlobSet> {
        glob_set(&[glob])
    }
}

/// A hex prefix of an id: whole bytes, and maybe one more nibble.
#[derive(Clone, Debug)]
pub struct IdPrefix {
    bytes: Vec<u8>,
    nibble: Option<u8>,
}

impl IdPrefix {
    pub fn parse(s: &str) -> Result<IdPrefix> {
        let s = s.to_ascii_lowercase();
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Invalid(format!("{s:?} is not a blob id or a hex prefix of one")));
        }
        let digit = |c: u8| (c as char).to_digit(16).expect("checked hex") as u8;
        let d: Vec<u8> = s.bytes().map(digit).collect();
        let bytes = d.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect();
        Ok(IdPrefix { bytes, nibble: (d.len() % 2 == 1).then(|| d[d.len() - 1]) })
    }

    pub fn matches(&self, id: &Id) -> bool {
        id.0.starts_with(&self.bytes) && self.nibble.is_none_or(|n| id.0[self.bytes.len()] >> 4 == n)
    }
}

/// Every blob the index places in the pack named by `prefix` (its one location or a redundant
/// copy), and the pack's full id.
pub fn pack_blobs(repo: &Repository, prefix: &str) -> Result<(Id, BlobIdSet)> {
    let p = IdPrefix::parse(prefix)?;
    let mut packs = repo.index().packs()?.into_iter().map(|(id, _)| id).filter(|id| p.matches(id));
    let pack = match (packs.next(), packs.next()) {
        (Some(id), None) => id,
        (None, _) => return Err(Error::Invalid(format!("no pack {prefix} in the index"))),
        (Some(_), Some(_)) => return Err(Error::Invalid(format!("pack prefix {prefix} is ambiguous"))),
    };
    let mut set = BlobIdSet::default();
    for (id, loc) in repo.index().blobs()?.into_iter().chain(repo.index().redundant()?) {
        if loc?.pack == pack {
            set.insert(id);
        }
    }
    Ok((pack, set))
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub path: PathBuf,
    pub node: Node,
    /// The looked-for blobs this entry uses (blob searches only).
    pub blobs: Vec<Id>,
}

pub struct FindStats {
    pub snapshots: u64,
    pub hits: u64,
    pub trees_read: u64,
}

struct Search<'a> {
    query: &'a Query,
    trees: Trees<Counting<&'a Repository>>,
    memo: HashMap<(Id, PathBuf), Arc<Vec<Hit>>>,
}

/// Searches each of `snaps` in turn and calls `each` with the snapshot and its hits (none when
/// nothing matched).
pub fn find(
    repo: &Repository,
    snaps: &[(Id, Snapshot)],
    query: &Query,
    mut each: impl FnMut(&Id, &Snapshot, &[Hit]),
) -> Result<FindStats> {
    let mut s = Search { query, trees: Trees::new(Counting::new(repo), 16 << 20), memo: HashMap::new() };
    let mut hits = 0;
    for (id, snap) in snaps {
        let found = s.dir(snap.tree, Path::new("/"), 0)?;
        hits += found.len() as u64;
        each(id, snap, found.as_slice());
    }
    Ok(FindStats { snapshots: snaps.len() as u64, hits, trees_read: s.trees.source().loads() })
}

impl Search<'_> {
    fn dir(&mut self, tree: Id, path: &Path, depth: usize) -> Result<Arc<Vec<Hit>>> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(format!("tree {}", tree.hex()), "nested deeper than any real tree"));
        }
        let key = (tree, path.to_path_buf());
        if let Some(h) = self.memo.get(&key) {
            return Ok(h.clone());
        }
        let listing = self.trees.get(&tree)?;
        let mut out = Vec::new();
        for n in listing.iter() {
            let p = child(path, &n.name);
            if let Some(blobs) = self.matches(&p, n) {
                out.push(Hit { path: p.clone(), node: n.clone(), blobs });
            }
            if let Some(sub) = n.subtree() {
                out.extend(self.dir(sub, &p, depth + 1)?.iter().cloned());
            }
        }
        let out = Arc::new(out);
        self.memo.insert(key, out.clone());
        Ok(out)
    }

    /// `Some(the matching blobs)` when the entry is a hit.
    fn matches(&self, path: &Path, n: &Node) -> Option<Vec<Id>> {
        let q = self.query;
        let t = time_ns(n.mtime);
        if q.oldest.is_some_and(|o| t < o) || q.newest.is_some_and(|o| t > o) {
            return None;
        }
        if q.within.as_ref().is_some_and(|w| !w.is_match(path)) {
            return None;
        }
        match &q.target {
            Target::Patterns { names, paths } => {
                (names.is_match(Path::new(crate::sys::os(&n.name))) || paths.is_match(path)).then(Vec::new)
            }
            Target::Blobs(prefixes) => {
                let used: Vec<Id> =
                    n.content.iter().filter(|id| prefixes.iter().any(|p| p.matches(id))).copied().collect();
                (!used.is_empty()).then_some(used)
            }
            Target::BlobSet(set) => {
                let used: Vec<Id> = n.content.iter().filter(|id| set.contains(id)).copied().collect();
                (!used.is_empty()).then_some(used)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_by_nibble() {
        let mut id = Id([0; 32]);
        id.0[0] = 0xab;
        id.0[1] = 0xcd;
        assert!(IdPrefix::parse("abc").unwrap().matches(&id));
        assert!(IdPrefix::parse("ABCD").unwrap().matches(&id));
        assert!(!IdPrefix::parse("abd").unwrap().matches(&id));
        assert!(!IdPrefix::parse("b").unwrap().matches(&id));
        assert!(IdPrefix::parse(&id.hex()).unwrap().matches(&id));
        assert!(IdPrefix::parse("xyz").is_err());
    }
}
