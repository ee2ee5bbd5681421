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

impl Index {
    pub fn open(path: &Path) -> Result<Index> {
        let db = redb::Builder::new().set_concurrency_mode(ConcurrencyMode::MultiWriter).create(path)?;
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

    pub fn blob_count(&self) -> Result<u64> {
        Ok(self.db.begin_read()?.open_table(BLOBS)?.len()?)
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
