//! Moving snapshots' blobs from a source into a repository through its pack pipeline: the one
//! engine behind `copy` (another repository is the source) and `import` (a bundle is).
//!
//! Every blob read is untrusted: it is authenticated and re-hashed under the source's keys
//! before anything is written. When source and destination share content identity
//! (`init --copy-chunker-params`, format-spec §3) blobs keep their ids, so trees are moved as
//! they are and only blobs the destination lacks are read. Otherwise every id changes (they
//! are keyed hashes), and with them the trees that name them: trees are rewritten bottom-up.

pub mod bundle;
pub mod copy;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::crypto::{ENVELOPE_OVERHEAD, Keys, MAX_PAYLOAD, ObjType};
use crate::error::{Error, Result};
use crate::format::tree;
use crate::id::{BlobIdSet, Id};
use crate::repo::Repository;
use crate::repo::packer::{self, Added, Packer};

/// Blobs a source hands out at once to the parallel workers: bounds what is in memory.
const BATCH: usize = 64;

/// Where blobs come from. Implementations only fetch bytes; the engine verifies them.
pub trait BlobSource: Sync {
    /// The keys that open the source's envelopes and define its ids.
    fn keys(&self) -> &Keys;
    /// The envelope stored for blob `id` of type `ty`, and its payload's raw length, as the
    /// source records them (untrusted; bound the length before allocating).
    fn envelope(&self, ty: ObjType, id: &Id) -> Result<(Vec<u8>, u32)>;
    /// What the source is, for messages: `source repository DIR`, `bundle FILE`.
    fn name(&self) -> String;
}

/// Where blobs go: a repository's packer, or a bundle being written.
pub trait BlobSink: Sync {
    /// The keys blobs are sealed under here.
    fn keys(&self) -> &Keys;
    /// Whether the blob is here already (or queued).
    fn has(&self, id: &Id) -> bool;
    /// Stores an envelope sealed under [`BlobSink::keys`] unless the blob is here; whether it was stored.
    fn add_sealed(&self, ty: ObjType, id: &Id, raw_len: u32, envelope: &[u8]) -> Result<bool>;
    /// Seals and stores a payload under the id these keys give it; returns that id.
    fn add(&self, ty: ObjType, plain: &[u8]) -> Result<Id>;
}

/// A repository's packer as a sink.
struct PackerSink<'a, 'r> {
    p: &'a Packer<'r>,
    keys: &'a Keys,
}

impl BlobSink for PackerSink<'_, '_> {
    fn keys(&self) -> &Keys {
        self.keys
    }
    fn has(&self, id: &Id) -> bool {
        self.p.has(id)
    }
    fn add_sealed(&self, ty: ObjType, id: &Id, raw_len: u32, envelope: &[u8]) -> Result<bool> {
        self.p.add_sealed(ty, id, raw_len, envelope)
    }
    fn add(&self, ty: ObjType, plain: &[u8]) -> Result<Id> {
        self.p.add(ty, plain)
    }
}

/// What a transfer did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Moved {
    /// Blobs read from the source (and verified).
    pub blobs_read: u64,
    /// Their envelopes' bytes.
    pub bytes_read: u64,
    /// Trees whose contents had to be rewritten because the ids they name changed.
    pub trees_rewritten: u64,
    /// What the destination's packer stored.
    pub added: Added,
}

/// The longest envelope a conforming writer stores (a 64 MiB payload, format-spec §6).
pub const MAX_ENVELOPE: usize = MAX_PAYLOAD + ENVELOPE_OVERHEAD;

/// Checks a length a source claims before a buffer of that size is allocated.
pub fn bounded(ty: ObjType, id: &Id, length: u32, raw_len: u32) -> Result<()> {
    if length as usize > MAX_ENVELOPE || raw_len as usize > MAX_PAYLOAD {
        return Err(Error::corrupt(format!("{} {}", ty.name(), id.short()), "recorded length exceeds its bound"));
    }
    Ok(())
}

/// Copies everything reachable from the trees `roots` of `src` into `dst`, durably and
/// indexed when it returns (so a snapshot may then name the result). Returns each root's id
/// in `dst`, in order.
pub fn transfer(dst: &Repository, src: &dyn BlobSource, roots: &[Id]) -> Result<(Vec<Id>, Moved)> {
    let ((mapped, mut moved), added) =
        packer::with_packer(dst, false, |p| transfer_into(&PackerSink { p, keys: dst.keys() }, src, roots))?;
    moved.added = added;
    Ok((mapped, moved))
}

/// [`transfer`] into any sink; `added` is left for the caller, who knows what the sink stored.
pub fn transfer_into(sink: &dyn BlobSink, src: &dyn BlobSource, roots: &[Id]) -> Result<(Vec<Id>, Moved)> {
    let stats = Stats::default();
    let mapped = if sink.keys().same_ids(src.keys()) {
        move_as_is(sink, src, roots, &stats)?;
        roots.to_vec()
    } else {
        let mut rw = Rewriter { src, p: sink, stats: &stats, trees: HashMap::new(), data: Mutex::new(HashMap::new()) };
        roots.iter().map(|r| rw.tree(r, 0)).collect::<Result<_>>()?
    };
    let moved = Moved {
        blobs_read: stats.blobs.load(Ordering::Relaxed),
        bytes_read: stats.bytes.load(Ordering::Relaxed),
        trees_rewritten: stats.rewritten.load(Ordering::Relaxed),
        added: Added::default(),
    };
    Ok((mapped, moved))
}

#[derive(Default)]
struct Stats {
    blobs: AtomicU64,
    bytes: AtomicU64,
    rewritten: AtomicU64,
}

