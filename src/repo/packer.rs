//! Turns blobs into packs: dedup against the index, seal, append, and make each full pack
//! durable before its blobs enter the index (format-spec §11).
//!
//! Workers seal and append; full packs go through a small bounded queue to one finisher thread
//! that writes, fsyncs and indexes them, so an fsync never stalls the CPU-bound workers and at
//! most a few packs wait in memory. [`with_packer`] is the whole pipeline behind one call.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Mutex, RwLock};

use super::Repository;
use crate::backend::Kind;
use crate::crypto::{ENVELOPE_OVERHEAD, ObjType};
use crate::error::{Error, Result};
use crate::format::pack::{self, PackEntry};
use crate::id::Id;
use crate::index::{IndexReader, PackInfo};

struct PackWriter {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// Full packs waiting for the finisher; two keep the disk busy while workers fill the next.
/// The finisher uploads as many at once as the backend asks (`Backend::parallel_writes`): one
/// PUT at a time left a backup to object storage waiting on the network.
const QUEUE: usize = 2;

/// A pack also closes at this many blobs. Tiny blobs (small files that compress well) would
/// otherwise put ~100k in one 16 MiB pack, and what is kept per pack in flight grows with that
/// count: the ids in `added`, the entry list, the header (a 1M-file backup peaked near 200 MB).
pub const MAX_PACK_BLOBS: usize = 16 * 1024;

/// Packs the finisher indexes in one transaction (see [`finish_packs`]).
pub const INDEX_BATCH_PACKS: usize = 8;

/// What the ingest workers and the finisher share.
struct Shared {
    /// The index as of the last pack the finisher committed.
    known: RwLock<IndexReader>,
    /// Blobs queued but not yet in `known`, so parallel workers don't store one twice. The
    /// finisher drops a batch's ids once `known` has them, so this holds at most about ten
    /// packs' worth, not every new blob of the backup (69 MB at a million small files).
    added: Mutex<HashSet<Id>>,
    /// Pack buffers the finisher has written, for workers to fill again: a fresh 16 MiB buffer
    /// is a fresh mmap, and faulting its pages in cost more CPU than sealing into it.
    spares: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    fn new(repo: &Repository) -> Result<Shared> {
        Ok(Shared {
            known: RwLock::new(repo.index().reader()?),
            added: Mutex::new(HashSet::new()),
            spares: Mutex::new(Vec::new()),
        })
    }

    fn take_buffer(&self, capacity: usize) -> Vec<u8> {
        self.spares.lock().expect("poisoned").pop().unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    fn give_buffer(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut v = self.spares.lock().expect("poisoned");
        // As many as the queue holds: more would only pin memory the peak already counts.
        if v.len() < QUEUE {
            v.push(buf);
        }
    }

    /// After packs are indexed: a fresh view first, then forget its ids, so every queued blob
    /// is always in one of the two.
    fn indexed<'a>(&self, repo: &Repository, entries: impl Iterator<Item = &'a PackEntry>) -> Result<()> {
        *self.known.write().expect("poisoned") = repo.index().reader()?;
        let mut added = self.added.lock().expect("poisoned");
        for e in entries {
            added.remove(&e.id);
        }
        Ok(())
    }

    fn known(&self, id: &Id) -> Result<bool> {
        self.known.read().expect("poisoned").contains(id)
    }
}

/// Shared by every ingest worker; each takes a writer from the pool, so no global lock is held
/// while sealing or writing.
pub struct Packer<'r> {
    repo: &'r Repository,
    shared: &'r Shared,
    pool: Mutex<Vec<PackWriter>>,
    /// Where full packs go ([`finish_packs`] on another thread); `None` after `finish`.
    queue: Mutex<Option<SyncSender<PackWriter>>>,
    pub blobs_added: AtomicU64,
    pub data_blobs_added: AtomicU64,
    pub bytes_added: AtomicU64,
    dry_run: bool,
}

