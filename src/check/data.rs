//! `--read-data`: reads packs in full, in parallel, authenticating and re-hashing every blob and
//! the pack itself; remembers when each pack was last verified so short runs rotate through all.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::structure::Facts;
use super::{Lost, Problem, ReadStats, Report, Subset};
use crate::backend::Kind;
use crate::crypto::{ENVELOPE_OVERHEAD, MAX_PAYLOAD, ObjType};
use crate::error::Result;
use crate::id::{BlobIdMap, Id};
use crate::index::BlobLoc;
use crate::repo::Repository;
use crate::repo::packs::PackFile;

pub(super) struct Plan<'a> {
    pub subset: Subset,
    pub max_duration: Option<Duration>,
    /// Verify only these blobs (one snapshot's needs), not whole packs.
    pub only: Option<&'a HashSet<Id>>,
    pub progress: &'a crate::progress::Work,
}

/// Largest envelope a writer produces: a 64 MiB payload stored uncompressed.
const MAX_ENVELOPE: u32 = (MAX_PAYLOAD + ENVELOPE_OVERHEAD) as u32;
/// A window holding one large blob is not worth keeping around.
const KEEP_BUF: usize = 16 << 20;

/// Plaintexts of the tree blobs the data pass authenticated, up to a budget, for the structure
/// walk: a tree in a pack read whole costs no second request. Taken, not copied, by the walk.
pub(super) struct TreesRead {
    map: Mutex<BlobIdMap<Vec<u8>>>,
    room: AtomicUsize,
}

impl TreesRead {
    pub fn new(budget: usize) -> TreesRead {
        TreesRead { map: Mutex::default(), room: AtomicUsize::new(budget) }
    }

    fn keep(&self, id: &Id, ty: ObjType, plain: &[u8]) {
        let fits = |room: usize| room.checked_sub(plain.len());
        if ty == ObjType::Tree && self.room.fetch_update(Ordering::Relaxed, Ordering::Relaxed, fits).is_ok() {
            self.map.lock().unwrap_or_else(|e| e.into_inner()).insert(*id, plain.to_vec());
        }
    }

    pub fn take(&self, id: &Id) -> Option<Vec<u8>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(id)
    }
}

#[derive(Default)]
struct PackResult {
    bytes: u64,
    blobs: u64,
    failures: Vec<(Id, ObjType, String)>,
    /// The file's BLAKE3 differs from its name (only known when read in full).
    hash_mismatch: bool,
    io_error: Option<String>,
}

/// What reading the selected packs found; `record` turns it into problems and losses.
pub(super) struct Verified {
    /// By pack id.
    results: Vec<(Id, Option<PackResult>)>,
    selected: usize,
    stopped: bool,
    seconds: f64,
}

