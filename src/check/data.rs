//! `--read-data`: reads packs in full, in parallel, authenticating and re-hashing every blob and
//! the pack itself; remembers when each pack was last verified so short runs rotate through all.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::structure::Facts;
use super::{Lost, Problem, ReadStats, Report, Subset};
use crate::crypto::{ENVELOPE_OVERHEAD, MAX_PAYLOAD, ObjType};
use crate::error::Result;
use crate::id::Id;
use crate::index::BlobLoc;
use crate::repo::Repository;
use crate::repo::packs::PackFile;

pub(super) struct Plan<'a> {
    pub subset: Subset,
    pub max_duration: Option<Duration>,
    /// Verify only these blobs (one snapshot's needs), not whole packs.
    pub only: Option<&'a HashSet<Id>>,
}

/// Largest envelope a writer produces: a 64 MiB payload stored uncompressed.
const MAX_ENVELOPE: u32 = (MAX_PAYLOAD + ENVELOPE_OVERHEAD) as u32;
const READ_BUF: usize = 1 << 20;

#[derive(Default)]
struct PackResult {
    bytes: u64,
    blobs: u64,
    failures: Vec<(Id, ObjType, String)>,
    /// The file's BLAKE3 differs from its name (only known when read in full).
    hash_mismatch: bool,
    io_error: Option<String>,
}

pub(super) fn read(
    repo: &Repository,
    facts: &mut Facts,
    plan: &Plan,
    lost: &mut HashMap<Id, Lost>,
    report: &mut Report,
) -> Result<ReadStats> {
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
    let deadline = plan.max_duration.map(|d| started + d);
    let stopped = AtomicBool::new(false);
    let results: Vec<(&PackFile, Option<PackResult>)> = selected
        .par_iter()
        .map(|f| {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                stopped.store(true, Ordering::Relaxed);
                return (*f, None);
            }
            let mut list = entries.get(&f.id).cloned().unwrap_or_default();
            list.sort_by_key(|(_, l)| l.offset);
            let r = if plan.only.is_some() { verify_blobs(repo, &list) } else { verify_pack(repo, f, &list) };
            (*f, Some(r))
        })
        .collect();

    let mut stats = ReadStats { packs_selected: selected.len() as u64, ..Default::default() };
    let mut failed: HashSet<(Id, Id)> = HashSet::new();
    let mut verified = Vec::new();
    for (f, r) in &results {
        let Some(r) = r else { continue };
        stats.packs += 1;
        stats.bytes += r.bytes;
        stats.blobs += r.blobs;
        let pack = Some(f.id);
        if r.hash_mismatch {
            let detail = format!("pack {}: content does not match its name (altered, or another pack's bytes)", f.id);
            report.problems.push(Problem { kind: "pack_hash", pack, blob: None, detail });
        }
        if let Some(e) = &r.io_error {
            report.problems.push(Problem {
                kind: "pack_read",
                pack,
                blob: None,
                detail: format!("pack {}: {e}", f.id),
            });
        }
        for (id, _, _) in &r.failures {
            failed.insert((*id, f.id));
        }
        let clean = !r.hash_mismatch && r.io_error.is_none() && r.failures.is_empty();
        if clean && plan.only.is_none() && facts.headers.contains_key(&f.id) {
            verified.push((f.id, facts.now_ns));
        }
    }
    // A blob is lost when no copy of it verified: a failed copy with a good twin elsewhere is
    // still reported through its pack, but no file depends on it.
    for (f, r) in &results {
        let Some(r) = r else { continue };
        for (id, ty, detail) in &r.failures {
            let twin = facts.locations(id).iter().any(|l| l.pack != f.id && !failed.contains(&(*id, l.pack)));
            if twin {
                let detail = format!("copy in pack {} is damaged ({detail}); another copy is intact", f.id.short());
                report.problems.push(Problem { kind: "blob", pack: Some(f.id), blob: Some((*id, *ty)), detail });
            } else {
                lost.insert(*id, Lost { ty: *ty, pack: Some(f.id), detail: detail.clone() });
            }
        }
    }
    if let Some(ix) = &mut facts.index
        && !verified.is_empty()
    {
        ix.index.set_verified(&verified)?;
        for (id, t) in &verified {
            if let Some(p) = ix.packs.get_mut(id) {
                p.last_verified = *t;
            }
        }
    }
    stats.complete = !stopped.load(Ordering::Relaxed);
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Orders packs least recently verified first, then applies the subset.
fn select<'f>(facts: &'f Facts, plan: &Plan, entries: &HashMap<Id, Vec<(Id, BlobLoc)>>) -> Vec<&'f PackFile> {
    let verified_at = |id: &Id| facts.index.as_ref().and_then(|i| i.packs.get(id)).map_or(0, |p| p.last_verified);
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

/// Reads a pack front to back once: every blob is authenticated, decompressed and re-hashed,
/// and the whole file is hashed to compare with its name.
fn verify_pack(repo: &Repository, f: &PackFile, list: &[(Id, BlobLoc)]) -> PackResult {
    let mut r = PackResult::default();
    let file = match File::open(&f.path) {
        Ok(file) => file,
        Err(e) => {
            r.io_error = Some(e.to_string());
            r.failures = list.iter().map(|(id, l)| (*id, l.ty, format!("pack unreadable: {e}"))).collect();
            return r;
        }
    };
    let mut reader = BufReader::with_capacity(READ_BUF, file);
    let mut hasher = blake3::Hasher::new();
    let mut pos = 0u64;
    let mut buf = Vec::new();
    let mut eof = false;
    for (id, loc) in list {
        let end = loc.offset as u64 + loc.length as u64;
        if loc.length > MAX_ENVELOPE || end > f.size {
            r.failures.push((
                *id,
                loc.ty,
                format!("entry ({} bytes at {}) beyond the pack's end", loc.length, loc.offset),
            ));
            continue;
        }
        if (loc.offset as u64) < pos || eof {
            // Overlapping entries only come from a damaged header or index; read them on their own.
            check_one(repo, id, loc, &mut r);
            continue;
        }
        let skip = loc.offset as u64 - pos;
        match std::io::copy(&mut (&mut reader).take(skip), &mut hasher) {
            Ok(n) if n == skip => pos += n,
            Ok(n) => {
                pos += n;
                eof = true;
            }
            Err(e) => {
                r.io_error = Some(e.to_string());
                eof = true;
            }
        }
        if eof {
            r.failures.push((*id, loc.ty, "beyond the end of the pack".into()));
            continue;
        }
        buf.resize(loc.length as usize, 0);
        if let Err(e) = reader.read_exact(&mut buf) {
            eof = true;
            r.failures.push((*id, loc.ty, format!("read: {e}")));
            continue;
        }
        hasher.update(&buf);
        pos = end;
        r.blobs += 1;
        if let Err(e) =
            repo.keys().open_in_place(loc.ty, id, &mut buf, (loc.raw_len as usize).min(MAX_PAYLOAD), &[], |_| ())
        {
            r.failures.push((*id, loc.ty, e.to_string()));
        }
    }
    if !eof {
        match std::io::copy(&mut reader, &mut hasher) {
            Ok(n) => pos += n,
            Err(e) => r.io_error = Some(e.to_string()),
        }
    }
    r.bytes = pos;
    r.hash_mismatch = eof || *hasher.finalize().as_bytes() != f.id.0;
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
