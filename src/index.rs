//! The redb index (format-spec §9): blob id → location, and the pack list. A derived cache:
//! every fact here can be rebuilt from the pack headers.

use std::path::Path;

use std::collections::HashSet;
use std::sync::Arc;

use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::crypto::ObjType;
use crate::error::{Error, Result};
use crate::format::pack::PackEntry;
use crate::id::Id;

// Byte arrays by reference: redb stores and names them exactly as `[u8; N]` (so files written
// either way are the same), but compares `[u8; N]` keys a byte at a time through its generic
// array code and builds each value read in a `Vec`, which was a tenth of an unchanged re-backup.
const BLOBS: TableDefinition<&[u8; 32], &[u8; 17]> = TableDefinition::new("blobs");
const PACKS: TableDefinition<&[u8; 32], &[u8; 24]> = TableDefinition::new("packs");
const PACK_IDS: TableDefinition<u32, &[u8; 32]> = TableDefinition::new("pack_ids");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Copies of a blob beyond the one `blobs` names: blob id ‖ pack number (big-endian, so a
/// blob's copies are adjacent) → the same value as in `blobs`.
const REDUNDANT: TableDefinition<&[u8; 36], &[u8; 17]> = TableDefinition::new("redundant");

/// The layout version of this file (format-spec §9), independent of the repository's.
const VERSION: u32 = 3;

fn redundant_key(id: &Id, pack_no: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(&id.0);
    k[32..].copy_from_slice(&pack_no.to_be_bytes());
    k
}

/// Where a blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLoc {
    pub pack: Id,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
    pub ty: ObjType,
}

/// A `blobs` value: the blob's location with its pack by number. Naming the pack by its
/// 32-byte id made each entry 77 bytes and the index 114 bytes a blob in redb's half-full pages.
fn encode_blob(pack_no: u32, e: &PackEntry) -> [u8; 17] {
    let mut v = [0u8; 17];
    v[..4].copy_from_slice(&pack_no.to_le_bytes());
    v[4..8].copy_from_slice(&e.offset.to_le_bytes());
    v[8..12].copy_from_slice(&e.length.to_le_bytes());
    v[12..16].copy_from_slice(&e.raw_len.to_le_bytes());
    v[16] = e.ty as u8;
    v
}

/// A `blobs` value as a location, its pack number resolved by `pack`. Public for the fuzz
/// targets: the cache file is input like any other.
pub fn decode_blob(v: &[u8; 17], pack: impl FnOnce(u32) -> Result<Id>) -> Result<BlobLoc> {
    let u = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4 bytes"));
    let ty = ObjType::from_u8(v[16]).ok_or_else(|| Error::corrupt("index", "bad blob type"))?;
    Ok(BlobLoc { pack: pack(u(0))?, offset: u(4), length: u(8), raw_len: u(12), ty })
}

fn pack_no(v: &[u8; 17]) -> u32 {
    u32::from_le_bytes(v[..4].try_into().expect("4 bytes"))
}

fn unknown_pack(no: u32) -> Error {
    Error::corrupt("index", format!("blob entry names pack number {no}, which the index does not list"))
}

pub struct Index {
    db: Database,
    /// The file, for compaction; `None` in memory.
    path: Option<std::path::PathBuf>,
    /// Numbers of the packs prune has condemned (format-spec §11): still read from, never
    /// deduplicated against. Known from the repository at each catch-up, not stored here.
    condemned: std::sync::RwLock<Arc<HashSet<u32>>>,
}

/// redb's page cache (1 GiB by default) kept every page a backup wrote, so memory grew with the
/// index: cap it, and let the kernel's page cache serve lookups beyond it.
pub const CACHE_SIZE: usize = 32 << 20;

/// The page cache of a command that reads the index front to back and writes it in id order
/// (prune, key rotation): the cache saves such a pass nothing, and at 32 MiB it was most of
/// the growth of prune's memory with the index.
pub const STREAMING_CACHE_SIZE: usize = 4 << 20;

/// Blob entries removed in one write transaction (see `remove_packs`).
const REMOVE_BATCH: usize = 20_000;