/// A blob's envelope from the source, counted.
fn fetch(src: &dyn BlobSource, ty: ObjType, id: &Id, stats: &Stats) -> Result<(Vec<u8>, u32)> {
    let (env, raw_len) = src.envelope(ty, id)?;
    stats.blobs.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(env.len() as u64, Ordering::Relaxed);
    Ok((env, raw_len))
}

/// A blob's payload from the source, authenticated and re-hashed.
fn read_plain(src: &dyn BlobSource, ty: ObjType, id: &Id, stats: &Stats) -> Result<Vec<u8>> {
    let (mut env, raw_len) = fetch(src, ty, id, stats)?;
    src.keys().open_in_place(ty, id, &mut env, raw_len as usize, &[], <[u8]>::to_vec).map_err(|e| in_source(src, e))
}

/// Names the source in a verification failure: the blob's id alone does not say where it was.
fn in_source(src: &dyn BlobSource, e: Error) -> Error {
    match e {
        Error::Corrupt { what, detail } => Error::corrupt(format!("{what} in {}", src.name()), detail),
        e => e,
    }
}

/// Shared identity: walks every tree of the source (a tree the destination has does not prove
/// it has the blobs below it: a killed writer may have left the tree's pack alone), and moves
/// each blob the destination lacks, re-encrypted but not recompressed.
fn move_as_is(p: &dyn BlobSink, src: &dyn BlobSource, roots: &[Id], stats: &Stats) -> Result<()> {
    let mut failed = None;
    let mut data: Vec<Id> = Vec::new();
    let mut seen_data = BlobIdSet::default();
    let mut trees: Vec<Id> = Vec::new();
    crate::trees::walk_unique(
        roots.iter().copied(),
        |id| {
            let plain = read_plain(src, ObjType::Tree, id, stats)?;
            Ok(std::sync::Arc::new(tree::decode(&plain).map_err(|e| in_source(src, e))?))
        },
        |id, listing| match listing {
            Ok(l) => {
                trees.push(id);
                let files = l.iter().filter(|n| n.kind == tree::Kind::File);
                data.extend(files.flat_map(|n| n.content.iter().copied()).filter(|d| seen_data.insert(*d)));
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        },
    );
    if let Some(e) = failed {
        return Err(e);
    }
    let move_one = |ty: ObjType, id: &Id| -> Result<()> {
        if p.has(id) {
            return Ok(());
        }
        let (mut env, raw_len) = fetch(src, ty, id, stats)?;
        let sealed =
            p.keys().reseal_from(src.keys(), ty, id, &mut env, raw_len as usize).map_err(|e| in_source(src, e))?;
        p.add_sealed(ty, id, raw_len, &sealed)?;
        Ok(())
    };
    for batch in data.chunks(BATCH) {
        batch.par_iter().try_for_each(|id| move_one(ObjType::Data, id))?;
    }
    // Trees after their data, though only the snapshot commits: fewer orphans if killed.
    for batch in trees.chunks(BATCH) {
        batch.par_iter().try_for_each(|id| move_one(ObjType::Tree, id))?;
    }
    Ok(())
}

/// Different identity: every blob is read, re-hashed under the destination's keys and stored
/// (the packer skips those it has); each tree is rewritten to name its children's new ids.
struct Rewriter<'a> {
    src: &'a dyn BlobSource,
    p: &'a dyn BlobSink,
    stats: &'a Stats,
    /// Source tree id → destination tree id: a subtree shared by snapshots is done once.
    trees: HashMap<Id, Id>,
    data: Mutex<HashMap<Id, Id>>,
}

/// Deeper than any real tree; a hostile source must not overflow the stack.
const MAX_DEPTH: usize = 4096;

impl Rewriter<'_> {
    fn tree(&mut self, id: &Id, depth: usize) -> Result<Id> {
        if let Some(done) = self.trees.get(id) {
            return Ok(*done);
        }
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(format!("tree blob {}", id.short()), "nested deeper than any real tree"));
        }
        let plain = read_plain(self.src, ObjType::Tree, id, self.stats)?;
        let mut nodes = tree::decode(&plain).map_err(|e| in_source(self.src, e))?;
        let todo: Vec<Id> = {
            let known = self.data.lock().expect("poisoned");
            let mut set = BlobIdSet::default();
            nodes
                .iter()
                .filter(|n| n.kind == tree::Kind::File)
                .flat_map(|n| n.content.iter().copied())
                .filter(|d| !known.contains_key(d) && set.insert(*d))
                .collect()
        };
        for batch in todo.chunks(BATCH) {
            let done: Vec<(Id, Id)> = batch
                .par_iter()
                .map(|d| {
                    let plain = read_plain(self.src, ObjType::Data, d, self.stats)?;
                    Ok((*d, self.p.add(ObjType::Data, &plain)?))
                })
                .collect::<Result<_>>()?;
            self.data.lock().expect("poisoned").extend(done);
        }
        for n in &mut nodes {
            match n.kind {
                tree::Kind::File => {
                    let known = self.data.lock().expect("poisoned");
                    for c in &mut n.content {
                        *c = known[c];
                    }
                }
                tree::Kind::Dir => {
                    if let Some(sub) = n.subtree() {
                        n.content = vec![self.tree(&sub, depth + 1)?];
                    }
                }
                _ => {}
            }
        }
        let new = self.p.add(ObjType::Tree, &tree::encode(&nodes))?;
        self.stats.rewritten.fetch_add(1, Ordering::Relaxed);
        self.trees.insert(*id, new);
        Ok(new)
    }
}
