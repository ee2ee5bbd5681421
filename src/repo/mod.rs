//! A repository: its keys, its objects through a [`Backend`], its lock and its index cache.
//!
//! The type says what is ready: a [`Repository<Opened>`] has its keys and lock but no index
//! (enough to list snapshots, or to check the index against the packs); [`Repository::load_index`]
//! brings the cache up to date and gives a [`Repository<Ready>`], which reads blobs. Reading a
//! blob before the index is caught up does not compile.

mod blob;
pub mod catchup;
pub mod condemned;
pub mod keys;
pub mod lock;
pub mod packer;
pub mod packs;
pub mod treecache;

use std::sync::Arc;

use crate::backend::{self, Backend, Kind};
use crate::chunker::Chunker;
use crate::crypto::keyfile::{self, KdfParams, KeySlot};
use crate::crypto::{Identity, Keys, ObjType, random_bytes};
use crate::error::{Error, Result};
use crate::format::config::{self, Params};
use crate::format::{snapshot, tree};
use crate::id::Id;
use crate::index::{BlobLoc, Index};
use crate::sys;

use blob::read_sealed_into;
pub use blob::{open_blob_with, read_blob_with};
pub use catchup::{Cache, CatchUp};
pub use lock::LockMode;

/// Bound on a snapshot object, checked before it is decrypted.
const MAX_SNAPSHOT: usize = 16 << 20;

/// Readable snapshots oldest first, and the names of damaged ones with why.
pub type SnapshotListing = (Vec<(Id, snapshot::Snapshot)>, Vec<(String, Error)>);

/// Keys unlocked, lock held, index not loaded.
pub struct Opened;

/// The index cache is open and caught up with the packs.
pub struct Ready {
    index: Index,
    preloaded: crate::trees::Preloaded,
    trees: treecache::TreeCache,
}

pub struct Repository<S = Ready> {
    backend: Arc<dyn Backend>,
    keys: Keys,
    params: Params,
    repo_id: [u8; 16],
    chunker: Chunker,
    /// Released (its object deleted) when the repository is dropped, or by [`Repository::unlock`].
    lock: std::sync::Mutex<Option<lock::Lock>>,
    /// Epoch objects that did not open, with why (for `check`).
    damaged_epochs: Vec<(String, Error)>,
    /// Why a shared lock was asked for but could not be written (read-only or full storage).
    unlocked: Option<String>,
    /// The name of the key slot the password opened.
    key_slot: String,
    state: S,
}

/// How to open a repository: the lock to take and how long to wait for it, and which key slot
/// to try first.
#[derive(Clone, Debug)]
pub struct Opening<'a> {
    pub mode: LockMode,
    /// What the lock says is running.
    pub command: &'a str,
    /// While a conflicting lock is held, try again for this long.
    pub retry: std::time::Duration,
    /// A key slot id (or a prefix of one) to try first (`--key-hint`).
    pub key_hint: Option<String>,
    /// Where the slot that opened last time is remembered, and tried first.
    pub cache: Option<&'a Cache>,
}