/// Reads and verifies the selected packs. Touches nothing but the pack files; the trees it
/// authenticates go to `trees`, for the walk that follows.
pub(super) fn verify(repo: &Repository, facts: &Facts, plan: &Plan, trees: &TreesRead) -> Verified {
    let started = Instant::now();
    // Blobs to verify per pack: from the header, or from the index when the header is unreadable.
    let mut entries: HashMap<Id, Vec<(Id, BlobLoc)>> = HashMap::new();
    for (id, locs) in &facts.locs {
        for l in locs {
            entries.entry(l.pack).or_default().push((*id, *l));
        }
    }
    if let Some(ix) = &facts.index {
        for (id, l) in &ix.blobs {
            if !facts.headers.contains_key(&l.pack) {
                entries.entry(l.pack).or_default().push((*id, *l));
            }
        }
    }
    if let Some(only) = plan.only {
        for v in entries.values_mut() {
            v.retain(|(id, _)| only.contains(id));
        }
    }

    let selected = select(facts, plan, &entries);
    plan.progress.add_total(selected.len() as u64, selected.iter().map(|f| f.size).sum());
    let deadline = plan.max_duration.map(|d| started + d);
    let stopped = AtomicBool::new(false);
    let results = selected
        .par_iter()
        .map(|f| {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                stopped.store(true, Ordering::Relaxed);
                return (f.id, None);
            }
            let mut list = entries.get(&f.id).cloned().unwrap_or_default();
            list.sort_by_key(|(_, l)| l.offset);
            let r = if plan.only.is_some() { verify_blobs(repo, &list) } else { verify_pack(repo, f, &list, trees) };
            plan.progress.done(Path::new(&f.id.hex()), f.size);
            (f.id, Some(r))
        })
        .collect();
    Verified {
        results,
        selected: selected.len(),
        stopped: stopped.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Reports what `verify` found, and stamps the packs that verified clean in the index.
pub(super) fn record(
    index: &crate::index::Index,
    facts: &mut Facts,
    v: Verified,
    only: bool,
    lost: &mut HashMap<Id, Lost>,
    report: &mut Report,
) -> Result<ReadStats> {
    let results = v.results;
    let mut stats = ReadStats { packs_selected: v.selected as u64, ..Default::default() };
    let mut failed: HashSet<(Id, Id)> = HashSet::new();
    let mut verified = Vec::new();
    for (pack_id, r) in &results {
        let Some(r) = r else { continue };
        stats.packs += 1;
        stats.bytes += r.bytes;
        stats.blobs += r.blobs;
        let pack = Some(*pack_id);
        if r.hash_mismatch {
            let detail = format!("pack {pack_id}: content does not match its name (altered, or another pack's bytes)");
            report.problems.push(Problem { kind: "pack_hash", pack, blob: None, detail });
        }
        if let Some(e) = &r.io_error {
            report.problems.push(Problem {
                kind: "pack_read",
                pack,
                blob: None,
                detail: format!("pack {pack_id}: {e}"),
            });
        }
        for (id, _, _) in &r.failures {
            failed.insert((*id, *pack_id));
        }
        let clean = !r.hash_mismatch && r.io_error.is_none() && r.failures.is_empty();
        if clean && !only && facts.headers.contains_key(pack_id) {
            verified.push((*pack_id, facts.now_ns));
        }
    }
    // A blob is lost when no copy of it verified: a failed copy with a good twin elsewhere is
    // still reported through its pack, but no file depends on it.
    for (pack_id, r) in &results {
        let Some(r) = r else { continue };
        for (id, ty, detail) in &r.failures {
            let twin = facts.locations(id).iter().any(|l| l.pack != *pack_id && !failed.contains(&(*id, l.pack)));
            let pack = Some(*pack_id);
            if twin {
                let detail = format!("copy in pack {} is damaged ({detail}); another copy is intact", pack_id.short());
                report.problems.push(Problem { kind: "blob", pack, blob: Some((*id, *ty)), detail });
            } else {
                lost.insert(*id, Lost { ty: *ty, pack, detail: detail.clone() });
            }
        }
    }
    if let Some(ix) = &mut facts.index
        && !verified.is_empty()
    {
        index.set_verified(&verified)?;
        for (id, t) in &verified {
            if let Some(p) = ix.packs.get_mut(id) {
                p.last_verified = *t;
            }
        }
    }
    stats.complete = !v.stopped;
    stats.seconds = v.seconds;
    Ok(stats)
}

/// Orders packs least recently verified first, then applies the subset.
fn select<'f>(facts: &'f Facts, plan: &Plan, entries: &HashMap<Id, Vec<(Id, BlobLoc)>>) -> Vec<&'f PackFile> {
    // The times are the cache's word, not authenticated: one in the future (a clock that was
    // wrong, or an altered cache) counts as never, so it cannot hide a pack from short runs.
    let verified_at = |id: &Id| {
        let t = facts.index.as_ref().and_then(|i| i.packs.get(id)).map_or(0, |p| p.last_verified);
        if t > facts.now_ns { 0 } else { t }
    };
    let mut packs: Vec<&PackFile> = facts
        .files
        .iter()
        .filter(|f| plan.only.is_none() || entries.get(&f.id).is_some_and(|v| !v.is_empty()))
        .collect();
    packs.sort_by_key(|f| (verified_at(&f.id), f.id));
    match plan.subset {
        Subset::All => packs,
        Subset::Percent(p) => {
            let n = ((packs.len() as f64 * p / 100.0).ceil() as usize).min(packs.len());
            packs.truncate(n);
            packs
        }
        Subset::Slice(n, m) => {
            packs.retain(|f| u32::from_le_bytes([f.id.0[0], f.id.0[1], f.id.0[2], f.id.0[3]]) % m == n - 1);
            packs
        }
    }
}

