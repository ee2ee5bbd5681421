//! The structure pass: key slots, pack headers, the index against them, and every tree every
//! snapshot reaches. Reads no blob contents except trees.

use std::collections::HashMap;

use rayon::prelude::*;

use super::data::TreesRead;
use super::{Coverage, Lost, Problem, Report};
use crate::backend::{Backend, Kind};
use crate::crypto::ObjType;
use crate::crypto::keyfile::KeySlot;
use crate::error::{Error, Result};
use crate::format::pack::PackEntry;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{self, Node};
use crate::id::{BlobIdMap, BlobIdSet, Id};
use crate::index::{BlobLoc, Index, PackInfo};
use crate::repo::Repository;
use crate::repo::packs::{PackFile, list_packs, read_header};
use crate::spans::SpanReader;
use crate::trees::Listing;

/// The index's contents, read once.
pub(super) struct IndexData {
    pub blobs: BlobIdMap<BlobLoc>,
    /// Copies beyond the one `blobs` names: legal, and reclaimable by prune.
    pub redundant: Vec<(Id, BlobLoc)>,
    pub packs: HashMap<Id, PackInfo>,
}

/// What the repository holds, from the pack files and (when usable) the index.
pub(super) struct Facts {
    pub files: Vec<PackFile>,
    pub headers: HashMap<Id, Vec<PackEntry>>,
    pub index: Option<IndexData>,
    /// Blob id → its locations according to the readable pack headers.
    pub locs: BlobIdMap<Vec<BlobLoc>>,
    pub now_ns: i64,
}

impl Facts {
    /// Where a blob can be read: every pack header listing it, and the index's entry when its
    /// pack's header is unreadable (the headers are authenticated, the index is not).
    pub fn locations(&self, id: &Id) -> Vec<BlobLoc> {
        let mut out = self.locs.get(id).cloned().unwrap_or_default();
        if let Some(loc) = self.index.as_ref().and_then(|i| i.blobs.get(id))
            && !self.headers.contains_key(&loc.pack)
            && self.files.iter().any(|f| f.id == loc.pack && loc.offset as u64 + loc.length as u64 <= f.size)
        {
            out.push(*loc);
        }
        out
    }

