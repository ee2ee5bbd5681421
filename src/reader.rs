//! The read path shared by mount and restore: a file's byte ranges mapped to its
//! chunks through the index's raw lengths, chunks fetched, authenticated and decompressed once
//! and kept in a bounded LRU of plaintext, and the next chunks of a sequential reader fetched
//! ahead in the background.

use std::collections::HashMap;
use std::ops::{Deref, Range};
use std::sync::{Arc, Mutex};

use crate::backend::Kind;
use crate::cache::LoadingLru;
use crate::crypto::ObjType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobLoc, IndexReader};
use crate::repo::{Repository, open_blob_with};
use crate::spans::MAX_GAP;

/// A chunk's plaintext, shared between the cache and readers. A `Vec` inside, not `[u8]`: the
/// decompressed buffer is kept as it is instead of being copied into a new allocation.
pub type Chunk = Arc<Vec<u8>>;

/// Fetches chunks through a bounded cache of decompressed chunks.
pub struct ChunkReader {
    repo: Arc<Repository>,
    cache: LoadingLru<Id, Chunk>,
    /// Ranged reads [`prefetch`](Self::prefetch) planned, by the chunks they serve; each chunk
    /// takes its plan when it loads.
    planned: Mutex<HashMap<Id, Range<u64>>>,
    /// Planned ranges read, by (pack, start): the first chunk to load reads its range, the
    /// others (and a reader that gets there first) wait for that one read.
    spans: LoadingLru<(Id, u64), Arc<Vec<u8>>>,
}

/// A read-ahead's ranged read reaches this far: a mount hands out about half its 8 MiB window
/// at a time, and a restore's 4 MiB spans would cut that in two.
const RUN_SPAN: u64 = 8 << 20;
/// Read ranges kept: two of them.
const SPAN_BYTES: usize = 2 * RUN_SPAN as usize;

impl ChunkReader {
    /// A reader whose cache holds at most `cache_bytes` of plaintext (plus the chunk last read).
    pub fn new(repo: Arc<Repository>, cache_bytes: usize) -> ChunkReader {
        ChunkReader {
            repo,
            cache: LoadingLru::new(cache_bytes, |c: &Chunk| c.len()),
            planned: Mutex::default(),
            spans: LoadingLru::new(SPAN_BYTES, |v: &Arc<Vec<u8>>| v.len()),
        }
    }

    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// One data chunk's plaintext. Errors name the blob and its pack.
    pub fn chunk(&self, id: &Id, loc: &BlobLoc) -> Result<Chunk> {
        self.cache.get_or_load(id, || {
            let plan = self.planned.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
            let from_span = plan.and_then(|span| {
                let read = || {
                    let mut buf = vec![0u8; (span.end - span.start) as usize];
                    self.repo
                        .backend()
                        .read_at(Kind::Pack, &loc.pack.hex(), span.start, &mut buf)
                        .map(|()| Arc::new(buf))
                };
                // A range that does not read leaves the chunk to be read by itself.
                let bytes = self.spans.get_or_load(&(loc.pack, span.start), read).ok()?;
                let sealed = bytes.get((u64::from(loc.offset) - span.start) as usize..)?.get(..loc.length as usize)?;
                Some(open_chunk(id, loc, || open_blob_with(self.repo.keys(), id, loc, sealed, <[u8]>::to_vec)))
            });
            from_span.unwrap_or_else(|| open_chunk(id, loc, || self.repo.read_blob_at(id, loc)))
        })
    }

    pub fn is_cached(&self, id: &Id) -> bool {
        self.cache.contains(id)
    }

    /// Bytes of plaintext held in the cache now.
    pub fn cached_bytes(&self) -> usize {
        self.cache.weight()
    }

    /// Loads chunks `range` of `map` into the cache on the rayon pool, so a sequential reader
    /// finds them decompressed when it gets there. Where reads wait on a network, chunks that
    /// lie together in a pack share one ranged read (as restore's spans do): a GET a chunk made
    /// a sequential read of a file on S3 a round trip per MiB. Chunks below `loaded_from` are
    /// only planned into those reads: the caller is about to load them itself, and a pool
    /// thread would only wait beside it. Failures are left for the real read to report.
    pub fn prefetch(self: &Arc<Self>, map: &Arc<FileMap>, range: Range<usize>, loaded_from: usize) {
        let range = range.start.min(map.chunks.len())..range.end.min(map.chunks.len());
        let wanted: Vec<(usize, (Id, BlobLoc))> = (range.clone())
            .zip(&map.chunks[range])
            .filter(|(_, (id, _))| !self.is_cached(id))
            .map(|(i, c)| (i, *c))
            .collect();
        if self.repo.backend().parallel_reads() > 0 {
            let mut planned = self.planned.lock().unwrap_or_else(|e| e.into_inner());
            // By place in the pack, not in the file: a backup's workers append a file's chunks
            // to two or more packs at once, so neighbours in the file alternate between packs.
            let mut chunks: Vec<(Id, BlobLoc)> = wanted.iter().map(|(_, c)| *c).collect();
            chunks.sort_by_key(|(_, l)| (l.pack, l.offset));
            let mut rest = chunks.as_slice();
            while !rest.is_empty() {
                let (run, tail) = rest.split_at(run_len(rest));
                rest = tail;
                if let [(_, first), .., (_, last)] = run {
                    let span = u64::from(first.offset)..u64::from(last.offset) + u64::from(last.length);
                    planned.extend(run.iter().map(|(id, _)| (*id, span.clone())));
                }
            }
        }
        for (_, (id, loc)) in wanted.into_iter().filter(|(i, _)| *i >= loaded_from) {
            let me = self.clone();
            rayon::spawn(move || {
                let _ = me.chunk(&id, &loc);
            });
        }
    }