impl Index {
    /// Opens or creates the file. With `verify`, every page checksum is checked first (for
    /// `check`, which must not trust an altered file). A damaged file or one of another layout
    /// is an [`Error::Index`]; the caller, for whom it is a cache, deletes and rebuilds it.
    pub fn open(path: &Path, verify: bool) -> Result<Index> {
        Index::open_with(path, verify, CACHE_SIZE)
    }

    /// [`Index::open`] with a page cache of `cache` bytes.
    pub fn open_with(path: &Path, verify: bool, cache: usize) -> Result<Index> {
        // redb trusts its file and can panic on an altered one ("Malformed allocator state").
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            redb::Builder::new()
                .set_concurrency_mode(ConcurrencyMode::MultiWriter)
                .set_check_integrity_on_open(verify)
                .set_cache_size(cache)
                .create(path)
        }));
        let damaged = |why: String| Error::Index(format!("{} is damaged ({why})", path.display()));
        let db = opened.map_err(|_| damaged("its allocator state is inconsistent".into()))?.map_err(|e| {
            use redb::{DatabaseError as D, StorageError as S};
            // Only what says the file itself is bad; a permission or lock error is not.
            let bad_file = match &e {
                D::Storage(S::Corrupted(_)) | D::UpgradeRequired(_) => true,
                D::Storage(S::Io(io)) => {
                    matches!(io.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData)
                }
                _ => false,
            };
            if bad_file { damaged(e.to_string()) } else { e.into() }
        })?;
        let index = Index { db, path: Some(path.to_path_buf()), condemned: Default::default() };
        // A write transaction costs an fsync; only a new index needs one.
        let exists = index.db.begin_read()?.open_table(META).is_ok();
        if !exists {
            index.create_tables()?;
        }
        index.check_version(path)?;
        Ok(index)
    }

    fn create_tables(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            tx.open_table(BLOBS)?;
            tx.open_table(PACKS)?;
            tx.open_table(PACK_IDS)?;
            tx.open_table(REDUNDANT)?;
            let mut meta = tx.open_table(META)?;
            if meta.get("version")?.is_none() {
                meta.insert("version", &VERSION.to_le_bytes()[..])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// An index of another layout is not read: it is a cache, and `repair index` rebuilds it.
    fn check_version(&self, path: &Path) -> Result<()> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let version = meta.get("version")?.and_then(|v| v.value().try_into().ok()).map(u32::from_le_bytes);
        if version != Some(VERSION) {
            let found = version.map_or("no".to_string(), |v| v.to_string());
            return Err(Error::Index(format!(
                "{} has layout version {found}, this snapfs reads version {VERSION}",
                path.display()
            )));
        }
        Ok(())
    }

    /// An empty index in memory: for tests, and where no cache directory can be written.
    pub fn in_memory() -> Result<Index> {
        let db = redb::Builder::new().create_with_backend(redb::backends::InMemoryBackend::new())?;
        let index = Index { db, path: None, condemned: Default::default() };
        index.create_tables()?;
        Ok(index)
    }

    /// A consistent view for many lookups, e.g. one backup's dedup checks.
    pub fn reader(&self) -> Result<IndexReader> {
        let tx = self.db.begin_read()?;
        let condemned = self.condemned.read().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(IndexReader { blobs: tx.open_table(BLOBS)?, pack_ids: tx.open_table(PACK_IDS)?, condemned })
    }

    pub fn lookup(&self, id: &Id) -> Result<Option<BlobLoc>> {
        self.reader()?.get(id)
    }

    /// Records a durable pack and all its blobs in one transaction.
    pub fn add_pack(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()> {
        let info = PackInfo { size, blobs: entries.len() as u32, last_verified: 0 };
        self.add_packs(&[(*pack, info, entries)])
    }

    /// Gives back the space redb leaves behind: it grows the file by doubling its allocated
    /// region (measured: one small pack added to an 8.1 MB index made it 16.2 MB, half of it a
    /// sparse tail) and each durable commit frees pages it cannot return. A settled index is
    /// about 73 bytes a blob; above 112 (1.5 times that) and 4 MiB the file is compacted, which
    /// took 31 ms for that 16.2 MB file. Best effort: another process in a transaction (a mount,
    /// a concurrent backup) makes redb refuse, and the next backup tries again.
    pub fn compact_if_bloated(&mut self) -> bool {
        let Some(path) = &self.path else { return false };
        let (Ok(len), Ok(blobs)) = (std::fs::metadata(path).map(|m| m.len()), self.blob_count()) else {
            return false;
        };
        if len < (4 << 20).max(blobs * 112) {
            return false;
        }
        while let Ok(true) = self.db.compact() {}
        true
    }

    pub fn blob_count(&self) -> Result<u64> {
        Ok(self.db.begin_read()?.open_table(BLOBS)?.len()?)
    }

    /// Every blob entry. Entries that fail to decode are returned as errors, not dropped.
    pub fn blobs(&self) -> Result<Vec<(Id, Result<BlobLoc>)>> {
        let mut out = Vec::with_capacity(self.blob_count()? as usize);
        self.for_each_blob(|id, loc| {
            out.push((id, loc));
            Ok(())
        })?;
        Ok(out)
    }

    /// Every blob entry in blob-id order, one at a time: for the callers whose memory must
    /// not grow with the number of blobs (prune).
    pub fn for_each_blob(&self, mut f: impl FnMut(Id, Result<BlobLoc>) -> Result<()>) -> Result<()> {
        let tx = self.db.begin_read()?;
        let packs = pack_numbers(&tx)?;
        for item in tx.open_table(BLOBS)?.iter()? {
            let (k, v) = item?;
            let loc = decode_blob(v.value(), |no| packs.get(&no).copied().ok_or_else(|| unknown_pack(no)));
            f(Id(*k.value()), loc)?;
        }
        Ok(())
    }

    /// Every pack the index knows.
    pub fn packs(&self) -> Result<Vec<(Id, PackInfo)>> {
        let table = self.db.begin_read()?.open_table(PACKS)?;
        let mut out = Vec::with_capacity(table.len()? as usize);
        for item in table.iter()? {
            let (k, v) = item?;
            out.push((Id(*k.value()), PackInfo::decode(v.value()).1));
        }
        Ok(out)
    }

    /// Records when packs were last verified in full, so short runs can start with the others.
    pub fn set_verified(&self, packs: &[(Id, i64)]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(PACKS)?;
            for (id, t) in packs {
                let Some((no, old)) = table.get(&id.0)?.map(|v| PackInfo::decode(v.value())) else { continue };
                table.insert(&id.0, &PackInfo { last_verified: *t, ..old }.encode(no))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds packs and their blobs in one transaction (one durable commit). A pack already listed
    /// keeps its number and its verification time unless `info` carries one.
    pub fn add_packs(&self, packs: &[(Id, PackInfo, &[PackEntry])]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut blobs = tx.open_table(BLOBS)?;
            let mut table = tx.open_table(PACKS)?;
            let mut ids = tx.open_table(PACK_IDS)?;
            let mut redundant = tx.open_table(REDUNDANT)?;
            let mut meta = tx.open_table(META)?;
            let mut next = match meta.get("next_pack")? {
                Some(v) => u32::from_le_bytes(
                    v.value().try_into().map_err(|_| Error::corrupt("index", "bad next_pack value"))?,
                ),
                None => 0,
            };
            let mut entries = Vec::with_capacity(packs.iter().map(|(_, _, e)| e.len()).sum());
            for (pack, info, pack_entries) in packs {
                let old = table.get(&pack.0)?.map(|v| PackInfo::decode(v.value()));
                let (no, verified) = match old {
                    Some((no, o)) => (no, o.last_verified),
                    None => {
                        let no = next;
                        next = next.checked_add(1).ok_or_else(|| Error::Index("more than 2^32 packs".into()))?;
                        (no, 0)
                    }
                };
                let info = PackInfo {
                    last_verified: if info.last_verified != 0 { info.last_verified } else { verified },
                    ..*info
                };
                table.insert(&pack.0, &info.encode(no))?;
                ids.insert(no, &pack.0)?;
                entries.extend(pack_entries.iter().map(|e| (no, e)));
            }
            // In id order (stable: of two packs with one blob, the earlier still wins): ids are
            // random, so in pack order every insert lands on another leaf, and once the leaves
            // touched outgrow redb's write buffer each is written out and read back many times
            // over. Sorted, a leaf is finished before the next is touched.
            entries.sort_by_key(|(_, e)| e.id.0);
            for (no, e) in entries {
                // One location per blob; a copy in another pack is redundant (two writers
                // raced, or a killed backup's pack was written again).
                let other = blobs.get(&e.id.0)?.map(|v| pack_no(v.value()));
                match other {
                    Some(o) if o != no => {
                        redundant.insert(&redundant_key(&e.id, no), &encode_blob(no, e))?;
                    }
                    _ => {
                        blobs.insert(&e.id.0, &encode_blob(no, e))?;
                    }
                }
            }
            meta.insert("next_pack", &next.to_le_bytes()[..])?;
        }
        // Default durability is immediate: the commit is on disk before this returns.
        tx.commit()?;
        Ok(())
    }
}

impl Index {
    /// Marks these packs (and only these) as condemned. A blob whose location is in one of
    /// them and that has a copy in a pack that is not moves its location there, so readers
    /// stop using the pack before prune deletes it.
    pub fn set_condemned(&self, packs: &[Id]) -> Result<()> {
        let mut numbers = HashSet::new();
        {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(PACKS)?;
            for id in packs {
                if let Some(v) = table.get(&id.0)? {
                    numbers.insert(PackInfo::decode(v.value()).0);
                }
            }
        }
        if !numbers.is_empty() {
            self.move_off(&numbers)?;
        }
        *self.condemned.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(numbers);
        Ok(())
    }

    /// Gives every blob located in `packs` a location outside them, where it has one.
    fn move_off(&self, packs: &HashSet<u32>) -> Result<()> {
        let tx = self.db.begin_write()?;
        let mut moved = 0;
        {
            let mut blobs = tx.open_table(BLOBS)?;
            let mut redundant = tx.open_table(REDUNDANT)?;
            let copies: Vec<([u8; 36], [u8; 17])> = redundant
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(_, v)| !packs.contains(&pack_no(v.value())))
                .map(|(k, v)| (*k.value(), *v.value()))
                .collect();
            for (k, copy) in copies {
                let id: [u8; 32] = k[..32].try_into().expect("32 bytes");
                let Some(current) = blobs.get(&id)?.map(|v| *v.value()) else { continue };
                if !packs.contains(&pack_no(&current)) {
                    continue;
                }
                blobs.insert(&id, &copy)?;
                redundant.remove(&k)?;
                redundant.insert(&redundant_key(&Id(id), pack_no(&current)), &current)?;
                moved += 1;
            }
        }
        if moved > 0 {
            tx.commit()?;
        } else {
            tx.abort()?;
        }
        Ok(())
    }

    /// Forgets packs that are gone: their blob entries go, and where another pack holds a
    /// copy of such a blob, that copy becomes its location. Returns how many blobs lost their
    /// last known copy.
    pub fn remove_packs(&self, gone: &[Id]) -> Result<u64> {
        if gone.is_empty() {
            return Ok(0);
        }
        let numbers: std::collections::HashSet<u32> = {
            let tx = self.db.begin_read()?;
            let packs = tx.open_table(PACKS)?;
            let mut numbers = std::collections::HashSet::new();
            for id in gone {
                if let Some(v) = packs.get(&id.0)? {
                    numbers.insert(PackInfo::decode(v.value()).0);
                }
            }
            numbers
        };
        let pack_of = |v: &[u8; 17]| u32::from_le_bytes(v[..4].try_into().expect("4 bytes"));
        let tx = self.db.begin_write()?;
        {
            let mut redundant = tx.open_table(REDUNDANT)?;
            let stale: Vec<[u8; 36]> = redundant
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(_, v)| numbers.contains(&pack_of(v.value())))
                .map(|(k, _)| *k.value())
                .collect();
            for k in &stale {
                redundant.remove(k)?;
            }
        }
        tx.commit()?;
        // The blobs of the packs go in transactions of a bounded size: redb keeps a
        // transaction's changed pages in memory until it commits, and a prune that removes
        // half the packs would otherwise hold half the index there. A crash between them
        // leaves packs listed without some of their blobs, which only costs deduplication.
        let mut lost = 0;
        let mut from: Option<[u8; 32]> = None;
        loop {
            let tx = self.db.begin_write()?;
            let more;
            {
                let mut blobs = tx.open_table(BLOBS)?;
                let mut redundant = tx.open_table(REDUNDANT)?;
                let orphans: Vec<[u8; 32]> = {
                    let it = match &from {
                        Some(k) => {
                            blobs.range::<&[u8; 32]>((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))?
                        }
                        None => blobs.range::<&[u8; 32]>(..)?,
                    };
                    it.filter_map(|r| r.ok())
                        .filter(|(_, v)| numbers.contains(&pack_of(v.value())))
                        .map(|(k, _)| *k.value())
                        .take(REMOVE_BATCH)
                        .collect()
                };
                more = orphans.len() == REMOVE_BATCH;
                from = orphans.last().copied();
                for id in orphans {
                    blobs.remove(&id)?;
                    let lo = redundant_key(&Id(id), 0);
                    let hi = redundant_key(&Id(id), u32::MAX);
                    let copy = redundant
                        .range::<&[u8; 36]>(&lo..=&hi)?
                        .next()
                        .transpose()?
                        .map(|(k, v)| (*k.value(), *v.value()));
                    match copy {
                        Some((k, v)) => {
                            redundant.remove(&k)?;
                            blobs.insert(&id, &v)?;
                        }
                        None => lost += 1,
                    }
                }
            }
            tx.commit()?;
            if !more {
                break;
            }
        }
        let tx = self.db.begin_write()?;
        {
            let mut packs = tx.open_table(PACKS)?;
            let mut ids = tx.open_table(PACK_IDS)?;
            for id in gone {
                if let Some(no) = packs.remove(&id.0)?.map(|v| PackInfo::decode(v.value()).0) {
                    ids.remove(no)?;
                }
            }
        }
        tx.commit()?;
        Ok(lost)
    }

    /// Every redundant copy: blob id and the pack holding it, in blob-id order.
    pub fn redundant(&self) -> Result<Vec<(Id, Result<BlobLoc>)>> {
        let mut out = Vec::new();
        self.for_each_redundant(|id, loc| {
            out.push((id, loc));
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Index::redundant`] one at a time. Not few: a repack's copies are redundant with the
    /// blobs they copy until the sweep deletes the old packs.
    pub fn for_each_redundant(&self, mut f: impl FnMut(Id, Result<BlobLoc>) -> Result<()>) -> Result<()> {
        let tx = self.db.begin_read()?;
        let packs = pack_numbers(&tx)?;
        for item in tx.open_table(REDUNDANT)?.iter()? {
            let (k, v) = item?;
            let id = Id(k.value()[..32].try_into().expect("32 bytes"));
            f(id, decode_blob(v.value(), |no| packs.get(&no).copied().ok_or_else(|| unknown_pack(no))))?;
        }
        Ok(())
    }

    /// [`Index::for_each_blob`] with the locations of each blob's other copies (those that
    /// decode), read from `redundant` beside it: both are in blob-id order, so this holds one
    /// blob's copies at a time, never a map of them all.
    pub fn for_each_blob_with_copies(
        &self,
        mut f: impl FnMut(Id, Result<BlobLoc>, &[BlobLoc]) -> Result<()>,
    ) -> Result<()> {
        let tx = self.db.begin_read()?;
        let packs = pack_numbers(&tx)?;
        let decode = |v: &[u8; 17]| decode_blob(v, |no| packs.get(&no).copied().ok_or_else(|| unknown_pack(no)));
        let redundant = tx.open_table(REDUNDANT)?;
        let mut copies_of = redundant.iter()?.peekable();
        let mut copies = Vec::new();
        for item in tx.open_table(BLOBS)?.iter()? {
            let (k, v) = item?;
            let id: [u8; 32] = *k.value();
            copies.clear();
            // Copies of blobs with no entry of their own (none in a consistent index) are passed over.
            while let Some(next) = copies_of.peek() {
                let Ok((ck, cv)) = next else {
                    return Err(copies_of.next().expect("peeked").err().expect("an error").into());
                };
                let of: &[u8] = &ck.value()[..32];
                if of > &id[..] {
                    break;
                }
                if of == &id[..]
                    && let Ok(loc) = decode(cv.value())
                {
                    copies.push(loc);
                }
                copies_of.next();
            }
            f(Id(id), decode(v.value()), &copies)?;
        }
        Ok(())
    }
}

/// Pack numbers to pack ids: what `blobs` values name packs by.
fn pack_numbers(tx: &redb::ReadTransaction) -> Result<std::collections::HashMap<u32, Id>> {
    let mut packs = std::collections::HashMap::new();
    for item in tx.open_table(PACK_IDS)?.iter()? {
        let (k, v) = item?;
        packs.insert(k.value(), Id(*v.value()));
    }
    Ok(packs)
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
    /// With the pack's number, which `blobs` values name it by.
    fn encode(&self, no: u32) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..4].copy_from_slice(&no.to_le_bytes());
        v[4..12].copy_from_slice(&self.size.to_le_bytes());
        v[12..16].copy_from_slice(&self.blobs.to_le_bytes());
        v[16..24].copy_from_slice(&self.last_verified.to_le_bytes());
        v
    }

    /// A `packs` value: the pack's number and record.
    pub fn decode(v: &[u8; 24]) -> (u32, PackInfo) {
        let no = u32::from_le_bytes(v[..4].try_into().expect("4 bytes"));
        let info = PackInfo {
            size: u64::from_le_bytes(v[4..12].try_into().expect("8 bytes")),
            blobs: u32::from_le_bytes(v[12..16].try_into().expect("4 bytes")),
            last_verified: i64::from_le_bytes(v[16..24].try_into().expect("8 bytes")),
        };
        (no, info)
    }
}

pub struct IndexReader {
    blobs: redb::ReadOnlyTable<&'static [u8; 32], &'static [u8; 17]>,
    pack_ids: redb::ReadOnlyTable<u32, &'static [u8; 32]>,
    condemned: Arc<HashSet<u32>>,
}

impl IndexReader {
    pub fn get(&self, id: &Id) -> Result<Option<BlobLoc>> {
        let Some(v) = self.blobs.get(&id.0)? else { return Ok(None) };
        let pack = |no| self.pack_ids.get(no)?.map(|p| Id(*p.value())).ok_or_else(|| unknown_pack(no));
        decode_blob(v.value(), pack).map(Some)
    }

    /// Whether the blob is indexed, without resolving its pack: the test dedup and the reuse
    /// of an unchanged file's chunk list make once per chunk.
    /// A blob whose copy is in a condemned pack counts as absent: a backup stores it again
    /// rather than reference a pack that prune will delete.
    pub fn contains(&self, id: &Id) -> Result<bool> {
        let Some(v) = self.blobs.get(&id.0)? else { return Ok(false) };
        Ok(self.condemned.is_empty() || !self.condemned.contains(&pack_no(v.value())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, offset: u32) -> PackEntry {
        PackEntry { ty: ObjType::Data, id: Id([n; 32]), offset, length: 100 + n as u32, raw_len: 200 + n as u32 }
    }

    #[test]
    fn packs_are_numbered_once_and_blobs_resolve_to_their_pack() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let index = Index::open(&path, false).unwrap();
        let (a, b) = (Id([0xaa; 32]), Id([0xbb; 32]));
        index.add_pack(&a, 1000, &[entry(1, 0), entry(2, 101)]).unwrap();
        index.add_pack(&b, 2000, &[entry(3, 0)]).unwrap();
        index.set_verified(&[(a, 77)]).unwrap();
        // Adding a pack again keeps its number and its verification time.
        index.add_pack(&a, 1000, &[entry(1, 0), entry(2, 101)]).unwrap();
        drop(index);

        let index = Index::open(&path, false).unwrap();
        let r = index.reader().unwrap();
        let loc = r.get(&Id([2; 32])).unwrap().unwrap();
        assert_eq!(loc, BlobLoc { pack: a, offset: 101, length: 102, raw_len: 202, ty: ObjType::Data });
        assert_eq!(r.get(&Id([3; 32])).unwrap().unwrap().pack, b);
        assert!(r.get(&Id([9; 32])).unwrap().is_none());
        let packs: std::collections::HashMap<Id, PackInfo> = index.packs().unwrap().into_iter().collect();
        assert_eq!(packs[&a], PackInfo { size: 1000, blobs: 2, last_verified: 77 });
        assert_eq!(packs[&b].size, 2000);
        let tx = index.db.begin_read().unwrap();
        assert_eq!(tx.open_table(PACK_IDS).unwrap().len().unwrap(), 2);
        let all = index.blobs().unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|(_, l)| l.is_ok()));
    }

    #[test]
    fn tables_written_through_references_are_the_owned_arrays_of_layout_2() {
        // Layout 2 files were written with `[u8; N]` tables; both must open each other's.
        const OWNED: TableDefinition<[u8; 32], [u8; 17]> = TableDefinition::new("blobs");
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.redb"), false).unwrap();
        index.add_pack(&Id([0xaa; 32]), 1000, &[entry(1, 0)]).unwrap();
        let tx = index.db.begin_write().unwrap();
        {
            let mut t = tx.open_table(OWNED).unwrap();
            assert_eq!(t.get([1; 32]).unwrap().unwrap().value(), encode_blob(0, &entry(1, 0)));
            t.insert([2; 32], encode_blob(0, &entry(2, 101))).unwrap();
        }
        tx.commit().unwrap();
        let r = index.reader().unwrap();
        assert_eq!(r.get(&Id([2; 32])).unwrap().unwrap().offset, 101);
        assert!(r.contains(&Id([1; 32])).unwrap() && !r.contains(&Id([3; 32])).unwrap());
    }

    #[test]
    fn a_blob_in_two_packs_has_one_location_and_survives_either_pack_going() {
        let index = Index::in_memory().unwrap();
        let (a, b) = (Id([0xaa; 32]), Id([0xbb; 32]));
        index.add_pack(&a, 1000, &[entry(1, 0), entry(2, 101)]).unwrap();
        index.add_pack(&b, 2000, &[entry(2, 0), entry(3, 300)]).unwrap();
        // Adding a pack again must not make it redundant with itself.
        index.add_pack(&b, 2000, &[entry(2, 0), entry(3, 300)]).unwrap();
        let r = index.reader().unwrap();
        assert_eq!(r.get(&Id([2; 32])).unwrap().unwrap().pack, a);
        drop(r);
        let red = index.redundant().unwrap();
        assert_eq!(red.len(), 1);
        assert_eq!(red[0].1.as_ref().unwrap().pack, b);
        assert_eq!(index.blob_count().unwrap(), 3);

        // Pack a goes: blob 2 now lives in b, blob 1 is lost.
        assert_eq!(index.remove_packs(&[a]).unwrap(), 1);
        let r = index.reader().unwrap();
        assert_eq!(
            r.get(&Id([2; 32])).unwrap().unwrap(),
            BlobLoc { pack: b, offset: 0, length: 102, raw_len: 202, ty: ObjType::Data }
        );
        assert!(r.get(&Id([1; 32])).unwrap().is_none());
        drop(r);
        assert!(index.redundant().unwrap().is_empty());
        assert_eq!(index.packs().unwrap().len(), 1);
    }

    #[test]
    fn an_index_of_another_layout_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let index = Index::open(&path, false).unwrap();
        let tx = index.db.begin_write().unwrap();
        tx.open_table(META).unwrap().insert("version", &1u32.to_le_bytes()[..]).unwrap();
        tx.commit().unwrap();
        drop(index);
        for e in [Index::open(&path, false).err(), Index::open(&path, true).err()] {
            let msg = e.expect("an old layout must not open").to_string();
            assert!(msg.contains("layout version 1"), "{msg}");
        }
    }
}
