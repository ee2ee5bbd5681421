//! Bulk readers (restore) know every blob they will read before they read one. Blobs written
//! together lie side by side in their packs, so one ranged read of a pack can serve many of
//! them: on object storage each request costs a round trip and a per-request price, and a
//! restore of small files issued one GET per chunk. A [`SpanReader`] plans the reads once:
//! the blobs of each pack, sorted by offset, merged into spans where the gap between two is
//! small and the span stays a few MiB. A span is read once into a bounded cache and its blobs
//! are opened from there; a blob alone in its span is read by itself, as before.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::Kind;
use crate::cache::LoadingLru;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobLoc, IndexReader};
use crate::repo::{Repository, open_blob_with};

/// Unwanted bytes worth reading to save a request: a local round trip costs about what
/// reading 256 KiB does, and one to object storage far more.
pub const MAX_GAP: u64 = 256 << 10;
/// Big enough to amortise a request, small enough that several in flight stay cheap in memory.
pub const MAX_SPAN: u64 = 4 << 20;
/// Spans kept read: each thread works through its own region of the blobs, so this is a few
/// spans a thread.
pub const CACHE_BYTES: usize = 96 << 20;

/// Byte ranges of one pack, sorted, with how many blobs each serves.
struct PackSpans {
    ranges: Vec<Range<u64>>,
    blobs: Vec<u32>,
}

pub struct SpanReader<'r> {
    repo: &'r Repository,
    packs: HashMap<Id, PackSpans>,
    /// Read spans by (pack, start).
    cache: LoadingLru<(Id, u64), Arc<Vec<u8>>>,
}

impl<'r> SpanReader<'r> {
    /// Plans the reads of `blobs` (in any order, repeats allowed).
    pub fn plan(repo: &'r Repository, mut blobs: Vec<BlobLoc>, cache_bytes: usize) -> SpanReader<'r> {
        blobs.sort_unstable_by_key(|l| (l.pack, l.offset));
        blobs.dedup_by_key(|l| (l.pack, l.offset));
        let mut packs: HashMap<Id, PackSpans> = HashMap::new();
        for l in &blobs {
            let (start, end) = (u64::from(l.offset), u64::from(l.offset) + u64::from(l.length));
            let p = packs.entry(l.pack).or_insert_with(|| PackSpans { ranges: Vec::new(), blobs: Vec::new() });
            match p.ranges.last_mut() {
                Some(r) if start <= r.end + MAX_GAP && end.max(r.end) - r.start <= MAX_SPAN => {
                    r.end = r.end.max(end);
                    *p.blobs.last_mut().expect("one per range") += 1;
                }
                _ => {
                    p.ranges.push(start..end);
                    p.blobs.push(1);
                }
            }
        }
        SpanReader { repo, packs, cache: LoadingLru::new(cache_bytes, |v: &Arc<Vec<u8>>| v.len()) }
    }

    /// Plans the reads of every chunk of `files` (each a file's content), looked up in parallel.
    /// A chunk the index lacks is left to the reader, which reports it.
    pub fn for_files(repo: &'r Repository, index: &IndexReader, files: &[&[Id]]) -> SpanReader<'r> {
        let blobs =
            files.par_iter().flat_map_iter(|c| c.iter().filter_map(|id| index.get(id).ok().flatten())).collect();
        SpanReader::plan(repo, blobs, CACHE_BYTES)
    }

    /// Requests the plan makes: one a span.
    pub fn requests(&self) -> usize {
        self.packs.values().map(|p| p.ranges.len()).sum()
    }

    /// As [`Repository::with_blob_at`], from the blob's span when it shares one.
    pub fn with_blob<R>(&self, id: &Id, loc: &BlobLoc, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let Some(span) = self.span_of(loc) else { return self.repo.with_blob_at(id, loc, f) };
        let (bytes, at) = self.span_bytes(id, loc, &span)?;
        open_blob_with(self.repo.keys(), id, loc, &bytes[at..][..loc.length as usize], f)
    }

    /// The blob's sealed bytes, unopened (for a cache that keeps them so), from its span when
    /// it shares one.
    pub fn with_sealed<R>(&self, id: &Id, loc: &BlobLoc, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let Some(span) = self.span_of(loc) else { return self.repo.read_sealed(id, loc).map(|v| f(&v)) };
        let (bytes, at) = self.span_bytes(id, loc, &span)?;
        Ok(f(&bytes[at..][..loc.length as usize]))
    }

    /// The span a blob shares with others, if it does.
    fn span_of(&self, loc: &BlobLoc) -> Option<Range<u64>> {
        let at = u64::from(loc.offset);
        let p = self.packs.get(&loc.pack)?;
        let i = p.ranges.partition_point(|r| r.end <= at);
        let r = p.ranges.get(i)?;
        (r.start <= at && at + u64::from(loc.length) <= r.end && p.blobs[i] > 1).then(|| r.clone())
    }

    /// A span's bytes, read once, and where the blob starts in them.
    fn span_bytes(&self, id: &Id, loc: &BlobLoc, span: &Range<u64>) -> Result<(Arc<Vec<u8>>, usize)> {
        let bytes = self.cache.get_or_load(&(loc.pack, span.start), || self.read_span(id, loc, span))?;
        Ok((bytes, (u64::from(loc.offset) - span.start) as usize))
    }

    fn read_span(&self, id: &Id, loc: &BlobLoc, span: &Range<u64>) -> Result<Arc<Vec<u8>>> {
        let mut buf = vec![0u8; (span.end - span.start) as usize];
        self.repo.backend().read_at(Kind::Pack, &loc.pack.hex(), span.start, &mut buf).map_err(|e| match e {
            Error::Io { cause, .. } => Error::io(
                format!(
                    "read {} {} from pack {} (bytes {}-{})",
                    loc.ty.name(),
                    id.short(),
                    loc.pack.short(),
                    span.start,
                    span.end - 1
                ),
                cause,
            ),
            e => e,
        })?;
        Ok(Arc::new(buf))
    }
}

/// Runs `f` in [`read_pool`]'s pool when there is one, else here.
pub fn in_read_pool<R: Send>(repo: &Repository, f: impl FnOnce() -> R + Send) -> R {
    match read_pool(repo) {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// A pool for a bulk read of `repo` when its backend wants more reads in flight than the
/// global pool has threads; `None` when the global pool is enough.
pub fn read_pool(repo: &Repository) -> Option<rayon::ThreadPool> {
    let want = repo.backend().parallel_reads();
    (want > rayon::current_num_threads())
        .then(|| {
            rayon::ThreadPoolBuilder::new().num_threads(want).thread_name(|i| format!("snapfs-read-{i}")).build().ok()
        })
        .flatten()
}
