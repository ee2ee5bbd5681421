//! `key rotate --rewrite`: re-seals every object of the repository under the current key
//! epoch, then destroys the keys of the older ones (format-spec §12).
//!
//! Packs are rewritten by prune's machinery, beside running backups and mounts: every pack
//! whose header is sealed under an old epoch is repacked (its live blobs re-sealed on the way,
//! see `Packer::add_sealed`) and condemned, and the sweep deletes it once nobody who started
//! before can still need it. Snapshots and condemned-pack lists are small and re-sealed in
//! place. An old epoch's key goes only when no object sealed under it is left and no client
//! that started before the rotation (and may still write under the old epoch) is running.
//! Killed anywhere, the repository stays readable (the old keys stay until the very end) and
//! running the command again carries on.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::backend::Kind;
use crate::crypto::{ObjType, envelope_epoch};
use crate::error::{Error, Result};
use crate::format::pack::{TRAILER_LEN, decode_trailer};
use crate::id::Id;
use crate::prune::{self, CLOCK_SKEW_NS, PruneOptions, PruneOutcome};
use crate::repo::{Repository, lock, packs};

/// Bound on a snapshot or condemned-pack list object re-sealed in place.
const MAX_SMALL_OBJECT: usize = 32 << 20;

#[derive(Debug, Default)]
pub struct RekeyOutcome {
    /// The epoch everything is sealed under now.
    pub epoch: u32,
    /// Epochs whose keys were destroyed.
    pub retired: Vec<u32>,
    /// Packs found under an old epoch (each pass), and what prune did with them.
    pub old_packs: u64,
    pub prune: PruneOutcome,
    pub snapshots_resealed: u64,
    pub lists_resealed: u64,
    /// Why old epochs remain (empty when `retired` holds them all).
    pub waiting: Vec<String>,
}

