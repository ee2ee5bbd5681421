//! `stats`: how big the chosen snapshots are, in restic's three modes, and what deduplication
//! saves. Every distinct tree is read once, however many snapshots share it.

use std::collections::HashSet;

use super::MAX_DEPTH;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Kind;
use crate::id::{BlobIdMap, BlobIdSet, Id};
use crate::repo::Repository;
use crate::trees::{Counting, Trees, walk_unique};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The files as a restore of each snapshot would write them, summed over the snapshots.
    RestoreSize,
    /// Each distinct file content once, across all the snapshots.
    FilesByContents,
    /// The blobs the snapshots reference, each once: what they take in the repository.
    RawData,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub snapshots: u64,
    /// Files, and their bytes, in the chosen mode's sense.
    pub files: u64,
    pub bytes: u64,
    /// The restore size of all the snapshots (every mode works it out).
    pub restore_bytes: u64,
    /// raw-data: distinct blobs, their bytes before compression, and as stored.
    pub blobs: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub trees_read: u64,
}

impl Stats {
    /// How many bytes of restored files each byte of distinct content stands for (raw-data).
    pub fn dedup_ratio(&self) -> Option<f64> {
        (self.raw_bytes > 0).then(|| self.restore_bytes as f64 / self.raw_bytes as f64)
    }

    /// Bytes before compression per byte stored (raw-data).
    pub fn compression_ratio(&self) -> Option<f64> {
        (self.stored_bytes > 0).then(|| self.raw_bytes as f64 / self.stored_bytes as f64)
    }
}

pub fn stats(repo: &Repository, snaps: &[(Id, Snapshot)], mode: Mode) -> Result<Stats> {
    let trees = Trees::new(Counting::new(repo), 16 << 20);
    let mut memo = BlobIdMap::default();
    let mut out = Stats { snapshots: snaps.len() as u64, ..Default::default() };
    let mut restore_files = 0;
    for (_, s) in snaps {
        let (f, b) = restore_size(&trees, &mut memo, s.tree, 0)?;
        restore_files += f;
        out.restore_bytes += b;
    }
    match mode {
        Mode::RestoreSize => (out.files, out.bytes) = (restore_files, out.restore_bytes),
        Mode::FilesByContents => {
            let mut seen = HashSet::new();
            unique_nodes(&trees, snaps, |_, n| {
                if n.kind == Kind::File && seen.insert(super::fingerprint(n)) {
                    out.files += 1;
                    out.bytes += n.size;
                }
            })?;
        }
        Mode::RawData => {
            let mut data = BlobIdSet::default();
            let tree_ids = unique_nodes(&trees, snaps, |_, n| {
                if n.kind == Kind::File {
                    data.extend(n.content.iter().copied());
                }
            })?;
            let index = repo.index().reader()?;
            for id in data.iter().chain(tree_ids.iter()) {
                let loc = index.get(id)?.ok_or_else(|| Error::MissingBlob(id.hex()))?;
                out.blobs += 1;
                out.raw_bytes += u64::from(loc.raw_len);
                out.stored_bytes += u64::from(loc.length);
            }
            (out.files, out.bytes) = (restore_files, out.raw_bytes);
        }
    }
    out.trees_read = trees.source().loads();
    Ok(out)
}

/// Files and bytes below a tree, worked out once per tree id.
fn restore_size(
    trees: &Trees<Counting<&Repository>>,
    memo: &mut BlobIdMap<(u64, u64)>,
    tree: Id,
    depth: usize,
) -> Result<(u64, u64)> {
    if let Some(v) = memo.get(&tree) {
        return Ok(*v);
    }
    if depth > MAX_DEPTH {
        return Err(Error::corrupt(format!("tree {}", tree.hex()), "nested deeper than any real tree"));
    }
    let listing = trees.get(&tree)?;
    let (mut files, mut bytes) = (0, 0);
    for n in listing.iter() {
        match n.subtree() {
            Some(sub) => {
                let (f, b) = restore_size(trees, memo, sub, depth + 1)?;
                files += f;
                bytes += b;
            }
            None if n.kind == Kind::File => {
                files += 1;
                bytes += n.size;
            }
            None => {}
        }
    }
    memo.insert(tree, (files, bytes));
    Ok((files, bytes))
}

/// Calls `visit` for every entry of every distinct tree reachable from the snapshots; returns
/// the trees' ids. The first tree that cannot be read is the error.
fn unique_nodes(
    trees: &Trees<Counting<&Repository>>,
    snaps: &[(Id, Snapshot)],
    mut visit: impl FnMut(&Id, &crate::format::tree::Node),
) -> Result<BlobIdSet> {
    let mut ids = BlobIdSet::default();
    let mut failed = None;
    walk_unique(
        snaps.iter().map(|(_, s)| s.tree),
        |id| trees.get(id),
        |id, listing| match listing {
            Ok(l) => {
                ids.insert(id);
                l.iter().for_each(|n| visit(&id, n));
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        },
    );
    match failed {
        Some(e) => Err(e),
        None => Ok(ids),
    }
}
