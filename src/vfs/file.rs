//! Reading files by inode number: the chunk map built on a file's first read and kept in a
//! bounded cache, reads through the shared chunk reader, and read-ahead of the next chunks while
//! a reader goes sequentially.
//!
//! There are no file handles. Contents never change, so an open would only cost the kernel a
//! round trip to us (and its release another) for nothing: the adapter declines `open`, the
//! kernel then stops sending opens and releases, and copying out many small files costs one
//! request per file instead of three. An inode number stands for one content forever (numbers
//! include the snapshot id), so caching maps by number is safe.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::inode::What;
use super::{Vfs, VfsError, VfsResult};
use crate::cache::LoadingLru;
use crate::format::tree::Kind;
use crate::id::Id;
use crate::reader::{FileMap, ReadData};

/// How far ahead of a sequential reader chunks are fetched, in bytes of plaintext.
const READ_AHEAD: u64 = 8 << 20;
/// A read this close to where the last one ended still counts as sequential: the kernel's
/// asynchronous read-ahead sends requests slightly out of order over several threads.
const SEQUENTIAL_SLACK: u64 = 4 << 20;
/// Small files whose data is fetched ahead of a reader that goes through a directory's files
/// in listing order (tar, cp -r, rsync), and how small they must be: a large file gets its own
/// read-ahead once it is read.
const FILES_AHEAD: u32 = 8;
const SMALL_FILE: u64 = 1 << 20;
/// Bytes of chunk maps kept (about 100 per chunk): tens of thousands of small files, or a few
/// huge ones, without rebuilding a map for every read.
const MAP_CACHE: usize = 4 << 20;

pub(super) struct FileState {
    map: Arc<FileMap>,
    /// Where the last read ended. Shared by everyone reading the file: two readers at different
    /// places only make read-ahead less eager.
    next: AtomicU64,
    /// Chunks below this have been handed to the prefetcher.
    ahead: AtomicUsize,
}

pub(super) type Files = LoadingLru<u64, Arc<FileState>>;

/// Where the last file read from its start lies: which listing, which entry, and the entry up to
/// which following files have been fetched ahead.
#[derive(Default)]
pub(super) struct Walk {
    listing: Id,
    last: u32,
    ahead: u32,
}

pub(super) fn new_cache() -> Files {
    LoadingLru::new(MAP_CACHE, |f: &Arc<FileState>| 100 * (f.map.chunk_count() + 1))
}

impl Vfs {
    /// The chunk map and read state of a regular file.
    fn file(&self, ino: u64) -> VfsResult<Arc<FileState>> {
        self.files.get_or_load(&ino, || {
            let inode = self.inode(ino)?.ok_or(VfsError::IsDir)?;
            let node = self.node(&inode)?.ok_or(VfsError::IsDir)?;
            match node.kind {
                Kind::File => {}
                Kind::Dir => return Err(VfsError::IsDir),
                _ => return Err(VfsError::BadHandle),
            }
            let index = self.catalog(false).index.clone();
            let map = Arc::new(FileMap::new(&index, &node.content, node.size)?);
            Ok(Arc::new(FileState { map, next: AtomicU64::new(0), ahead: AtomicUsize::new(0) }))
        })
    }

    /// Up to `size` bytes of file `ino` at `offset`; fewer only at the end of the file.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> VfsResult<ReadData> {
        let file = self.file(ino)?;
        if offset == 0 {
            self.follow_walk(ino);
            // A new pass over the file (its pages left the kernel's cache): read ahead again.
            file.ahead.store(0, Ordering::Relaxed);
        }
        let prev = file.next.swap(offset.saturating_add(u64::from(size)), Ordering::Relaxed);
        let sequential = offset == 0 || offset.abs_diff(prev) <= SEQUENTIAL_SLACK;
        let count = file.map.chunk_count();
        let (first, last) = file.map.chunks_of(offset, size);
        // Topped up only once less than half the window is ahead, so chunks go out several at
        // a time (one ranged read for those that lie together, on object storage) rather than
        // one each time the reader passes a chunk. Before this read waits for its own chunks:
        // the kernel reads ahead on several threads, and one that got past the window while
        // another still waited would fetch its chunk alone; so a chunk it needs that was not
        // handed out yet joins the ranged read of those after it.
        let left = || {
            let handed = file.ahead.load(Ordering::Relaxed).clamp(last + 1, count);
            (last + 1..handed).map(|i| file.map.chunk_len(i)).sum::<u64>()
        };
        if sequential && last + 1 < count && left() <= READ_AHEAD / 2 {
            let mut end = last + 1;
            let mut bytes = 0;
            while end < count && bytes < READ_AHEAD {
                bytes += file.map.chunk_len(end);
                end += 1;
            }
            let from = file.ahead.fetch_max(end, Ordering::Relaxed).max(first);
            if from < end {
                self.reader.prefetch(&file.map, from..end, last + 1);
            }
        }
        Ok(file.map.read(&self.reader, offset, size)?)
    }

    /// Notes that file `ino` is being read from its start; when it follows the last such file
    /// in the same directory, fetches the next small files' data ahead: a reader going through
    /// a directory would otherwise wait for each file's read, decryption and decompression in
    /// turn.
    fn follow_walk(&self, ino: u64) {
        let Ok(Some(inode)) = self.inode(ino) else { return };
        let What::Node { tree, idx, .. } = inode.what else { return };
        let range = {
            let mut w = self.walk.lock().unwrap_or_else(|e| e.into_inner());
            // Entries in between may be directories or links; a jump starts over.
            if w.listing != tree || idx <= w.last || idx > w.last + 2 {
                *w = Walk { listing: tree, last: idx, ahead: idx + 1 };
                return;
            }
            w.last = idx;
            let from = w.ahead.max(idx + 1);
            w.ahead = w.ahead.max(idx + 1 + FILES_AHEAD);
            from..w.ahead
        };
        let Ok(listing) = self.tree(&tree) else { return };
        let index = self.catalog(false).index.clone();
        for n in listing.iter().take(range.end as usize).skip(range.start as usize) {
            if n.kind == Kind::File && n.size <= SMALL_FILE && !n.content.is_empty() {
                self.reader.prefetch_blob(&index, n.content[0]);
            }
        }
    }
}
