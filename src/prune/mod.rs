//! `prune`: removes what no snapshot references, without stopping backups or mounts
//! (format-spec §11). It marks what the snapshots use, repacks packs that are mostly unused
//! (moving their live blobs as they are, without re-encrypting), and condemns the packs it no
//! longer needs in a list object. A condemned pack is deleted only when no backup or mount that
//! started before it was condemned is still running, and only after a fresh look at the
//! snapshots written since the mark: what one of them references is rescued, not deleted.

mod plan;
mod spill;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::format::condemned::Condemned;
use crate::id::{BlobIdSet, Id};
use crate::index::BlobLoc;
use crate::repo::{Repository, condemned, lock, packer};
use crate::spans::{CACHE_BYTES, SpanReader};

pub use plan::{Plan, plan};
pub use spill::Spill;

/// Clocks of the hosts sharing a repository are taken to agree within this much (format-spec
/// §11): a lock that started up to this long after a list was written still holds it back.
pub const CLOCK_SKEW_NS: i64 = 5 * 60 * 1_000_000_000;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Unused space to tolerate, as a fraction of the repository (restic's `--max-unused`).
    pub max_unused: f64,
    /// Copy at most this many bytes of live blobs out of packs being repacked.
    pub max_repack_bytes: Option<u64>,
    pub dry_run: bool,
    /// Packs to repack whatever their unused share (key rotation's packs of old epochs).
    pub force_repack: HashSet<Id>,
    /// Bytes of live blobs copied so far, of how many: for a progress line.
    pub progress: Option<Arc<CopyProgress>>,
    /// Memory for each of the mark's sets (blobs in use, blobs to copy); past it they go to
    /// temporary files (in `TMPDIR`), so prune's memory does not grow with the repository.
    pub mark_memory: usize,
}

/// How far the copy of live blobs is, for a progress line on another thread.
#[derive(Debug, Default)]
pub struct CopyProgress {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            max_repack_bytes: None,
            dry_run: false,
            force_repack: HashSet::new(),
            progress: None,
            mark_memory: 8 << 20,
        }
    }
}

#[derive(Debug, Default)]
pub struct PruneOutcome {
    pub plan: Plan,
    /// Blobs copied out of repacked packs.
    pub copied_blobs: u64,
    pub copied_bytes: u64,
    /// What the sweep deleted now.
    pub deleted_packs: u64,
    pub deleted_bytes: u64,
    /// Condemned packs held back for users that started before they were condemned.
    pub waiting_packs: u64,
    pub waiting_bytes: u64,
    /// Those users, as lock descriptions.
    pub waiting_for: Vec<String>,
    /// Condemned packs a snapshot written since turned out to need: kept.
    pub rescued_packs: u64,
}

