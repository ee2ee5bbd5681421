//! Opening and creating repositories, and reading the objects in them.

pub mod lock;
pub mod packer;
pub mod packs;
pub mod storage;

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::chunker::Chunker;
use crate::crypto::keyfile::{self, KdfParams, KeySlot};
use crate::crypto::{Keys, MAX_PAYLOAD, ObjType, random_bytes};
use crate::error::{Error, IoContext, Result};
use crate::format::config::{self, Params};
use crate::format::{snapshot, tree};
use crate::id::Id;
use crate::index::{BlobLoc, Index};
use crate::sys;
use storage::{pack_path, random_name, snapshot_path, write_atomic};

const SUBDIRS: [&str; 5] = ["keys", "packs", "snapshots", "locks", "tmp"];
/// Open pack handles kept for reads; enough for restore's parallel workers and a mount.
const OPEN_PACKS: usize = 64;
/// Per-thread read buffer kept between blobs: room for the largest stored chunk.
const KEEP_READ_BUF: usize = 9 << 20;

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Readable snapshots oldest first, and the names of damaged ones with why.
pub type SnapshotListing = (Vec<(Id, snapshot::Snapshot)>, Vec<(String, Error)>);

pub struct Repository {
    root: PathBuf,
    keys: Keys,
    params: Params,
    repo_id: [u8; 16],
    index: Index,
    chunker: Chunker,
    packs: Mutex<HashMap<Id, Arc<File>>>,
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

impl Repository {
    /// Creates a repository in an empty or missing directory.
    pub fn init(root: &Path, password: &[u8], kdf: KdfParams) -> Result<Repository> {
        if root.exists() {
            let mut entries = fs::read_dir(root).ctx(|| format!("read {}", root.display()))?;
            if entries.next().is_some() {
                return Err(Error::NotEmpty(root.to_path_buf()));
            }
        }
        for d in SUBDIRS {
            fs::create_dir_all(root.join(d)).ctx(|| format!("create {}", root.join(d).display()))?;
        }
        let keys = Keys::random()?;
        let mut repo_id = [0u8; 16];
        random_bytes(&mut repo_id)?;
        let params = Params::DEFAULT;
        let slot = keyfile::wrap(&keys, password, kdf, now_ns(), &sys::hostname(), &sys::user_name(sys::uid()))?;
        write_atomic(root, &root.join("keys").join(random_name(8)?), &slot)?;
        let header = config::encode_header(&repo_id);
        let mut cfg = header.to_vec();
        cfg.extend(keys.seal(ObjType::Config, &Id::ZERO, &params.encode(), 0, &header)?);
        // The config is the last file written: a directory without it is not a repository yet.
        write_atomic(root, &root.join("config"), &cfg)?;
        storage::sync_dir(root)?;
        Self::assemble(root, keys, params, repo_id)
    }

    pub fn open(root: &Path, password: &[u8]) -> Result<Repository> {
        let (keys, params, repo_id) = Self::unseal(root, password)?;
        Self::assemble(root, keys, params, repo_id)
    }

    /// Opens a repository without touching `index.redb`: `check` and `repair index` must work
    /// when the index is the missing or damaged part. Its [`Repository::index`] is empty (in
    /// memory); callers open the real one with [`Index::open_existing`].
    pub fn open_without_index(root: &Path, password: &[u8]) -> Result<Repository> {
        let (keys, params, repo_id) = Self::unseal(root, password)?;
        Self::assemble_with(root, keys, params, repo_id, Index::in_memory()?)
    }

    fn unseal(root: &Path, password: &[u8]) -> Result<(Keys, Params, [u8; 16])> {
        let cfg_path = root.join("config");
        let cfg = match fs::read(&cfg_path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NoRepository(root.to_path_buf())),
            Err(e) => return Err(Error::io(format!("read {}", cfg_path.display()), e)),
        };
        let (version, repo_id) = config::decode_header(&cfg)?;
        if version != config::VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let keys = Self::unlock(root, password)?;
        let header = &cfg[..config::HEADER_LEN];
        let params = keys.open(ObjType::Config, &Id::ZERO, &cfg[config::HEADER_LEN..], 1024, header)?;
        let params = Params::decode(&params)?;
        Ok((keys, params, repo_id))
    }