impl<'r> Packer<'r> {
    /// `queue` is `None` for a dry run: blobs are sealed and counted, never written.
    fn new(repo: &'r Repository, queue: Option<SyncSender<PackWriter>>, shared: &'r Shared) -> Packer<'r> {
        let dry_run = queue.is_none();
        Packer {
            repo,
            shared,
            pool: Mutex::new(Vec::new()),
            queue: Mutex::new(queue),
            blobs_added: AtomicU64::new(0),
            data_blobs_added: AtomicU64::new(0),
            bytes_added: AtomicU64::new(0),
            dry_run,
        }
    }

    /// Whether the repository has, or this session has queued, a blob.
    pub fn has(&self, id: &Id) -> bool {
        matches!(self.shared.known(id), Ok(true)) || self.shared.added.lock().expect("poisoned").contains(id)
    }

    /// Stores a blob unless the repository already has it; returns its id.
    pub fn add(&self, ty: ObjType, plain: &[u8]) -> Result<Id> {
        let id = self.repo.keys().id(ty, plain);
        if self.claim(&id)? {
            let level = self.repo.params().zstd_level as i32;
            let raw_len = plain.len() as u32;
            self.append(ty, id, raw_len, |buf| self.repo.keys().seal_into(ty, &id, plain, level, &[], buf))?;
        }
        Ok(id)
    }

    /// Stores an envelope sealed elsewhere as it is (the associated data binds no pack or
    /// offset, so prune and copy move blobs without re-encrypting them), unless the repository
    /// has the blob already. The caller vouches that it opens to a payload of `raw_len` bytes.
    /// One sealed under another key epoch is re-sealed under the current one first: every
    /// envelope in a pack is under the epoch of its header (format-spec §6), which is how key
    /// rotation finds what it has to rewrite.
    pub fn add_sealed(&self, ty: ObjType, id: &Id, raw_len: u32, envelope: &[u8]) -> Result<bool> {
        if !self.claim(id)? {
            return Ok(false);
        }
        let resealed = self.repo.keys().reseal(ty, id, envelope, raw_len as usize, &[])?;
        let envelope = resealed.as_deref().unwrap_or(envelope);
        u32::try_from(envelope.len()).map_err(|_| Error::Invalid(format!("blob {} too large", id.short())))?;
        self.append(ty, *id, raw_len, |buf| {
            buf.extend_from_slice(envelope);
            Ok(())
        })?;
        Ok(true)
    }

    /// Whether this session is to store the blob: the repository lacks it and no other worker
    /// has taken it on.
    fn claim(&self, id: &Id) -> Result<bool> {
        if self.shared.known(id)? || !self.shared.added.lock().expect("poisoned").insert(*id) {
            return Ok(false);
        }
        // The finisher may have indexed this blob and dropped it from `added` between the two
        // looks above; it refreshes `known` first, so a second look settles it.
        if self.shared.known(id)? {
            self.shared.added.lock().expect("poisoned").remove(id);
            return Ok(false);
        }
        Ok(true)
    }

    /// Appends one envelope, written by `write`, to a pack writer from the pool, and hands the
    /// pack to the finisher when it is full.
    fn append(&self, ty: ObjType, id: Id, raw_len: u32, write: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
        let pack_size = self.repo.params().pack_size as usize;
        let mut w = self
            .pool
            .lock()
            .expect("poisoned")
            .pop()
            .unwrap_or_else(|| PackWriter { buf: self.shared.take_buffer(pack_size), entries: Vec::new() });
        let offset = w.buf.len();
        if let Err(e) = write(&mut w.buf) {
            w.buf.truncate(offset);
            self.pool.lock().expect("poisoned").push(w);
            return Err(e);
        }
        let length = w.buf.len() - offset;
        self.blobs_added.fetch_add(1, Ordering::Relaxed);
        if ty == ObjType::Data {
            self.data_blobs_added.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_added.fetch_add(length as u64, Ordering::Relaxed);
        if self.dry_run {
            w.buf.truncate(offset);
            self.pool.lock().expect("poisoned").push(w);
            return Ok(());
        }
        w.entries.push(PackEntry { ty, id, offset: offset as u32, length: length as u32, raw_len });
        if w.buf.len() >= pack_size || w.entries.len() >= MAX_PACK_BLOBS {
            self.send(w)
        } else {
            self.pool.lock().expect("poisoned").push(w);
            Ok(())
        }
    }

    fn send(&self, w: PackWriter) -> Result<()> {
        let tx = self.queue.lock().expect("poisoned").clone();
        match tx {
            Some(tx) if tx.send(w).is_ok() => Ok(()),
            // The finisher's own result says why it stopped.
            _ => Err(Error::Invalid("the pack writer stopped".into())),
        }
    }

    /// Hands every partly filled pack to the finisher and closes the queue; the finisher's
    /// result then says whether every pack is durable and indexed.
    fn finish(&self) -> Result<()> {
        let writers = std::mem::take(&mut *self.pool.lock().expect("poisoned"));
        let sent = writers.into_iter().filter(|_| !self.dry_run).try_for_each(|w| self.send(w));
        self.queue.lock().expect("poisoned").take();
        sent
    }
}