/// Prunes. The caller holds a [`lock::LockMode::Prune`] lock on `repo`.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneOutcome> {
    let (plan, mut marked, mut to_copy) = plan(repo, opts)?;
    let mut out = PruneOutcome::default();
    if opts.dry_run {
        out.plan = plan;
        return Ok(out);
    }
    let condemned_now: Vec<Id> = plan.delete.iter().chain(&plan.repack).copied().collect();
    if !condemned_now.is_empty() {
        // Condemned in this client's index first, so the packer does not take the blobs it
        // must copy for present in the very packs being emptied.
        let mut all = plan.already_condemned.clone();
        all.extend(condemned_now.iter().copied());
        repo.index().set_condemned(&all)?;
        if let Some(pr) = &opts.progress {
            pr.total.store(plan.copy_bytes, Ordering::Relaxed);
        }
        // On object storage, one ranged read for the blobs that lie together: a GET a blob
        // made the repack of one mixed pack 19 round trips one after another. (Not more
        // threads, as restore has: each copying thread holds a pack writer of its own.)
        let network = repo.backend().parallel_reads() > 0;
        let (copied, added) = packer::with_packer(repo, false, |p| {
            let mut copied = 0;
            let mut batch = Vec::with_capacity(COPY_BATCH);
            let mut records = to_copy.iter();
            loop {
                batch.clear();
                for r in records.by_ref().take(COPY_BATCH) {
                    batch.push(plan::decode_copy(&r?));
                }
                if batch.is_empty() {
                    break;
                }
                let spans =
                    network.then(|| SpanReader::plan(repo, batch.iter().map(|(_, l)| *l).collect(), CACHE_BYTES));
                // In parallel, in runs of neighbouring blobs: a rotation copies everything, and
                // opening each blob (as `check --read-data` does) is most of its cost.
                let copy_run = |run: &[(Id, BlobLoc)]| -> Result<u64> {
                    let mut n = 0;
                    for (id, loc) in run {
                        if copy_blob(repo, p, spans.as_ref(), id, loc)? {
                            n += 1;
                        }
                        if let Some(pr) = &opts.progress {
                            pr.done.fetch_add(u64::from(loc.length), Ordering::Relaxed);
                        }
                    }
                    Ok(n)
                };
                let n: Vec<u64> = batch.par_chunks(32).map(copy_run).collect::<Result<_>>()?;
                copied += n.iter().sum::<u64>();
            }
            Ok(copied)
        })?;
        out.copied_blobs = copied;
        out.copied_bytes = added.bytes;
        // The copies are durable and indexed: only now may the old packs be condemned.
        let time_ns = jiff::Timestamp::now().as_nanosecond() as i64;
        let list = Condemned { time_ns, packs: condemned_now };
        let name = condemned::write(repo.backend().as_ref(), repo.keys(), &list)?;
        marked.lists.push(condemned::Named { name, list });
    }
    out.plan = plan;
    sweep(repo, marked, &mut out)?;
    Ok(out)
}

/// Copies one live blob into the packer. Nothing damaged is carried over: the copy must open
/// as what it claims to be. One sealed under an older epoch is authenticated and re-sealed
/// without being decompressed ([`crate::crypto::Keys::reseal_in_place`] says why that is enough).
fn copy_blob(
    repo: &Repository,
    p: &packer::Packer,
    spans: Option<&SpanReader>,
    id: &Id,
    loc: &BlobLoc,
) -> Result<bool> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let damaged = |e: Error| {
        Error::corrupt(format!("{} {} in pack {}", loc.ty.name(), id.short(), loc.pack.short()), e.to_string())
    };
    BUF.with_borrow_mut(|env| {
        // One buffer per thread: a fresh megabyte per blob costs more in page faults than the copy.
        env.resize(loc.length as usize, 0);
        match spans {
            Some(spans) => spans.with_sealed(id, loc, |sealed| env.copy_from_slice(sealed))?,
            None => repo.backend().read_at(Kind::Pack, &loc.pack.hex(), u64::from(loc.offset), env)?,
        }
        let keys = repo.keys();
        let raw_len = loc.raw_len as usize;
        if !keys.reseal_in_place(loc.ty, id, env, raw_len, &[]).map_err(damaged)? {
            keys.open_in_place(loc.ty, id, &mut env.clone(), raw_len, &[], |_| ()).map_err(damaged)?;
        }
        p.add_sealed(loc.ty, id, loc.raw_len, env)
    })
}

/// Blobs to copy decoded at a time: enough to keep every thread busy, few enough to bound memory.
const COPY_BATCH: usize = 8192;

/// What the mark found, for the sweep: the blobs in use and the snapshots walked.
pub struct Marked {
    pub used: Spill<32>,
    pub trees: BlobIdSet,
    pub snapshots: HashSet<Id>,
    /// The condemned-pack lists, as the plan read them and with the one this prune writes:
    /// only a prune writes lists, and it holds the prune lock, so the sweep needs no new look.
    pub lists: Vec<condemned::Named>,
}

