//! The tree cache (format-spec §9): tree blobs kept beside the index cache, sealed as they are
//! in their packs, so that a backup's walk of its parent, a restore's or a mount's listings
//! cost no request to object storage once this client wrote or read them (restic keeps its
//! tree packs in its cache for the same reason).
//!
//! It is never trusted over the repository: an entry is used only for a blob the index places
//! in a pack (so it brings back nothing prune removed), and is opened, authenticated and
//! re-hashed on every use like a blob read from a pack; one that fails is dropped and its blob
//! read from the repository. A file that will not open, or of another layout, is deleted and
//! started afresh, as the index is. Only for backends whose reads wait on a network: locally a
//! listing costs what a cache lookup does.

use std::collections::HashMap;
use std::io::ErrorKind as IoKind;
use std::path::Path;
use std::sync::Mutex;

use redb::{ConcurrencyMode, Database, ReadableDatabase, TableDefinition};

use crate::id::Id;

const TREES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("trees");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VERSION: u32 = 1;
/// Trees read from the repository are written to the file in batches of this many: a write
/// transaction each would cost an fsync each.
const FLUSH: usize = 512;
/// redb's page cache: the kernel's serves the rest.
const CACHE_SIZE: usize = 16 << 20;

pub struct TreeCache {
    db: Option<Database>,
    /// Read from the repository, not yet written.
    pending: Mutex<HashMap<Id, Vec<u8>>>,
}

impl TreeCache {
    /// No cache: every listing is read from the repository.
    pub fn off() -> TreeCache {
        TreeCache { db: None, pending: Mutex::default() }
    }

    /// Opens (or makes) the file; one that will not open as a tree cache of this layout is
    /// deleted and made anew. A cache that cannot be had at all is off, never an error.
    pub fn open(path: &Path) -> TreeCache {
        let db = match open_db(path) {
            Ok(db) => Some(db),
            Err(Bad::File) => std::fs::remove_file(path).ok().and_then(|()| open_db(path).ok()),
            // In use in a way that excludes this process, or not writable: do without.
            Err(Bad::Other) => None,
        };
        TreeCache { db, pending: Mutex::default() }
    }

    pub fn is_on(&self) -> bool {
        self.db.is_some()
    }

    /// The sealed blob kept for `id`, unverified: the caller opens it.
    pub fn get(&self, id: &Id) -> Option<Vec<u8>> {
        if let Some(v) = self.pending().get(id) {
            return Some(v.clone());
        }
        let tx = self.db.as_ref()?.begin_read().ok()?;
        let table = tx.open_table(TREES).ok()?;
        table.get(&id.0).ok()?.map(|v| v.value().to_vec())
    }

    /// Keeps sealed tree blobs now, in one write transaction (best effort: a cache that cannot
    /// be written only costs requests later).
    pub fn put<'a>(&self, blobs: impl IntoIterator<Item = (&'a Id, &'a [u8])>) {
        let Some(db) = &self.db else { return };
        let mut blobs = blobs.into_iter().peekable();
        if blobs.peek().is_none() {
            return;
        }
        let write = || -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(TREES)?;
                for (id, sealed) in blobs {
                    table.insert(&id.0, sealed)?;
                }
            }
            tx.commit()?;
            Ok(())
        };
        let _ = write();
    }

    /// Keeps a sealed tree blob read from the repository, with the next batch.
    pub fn remember(&self, id: &Id, sealed: &[u8]) {
        if self.db.is_none() {
            return;
        }
        let full = {
            let mut p = self.pending();
            p.insert(*id, sealed.to_vec());
            p.len() >= FLUSH
        };
        if full {
            self.flush();
        }
    }

    /// Drops an entry that did not open.
    pub fn forget(&self, id: &Id) {
        self.pending().remove(id);
        let Some(db) = &self.db else { return };
        let remove = || -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            tx.open_table(TREES)?.remove(&id.0)?;
            tx.commit()?;
            Ok(())
        };
        let _ = remove();
    }

    /// Drops every entry whose blob `live` says the repository no longer has (after a prune
    /// removed packs), so the file stays the size of the trees in use.
    pub fn retain(&self, live: impl Fn(&Id) -> bool) {
        let Some(db) = &self.db else { return };
        let sweep = || -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            tx.open_table(TREES)?.retain(|k, _| live(&Id(*k)))?;
            tx.commit()?;
            Ok(())
        };
        let _ = sweep();
    }

    fn flush(&self) {
        let batch = std::mem::take(&mut *self.pending());
        self.put(batch.iter().map(|(id, v)| (id, v.as_slice())));
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Vec<u8>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TreeCache {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Why a file did not open: bad in itself (deleted and made anew), or for another reason.
enum Bad {
    File,
    Other,
}

fn open_db(path: &Path) -> Result<Database, Bad> {
    // redb trusts its file and can panic on an altered one (as `Index::open` says).
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        redb::Builder::new().set_concurrency_mode(ConcurrencyMode::MultiWriter).set_cache_size(CACHE_SIZE).create(path)
    }));
    let db = opened.map_err(|_| Bad::File)?.map_err(|e| {
        use redb::{DatabaseError as D, StorageError as S};
        match e {
            D::Storage(S::Corrupted(_)) | D::UpgradeRequired(_) => Bad::File,
            D::Storage(S::Io(io)) if matches!(io.kind(), IoKind::UnexpectedEof | IoKind::InvalidData) => Bad::File,
            _ => Bad::Other,
        }
    })?;
    let version = |db: &Database| -> Result<Option<u32>, redb::Error> {
        let tx = db.begin_read()?;
        let Ok(meta) = tx.open_table(META) else { return Ok(None) };
        Ok(meta.get("version")?.and_then(|v| v.value().try_into().ok()).map(u32::from_le_bytes))
    };
    let create = |db: &Database| -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        {
            tx.open_table(TREES)?;
            tx.open_table(META)?.insert("version", &VERSION.to_le_bytes()[..])?;
        }
        tx.commit()?;
        Ok(())
    };
    match version(&db) {
        Ok(Some(VERSION)) => Ok(db),
        Ok(None) => create(&db).map(|()| db).map_err(|_| Bad::File),
        Ok(Some(_)) | Err(_) => Err(Bad::File),
    }
}