    /// Loads one data chunk into the cache on the rayon pool, looking it up in `index` there.
    /// Failures are left for the real read to report.
    pub fn prefetch_blob(self: &Arc<Self>, index: &Arc<IndexReader>, id: Id) {
        if self.is_cached(&id) {
            return;
        }
        let (me, index) = (self.clone(), index.clone());
        rayon::spawn(move || {
            if let Ok(Some(loc)) = index.get(&id) {
                let _ = me.chunk(&id, &loc);
            }
        });
    }
}

/// A chunk's plaintext from `read`, checked against its index entry; errors name the blob.
fn open_chunk(id: &Id, loc: &BlobLoc, read: impl FnOnce() -> Result<Vec<u8>>) -> Result<Chunk> {
    let wrap = |e: Error| Error::Blob { kind: "data blob", blob: id.hex(), pack: loc.pack.hex(), cause: Box::new(e) };
    if loc.ty != ObjType::Data {
        return Err(wrap(Error::corrupt("index entry", format!("is a {}", loc.ty.name()))));
    }
    let data = read().map_err(wrap)?;
    if data.len() != loc.raw_len as usize {
        return Err(wrap(Error::corrupt("blob", "length differs from the index")));
    }
    Ok(Chunk::new(data))
}

/// How many of `chunks`, from the first, one ranged read of their pack serves: the next one
/// follows in the same pack within the gap restore's merged reads allow, up to [`RUN_SPAN`].
fn run_len(chunks: &[(Id, BlobLoc)]) -> usize {
    let first = &chunks[0].1;
    let start = u64::from(first.offset);
    let mut end = start + u64::from(first.length);
    let mut n = 1;
    for (_, l) in &chunks[1..] {
        let (at, stop) = (u64::from(l.offset), u64::from(l.offset) + u64::from(l.length));
        if l.pack != first.pack || at < end || at - end > MAX_GAP || stop - start > RUN_SPAN {
            break;
        }
        end = stop;
        n += 1;
    }
    n
}

/// Where each of a file's chunks lies, in the file and in the repository.
pub struct FileMap {
    chunks: Vec<(Id, BlobLoc)>,
    /// `starts[i]` is chunk i's offset in the file; one more entry holds the file's size.
    starts: Vec<u64>,
}

impl FileMap {
    /// Looks up every chunk of a file's `content`; `size` is the length its metadata records,
    /// which the chunks must add up to.
    pub fn new(index: &IndexReader, content: &[Id], size: u64) -> Result<FileMap> {
        let mut chunks = Vec::with_capacity(content.len());
        let mut starts = Vec::with_capacity(content.len() + 1);
        let mut off = 0u64;
        for id in content {
            let loc = index.get(id)?.ok_or_else(|| Error::MissingBlob(id.hex()))?;
            chunks.push((*id, loc));
            starts.push(off);
            off += u64::from(loc.raw_len);
        }
        starts.push(off);
        if off != size {
            return Err(Error::corrupt("file content", format!("chunks add up to {off} bytes, metadata says {size}")));
        }
        Ok(FileMap { chunks, starts })
    }

    pub fn size(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Every chunk with its offset in the file, in order.
    pub fn chunks(&self) -> impl Iterator<Item = (u64, &Id, &BlobLoc)> + '_ {
        self.chunks.iter().zip(&self.starts).map(|((id, loc), &off)| (off, id, loc))
    }

    /// Plaintext length of chunk `i` (0 past the end).
    pub fn chunk_len(&self, i: usize) -> u64 {
        self.chunks.get(i).map_or(0, |(_, loc)| u64::from(loc.raw_len))
    }

    /// The chunk holding byte `offset` (which must be below the size).
    fn chunk_at(&self, offset: u64) -> usize {
        self.starts.partition_point(|&s| s <= offset) - 1
    }

    /// The first and last chunk that `[offset, offset + len)` touches; past the end, the chunk
    /// count for both.
    pub fn chunks_of(&self, offset: u64, len: u32) -> (usize, usize) {
        let end = self.size().min(offset.saturating_add(u64::from(len)));
        if offset >= end {
            return (self.chunks.len(), self.chunks.len());
        }
        (self.chunk_at(offset), self.chunk_at(end - 1))
    }

    /// The plaintext of `[offset, offset + len)`, cut short at the end of the file.
    pub fn read(&self, reader: &ChunkReader, offset: u64, len: u32) -> Result<ReadData> {
        let (first, last) = self.chunks_of(offset, len);
        if first == self.chunks.len() {
            return Ok(ReadData::Owned(Vec::new()));
        }
        let end = self.size().min(offset.saturating_add(u64::from(len)));
        let piece = |i: usize| -> Result<(Chunk, Range<usize>)> {
            let (id, loc) = &self.chunks[i];
            let data = reader.chunk(id, loc)?;
            let lo = offset.max(self.starts[i]) - self.starts[i];
            let hi = end.min(self.starts[i + 1]) - self.starts[i];
            Ok((data, lo as usize..hi as usize))
        };
        if first == last {
            // The common case: one chunk, no copy.
            let (data, r) = piece(first)?;
            return Ok(ReadData::Shared(data, r));
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for i in first..=last {
            let (data, r) = piece(i)?;
            out.extend_from_slice(&data[r]);
        }
        Ok(ReadData::Owned(out))
    }
}

/// Bytes read from a file: a slice of a cached chunk, or a copy spanning several.
pub enum ReadData {
    Shared(Chunk, Range<usize>),
    Owned(Vec<u8>),
}

impl Deref for ReadData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ReadData::Shared(c, r) => &c[r.clone()],
            ReadData::Owned(v) => v,
        }
    }
}