/// Deletes the condemned packs no running user can still need, rescuing those that a
/// snapshot written since the mark references.
fn sweep(repo: &Repository, mut marked: Marked, out: &mut PruneOutcome) -> Result<()> {
    let backend = repo.backend();
    let lists = std::mem::take(&mut marked.lists);
    if lists.is_empty() {
        return Ok(());
    }
    let own = repo.lock_name();
    let (locks, _) = lock::list(backend.as_ref(), own.as_deref())?;
    let live: Vec<lock::LockInfo> = locks.into_iter().filter(|l| !l.is_stale()).collect();
    let sizes: std::collections::HashMap<Id, u64> =
        repo.index().packs()?.into_iter().map(|(id, i)| (id, i.size)).collect();
    let mut sweepable = Vec::new();
    let mut held = HashSet::new();
    for l in lists {
        let blockers: Vec<&lock::LockInfo> = live
            .iter()
            .filter(|k| k.started.as_nanosecond() as i64 <= l.list.time_ns.saturating_add(CLOCK_SKEW_NS))
            .collect();
        if blockers.is_empty() {
            sweepable.push(l);
        } else {
            held.extend(l.list.packs.iter().copied());
            out.waiting_packs += l.list.packs.len() as u64;
            out.waiting_bytes += l.list.packs.iter().filter_map(|p| sizes.get(p)).sum::<u64>();
            for b in blockers {
                let d = format!("`{}` (pid {} on {}, since {})", b.command, b.pid, b.host, b.started);
                if !out.waiting_for.contains(&d) {
                    out.waiting_for.push(d);
                }
            }
        }
    }
    if sweepable.is_empty() {
        return Ok(());
    }
    // Snapshots written since the mark (by backups that ran beside this prune) are walked too.
    let (ids, _) = repo.snapshot_ids()?;
    let fresh: Vec<Id> = ids.into_iter().filter(|id| !marked.snapshots.contains(id)).collect();
    if !fresh.is_empty() {
        // Their packs were written before them, so they are listed now.
        repo.catch_up()?;
        let mut roots = Vec::new();
        for id in &fresh {
            roots.push(repo.load_snapshot(id)?.tree);
        }
        plan::mark_trees(repo, roots, &mut marked)?;
    }
    // A pack also on a list that is held back stays (only a crash can put it on two).
    let doomed: HashSet<Id> =
        sweepable.iter().flat_map(|l| l.list.packs.iter().copied()).filter(|p| !held.contains(p)).collect();
    let rescued = plan::needed_packs(repo, &mut marked.used, &doomed)?;
    let deleted: Vec<Id> = doomed.iter().filter(|p| !rescued.contains(p)).copied().collect();
    delete_packs(backend.as_ref(), &deleted)?;
    out.deleted_packs += deleted.len() as u64;
    out.deleted_bytes += deleted.iter().filter_map(|p| sizes.get(p)).sum::<u64>();
    repo.index().remove_packs(&deleted)?;
    // The lists go last: a prune killed before this finds them again and finishes the job.
    for l in &sweepable {
        backend.delete(Kind::Condemned, &l.name)?;
    }
    out.rescued_packs = rescued.len() as u64;
    Ok(())
}

/// Deletions in flight at once. A local delete waits for its directory's fsync, a remote one
/// for a round trip; one at a time, a key rotation's sweep of every pack took a second.
const PARALLEL_DELETES: usize = 8;

fn delete_packs(backend: &dyn crate::backend::Backend, packs: &[Id]) -> Result<()> {
    let per = packs.len() / PARALLEL_DELETES + 1;
    std::thread::scope(|s| {
        let workers: Vec<_> = packs
            .chunks(per)
            .map(|run| s.spawn(move || run.iter().try_for_each(|p| backend.delete(Kind::Pack, &p.hex()))))
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|_| Err(Error::Invalid("pack delete panicked".into()))))
    })
}