    /// Reads a tree from the first location that yields an authentic copy.
    pub fn load_tree(&self, repo: &Repository, id: &Id) -> Result<Vec<Node>> {
        let locs: Vec<BlobLoc> = self.locations(id).into_iter().filter(|l| l.ty == ObjType::Tree).collect();
        let mut last = Error::MissingBlob(id.hex());
        for loc in locs {
            match repo.read_blob_at(id, &loc).and_then(|b| tree::decode(&b)) {
                Ok(nodes) => return Ok(nodes),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn coverage(&self, days: u64) -> Coverage {
        let since = self.now_ns.saturating_sub((days * 86_400) as i64 * 1_000_000_000);
        let recent = self
            .index
            .as_ref()
            .map(|i| {
                let recent = |t: i64| t >= since && t <= self.now_ns;
                self.files.iter().filter(|f| i.packs.get(&f.id).is_some_and(|p| recent(p.last_verified))).count()
            })
            .unwrap_or(0);
        Coverage { packs: self.files.len() as u64, verified_recently: recent as u64, days }
    }
}

/// Every key slot must parse; the password opened one of them already.
pub(super) fn key_slots(backend: &dyn Backend, report: &mut Report) {
    let Ok(names) = backend.list(Kind::Key) else {
        report.problems.push(problem("key_slot", None, "cannot list the key slots".into()));
        return;
    };
    for (name, _) in names {
        if let Err(err) = backend
            .read(Kind::Key, &name)
            .map_err(|e| e.to_string())
            .and_then(|raw| KeySlot::parse(&raw).map(|_| ()).map_err(|e| e.to_string()))
        {
            report.problems.push(problem("key_slot", None, format!("key slot {name}: {err}")));
        }
    }
}

fn problem(kind: &'static str, pack: Option<Id>, detail: String) -> Problem {
    Problem { kind, pack, blob: None, detail }
}

/// Reads every pack header and the index, and reports where they disagree.
pub(super) fn gather(repo: &Repository, report: &mut Report) -> Result<Facts> {
    let (files, strays) = list_packs(repo.backend().as_ref())?;
    report.stray_files = strays;
    report.staging_files = repo.backend().staging_files();
    report.packs = files.len() as u64;
    report.pack_bytes = files.iter().map(|f| f.size).sum();

    // The index is read on one thread: let the headers use the other.
    let (read, index) = rayon::join(
        || files.par_iter().map(|p| (p.id, read_header(repo.backend().as_ref(), repo.keys(), p))).collect::<Vec<_>>(),
        || index_data(repo.index()),
    );
    let mut headers = HashMap::new();
    let mut locs: BlobIdMap<Vec<BlobLoc>> = BlobIdMap::default();
    for (pack, h) in read {
        match h {
            Ok((entries, _)) => {
                for e in &entries {
                    let loc = BlobLoc { pack, offset: e.offset, length: e.length, raw_len: e.raw_len, ty: e.ty };
                    locs.entry(e.id).or_default().push(loc);
                }
                headers.insert(pack, entries);
            }
            Err(e) => report.problems.push(problem("pack_header", Some(pack), e.to_string())),
        }
    }

    let index = match index {
        Ok(i) => Some(i),
        Err(e) => {
            report.index.unusable = true;
            report.index.problems.push(e.to_string());
            None
        }
    };
    let facts = Facts { files, headers, index, locs, now_ns: jiff::Timestamp::now().as_nanosecond() as i64 };
    if let Some(ix) = &facts.index {
        compare_index(&facts, ix, report);
    }
    Ok(facts)
}

fn index_data(index: &Index) -> Result<IndexData> {
    let mut blobs = BlobIdMap::default();
    for (id, loc) in index.blobs()? {
        blobs.insert(id, loc.map_err(|e| Error::Index(format!("entry of blob {}: {e}", id.short())))?);
    }
    let mut redundant = Vec::new();
    for (id, loc) in index.redundant()? {
        redundant.push((id, loc.map_err(|e| Error::Index(format!("copy of blob {}: {e}", id.short())))?));
    }
    let packs = index.packs()?.into_iter().collect();
    Ok(IndexData { blobs, redundant, packs })
}

/// Blobs the index gets wrong in one pack: how many, and the first.
type PerPack = HashMap<Id, (u64, Id)>;

/// Every index entry must lie inside an existing pack of the right size and match its header.
fn compare_index(facts: &Facts, ix: &IndexData, report: &mut Report) {
    let sizes: HashMap<Id, u64> = facts.files.iter().map(|f| (f.id, f.size)).collect();
    let mut per_pack: HashMap<Id, u64> = HashMap::new();
    // One line per pack, not per blob: a pack swapped with another puts every blob of both in
    // the wrong place, hundreds of lines that say one thing.
    let (mut past_end, mut misplaced): (PerPack, PerPack) = Default::default();
    let note = |m: &mut PerPack, pack: Id, blob: Id| m.entry(pack).or_insert((0, blob)).0 += 1;
    report.redundant_blobs = ix.redundant.len() as u64;
    for (id, loc) in ix.blobs.iter().chain(ix.redundant.iter().map(|(id, l)| (id, l))) {
        *per_pack.entry(loc.pack).or_default() += 1;
        match sizes.get(&loc.pack) {
            None if !ix.packs.contains_key(&loc.pack) => report.index.problems.push(format!(
                "blob {} is in pack {}, which neither the index nor the disk has",
                id.short(),
                loc.pack
            )),
            None => {} // reported once per pack below
            // Past the end of a pack of the recorded size: a wrong entry. (A pack of another
            // size is reported once, as damage, below.)
            Some(&size)
                if loc.offset as u64 + loc.length as u64 > size
                    && ix.packs.get(&loc.pack).is_some_and(|p| p.size == size) =>
            {
                note(&mut past_end, loc.pack, *id)
            }
            Some(&size) if loc.offset as u64 + loc.length as u64 > size => {}
            // By blob id, not by a scan of the pack's header: that was quadratic.
            Some(_) if facts.headers.contains_key(&loc.pack) => {
                let listed = facts.locs.get(id).is_some_and(|ls| ls.contains(loc));
                if !listed && facts.locs.contains_key(id) {
                    note(&mut misplaced, loc.pack, *id);
                }
            }
            Some(_) => {}
        }
    }
    let mut sorted: Vec<_> = past_end.into_iter().map(|(p, v)| (p, v, "past the end of")).collect();
    sorted.extend(misplaced.into_iter().map(|(p, v)| (p, v, "in")));
    sorted.sort_by_key(|(p, _, _)| *p);
    for (pack, (n, first), place) in sorted {
        let tail = if place == "in" { " where that pack's header does not" } else { "" };
        let line = if n == 1 {
            format!("blob {}: the index places it {place} pack {}{tail}", first.short(), pack.short())
        } else {
            format!("the index places {n} blobs (e.g. {}) {place} pack {}{tail}", first.short(), pack.short())
        };
        report.index.problems.push(line);
    }
    for (pack, info) in &ix.packs {
        match sizes.get(pack) {
            // Damage only if a snapshot needs one of its blobs (those are reported as lost, and
            // the pack with them); otherwise prune removed it, e.g. from another client.
            None => report.index.gone_packs.push((*pack, info.blobs)),
            Some(&size) if size != info.size => report.problems.push(problem(
                "pack_size",
                Some(*pack),
                format!("pack {pack} is {size} bytes, the index recorded {}", info.size),
            )),
            Some(_) => {
                let n = per_pack.get(pack).copied().unwrap_or(0);
                if let Some(h) = facts.headers.get(pack)
                    && (h.len() as u64 != info.blobs as u64 || h.len() as u64 != n)
                {
                    report.index.problems.push(format!(
                        "pack {}: header lists {} blobs, index recorded {} and holds {n}",
                        pack.short(),
                        h.len(),
                        info.blobs
                    ));
                }
            }
        }
    }
    for pack in per_pack.keys() {
        if !ix.packs.contains_key(pack) && sizes.contains_key(pack) {
            report.index.problems.push(format!("pack {}: has blob entries but no pack entry", pack.short()));
        }
    }
    report.index.unindexed_packs = facts.files.iter().filter(|f| !ix.packs.contains_key(&f.id)).count() as u64;
}

/// What the walked snapshots reference.
#[derive(Default)]
pub(super) struct Walk {
    pub trees: BlobIdSet,
    pub data: BlobIdSet,
    /// Each listing's entry count and subtrees, to bound what a snapshot expands to.
    pub shape: HashMap<Id, (u64, Vec<Id>)>,
}

/// Listings a walk batch plans its reads over: the more, the more share a span.
const WALK_BATCH: usize = 4096;
/// Spans a walk batch keeps read.
const SPAN_CACHE: usize = 32 << 20;

/// Reads every tree reachable from the snapshots, level by level in parallel, each tree once:
/// from what the data pass kept (`kept`), else through one plan of merged reads per batch
/// (a listing is a round trip on object storage), else from any other copy that authenticates.
pub(super) fn walk(
    repo: &Repository,
    facts: &Facts,
    snaps: &[(Id, Snapshot)],
    kept: &TreesRead,
    lost: &mut HashMap<Id, Lost>,
) -> Walk {
    let mut w = Walk::default();
    let first_loc = |id: &Id| facts.locations(id).into_iter().find(|l| l.ty == ObjType::Tree);
    let load_batch = |ids: &[Id]| -> Vec<Result<Listing>> {
        let from_data: Vec<Option<Vec<Node>>> =
            ids.iter().map(|id| kept.take(id).and_then(|plain| tree::decode(&plain).ok())).collect();
        let locs: Vec<Option<BlobLoc>> =
            ids.iter().zip(&from_data).map(|(id, k)| k.is_none().then(|| first_loc(id)).flatten()).collect();
        let spans = SpanReader::plan(repo, locs.iter().flatten().copied().collect(), SPAN_CACHE);
        ids.par_iter()
            .zip(from_data)
            .zip(&locs)
            .map(|((id, kept), loc)| {
                let read = || loc.as_ref().and_then(|l| spans.with_blob(id, l, tree::decode).ok()?.ok());
                // A copy that fails here is read again below, which names why.
                let nodes = kept.or_else(read).map_or_else(|| facts.load_tree(repo, id), Ok);
                nodes.map(std::sync::Arc::new)
            })
            .collect()
    };
    // A listing is a round trip on object storage: the backend's parallel reads, not a core's.
    crate::spans::in_read_pool(repo, || {
        let roots = snaps.iter().map(|(_, s)| s.tree);
        crate::trees::walk_unique_batched(BlobIdSet::default(), roots, WALK_BATCH, load_batch, |id, listing| {
            w.trees.insert(id);
            match listing {
                Ok(nodes) => {
                    w.shape.insert(id, (nodes.len() as u64, nodes.iter().filter_map(Node::subtree).collect()));
                    for n in nodes.iter().filter(|n| n.subtree().is_none()) {
                        w.data.extend(n.content.iter().copied());
                    }
                }
                Err(e) => {
                    let indexed = facts.index.as_ref().and_then(|i| i.blobs.get(&id)).map(|l| l.pack);
                    let pack = facts.locations(&id).first().map(|l| l.pack).or(indexed);
                    lost.insert(id, Lost { ty: ObjType::Tree, pack, detail: e.to_string() });
                }
            }
        })
    });
    for id in &w.data {
        if facts.locs.get(id).is_some_and(|ls| ls.iter().any(|l| l.ty == ObjType::Data)) {
            continue; // the common case, without building the list of locations
        }
        let locs = facts.locations(id);
        if locs.is_empty() {
            let indexed = facts.index.as_ref().and_then(|i| i.blobs.get(id)).map(|l| l.pack);
            let detail = match indexed {
                Some(p) => format!("in no readable pack (the index places it in pack {}, which lacks it)", p.short()),
                None => "in no pack".into(),
            };
            lost.insert(*id, Lost { ty: ObjType::Data, pack: indexed, detail });
        } else if !locs.iter().any(|l| l.ty == ObjType::Data) {
            let detail = "stored as a tree blob, referenced as file data".into();
            lost.insert(*id, Lost { ty: ObjType::Data, pack: Some(locs[0].pack), detail });
        }
    }
    w
}

/// Restore reads through the index: a referenced blob it lacks is unreadable until a repair.
pub(super) fn referenced_in_index(facts: &Facts, w: &Walk, lost: &HashMap<Id, Lost>, report: &mut Report) {
    let Some(ix) = &facts.index else { return };
    let mut missing = 0u64;
    let mut first = None;
    for id in w.trees.iter().chain(w.data.iter()) {
        if !ix.blobs.contains_key(id) && !lost.contains_key(id) {
            missing += 1;
            first.get_or_insert(*id);
        }
    }
    if let Some(id) = first {
        report.index.problems.push(format!(
            "{missing} referenced blobs are in packs but not in the index (e.g. {}); restore cannot find them",
            id.short()
        ));
    }
}

/// Counts packs and blobs no walked snapshot needs.
pub(super) fn unreferenced(facts: &Facts, w: &Walk, report: &mut Report) {
    let used = |id: &Id| w.trees.contains(id) || w.data.contains(id);
    report.unreferenced_blobs = facts.locs.keys().filter(|id| !used(id)).count() as u64;
    report.unreferenced_packs =
        facts.headers.values().filter(|entries| !entries.is_empty() && !entries.iter().any(|e| used(&e.id))).count()
            as u64;
}

/// A snapshot whose tree references subtrees over and over expands to more paths than any
/// restore can walk: damage (or an attack), though every blob in it reads.
pub(super) fn expansion(w: &Walk, snaps: &[(Id, Snapshot)], report: &mut Report) {
    let mut seen = std::collections::HashSet::new();
    for (snap, s) in snaps {
        if !seen.insert(s.tree) {
            continue;
        }
        // A listing that did not load is reported as lost already; here it counts as empty.
        let shape = |id: &Id| Ok(w.shape.get(id).cloned().unwrap_or_default());
        if let Err(e) = crate::trees::bound_expansion(s.tree, shape) {
            report.problems.push(Problem {
                kind: "tree",
                pack: None,
                blob: Some((s.tree, ObjType::Tree)),
                detail: format!("snapshot {}: {e}", snap.short()),
            });
        }
    }
}