/// The finisher: writes each full pack durably, then indexes [`INDEX_BATCH_PACKS`] at a time
/// (format-spec §11). Ids are random, so a commit copies nearly every leaf it touches: one per
/// pack of tiny blobs made a 1M-file backup rewrite most of its index ~60 times (33 s, not 25 s).
fn finish_packs(repo: &Repository, rx: Receiver<PackWriter>, shared: &Shared) -> Result<()> {
    let uploads = repo.backend().parallel_writes().max(1);
    let mut batch: Vec<(Id, u64, Vec<PackEntry>)> = Vec::new();
    std::thread::scope(|scope| {
        // Packs are indexed in the order they land; each is durable before its batch is indexed.
        let mut flying = std::collections::VecDeque::new();
        let mut land = |h: std::thread::ScopedJoinHandle<'_, Result<(Id, u64, PackWriter)>>| -> Result<()> {
            let (id, size, mut w) = h.join().unwrap_or_else(|_| Err(Error::Invalid("pack upload panicked".into())))?;
            // Durable now: its trees may be kept locally (the index decides when they are used).
            let trees = w.entries.iter().filter(|e| e.ty == ObjType::Tree);
            repo.tree_cache().put(trees.map(|e| (&e.id, &w.buf[e.offset as usize..][..e.length as usize])));
            batch.push((id, size, std::mem::take(&mut w.entries)));
            shared.give_buffer(w.buf);
            if batch.len() >= INDEX_BATCH_PACKS {
                index_batch(repo, shared, &mut batch)?;
            }
            Ok(())
        };
        for mut w in rx {
            if w.entries.is_empty() {
                shared.give_buffer(w.buf);
                continue;
            }
            if flying.len() >= uploads {
                land(flying.pop_front().expect("non-empty"))?;
            }
            flying.push_back(scope.spawn(move || write_pack(repo, &mut w).map(|(id, size)| (id, size, w))));
        }
        while let Some(h) = flying.pop_front() {
            land(h)?;
        }
        Ok::<_, Error>(())
    })?;
    index_batch(repo, shared, &mut batch)
}

fn index_batch(repo: &Repository, shared: &Shared, batch: &mut Vec<(Id, u64, Vec<PackEntry>)>) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let packs: Vec<_> = batch
        .iter()
        .map(|(id, size, entries)| {
            (*id, PackInfo { size: *size, blobs: entries.len() as u32, last_verified: 0 }, entries.as_slice())
        })
        .collect();
    repo.index().add_packs(&packs)?;
    shared.indexed(repo, batch.iter().flat_map(|(_, _, entries)| entries))?;
    batch.clear();
    Ok(())
}

/// Seals the header, appends it and the trailer, and writes the pack durably; returns its id
/// and size.
fn write_pack(repo: &Repository, w: &mut PackWriter) -> Result<(Id, u64)> {
    let header = pack::encode_header(&w.entries);
    let start = w.buf.len();
    // Exactly: an amortized grow here doubled every full pack's buffer to 32 MiB.
    w.buf.reserve_exact(ENVELOPE_OVERHEAD + header.len() + pack::TRAILER_LEN);
    repo.keys().seal_into(ObjType::PackHeader, &Id::ZERO, &header, 0, &[], &mut w.buf)?;
    let hlen = u32::try_from(w.buf.len() - start).map_err(|_| Error::Invalid("pack header too large".into()))?;
    w.buf.extend_from_slice(&pack::encode_trailer(hlen));
    let id = Id(*blake3::hash(&w.buf).as_bytes());
    repo.backend().write(Kind::Pack, &id.hex(), &w.buf)?;
    Ok((id, w.buf.len() as u64))
}

/// What a packer added, for summaries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Added {
    pub blobs: u64,
    pub data_blobs: u64,
    pub bytes: u64,
}

/// Runs `f` with a packer and the finisher thread behind it, and returns once every pack `f`
/// filled is durable and indexed (or, with `dry_run`, counted and thrown away). The blobs are
/// in the index when this returns `Ok`: only then may a snapshot reference them.
pub fn with_packer<R>(repo: &Repository, dry_run: bool, f: impl FnOnce(&Packer) -> Result<R>) -> Result<(R, Added)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let shared = Shared::new(repo)?;
    std::thread::scope(|scope| {
        let finisher = (!dry_run).then(|| scope.spawn(|| finish_packs(repo, rx, &shared)));
        let packer = Packer::new(repo, (!dry_run).then_some(tx), &shared);
        let out = f(&packer);
        // Close the queue on every path out, so a failed `f` does not leave the finisher waiting.
        let sent = packer.finish();
        let written = finisher
            .map_or(Ok(()), |h| h.join().unwrap_or_else(|_| Err(Error::Invalid("pack writer panicked".into()))));
        // The finisher's error is the cause when several failed.
        written?;
        let out = out?;
        sent?;
        let added = Added {
            blobs: packer.blobs_added.load(Ordering::Relaxed),
            data_blobs: packer.data_blobs_added.load(Ordering::Relaxed),
            bytes: packer.bytes_added.load(Ordering::Relaxed),
        };
        Ok((out, added))
    })
}
