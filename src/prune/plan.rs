//! Prune's mark and plan: what the snapshots use, and which packs to delete or repack.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::spill::{Cursor, Spill};
use super::{Marked, PruneOptions};
use crate::error::{Error, Result};
use crate::id::{BlobIdSet, Id};
use crate::index::BlobLoc;
use crate::repo::{Repository, packs};

/// What a prune will do (all of it, on a dry run).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub packs: u64,
    pub bytes: u64,
    pub used_blobs: u64,
    pub used_bytes: u64,
    /// Blobs no snapshot needs, and copies of blobs beyond one.
    pub unused_blobs: u64,
    pub unused_bytes: u64,
    /// Packs none of whose blobs is needed.
    pub delete: Vec<Id>,
    pub delete_bytes: u64,
    /// Packs whose needed blobs are copied to new packs before they go.
    pub repack: Vec<Id>,
    pub repack_bytes: u64,
    /// The needed blobs that have no other copy in a pack that stays.
    pub copy_blobs: u64,
    pub copy_bytes: u64,
    /// Packs condemned by earlier prunes, waiting for their sweep.
    pub already_condemned: Vec<Id>,
    /// The repository's size once the deletions are swept.
    pub bytes_after: u64,
}

/// Marks what every snapshot uses and plans the deletions. Refuses when the repository is
/// damaged in a way that would make it delete what it cannot account for.
pub fn plan(repo: &Repository, opts: &PruneOptions) -> Result<(Plan, Marked, Spill<COPY_RECORD>)> {
    let refuse =
        |why: String| Error::Invalid(format!("prune refuses to run: {why}; run `snapfs check` to see what is damaged"));
    // Snapshots first, then the packs: a snapshot is written after its packs, so every pack a
    // listed snapshot needs is in the catch-up that follows (backups run beside this).
    let (snaps, bad) = repo.snapshots()?;
    if let Some((name, e)) = bad.first() {
        return Err(refuse(format!("snapshot {name} cannot be read ({e})")));
    }
    // Up to date with the packs now, so a header that cannot be read is one that cannot be read.
    let mut caught_up = repo.catch_up()?;
    if let Some((pack, e)) = caught_up.unreadable.first() {
        let n = caught_up.unreadable.len();
        return Err(refuse(format!("{n} pack(s) have headers that cannot be read (pack {}: {e})", pack.short())));
    }
    let infos: HashMap<Id, crate::index::PackInfo> = repo.index().packs()?.into_iter().collect();
    // Packs that backups running beside this prune write from now on are not in the plan: they
    // hold new blobs, and nothing deletes a pack that is not condemned.
    let files: Vec<packs::PackFile> =
        std::mem::take(&mut caught_up.listed).into_iter().filter(|f| infos.contains_key(&f.id)).collect();
    let tmp = std::env::temp_dir();
    let mut marked = Marked {
        used: Spill::new(opts.mark_memory, &tmp),
        trees: BlobIdSet::default(),
        snapshots: HashSet::new(),
        lists: Vec::new(),
    };
    marked.snapshots.extend(snaps.iter().map(|(id, _)| *id));
    mark_trees(repo, snaps.iter().map(|(_, s)| s.tree).collect(), &mut marked)?;

    // As the catch-up read them: only a prune writes lists, and this one holds the prune lock.
    let (lists, bad_lists) = (caught_up.lists, caught_up.bad_lists);
    if let Some((name, e)) = bad_lists.first() {
        return Err(refuse(format!("condemned-pack list {name} cannot be read ({e})")));
    }
    let already: HashSet<Id> = lists.iter().flat_map(|l| l.list.packs.iter().copied()).collect();
    marked.lists = lists;

    let mut p = Plan { already_condemned: already.iter().copied().collect(), ..Default::default() };
    let mut used_in: HashMap<Id, u64> = HashMap::new();
    let mut unused_in: HashMap<Id, u64> = HashMap::new();
    let mut missing = 0u64;
    {
        // The index and the used set, both in blob-id order, joined in one pass.
        let mut used = Cursor::new(marked.used.iter());
        repo.index().for_each_blob(|id, loc| {
            let loc = loc.map_err(|e| refuse(format!("index entry of blob {}: {e}", id.short())))?;
            let n = u64::from(loc.length);
            if used.has(&id.0, |_| missing += 1)? {
                *used_in.entry(loc.pack).or_default() += n;
                p.used_blobs += 1;
                p.used_bytes += n;
            } else {
                *unused_in.entry(loc.pack).or_default() += n;
                p.unused_blobs += 1;
                p.unused_bytes += n;
            }
            Ok(())
        })?;
        used.rest(|_| missing += 1)?;
    }
    // Copies beyond the first (a repack's, until its sweep; packs written twice by racing backups).
    repo.index().for_each_redundant(|id, loc| {
        let loc = loc.map_err(|e| refuse(format!("index entry of a copy of blob {}: {e}", id.short())))?;
        *unused_in.entry(loc.pack).or_default() += u64::from(loc.length);
        p.unused_blobs += 1;
        p.unused_bytes += u64::from(loc.length);
        Ok(())
    })?;
    if missing > 0 {
        return Err(refuse(format!("{missing} blob(s) the snapshots need are in no pack")));
    }

    // Fully unused packs go; then the packs with the largest unused share are repacked while
    // the repository's unused space is over the limit.
    let mut candidates = Vec::new();
    for f in &files {
        p.packs += 1;
        p.bytes += f.size;
        if already.contains(&f.id) {
            continue;
        }
        let used = used_in.get(&f.id).copied().unwrap_or(0);
        if used == 0 {
            p.delete.push(f.id);
            p.delete_bytes += f.size;
        } else if opts.force_repack.contains(&f.id) {
            p.repack.push(f.id);
            p.repack_bytes += f.size;
        } else if unused_in.get(&f.id).copied().unwrap_or(0) > 0 {
            candidates.push((f.id, f.size, used));
        }
    }
    let live_size: u64 =
        files.iter().filter(|f| !already.contains(&f.id)).map(|f| f.size).sum::<u64>() - p.delete_bytes;
    let mut unused: u64 = candidates.iter().map(|(id, _, _)| unused_in.get(id).copied().unwrap_or(0)).sum();
    candidates.sort_by(|a, b| (b.1 - b.2).saturating_mul(a.1.max(1)).cmp(&(a.1 - a.2).saturating_mul(b.1.max(1))));
    let mut copy_budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    for (id, size, used) in candidates {
        if (unused as f64) <= opts.max_unused * live_size as f64 || used > copy_budget {
            break;
        }
        copy_budget -= used;
        unused = unused.saturating_sub(unused_in.get(&id).copied().unwrap_or(0));
        p.repack.push(id);
        p.repack_bytes += size;
    }
    // Needed blobs in the packs that go, unless a copy stays elsewhere.
    let going: HashSet<Id> = p.delete.iter().chain(&p.repack).chain(&p.already_condemned).copied().collect();
    let repacked: HashSet<Id> = p.repack.iter().copied().collect();
    let mut to_copy = Spill::new(opts.mark_memory, &tmp);
    if !repacked.is_empty() {
        let mut used = Cursor::new(marked.used.iter());
        repo.index().for_each_blob_with_copies(|id, loc, copies| {
            let Ok(loc) = loc else { return Ok(()) };
            let stays_elsewhere = copies.iter().any(|c| !going.contains(&c.pack));
            if used.has(&id.0, |_| ())? && repacked.contains(&loc.pack) && !stays_elsewhere {
                to_copy.insert(encode_copy(&id, &loc))?;
                p.copy_blobs += 1;
                p.copy_bytes += u64::from(loc.length);
            }
            Ok(())
        })?;
    }
    let condemned_bytes: u64 = files.iter().filter(|f| already.contains(&f.id)).map(|f| f.size).sum();
    p.bytes_after = p.bytes - p.delete_bytes - p.repack_bytes - condemned_bytes + p.copy_bytes;
    Ok((p, marked, to_copy))
}

