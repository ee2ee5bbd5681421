//! Open files: the chunk map built once at open, reads through the shared chunk reader, and
//! read-ahead of the next chunks while a reader goes sequentially.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::inode::What;
use super::{Vfs, VfsError, VfsResult};
use crate::format::tree::Kind;
use crate::reader::{FileMap, ReadData};

/// How far ahead of a sequential reader chunks are fetched, in bytes of plaintext.
const READ_AHEAD: u64 = 8 << 20;
/// A read this close to where the last one ended still counts as sequential: the kernel's
/// asynchronous read-ahead sends requests slightly out of order over several threads.
const SEQUENTIAL_SLACK: u64 = 4 << 20;

pub(super) struct OpenFile {
    map: Arc<FileMap>,
    /// Where the last read ended.
    next: AtomicU64,
    /// Chunks below this have been handed to the prefetcher.
    ahead: AtomicUsize,
}

#[derive(Default)]
pub(super) struct Handles {
    open: Mutex<HashMap<u64, Arc<OpenFile>>>,
    counter: AtomicU64,
}

impl Handles {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<OpenFile>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Vfs {
    /// Opens a file for reading, returning its handle.
    pub fn open(&self, ino: u64) -> VfsResult<u64> {
        let inode = self.inode(ino)?.ok_or(VfsError::IsDir)?;
        let node = match (&inode.what, inode.node()) {
            (What::Node { .. }, Some(n)) if n.kind == Kind::File => n,
            (What::Node { .. }, Some(n)) if n.kind == Kind::Dir => return Err(VfsError::IsDir),
            (What::Node { .. }, Some(_)) => return Ok(0),
            _ => return Err(VfsError::IsDir),
        };
        let index = self.catalog(false).index.clone();
        let map = FileMap::new(&index, &node.content, node.size)?;
        let file = OpenFile { map: Arc::new(map), next: AtomicU64::new(0), ahead: AtomicUsize::new(0) };
        let fh = self.files.counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.files.lock().insert(fh, Arc::new(file));
        Ok(fh)
    }

    pub fn release(&self, fh: u64) {
        self.files.lock().remove(&fh);
    }

    /// Up to `size` bytes at `offset`; fewer only at the end of the file.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> VfsResult<ReadData> {
        let file = self.files.lock().get(&fh).cloned().ok_or(VfsError::BadHandle)?;
        let prev = file.next.swap(offset.saturating_add(u64::from(size)), Ordering::Relaxed);
        let (data, last) = file.map.read(&self.reader, offset, size as usize)?;
        let sequential = offset == 0 || offset.abs_diff(prev) <= SEQUENTIAL_SLACK;
        if sequential && last + 1 < file.map.chunk_count() {
            let mut end = last + 1;
            let mut bytes = 0;
            while end < file.map.chunk_count() && bytes < READ_AHEAD {
                bytes += file.map.chunk_len(end);
                end += 1;
            }
            let from = file.ahead.fetch_max(end, Ordering::Relaxed).max(last + 1);
            if from < end {
                self.reader.prefetch(&file.map, from..end);
            }
        }
        Ok(data)
    }

    /// Open file handles (for tests and statistics).
    pub fn open_files(&self) -> usize {
        self.files.lock().len()
    }
}