    fn unlock(root: &Path, password: &[u8]) -> Result<Keys> {
        let dir = root.join("keys");
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)
            .ctx(|| format!("read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        let mut damaged = None;
        for p in names {
            let raw = fs::read(&p).ctx(|| format!("read {}", p.display()))?;
            match KeySlot::parse(&raw) {
                Ok(slot) => {
                    if let Some(keys) = slot.unwrap(password)? {
                        return Ok(keys);
                    }
                }
                Err(e) => damaged = Some(e),
            }
        }
        Err(damaged.unwrap_or(Error::WrongPassword))
    }

    fn assemble(root: &Path, keys: Keys, params: Params, repo_id: [u8; 16]) -> Result<Repository> {
        let index = Index::open(&root.join("index.redb"))?;
        Self::assemble_with(root, keys, params, repo_id, index)
    }

    fn assemble_with(root: &Path, keys: Keys, params: Params, repo_id: [u8; 16], index: Index) -> Result<Repository> {
        let chunker = Chunker::new(keys.chunker_key(), &params);
        Ok(Repository {
            root: root.to_path_buf(),
            keys,
            params,
            repo_id,
            index,
            chunker,
            packs: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    pub fn params(&self) -> &Params {
        &self.params
    }
    pub fn repo_id(&self) -> &[u8; 16] {
        &self.repo_id
    }
    pub fn index(&self) -> &Index {
        &self.index
    }
    /// See [`Index::compact_if_bloated`]; call when no transaction of ours is open.
    pub fn compact_index(&mut self) -> bool {
        let path = self.root.join("index.redb");
        self.index.compact_if_bloated(&path)
    }

    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    fn pack_file(&self, id: &Id) -> Result<Arc<File>> {
        if let Some(f) = self.packs.lock().expect("pack cache poisoned").get(id) {
            return Ok(f.clone());
        }
        let path = pack_path(&self.root, id);
        let f = Arc::new(File::open(&path).ctx(|| format!("open pack {}", path.display()))?);
        let mut cache = self.packs.lock().expect("pack cache poisoned");
        if cache.len() >= OPEN_PACKS {
            cache.clear();
        }
        cache.insert(*id, f.clone());
        Ok(f)
    }

    /// Reads a blob at a known location, authenticates it and re-checks its id.
    pub fn read_blob_at(&self, id: &Id, loc: &BlobLoc) -> Result<Vec<u8>> {
        // Through the per-thread buffers, so the only allocation is the one the caller keeps.
        self.with_blob_at(id, loc, <[u8]>::to_vec)
    }

    /// Reads a blob at a known location, authenticates it, re-checks its id and hands it to `f`
    /// (which must not read another blob) from this thread's buffers: a chunk costs no allocation.
    pub fn with_blob_at<R>(&self, id: &Id, loc: &BlobLoc, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let f_pack = self.pack_file(&loc.pack)?;
        READ_BUF.with_borrow_mut(|buf| {
            buf.resize(loc.length as usize, 0);
            f_pack
                .read_exact_at(buf, loc.offset as u64)
                .ctx(|| format!("read {} {} from pack {}", loc.ty.name(), id.short(), loc.pack.short()))?;
            let r = self.keys.open_in_place(loc.ty, id, buf, (loc.raw_len as usize).min(MAX_PAYLOAD), &[], f);
            if buf.capacity() > KEEP_READ_BUF {
                *buf = Vec::new();
            }
            r.map_err(|e| match e {
                Error::Corrupt { what, detail } => Error::corrupt(format!("{what} in pack {}", loc.pack), detail),
                e => e,
            })
        })
    }

    pub fn read_blob(&self, ty: ObjType, id: &Id) -> Result<Vec<u8>> {
        let loc = self.index.lookup(id)?.ok_or_else(|| Error::MissingBlob(id.hex()))?;
        if loc.ty != ty {
            return Err(Error::corrupt(
                format!("blob {}", id.short()),
                format!("index says {}, expected {}", loc.ty.name(), ty.name()),
            ));
        }
        self.read_blob_at(id, &loc)
    }

    pub fn load_tree(&self, id: &Id) -> Result<Vec<tree::Node>> {
        tree::decode(&self.read_blob(ObjType::Tree, id)?)
    }

    pub fn save_snapshot(&self, snap: &snapshot::Snapshot) -> Result<Id> {
        let plain = snapshot::encode(snap);
        let id = self.keys.id(ObjType::Snapshot, &plain);
        let sealed = self.keys.seal(ObjType::Snapshot, &id, &plain, 0, &[])?;
        write_atomic(&self.root, &snapshot_path(&self.root, &id), &sealed)?;
        Ok(id)
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<snapshot::Snapshot> {
        let path = snapshot_path(&self.root, id);
        let raw = fs::read(&path).ctx(|| format!("read {}", path.display()))?;
        let plain = self.keys.open_verified(ObjType::Snapshot, id, &raw, 16 << 20)?;
        snapshot::decode(&plain)
    }

    /// Every snapshot, oldest first; damaged ones are returned separately, never dropped silently.
    pub fn snapshots(&self) -> Result<SnapshotListing> {
        let dir = self.root.join("snapshots");
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for e in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let e = e.ctx(|| format!("read {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            match Id::from_hex(&name).and_then(|id| Ok((id, self.load_snapshot(&id)?))) {
                Ok(s) => good.push(s),
                Err(err) => bad.push((name, err)),
            }
        }
        good.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok((good, bad))
    }
}