impl RekeyOutcome {
    pub fn finished(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// What is still sealed under an epoch other than `epoch`.
#[derive(Debug, Default)]
struct Old {
    packs: HashSet<Id>,
    snapshots: Vec<String>,
    lists: Vec<String>,
}

impl Old {
    fn is_empty(&self) -> bool {
        self.packs.is_empty() && self.snapshots.is_empty() && self.lists.is_empty()
    }
}

/// The epoch `key rotate --rewrite` re-seals into: the current one when older epochs are still
/// there (an unfinished rotation is carried on, not started again), else a new one. Returns it
/// and whether it carries a rotation on.
pub fn target_epoch(repo: &Repository) -> Result<(u32, bool)> {
    match repo.keys().current_epoch() {
        Some(current) if repo.keys().epochs().len() > 1 => Ok((current, true)),
        _ => Ok((repo.rotate_epoch()?, false)),
    }
}

/// Re-seals everything under the current epoch and retires the others. The caller holds a
/// [`lock::LockMode::Prune`] lock; `opts` tunes the prune that rewrites the packs.
pub fn rewrite(repo: &Repository, opts: &PruneOptions) -> Result<RekeyOutcome> {
    let epoch = repo.keys().current_epoch().ok_or_else(|| Error::Invalid("no key epoch".into()))?;
    let newer = repo.backend().list(Kind::Epoch)?.into_iter().filter_map(|(n, _)| u32::from_str_radix(&n, 16).ok());
    if let Some(n) = newer.filter(|n| *n > epoch).max() {
        return Err(Error::Invalid(format!("key epoch {n} was made after this command started; run it again")));
    }
    let mut out = RekeyOutcome { epoch, ..Default::default() };
    let since = repo.epoch_created(epoch)?;
    // Two passes: the second picks up what clients that started before the rotation wrote
    // under the old epoch until they ended during the first.
    for _ in 0..2 {
        let old = scan(repo, epoch)?;
        if !old.packs.is_empty() {
            out.old_packs += old.packs.len() as u64;
            let opts = PruneOptions { force_repack: old.packs.clone(), dry_run: false, ..opts.clone() };
            let p = prune::prune(repo, &opts)?;
            accumulate(&mut out.prune, p);
        }
        for name in &old.snapshots {
            let id = Id::from_hex(name)?;
            out.snapshots_resealed += u64::from(reseal_in_place(repo, Kind::Snapshot, ObjType::Snapshot, &id, name)?);
        }
        for name in &old.lists {
            out.lists_resealed +=
                u64::from(reseal_in_place(repo, Kind::Condemned, ObjType::Condemned, &Id::ZERO, name)?);
        }
        let writers = older_clients(repo, since)?;
        let left = scan(repo, epoch)?;
        if writers.is_empty() && left.is_empty() {
            for n in repo.keys().epochs().into_iter().filter(|n| *n != epoch) {
                repo.destroy_epoch(n)?;
                out.retired.push(n);
            }
            // Epoch objects this handle could not open are old epochs too.
            for (name, _) in repo.backend().list(Kind::Epoch)? {
                if u32::from_str_radix(&name, 16).is_ok_and(|n| n < epoch) {
                    repo.backend().delete(Kind::Epoch, &name)?;
                }
            }
            out.waiting.clear();
            return Ok(out);
        }
        out.waiting = writers;
        if !left.packs.is_empty() {
            let held = out.prune.waiting_for.join(", ");
            out.waiting.push(if held.is_empty() {
                format!("{} pack(s) under an old epoch are still there", left.packs.len())
            } else {
                format!("{} pack(s) under an old epoch are held back for {held}", left.packs.len())
            });
        }
        if !left.snapshots.is_empty() || !left.lists.is_empty() {
            out.waiting.push(format!(
                "{} snapshot(s) and {} condemned-pack list(s) are under an old epoch",
                left.snapshots.len(),
                left.lists.len()
            ));
        }
    }
    Ok(out)
}

/// Everything whose envelope names an epoch other than `epoch`. Packs are judged by their
/// header's epoch: every envelope in a pack is under the header's (format-spec §6).
fn scan(repo: &Repository, epoch: u32) -> Result<Old> {
    let backend = repo.backend();
    let (files, _) = packs::list_packs(backend.as_ref())?;
    let packs: Vec<Option<Id>> = files
        .par_iter()
        .map(|f| match header_epoch(repo, f) {
            Ok(e) => Ok((e != epoch).then_some(f.id)),
            // Deleted by a sweep since the listing.
            Err(e) if crate::backend::is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        })
        .collect::<Result<_>>()?;
    let mut old = Old { packs: packs.into_iter().flatten().collect(), ..Default::default() };
    for (kind, names) in [(Kind::Snapshot, &mut old.snapshots), (Kind::Condemned, &mut old.lists)] {
        for (name, _) in backend.list(kind)? {
            let mut head = [0u8; 4];
            match backend.read_at(kind, &name, 0, &mut head) {
                Ok(()) if envelope_epoch(&head) != Some(epoch) => names.push(name),
                Ok(()) => {}
                Err(e) if crate::backend::is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(old)
}

/// The epoch a pack's header is sealed under: the trailer, then the header's first bytes.
fn header_epoch(repo: &Repository, pack: &packs::PackFile) -> Result<u32> {
    let name = pack.id.hex();
    let backend = repo.backend();
    let what = || format!("pack {}", pack.id);
    let mut trailer = [0u8; TRAILER_LEN];
    let at = pack.size.checked_sub(TRAILER_LEN as u64).ok_or_else(|| Error::corrupt(what(), "too short"))?;
    backend.read_at(Kind::Pack, &name, at, &mut trailer)?;
    let (start, _) = decode_trailer(&trailer, pack.size).map_err(|e| Error::corrupt(what(), e.to_string()))?;
    let mut head = [0u8; 4];
    backend.read_at(Kind::Pack, &name, start, &mut head)?;
    Ok(u32::from_le_bytes(head))
}

/// Re-seals one object under the current epoch in place; false when it went meanwhile.
fn reseal_in_place(repo: &Repository, kind: Kind, ty: ObjType, id: &Id, name: &str) -> Result<bool> {
    let raw = match repo.backend().read(kind, name) {
        Ok(r) => r,
        Err(e) if crate::backend::is_not_found(&e) => return Ok(false),
        Err(e) => return Err(e),
    };
    match repo.keys().reseal(ty, id, &raw, MAX_SMALL_OBJECT, &[])? {
        Some(sealed) => match repo.backend().replace(kind, name, &sealed) {
            Ok(()) => Ok(true),
            Err(e) if crate::backend::is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        },
        None => Ok(false),
    }
}

/// Clients (other than this one) whose lock started before the epoch `since`, plus clock skew:
/// they may hold only the old keys and still write under them.
fn older_clients(repo: &Repository, since: i64) -> Result<Vec<String>> {
    let own = repo.lock_name();
    let (locks, _) = lock::list(repo.backend().as_ref(), own.as_deref())?;
    Ok(locks
        .into_iter()
        .filter(|l| !l.is_stale())
        .filter(|l| (l.started.as_nanosecond() as i64) <= since.saturating_add(CLOCK_SKEW_NS))
        .map(|l| {
            format!("`{}` (pid {} on {}, since {}) started before the rotation", l.command, l.pid, l.host, l.started)
        })
        .collect())
}

fn accumulate(total: &mut PruneOutcome, p: PruneOutcome) {
    total.copied_blobs += p.copied_blobs;
    total.copied_bytes += p.copied_bytes;
    total.deleted_packs += p.deleted_packs;
    total.deleted_bytes += p.deleted_bytes;
    total.waiting_packs = p.waiting_packs;
    total.waiting_bytes = p.waiting_bytes;
    total.waiting_for = p.waiting_for;
    total.rescued_packs += p.rescued_packs;
    total.plan = p.plan;
}
