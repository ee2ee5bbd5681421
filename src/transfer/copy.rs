//! `copy`: snapshots from another repository, and `init --copy-chunker-params`, which makes a
//! repository sharing another's content identity so that copies between them deduplicate.

use std::collections::HashMap;
use std::sync::Arc;

use super::{BlobSource, Moved, bounded, transfer};
use crate::backend::{Backend, Kind};
use crate::crypto::keyfile::KdfParams;
use crate::crypto::{Keys, ObjType};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::{Opened, Repository};

/// A repository as a blob source, through its caught-up index.
pub struct RepoSource<'a>(pub &'a Repository);

impl BlobSource for RepoSource<'_> {
    fn keys(&self) -> &Keys {
        self.0.keys()
    }

    fn envelope(&self, ty: ObjType, id: &Id) -> Result<(Vec<u8>, u32)> {
        let what = || format!("{} {} of the source repository", ty.name(), id.hex());
        let loc = self.0.index().lookup(id)?.ok_or_else(|| Error::MissingBlob(what()))?;
        if loc.ty != ty {
            return Err(Error::corrupt(what(), format!("the index says it is a {}", loc.ty.name())));
        }
        bounded(ty, id, loc.length, loc.raw_len)?;
        let mut env = vec![0u8; loc.length as usize];
        self.0.backend().read_at(Kind::Pack, &loc.pack.hex(), u64::from(loc.offset), &mut env)?;
        Ok((env, loc.raw_len))
    }

    fn name(&self) -> String {
        format!("source repository {}", self.0.location())
    }
}

/// Creates a repository whose content identity (id keys, chunker key, chunk sizes) is that
/// of `source`, with its own master key, data keys and password (format-spec §3).
pub fn init_sharing<S>(
    backend: Arc<dyn Backend>,
    password: &[u8],
    kdf: KdfParams,
    source: &Repository<S>,
) -> Result<Repository<Opened>> {
    let sp = source.params();
    let params = crate::format::config::Params {
        chunk_min: sp.chunk_min,
        chunk_avg: sp.chunk_avg,
        chunk_max: sp.chunk_max,
        ..crate::format::config::Params::DEFAULT
    };
    Repository::init_with(backend, password, kdf, params, Some(&source.keys().identity()))
}

/// What a copy did, per snapshot asked for.
#[derive(Debug, Default)]
pub struct CopyOutcome {
    /// Source id → the new snapshot's id in the destination.
    pub copied: Vec<(Id, Id)>,
    /// Source id → the destination snapshot that already holds it.
    pub present: Vec<(Id, Id)>,
    pub moved: Moved,
    /// Whether blobs kept their ids (shared identity) or trees were rewritten.
    pub same_identity: bool,
}

/// The id a snapshot's copies record as `original`: the first of its chain (format-spec §8).
fn origin(id: &Id, s: &Snapshot) -> Id {
    s.original.unwrap_or(*id)
}

/// Whether `d` (in the destination) is a copy of `s`, or the same snapshot: restic compares
/// snapshot contents. Trees can be compared only when ids mean the same in both; otherwise
/// the `original` a copy records names `s`.
fn same_snapshot(s_id: &Id, s: &Snapshot, d: &Snapshot, same_identity: bool) -> bool {
    (s.time_ns, &s.hostname, &s.username, &s.paths, &s.tags) == (d.time_ns, &d.hostname, &d.username, &d.paths, &d.tags)
        && ((same_identity && s.tree == d.tree) || d.original == Some(origin(s_id, s)))
}

/// Copies `chosen` (snapshots of `src`) into `dst`, skipping those `dst` already has. Every blob
/// is verified as it is read; snapshots are written last, oldest first, once every blob they
/// need is durable and indexed. A parent is kept when it is in `dst` too.
pub fn copy(dst: &Repository, src: &Repository, chosen: &[(Id, Snapshot)]) -> Result<CopyOutcome> {
    let all = src.snapshots()?.0;
    copy_snapshots(dst, &RepoSource(src), chosen, &all)
}

/// [`copy`] from any blob source: `known` are the source's snapshots a parent may name.
pub fn copy_snapshots(
    dst: &Repository,
    src: &dyn BlobSource,
    chosen: &[(Id, Snapshot)],
    known: &[(Id, Snapshot)],
) -> Result<CopyOutcome> {
    let same_identity = dst.keys().same_ids(src.keys());
    let (existing, _damaged) = dst.snapshots()?;
    let find = |id: &Id, s: &Snapshot| {
        existing.iter().find(|(_, d)| same_snapshot(id, s, d, same_identity)).map(|(did, _)| *did)
    };
    let mut chosen: Vec<&(Id, Snapshot)> = chosen.iter().collect();
    chosen.sort_by_key(|(id, s)| (s.time_ns, *id));
    chosen.dedup_by_key(|(id, _)| *id);
    let mut out = CopyOutcome { same_identity, ..CopyOutcome::default() };
    let mut todo = Vec::new();
    for (id, s) in chosen {
        match find(id, s) {
            Some(d) => out.present.push((*id, d)),
            None => todo.push((*id, s)),
        }
    }
    if todo.is_empty() {
        return Ok(out);
    }
    let roots: Vec<Id> = todo.iter().map(|(_, s)| s.tree).collect();
    let (trees, moved) = transfer(dst, src, &roots)?;
    out.moved = moved;
    // Parents by source id: those already present, then each copy as it is written.
    let mut in_dst: HashMap<Id, Id> = known.iter().filter_map(|(id, s)| Some((*id, find(id, s)?))).collect();
    for ((id, s), tree) in todo.into_iter().zip(trees) {
        let snap = Snapshot {
            tree,
            parent: s.parent.and_then(|p| in_dst.get(&p).copied()),
            original: Some(origin(&id, s)),
            ..s.clone()
        };
        let new = dst.save_snapshot(&snap)?;
        in_dst.insert(id, new);
        out.copied.push((id, new));
    }
    Ok(out)
}
