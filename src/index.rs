//! The redb index (format-spec §9): blob id → location, and the pack list. A derived cache:
//! every fact here can be rebuilt from the pack headers.

use std::path::Path;

use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::crypto::ObjType;
use crate::error::{Error, Result};
use crate::format::pack::PackEntry;
use crate::id::Id;

const BLOBS: TableDefinition<[u8; 32], [u8; 45]> = TableDefinition::new("blobs");
const PACKS: TableDefinition<[u8; 32], [u8; 20]> = TableDefinition::new("packs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Where a blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLoc {
    pub pack: Id,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
    pub ty: ObjType,
}

impl BlobLoc {
    fn encode(&self) -> [u8; 45] {
        let mut v = [0u8; 45];
        v[..32].copy_from_slice(&self.pack.0);
        v[32..36].copy_from_slice(&self.offset.to_le_bytes());
        v[36..40].copy_from_slice(&self.length.to_le_bytes());
        v[40..44].copy_from_slice(&self.raw_len.to_le_bytes());
        v[44] = self.ty as u8;
        v
    }

    fn decode(v: &[u8; 45]) -> Result<BlobLoc> {
        let u = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4 bytes"));
        Ok(BlobLoc {
            pack: Id(v[..32].try_into().expect("32 bytes")),
            offset: u(32),
            length: u(36),
            raw_len: u(40),
            ty: ObjType::from_u8(v[44]).ok_or_else(|| Error::corrupt("index", "bad blob type"))?,
        })
    }
}

pub struct Index {
    db: Database,
}

/// redb's page cache (1 GiB by default) kept every page a backup wrote, so memory grew with the
/// index: cap it, and let the kernel's page cache serve lookups beyond it.
const CACHE_SIZE: usize = 32 << 20;