impl<'a> Opening<'a> {
    pub fn new(mode: LockMode, command: &'a str) -> Opening<'a> {
        Opening { mode, command, retry: std::time::Duration::ZERO, key_hint: None, cache: None }
    }
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Repository<Opened> {
    /// Creates a repository where the backend holds nothing yet. The config is written last:
    /// a location without it is not a repository.
    pub fn init(backend: Arc<dyn Backend>, password: &[u8], kdf: KdfParams) -> Result<Repository<Opened>> {
        Self::init_with(backend, password, kdf, Params::DEFAULT, None)
    }

    /// [`Repository::init`] with given parameters and, to share another repository's content
    /// identity (ids and chunk boundaries, format-spec §3), its identity keys; the master key,
    /// data keys and password are this repository's own all the same.
    pub fn init_with(
        backend: Arc<dyn Backend>,
        password: &[u8],
        kdf: KdfParams,
        params: Params,
        identity: Option<&Identity>,
    ) -> Result<Repository<Opened>> {
        for kind in Kind::ALL {
            if !backend.list(kind)?.is_empty() {
                return Err(Error::Invalid(format!(
                    "{} already holds {} objects; refusing to create a repository there",
                    backend.location(),
                    kind.dir()
                )));
            }
        }
        if password.is_empty() {
            return Err(Error::Invalid("an empty password is not allowed".into()));
        }
        let mut keys = Keys::random()?;
        let mut repo_id = [0u8; 16];
        random_bytes(&mut repo_id)?;
        let mut sealed_config = zeroize::Zeroizing::new(params.encode());
        if let Some(identity) = identity {
            keys.set_identity(identity);
            sealed_config.extend_from_slice(&identity.encode()[..]);
        }
        let slot = keyfile::wrap(&keys, password, kdf, now_ns(), &sys::hostname(), &sys::user_name(sys::uid()))?;
        let mut name = [0u8; 8];
        random_bytes(&mut name)?;
        backend.write(Kind::Key, &hex(&name), &slot)?;
        backend.write(Kind::Epoch, &epoch_name(0), &keys.seal_epoch(0, &repo_id, now_ns())?)?;
        let header = config::encode_header(&repo_id);
        let mut cfg = header.to_vec();
        cfg.extend(keys.seal(ObjType::Config, &Id::ZERO, &sealed_config, 0, &header)?);
        backend.write(Kind::Config, "config", &cfg)?;
        Ok(Self::assemble(backend, keys, params, repo_id, None, hex(&name)))
    }

    /// Unlocks a repository with a password and takes a lock of the given mode.
    pub fn open(
        backend: Arc<dyn Backend>,
        password: &[u8],
        mode: LockMode,
        command: &str,
    ) -> Result<Repository<Opened>> {
        Self::open_retrying_lock(backend, password, mode, command, std::time::Duration::ZERO)
    }

    /// As [`Repository::open`], but while a conflicting lock is held, tries again for up to
    /// `retry` before giving up with [`Error::Locked`].
    pub fn open_retrying_lock(
        backend: Arc<dyn Backend>,
        password: &[u8],
        mode: LockMode,
        command: &str,
        retry: std::time::Duration,
    ) -> Result<Repository<Opened>> {
        Self::open_with(backend, password, &Opening { retry, ..Opening::new(mode, command) })
    }

    /// Unlocks a repository with a password as `opts` say.
    pub fn open_with(backend: Arc<dyn Backend>, password: &[u8], opts: &Opening) -> Result<Repository<Opened>> {
        let cfg = match backend.read(Kind::Config, "config") {
            Ok(c) => c,
            Err(e) if backend::is_not_found(&e) => return Err(Error::NoRepository(backend.location())),
            Err(e) => return Err(e),
        };
        let (version, repo_id) = config::decode_header(&cfg)?;
        if version != config::VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let hints: Vec<String> =
            opts.key_hint.iter().cloned().chain(opts.cache.and_then(|c| c.key_hint(&repo_id))).collect();
        let (mut keys, key_slot) = unlock(backend.as_ref(), password, &hints)?;
        if let Some(c) = opts.cache {
            c.remember_key(&repo_id, &key_slot);
        }
        let header = &cfg[..config::HEADER_LEN];
        let plain =
            zeroize::Zeroizing::new(keys.open(ObjType::Config, &Id::ZERO, &cfg[config::HEADER_LEN..], 1024, header)?);
        let (params, identity) = config::split(&plain)?;
        let params = Params::decode(params)?;
        if let Some(identity) = identity.and_then(Identity::decode) {
            keys.set_identity(&identity);
        }
        let damaged_epochs = load_epochs(backend.as_ref(), &keys, &repo_id, false)?;
        let (lock, unlocked) = match lock::acquire_retrying(&backend, opts.mode, opts.command, opts.retry) {
            Ok(l) => (l, None),
            Err(Error::Unlocked(why)) => (None, Some(why)),
            Err(e) => return Err(e),
        };
        let mut repo = Self::assemble(backend, keys, params, repo_id, lock, key_slot);
        repo.damaged_epochs = damaged_epochs;
        repo.unlocked = unlocked;
        Ok(repo)
    }

    /// Opens the index cache, repairing it by itself when it is missing, damaged or of another
    /// layout, and reads the headers of the packs it does not know yet (format-spec §9).
    pub fn load_index(self, cache: &Cache) -> Result<(Repository<Ready>, CatchUp)> {
        let (index, report) = catchup::load(self.backend.as_ref(), &self.keys, &self.repo_id, cache)?;
        // Only where a listing is a round trip (see `treecache`), and never for `check`'s view.
        let trees = match cache.trees_path(&self.repo_id) {
            Some(path) if self.backend.parallel_reads() > 0 && !cache.audit => treecache::TreeCache::open(&path),
            _ => treecache::TreeCache::off(),
        };
        if report.packs_removed > 0 {
            trees.retain(|id| index.lookup(id).ok().flatten().is_some());
        }
        let mut repo = self.with_index(index);
        repo.state.trees = trees;
        Ok((repo, report))
    }

    /// With an index the caller built itself (`repair index`).
    pub fn with_index(self, index: Index) -> Repository<Ready> {
        let Repository {
            backend,
            keys,
            params,
            repo_id,
            chunker,
            lock,
            damaged_epochs,
            unlocked,
            key_slot,
            state: Opened,
        } = self;
        Repository {
            backend,
            keys,
            params,
            repo_id,
            chunker,
            lock,
            damaged_epochs,
            unlocked,
            key_slot,
            state: Ready { index, preloaded: Default::default(), trees: treecache::TreeCache::off() },
        }
    }
}

fn epoch_name(n: u32) -> String {
    format!("{n:08x}")
}

/// Tries the hinted slots first (an id or a prefix of one), then every other; a damaged slot
/// is skipped, not fatal (another may open). Returns the keys and the slot that opened.
fn unlock(backend: &dyn Backend, password: &[u8], hints: &[String]) -> Result<(Keys, String)> {
    let mut names: Vec<String> = backend.list(Kind::Key)?.into_iter().map(|(n, _)| n).collect();
    names.sort();
    if let Some(pos) = hints.iter().find_map(|h| names.iter().position(|n| !h.is_empty() && n.starts_with(h.as_str())))
    {
        let hinted = names.remove(pos);
        names.insert(0, hinted);
    }
    let mut damaged = Vec::new();
    let tried = names.len();
    for name in names {
        let slot = backend.read(Kind::Key, &name).and_then(|raw| KeySlot::parse(&raw));
        match slot.and_then(|s| s.unwrap(password)) {
            Ok(Some(keys)) => return Ok((keys, name)),
            Ok(None) => {}
            Err(e) if backend::is_not_found(&e) => {}
            Err(e) => damaged.push(format!("key slot {name} is damaged: {e}")),
        }
    }
    if tried == 0 {
        return Err(Error::corrupt("key slots", "the repository has no key slot"));
    }
    if damaged.len() == tried {
        return Err(Error::corrupt("key slots", format!("no readable key slot ({})", damaged.join("; "))));
    }
    // A readable slot refused the password: that is a wrong password, whatever else is damaged.
    let also = if damaged.is_empty() { String::new() } else { format!(" (and {})", damaged.join("; ")) };
    Err(Error::WrongPassword(also))
}

/// Loads every epoch key that opens; a damaged epoch object costs only the objects sealed
/// under it (`check` names it), not the repository. Returns the damaged ones. With `learn`,
/// epochs are added for opening only (a running client learning of a rotation).
fn load_epochs(backend: &dyn Backend, keys: &Keys, repo_id: &[u8; 16], learn: bool) -> Result<Vec<(String, Error)>> {
    let mut damaged = Vec::new();
    let known = keys.epochs();
    for (name, _) in backend.list(Kind::Epoch)? {
        let n = u32::from_str_radix(&name, 16).ok().filter(|n| epoch_name(*n) == name);
        if n.is_some_and(|n| known.contains(&n)) {
            continue;
        }
        let opened = n
            .ok_or_else(|| Error::corrupt(format!("key epoch {name}"), "not an epoch name"))
            .and_then(|n| Ok((n, keys.open_epoch(n, repo_id, &backend.read(Kind::Epoch, &name)?)?)));
        match opened {
            Ok((n, (key, _))) if learn => keys.learn_epoch(n, key),
            Ok((n, (key, _))) => keys.add_epoch(n, key),
            // Retired by a rotation between the listing and the read.
            Err(e) if backend::is_not_found(&e) => {}
            Err(e) => damaged.push((name, e)),
        }
    }
    if keys.current_epoch().is_none() {
        let why: Vec<String> = damaged.iter().map(|(_, e)| e.to_string()).collect();
        return Err(Error::corrupt("keyring", format!("no key epoch opens ({})", why.join("; "))));
    }
    Ok(damaged)
}

impl<S> Repository<S> {
    fn assemble(
        backend: Arc<dyn Backend>,
        keys: Keys,
        params: Params,
        repo_id: [u8; 16],
        lock: Option<lock::Lock>,
        key_slot: String,
    ) -> Repository<Opened> {
        let chunker = Chunker::new(keys.chunker_key(), &params);
        let lock = std::sync::Mutex::new(lock);
        Repository {
            backend,
            keys,
            params,
            repo_id,
            chunker,
            lock,
            damaged_epochs: Vec::new(),
            unlocked: None,
            key_slot,
            state: Opened,
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    pub fn params(&self) -> &Params {
        &self.params
    }
    /// Compresses what this handle writes at zstd `level` (0: not at all) instead of the
    /// configured level (`backup --compression`); the config itself is not changed.
    pub fn with_zstd_level(mut self, level: u8) -> Self {
        self.params.zstd_level = level;
        self
    }
    pub fn repo_id(&self) -> &[u8; 16] {
        &self.repo_id
    }
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }
    /// Where the repository is, for messages.
    pub fn location(&self) -> String {
        self.backend.location()
    }
    /// The id of the key slot the password opened.
    pub fn key_slot(&self) -> &str {
        &self.key_slot
    }
    /// Epoch objects that did not open when the repository was opened.
    pub fn damaged_epochs(&self) -> &[(String, Error)] {
        &self.damaged_epochs
    }

    /// Why this handle holds no lock although a shared one was asked for: the storage is
    /// read-only or full. Reading goes on; the caller should say so.
    pub fn unlocked(&self) -> Option<&str> {
        self.unlocked.as_deref()
    }

    /// Whether this handle holds a lock.
    pub fn is_locked(&self) -> bool {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The object name of the lock this handle holds now.
    pub fn lock_name(&self) -> Option<String> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(lock::Lock::name)
    }

    /// Deletes snapshot objects (forget). A snapshot already gone is not an error.
    pub fn delete_snapshots(&self, ids: &[Id]) -> Result<()> {
        for id in ids {
            self.backend.delete(Kind::Snapshot, &id.hex())?;
        }
        Ok(())
    }

    /// Releases the lock now, for a process about to exit without running destructors.
    pub fn unlock(&self) {
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// Writes a snapshot object: the commit point of a backup.
    pub fn save_snapshot(&self, snap: &snapshot::Snapshot) -> Result<Id> {
        let plain = snapshot::encode(snap);
        let id = self.keys.id(ObjType::Snapshot, &plain);
        let sealed = self.keys.seal(ObjType::Snapshot, &id, &plain, 0, &[])?;
        self.backend.write(Kind::Snapshot, &id.hex(), &sealed)?;
        Ok(id)
    }

    /// Deletes a snapshot object. Its trees and data stay: only prune removes those.
    pub fn delete_snapshot(&self, id: &Id) -> Result<()> {
        self.backend.delete(Kind::Snapshot, &id.hex())
    }

    pub fn load_snapshot(&self, id: &Id) -> Result<snapshot::Snapshot> {
        self.open_snapshot(id, &self.backend.read(Kind::Snapshot, &id.hex())?)
    }

    /// A snapshot object's bytes, verified against its id and decoded.
    pub fn open_snapshot(&self, id: &Id, sealed: &[u8]) -> Result<snapshot::Snapshot> {
        snapshot::decode(&self.keys.open_verified(ObjType::Snapshot, id, sealed, MAX_SNAPSHOT)?)
    }

    /// The ids of every snapshot object, and the names that are not ids.
    pub fn snapshot_ids(&self) -> Result<(Vec<Id>, Vec<String>)> {
        let mut ids = Vec::new();
        let mut bad = Vec::new();
        for (name, _) in self.backend.list(Kind::Snapshot)? {
            match Id::from_hex(&name) {
                Ok(id) if id.hex() == name => ids.push(id),
                _ => bad.push(name),
            }
        }
        Ok((ids, bad))
    }

    /// Every snapshot, oldest first; damaged ones are returned separately, never dropped silently.
    pub fn snapshots(&self) -> Result<SnapshotListing> {
        let (ids, names) = self.snapshot_ids()?;
        let mut bad: Vec<(String, Error)> = names
            .into_iter()
            .map(|n| (n.clone(), Error::corrupt(format!("snapshot {n}"), "not a snapshot id")))
            .collect();
        let mut good = Vec::new();
        for id in ids {
            match self.load_snapshot(&id) {
                Ok(s) => good.push((id, s)),
                // Forgotten between the listing and the read: gone, not damaged.
                Err(e) if backend::is_not_found(&e) => {}
                Err(e) => bad.push((id.hex(), e)),
            }
        }
        good.sort_by_key(|(id, s)| (s.time_ns, *id));
        Ok((good, bad))
    }
}

impl Repository<Ready> {
    pub fn index(&self) -> &Index {
        &self.state.index
    }

    /// Listings loaded ahead of a walk (see [`crate::trees::preload`]).
    pub fn preloaded(&self) -> &crate::trees::Preloaded {
        &self.state.preloaded
    }

    /// Tree blobs kept locally (see [`treecache`]).
    pub fn tree_cache(&self) -> &treecache::TreeCache {
        &self.state.trees
    }

    /// A blob's sealed bytes as its pack holds them, unopened.
    pub fn read_sealed(&self, id: &Id, loc: &BlobLoc) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; loc.length as usize];
        read_sealed_into(self.backend.as_ref(), id, loc, &mut buf)?;
        Ok(buf)
    }

    /// Reads a blob at a known location, authenticates it and re-checks its id.
    pub fn read_blob_at(&self, id: &Id, loc: &BlobLoc) -> Result<Vec<u8>> {
        // Through the per-thread buffers, so the only allocation is the one the caller keeps.
        self.with_blob_at(id, loc, <[u8]>::to_vec)
    }

    /// Reads a blob at a known location, authenticates it, re-checks its id and hands it to `f`
    /// (which must not read another blob) from this thread's buffers: a chunk costs no allocation.
    pub fn with_blob_at<R>(&self, id: &Id, loc: &BlobLoc, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        read_blob_with(self.backend.as_ref(), &self.keys, id, loc, f)
    }

    /// Brings the index up to date with packs written since it was loaded (a mount does, when
    /// new snapshots appear).
    pub fn catch_up(&self) -> Result<CatchUp> {
        // Packs sealed under an epoch made since this handle opened must open too.
        load_epochs(self.backend.as_ref(), &self.keys, &self.repo_id, true)?;
        let mut report = CatchUp::default();
        catchup::catch_up(&self.state.index, self.backend.as_ref(), &self.keys, true, &mut report)?;
        Ok(report)
    }

    /// A directory listing (see [`crate::trees`] for the cached and walking forms).
    pub fn load_tree(&self, id: &Id) -> Result<Vec<tree::Node>> {
        crate::trees::load(self, id)
    }
}