thread_local! {
    // Kept between reads, so its pages are faulted in once.
    static WINDOW_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads a pack front to back in windows of about this size, each small enough to stay in
/// the core's cache while it is hashed, authenticated, decompressed and re-hashed.
const WINDOW: u64 = 1 << 20;

/// Reads a pack front to back once, in one request on object storage: every blob is
/// authenticated, decompressed and re-hashed in place, and the whole file is hashed to compare
/// with its name. Tree blobs that open are handed to `trees` for the walk.
fn verify_pack(repo: &Repository, f: &PackFile, list: &[(Id, BlobLoc)], trees: &TreesRead) -> PackResult {
    let mut r = PackResult::default();
    let name = f.id.hex();
    let mut stream = match repo.backend().read_stream(Kind::Pack, &name, 0..f.size) {
        Ok(s) => Some(s),
        Err(e) => {
            r.io_error = Some(e.to_string());
            None
        }
    };
    let mut hasher = blake3::Hasher::new();
    let mut pos = 0u64;
    WINDOW_BUF.with_borrow_mut(|buf| {
        // Reads up to `end` into `buf`, hashing it; false when the file ends first.
        let mut fill = |buf: &mut Vec<u8>, pos: &mut u64, end: u64, r: &mut PackResult| {
            buf.resize((end - *pos) as usize, 0);
            let Some(s) = stream.as_mut() else { return false };
            if let Err(e) = s.fill(buf) {
                r.io_error = Some(e.to_string());
                buf.clear();
                stream = None;
                return false;
            }
            hasher.update(buf);
            *pos = end;
            true
        };
        let fits = |loc: &BlobLoc| loc.length <= MAX_ENVELOPE && loc.offset as u64 + loc.length as u64 <= f.size;
        let mut short = false;
        let mut i = 0;
        while i < list.len() {
            let (id, loc) = &list[i];
            if !fits(loc) {
                let detail = format!("entry ({} bytes at {}) beyond the pack's end", loc.length, loc.offset);
                r.failures.push((*id, loc.ty, detail));
                i += 1;
                continue;
            }
            if (loc.offset as u64) < pos {
                // Overlapping entries only come from a damaged header or index, and the bytes
                // before `pos` are decrypted already: read this one on its own.
                check_one(repo, id, loc, &mut r);
                i += 1;
                continue;
            }
            if short {
                r.failures.push((*id, loc.ty, "beyond what could be read of the pack".into()));
                i += 1;
                continue;
            }
            // This blob and the next ones that follow it within the window, gaps included.
            let base = pos;
            let mut end = loc.offset as u64 + loc.length as u64;
            let mut j = i + 1;
            while let Some((_, next)) = list.get(j) {
                let next_end = next.offset as u64 + next.length as u64;
                if !fits(next) || (next.offset as u64) < end || next_end - base > WINDOW {
                    break;
                }
                end = next_end;
                j += 1;
            }
            short = !fill(buf, &mut pos, end, &mut r);
            for (id, loc) in &list[i..j] {
                let start = (loc.offset as u64 - base) as usize;
                let stop = start + loc.length as usize;
                if stop > buf.len() {
                    r.failures.push((*id, loc.ty, "beyond what could be read of the pack".into()));
                    continue;
                }
                r.blobs += 1;
                let max = (loc.raw_len as usize).min(MAX_PAYLOAD);
                let keep = |plain: &[u8]| trees.keep(id, loc.ty, plain);
                if let Err(e) = repo.keys().open_in_place(loc.ty, id, &mut buf[start..stop], max, &[], keep) {
                    r.failures.push((*id, loc.ty, e.to_string()));
                }
            }
            i = j;
        }
        // The rest: the header, and anything between or after the blobs.
        if !short {
            fill(buf, &mut pos, f.size, &mut r);
        }
        if buf.capacity() > KEEP_BUF {
            *buf = Vec::new();
        }
    });
    r.bytes = pos;
    r.hash_mismatch = pos != f.size || *hasher.finalize().as_bytes() != f.id.0;
    r
}

fn check_one(repo: &Repository, id: &Id, loc: &BlobLoc, r: &mut PackResult) {
    r.blobs += 1;
    r.bytes += loc.length as u64;
    if let Err(e) = repo.read_blob_at(id, loc) {
        r.failures.push((*id, loc.ty, e.to_string()));
    }
}

/// Reads only the listed blobs, for checking what one snapshot needs.
fn verify_blobs(repo: &Repository, list: &[(Id, BlobLoc)]) -> PackResult {
    let mut r = PackResult::default();
    for (id, loc) in list {
        if loc.length > MAX_ENVELOPE {
            r.failures.push((*id, loc.ty, format!("implausible length {}", loc.length)));
            continue;
        }
        check_one(repo, id, loc, &mut r);
    }
    r
}