impl Index {
    pub fn open(path: &Path) -> Result<Index> {
        // redb trusts its file and can panic on an altered one ("Malformed allocator state");
        // the index is a cache, so that must become an error that names the fix.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            redb::Builder::new()
                .set_concurrency_mode(ConcurrencyMode::MultiWriter)
                .set_cache_size(CACHE_SIZE)
                .create(path)
        }));
        let db = opened.map_err(|_| {
            Error::Index(format!("{} is damaged; run `snapfs repair index` to rebuild it", path.display()))
        })??;
        // A write transaction costs an fsync; only a new index needs one.
        let exists = db.begin_read()?.open_table(META).is_ok();
        if !exists {
            let tx = db.begin_write()?;
            {
                tx.open_table(BLOBS)?;
                tx.open_table(PACKS)?;
                let mut meta = tx.open_table(META)?;
                if meta.get("version")?.is_none() {
                    meta.insert("version", &1u32.to_le_bytes()[..])?;
                }
            }
            tx.commit()?;
        }
        Ok(Index { db })
    }

    /// An empty index in memory, for a repository opened without its index file.
    pub fn in_memory() -> Result<Index> {
        let db = redb::Builder::new().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let tx = db.begin_write()?;
        {
            tx.open_table(BLOBS)?;
            tx.open_table(PACKS)?;
        }
        tx.commit()?;
        Ok(Index { db })
    }

    /// A consistent view for many lookups, e.g. one backup's dedup checks.
    pub fn reader(&self) -> Result<IndexReader> {
        let tx = self.db.begin_read()?;
        Ok(IndexReader { blobs: tx.open_table(BLOBS)? })
    }

    pub fn lookup(&self, id: &Id) -> Result<Option<BlobLoc>> {
        self.reader()?.get(id)
    }

    /// Records a durable pack and all its blobs in one transaction.
    pub fn add_pack(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()> {
        // Default durability is immediate: the commit is on disk before we return.
        let tx = self.db.begin_write()?;
        {
            let mut blobs = tx.open_table(BLOBS)?;
            for e in entries {
                let loc = BlobLoc { pack: *pack, offset: e.offset, length: e.length, raw_len: e.raw_len, ty: e.ty };
                blobs.insert(e.id.0, loc.encode())?;
            }
            let mut packs = tx.open_table(PACKS)?;
            let mut v = [0u8; 20];
            v[..8].copy_from_slice(&size.to_le_bytes());
            v[8..12].copy_from_slice(&(entries.len() as u32).to_le_bytes());
            packs.insert(pack.0, v)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Gives back the space of the many small durable commits a backup makes (about 1 MiB
    /// each, measured: 142 MB of file for 9 MB of entries after 156 packs), when the file is
    /// over 256 bytes a blob, about 2.4 times what a compacted index needs (108 bytes a blob
    /// measured; compacting 35 MB to 13.5 MB took 0.4 s). Best effort: another process in a transaction (a
    /// mount, a concurrent backup) makes redb refuse, and the next backup tries again.
    pub fn compact_if_bloated(&mut self, path: &Path) -> bool {
        let (Ok(len), Ok(blobs)) = (std::fs::metadata(path).map(|m| m.len()), self.blob_count()) else {
            return false;
        };
        if len < (16 << 20).max(blobs * 256) {
            return false;
        }
        while let Ok(true) = self.db.compact() {}
        true
    }

    pub fn blob_count(&self) -> Result<u64> {
        Ok(self.db.begin_read()?.open_table(BLOBS)?.len()?)
    }

    /// Opens an index that must already exist, checking every page's checksum: `check` and
    /// `repair` must learn that the file was altered instead of trusting it (or creating an
    /// empty one in place of a lost index).
    pub fn open_existing(path: &Path) -> Result<Index> {
        if !path.exists() {
            return Err(Error::Index(format!("{} is missing", path.display())));
        }
        let db = redb::Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_check_integrity_on_open(true)
            .set_cache_size(CACHE_SIZE)
            .open(path)?;
        let tx = db.begin_read()?;
        tx.open_table(BLOBS)?;
        tx.open_table(PACKS)?;
        drop(tx);
        Ok(Index { db })
    }

    /// Every blob entry. Entries that fail to decode are returned as errors, not dropped.
    pub fn blobs(&self) -> Result<Vec<(Id, Result<BlobLoc>)>> {
        let table = self.db.begin_read()?.open_table(BLOBS)?;
        let mut out = Vec::with_capacity(table.len()? as usize);
        for item in table.iter()? {
            let (k, v) = item?;
            out.push((Id(k.value()), BlobLoc::decode(&v.value())));
        }
        Ok(out)
    }

    /// Every pack the index knows.
    pub fn packs(&self) -> Result<Vec<(Id, PackInfo)>> {
        let table = self.db.begin_read()?.open_table(PACKS)?;
        let mut out = Vec::with_capacity(table.len()? as usize);
        for item in table.iter()? {
            let (k, v) = item?;
            out.push((Id(k.value()), PackInfo::decode(&v.value())));
        }
        Ok(out)
    }

    /// Records when packs were last verified in full, so short runs can start with the others.
    pub fn set_verified(&self, packs: &[(Id, i64)]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(PACKS)?;
            for (id, t) in packs {
                let Some(old) = table.get(id.0)?.map(|v| v.value()) else { continue };
                let mut v = old;
                v[12..20].copy_from_slice(&t.to_le_bytes());
                table.insert(id.0, v)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds many packs in one transaction: what `repair index` writes into a fresh file.
    pub fn add_packs(&self, packs: &[(Id, PackInfo, &[PackEntry])]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut blobs = tx.open_table(BLOBS)?;
            let mut table = tx.open_table(PACKS)?;
            for (pack, info, entries) in packs {
                for e in *entries {
                    let loc = BlobLoc { pack: *pack, offset: e.offset, length: e.length, raw_len: e.raw_len, ty: e.ty };
                    blobs.insert(e.id.0, loc.encode())?;
                }
                table.insert(pack.0, info.encode())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// A `packs` table value (format-spec §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PackInfo {
    pub size: u64,
    pub blobs: u32,
    /// Nanoseconds since the Unix epoch of the last full verification; 0 = never.
    pub last_verified: i64,
}

impl PackInfo {
    fn encode(&self) -> [u8; 20] {
        let mut v = [0u8; 20];
        v[..8].copy_from_slice(&self.size.to_le_bytes());
        v[8..12].copy_from_slice(&self.blobs.to_le_bytes());
        v[12..20].copy_from_slice(&self.last_verified.to_le_bytes());
        v
    }

    fn decode(v: &[u8; 20]) -> PackInfo {
        PackInfo {
            size: u64::from_le_bytes(v[..8].try_into().expect("8 bytes")),
            blobs: u32::from_le_bytes(v[8..12].try_into().expect("4 bytes")),
            last_verified: i64::from_le_bytes(v[12..20].try_into().expect("8 bytes")),
        }
    }
}

pub struct IndexReader {
    blobs: redb::ReadOnlyTable<[u8; 32], [u8; 45]>,
}

impl IndexReader {
    pub fn get(&self, id: &Id) -> Result<Option<BlobLoc>> {
        match self.blobs.get(id.0)? {
            Some(v) => Ok(Some(BlobLoc::decode(&v.value())?)),
            None => Ok(None),
        }
    }
}