/// A blob to copy, as a record that sorts by pack and offset: the copy then reads each pack
/// front to back.
pub const COPY_RECORD: usize = 77;

fn encode_copy(id: &Id, loc: &BlobLoc) -> [u8; COPY_RECORD] {
    let mut r = [0u8; COPY_RECORD];
    r[..32].copy_from_slice(&loc.pack.0);
    r[32..36].copy_from_slice(&loc.offset.to_be_bytes());
    r[36..68].copy_from_slice(&id.0);
    r[68..72].copy_from_slice(&loc.length.to_le_bytes());
    r[72..76].copy_from_slice(&loc.raw_len.to_le_bytes());
    r[76] = loc.ty as u8;
    r
}

pub fn decode_copy(r: &[u8; COPY_RECORD]) -> (Id, BlobLoc) {
    let u = |i: usize, be: bool| {
        let b: [u8; 4] = r[i..i + 4].try_into().expect("4 bytes");
        if be { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    };
    let id = Id(r[36..68].try_into().expect("32 bytes"));
    let ty = crate::crypto::ObjType::from_u8(r[76]).expect("written by encode_copy");
    let loc = BlobLoc {
        pack: Id(r[..32].try_into().expect("32 bytes")),
        offset: u(32, true),
        length: u(68, false),
        raw_len: u(72, false),
        ty,
    };
    (id, loc)
}

/// Adds to `marked` every blob reachable from `roots`, entering no tree it has seen. A tree that
/// cannot be read stops prune: it cannot know what that tree references.
pub(super) fn mark_trees(repo: &Repository, roots: Vec<Id>, marked: &mut Marked) -> Result<()> {
    let mut failed: Option<(Id, Error)> = None;
    let seen = std::mem::take(&mut marked.trees);
    let mut trees = BlobIdSet::default();
    let used = &mut marked.used;
    let mut spill_failed = None;
    let load = |id: &Id| crate::trees::load(repo, id).map(Arc::new);
    crate::trees::walk_unique_from(seen.clone(), roots, load, |id, listing| {
        trees.insert(id);
        let mut add = |b: &Id| {
            if let Err(e) = used.insert(b.0) {
                spill_failed.get_or_insert(e);
            }
        };
        add(&id);
        match listing {
            Ok(nodes) => {
                for n in nodes.iter().filter(|n| n.subtree().is_none()) {
                    n.content.iter().for_each(&mut add);
                }
            }
            Err(e) => {
                failed.get_or_insert((id, e));
            }
        }
    });
    if let Some(e) = spill_failed {
        return Err(e);
    }
    marked.trees = seen;
    marked.trees.extend(trees);
    if let Some((id, e)) = failed {
        return Err(Error::Invalid(format!(
            "prune refuses to run: tree {} cannot be read ({e}); run `snapfs check` to see what is damaged",
            id.short()
        )));
    }
    Ok(())
}

/// Of `doomed`, the packs that hold a needed blob with no copy outside `doomed`.
pub(super) fn needed_packs(repo: &Repository, used: &mut Spill<32>, doomed: &HashSet<Id>) -> Result<HashSet<Id>> {
    let mut needed = HashSet::new();
    let mut used = Cursor::new(used.iter());
    repo.index().for_each_blob_with_copies(|id, loc, others| {
        let Ok(loc) = loc else { return Ok(()) };
        if !used.has(&id.0, |_| ())? {
            return Ok(());
        }
        if doomed.contains(&loc.pack) && others.iter().all(|c| doomed.contains(&c.pack)) {
            needed.insert(loc.pack);
            needed.extend(others.iter().map(|c| c.pack));
        }
        Ok(())
    })?;
    Ok(needed)
}
