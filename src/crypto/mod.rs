//! Keys, keyed ids and the sealed envelope (format-spec §2, §7).
//! Nothing here does I/O; secrets live in zeroizing types and never reach an error message.

mod identity;
pub mod keyfile;

pub use identity::Identity;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::RwLock;

use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::id::Id;

pub const FORMAT_VERSION: u8 = 2;
pub const EPOCH_LEN: usize = 4;
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Epoch, nonce, tag and the compression byte.
pub const ENVELOPE_OVERHEAD: usize = EPOCH_LEN + NONCE_LEN + TAG_LEN + 1;
/// Upper bound on any decompressed payload (a chunk is at most 8 MiB; trees are bounded too).
pub const MAX_PAYLOAD: usize = 64 << 20;
/// Per-thread scratch kept between blobs: room for the largest chunk (8 MiB).
const SCRATCH_KEEP: usize = 9 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ObjType {
    Data = 1,
    Tree = 2,
    Snapshot = 3,
    PackHeader = 4,
    Config = 5,
    Epoch = 6,
    Condemned = 7,
}

impl ObjType {
    pub fn from_u8(v: u8) -> Option<ObjType> {
        Some(match v {
            1 => ObjType::Data,
            2 => ObjType::Tree,
            3 => ObjType::Snapshot,
            4 => ObjType::PackHeader,
            5 => ObjType::Config,
            6 => ObjType::Epoch,
            7 => ObjType::Condemned,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ObjType::Data => "data blob",
            ObjType::Tree => "tree blob",
            ObjType::Snapshot => "snapshot",
            ObjType::PackHeader => "pack header",
            ObjType::Config => "config",
            ObjType::Epoch => "key epoch",
            ObjType::Condemned => "condemned-pack list",
        }
    }
}

/// One epoch's data-encryption key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EpochKey(pub [u8; 32]);

/// The repository master key, the keys derived from it (content identity, config, keyring),
/// and the data-encryption keys of every epoch it holds (format-spec §2).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Keys {
    master: [u8; 32],
    config: [u8; 32],
    keyring: [u8; 32],
    data_id: [u8; 32],
    tree_id: [u8; 32],
    snapshot_id: [u8; 32],
    chunker: [u8; 32],
    /// Behind a lock so a long-running reader (a mount) can learn epochs created after it
    /// opened the repository; `EpochKey` zeroizes itself.
    #[zeroize(skip)]
    epochs: RwLock<Epochs>,
}

#[derive(Default)]
struct Epochs {
    keys: BTreeMap<u32, EpochKey>,
    /// The epoch this process seals under: the newest it knew when it opened the repository
    /// (or made itself). Epochs learnt later only open: a pack stays sealed under one epoch.
    sealing: Option<u32>,
}

/// Payload of an epoch object: the data key and its creation time.
const EPOCH_PAYLOAD: usize = 40;

impl Keys {
    /// The identity, config and keyring keys; no epoch yet (see [`Keys::add_epoch`]).
    pub fn from_master(master: [u8; 32]) -> Keys {
        let d = |ctx| blake3::derive_key(ctx, &master);
        Keys {
            config: d("snapfs 2026-12 v2 config"),
            keyring: d("snapfs 2026-12 v2 keyring"),
            data_id: d("snapfs 2026-11 v1 data blob id"),
            tree_id: d("snapfs 2026-11 v1 tree blob id"),
            snapshot_id: d("snapfs 2026-11 v1 snapshot id"),
            chunker: d("snapfs 2026-11 v1 chunker gear"),
            master,
            epochs: RwLock::new(Epochs::default()),
        }
    }

    /// A new master key with epoch 0.
    pub fn random() -> Result<Keys> {
        let mut m = Zeroizing::new([0u8; 32]);
        random_bytes(m.as_mut())?;
        let keys = Keys::from_master(*m);
        keys.add_epoch(0, EpochKey::random()?);
        Ok(keys)
    }

    pub fn master(&self) -> &[u8; 32] {
        &self.master
    }

    pub fn chunker_key(&self) -> &[u8; 32] {
        &self.chunker
    }

    fn read_epochs(&self) -> std::sync::RwLockReadGuard<'_, Epochs> {
        self.epochs.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an epoch and seals under the newest one from now on (opening, `key rotate`).
    pub fn add_epoch(&self, n: u32, key: EpochKey) {
        let mut e = self.epochs.write().unwrap_or_else(|e| e.into_inner());
        e.keys.insert(n, key);
        e.sealing = e.keys.keys().next_back().copied();
    }

    /// Adds an epoch for opening only: one another client created while this one runs.
    pub fn learn_epoch(&self, n: u32, key: EpochKey) {
        let mut e = self.epochs.write().unwrap_or_else(|e| e.into_inner());
        e.keys.entry(n).or_insert(key);
        if e.sealing.is_none() {
            e.sealing = Some(n);
        }
    }

    /// The epoch new objects are sealed under.
    pub fn current_epoch(&self) -> Option<u32> {
        self.read_epochs().sealing
    }

    /// Every epoch this handle holds a key of, ascending.
    pub fn epochs(&self) -> Vec<u32> {
        self.read_epochs().keys.keys().copied().collect()
    }

    /// The id of a blob or snapshot payload: keyed BLAKE3 with the key of its type.
    pub fn id(&self, ty: ObjType, plaintext: &[u8]) -> Id {
        let key = match ty {
            ObjType::Data => &self.data_id,
            ObjType::Tree => &self.tree_id,
            ObjType::Snapshot => &self.snapshot_id,
            ObjType::PackHeader | ObjType::Config | ObjType::Epoch | ObjType::Condemned => return Id::ZERO,
        };
        Id(*blake3::keyed_hash(key, plaintext).as_bytes())
    }

    /// The key and epoch number an object of this type is sealed with now.
    fn sealing_key(&self, ty: ObjType) -> Result<(u32, Zeroizing<[u8; 32]>)> {
        match ty {
            ObjType::Config => Ok((0, Zeroizing::new(self.config))),
            ObjType::Epoch => Err(Error::Invalid("epoch objects are sealed with seal_epoch".into())),
            _ => {
                let e = self.read_epochs();
                let n = e.sealing.ok_or_else(|| Error::Invalid("no key epoch".into()))?;
                Ok((n, Zeroizing::new(e.keys[&n].0)))
            }
        }
    }

    /// The key that opens an object of this type sealed under `epoch`.
    fn opening_key(&self, ty: ObjType, epoch: u32) -> Option<Zeroizing<[u8; 32]>> {
        match ty {
            ObjType::Config => (epoch == 0).then(|| Zeroizing::new(self.config)),
            ObjType::Epoch => Some(Zeroizing::new(self.keyring)),
            _ => self.read_epochs().keys.get(&epoch).map(|k| Zeroizing::new(k.0)),
        }
    }

    /// Compresses (when that helps) and encrypts a payload into an envelope.
    pub fn seal(&self, ty: ObjType, id: &Id, payload: &[u8], zstd_level: i32, extra_aad: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.seal_into(ty, id, payload, zstd_level, extra_aad, &mut out)?;
        Ok(out)
    }

    /// [`Keys::seal`] appending to `out`: the backup seals straight into its pack buffer, so a
    /// chunk costs no allocation (each one was a page-faulted mmap at backup sizes).
    pub fn seal_into(
        &self,
        ty: ObjType,
        id: &Id,
        payload: &[u8],
        zstd_level: i32,
        extra_aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let (epoch, key) = self.sealing_key(ty)?;
        seal_envelope(&key, epoch, ty, id, payload, zstd_level, extra_aad, out)
    }

    /// An envelope sealed under another epoch, authenticated and sealed again under the
    /// current one with a fresh nonce, its compressed body as it was: key rotation re-encrypts
    /// without recompressing. `None` when it is sealed under the current epoch already (then it
    /// is neither opened nor copied here).
    pub fn reseal(
        &self,
        ty: ObjType,
        id: &Id,
        envelope: &[u8],
        max_len: usize,
        extra_aad: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        if envelope_epoch(envelope) == Some(self.sealing_key(ty)?.0) {
            return Ok(None);
        }
        let mut buf = envelope.to_vec();
        Ok(self.reseal_in_place(ty, id, &mut buf, max_len, extra_aad)?.then_some(buf))
    }

    /// [`Keys::reseal`] in the envelope's own buffer (the length does not change); false when
    /// it is under the current epoch already. On an error the buffer holds garbage.
    ///
    /// The body is authenticated (type, epoch and id are in the AAD) and its declared size
    /// bounded by `max_len`, but not decompressed or re-hashed: it is carried over bit for bit,
    /// so it opens to exactly what it opened to before, and every reader still re-hashes it.
    /// Only a holder of the key could have sealed content that does not match its id; a
    /// re-seal neither hides nor worsens that. Decompressing and hashing were most of the cost.
    pub fn reseal_in_place(
        &self,
        ty: ObjType,
        id: &Id,
        envelope: &mut [u8],
        max_len: usize,
        extra_aad: &[u8],
    ) -> Result<bool> {
        let (epoch, _) = self.sealing_key(ty)?;
        if envelope_epoch(envelope) == Some(epoch) {
            return Ok(false);
        }
        let bad = |d: &str| damaged(ty, id, d);
        let body = self.decrypt_in_place(ty, id, envelope, extra_aad)?;
        let within = match body.split_first() {
            Some((0, p)) => p.len() <= max_len,
            Some((1, frame)) => frame_within(frame, max_len).map_err(|_| bad("bad zstd frame"))?,
            _ => return Err(bad("unknown compression")),
        };
        if !within {
            return Err(bad("payload exceeds its bound"));
        }
        self.seal_opened_in_place(ty, id, envelope, extra_aad)?;
        Ok(true)
    }

    /// Encrypts an envelope that was just opened in place (between its nonce and tag lies the
    /// plaintext body: compression byte and frame) under the sealing epoch, with a fresh nonce.
    pub(crate) fn seal_opened_in_place(
        &self,
        ty: ObjType,
        id: &Id,
        envelope: &mut [u8],
        extra_aad: &[u8],
    ) -> Result<()> {
        let (epoch, key) = self.sealing_key(ty)?;
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        envelope[..EPOCH_LEN].copy_from_slice(&epoch.to_le_bytes());
        envelope[EPOCH_LEN..EPOCH_LEN + NONCE_LEN].copy_from_slice(&nonce);
        let body_len = envelope.len() - EPOCH_LEN - NONCE_LEN - TAG_LEN;
        let (body, tag) = envelope[EPOCH_LEN + NONCE_LEN..].split_at_mut(body_len);
        let new_tag = XChaCha20Poly1305::new((&*key).into())
            .encrypt_inout_detached(&XNonce::from(nonce), &aad(ty, epoch, id, extra_aad), body.into())
            .map_err(|_| Error::Invalid("encryption failed".into()))?;
        tag.copy_from_slice(&new_tag);
        Ok(())
    }

    /// The object `epochs/<n>`: epoch `n`'s data key sealed with the keyring key.
    pub fn seal_epoch(&self, n: u32, repo_id: &[u8; 16], created_ns: i64) -> Result<Vec<u8>> {
        let key = self.read_epochs().keys.get(&n).map(|k| Zeroizing::new(k.0));
        let key = key.ok_or_else(|| Error::Invalid(format!("no key epoch {n}")))?;
        let mut payload = Zeroizing::new([0u8; EPOCH_PAYLOAD]);
        payload[..32].copy_from_slice(&*key);
        payload[32..].copy_from_slice(&created_ns.to_le_bytes());
        let mut out = Vec::new();
        seal_envelope(&self.keyring, n, ObjType::Epoch, &Id::ZERO, &payload[..], 0, repo_id, &mut out)?;
        Ok(out)
    }

    /// Opens an epoch object named `n`, returning its key and creation time.
    pub fn open_epoch(&self, n: u32, repo_id: &[u8; 16], envelope: &[u8]) -> Result<(EpochKey, i64)> {
        let what = || format!("key epoch {n:08x}");
        if envelope_epoch(envelope) != Some(n) {
            return Err(Error::corrupt(what(), "its epoch number differs from its name"));
        }
        let plain = self
            .open(ObjType::Epoch, &Id::ZERO, envelope, EPOCH_PAYLOAD, repo_id)
            .map_err(|_| Error::corrupt(what(), "authentication failed"))?;
        let plain = Zeroizing::new(plain);
        if plain.len() != EPOCH_PAYLOAD {
            return Err(Error::corrupt(what(), "wrong length"));
        }
        let key: [u8; 32] = plain[..32].try_into().expect("32 bytes");
        let created = i64::from_le_bytes(plain[32..].try_into().expect("8 bytes"));
        Ok((EpochKey(key), created))
    }

    /// Authenticates, decrypts and decompresses an envelope, and checks that the payload hashes
    /// to `id` (trivially true for the types without ids); `max_len` bounds the output.
    pub fn open(&self, ty: ObjType, id: &Id, envelope: &[u8], max_len: usize, extra_aad: &[u8]) -> Result<Vec<u8>> {
        self.open_in_place(ty, id, &mut envelope.to_vec(), max_len, extra_aad, <[u8]>::to_vec)
    }

    /// Opens an envelope and checks that its payload hashes to the id it is stored under.
    pub fn open_verified(&self, ty: ObjType, id: &Id, envelope: &[u8], max_len: usize) -> Result<Vec<u8>> {
        self.open(ty, id, envelope, max_len, &[])
    }

    /// [`Keys::open`] without allocating: decrypts in place, decompresses into this
    /// thread's scratch buffer, checks the id, and hands the payload to `f`, which must not
    /// open another blob (the scratch buffer is in use). For the bulk readers: restore and
    /// `check --read-data`.
    pub fn open_in_place<R>(
        &self,
        ty: ObjType,
        id: &Id,
        envelope: &mut [u8],
        max_len: usize,
        extra_aad: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let bad = |d: &str| damaged(ty, id, d);
        let body = self.decrypt_in_place(ty, id, envelope, extra_aad)?;
        let checked =
            |p: &[u8]| if self.id(ty, p) == *id { Ok(f(p)) } else { Err(bad("content does not match its id")) };
        match body.split_first() {
            Some((0, p)) if p.len() <= max_len => checked(p),
            Some((0, _)) => Err(bad("payload exceeds its bound")),
            Some((1, frame)) => {
                decompress_with(frame, max_len, checked).map_err(|_| bad("bad zstd frame, or larger than its bound"))?
            }
            _ => Err(bad("unknown compression")),
        }
    }

    /// Authenticates and decrypts an envelope in place; returns its plaintext body
    /// (compression byte, then the payload or its zstd frame).
    fn decrypt_in_place<'e>(&self, ty: ObjType, id: &Id, envelope: &'e mut [u8], extra_aad: &[u8]) -> Result<&'e [u8]> {
        let bad = |d: &str| damaged(ty, id, d);
        if envelope.len() < EPOCH_LEN + NONCE_LEN + TAG_LEN {
            return Err(bad("authentication failed"));
        }
        let epoch = envelope_epoch(envelope).expect("length checked");
        let key = self
            .opening_key(ty, epoch)
            .ok_or_else(|| bad(&format!("sealed under key epoch {epoch}, which this repository does not hold")))?;
        let (nonce, rest) = envelope[EPOCH_LEN..].split_at_mut(NONCE_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = XNonce::try_from(&*nonce).map_err(|_| bad("authentication failed"))?;
        let tag = Tag::try_from(&*tag).map_err(|_| bad("authentication failed"))?;
        XChaCha20Poly1305::new((&*key).into())
            .decrypt_inout_detached(&nonce, &aad(ty, epoch, id, extra_aad), (&mut *body).into(), &tag)
            .map_err(|_| bad("authentication failed"))?;
        Ok(body)
    }
}

/// Whether a zstd frame decompresses to at most `max_len` bytes, from its header when that
/// declares the size (snapfs's writers always do; the decoder refuses a frame whose content
/// differs from it), else by decompressing it.
fn frame_within(frame: &[u8], max_len: usize) -> std::io::Result<bool> {
    use zstd::zstd_safe::{find_frame_compressed_size, get_frame_content_size};
    let whole = find_frame_compressed_size(frame).is_ok_and(|n| n == frame.len());
    match get_frame_content_size(frame) {
        Ok(Some(n)) if whole => Ok(n <= max_len as u64),
        _ => decompress_with(frame, max_len, |_| true),
    }
}

fn damaged(ty: ObjType, id: &Id, detail: &str) -> Error {
    Error::corrupt(format!("{} {}", ty.name(), id.short()), detail.to_string())
}

/// The epoch an envelope names, when it is long enough to name one.
pub fn envelope_epoch(envelope: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(envelope.get(..EPOCH_LEN)?.try_into().ok()?))
}

impl EpochKey {
    pub fn random() -> Result<EpochKey> {
        let mut k = EpochKey([0; 32]);
        random_bytes(&mut k.0)?;
        Ok(k)
    }
}

#[allow(clippy::too_many_arguments)]
fn seal_envelope(
    key: &[u8; 32],
    epoch: u32,
    ty: ObjType,
    id: &Id,
    payload: &[u8],
    zstd_level: i32,
    extra_aad: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let start = out.len();
    out.reserve_exact(ENVELOPE_OVERHEAD + payload.len());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&nonce);
    // Stored compressed only when that saves at least 1/64: below that, reading it back
    // would cost decompression for nothing.
    let compressed = zstd_level > 0
        && payload.len() > 64
        && compress_with(payload, zstd_level, payload.len() - payload.len() / 64 - 1, |z| {
            out.push(1);
            out.extend_from_slice(z);
        });
    if !compressed {
        out.push(0);
        out.extend_from_slice(payload);
    }
    let tag = XChaCha20Poly1305::new(key.into()).encrypt_inout_detached(
        &XNonce::from(nonce),
        &aad(ty, epoch, id, extra_aad),
        (&mut out[start + EPOCH_LEN + NONCE_LEN..]).into(),
    );
    match tag {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(_) => {
            out.truncate(start);
            Err(Error::Invalid("encryption failed".into()))
        }
    }
}

thread_local! {
    // A zstd context costs far more to set up than to compress one small file with: keep one
    // per thread (rayon's workers live as long as the process).
    // The scratch buffer beside it receives each frame, so compressing allocates nothing.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>, Vec<u8>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Compresses `data` into this thread's scratch buffer and hands the frame to `f`; false (and
/// `f` not called) when the frame would not fit in `limit` bytes, which zstd finds out early.
fn compress_with(data: &[u8], level: i32, limit: usize, f: impl FnOnce(&[u8])) -> bool {
    COMPRESSOR.with_borrow_mut(|c| {
        if c.as_ref().is_none_or(|(l, _, _)| *l != level) {
            match zstd::bulk::Compressor::new(level) {
                Ok(z) => *c = Some((level, z, Vec::new())),
                Err(_) => return false,
            }
        }
        let (_, z, scratch) = c.as_mut().expect("set above");
        if scratch.len() < limit {
            scratch.resize(limit, 0);
        }
        let done = match z.compress_to_buffer(data, &mut scratch[..limit]) {
            Ok(n) => {
                f(&scratch[..n]);
                true
            }
            Err(_) => false,
        };
        // One huge tree must not pin its buffer for the rest of the process.
        if scratch.len() > SCRATCH_KEEP {
            *scratch = Vec::new();
        }
        done
    })
}

/// Decompresses into this thread's scratch buffer (at most `max_len` bytes) and hands the
/// payload to `f`.
fn decompress_with<R>(frame: &[u8], max_len: usize, f: impl FnOnce(&[u8]) -> R) -> std::io::Result<R> {
    DECOMPRESSOR.with_borrow_mut(|d| {
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        let d = d.as_mut().expect("set above");
        DECOMPRESSED.with_borrow_mut(|scratch| {
            if scratch.len() < max_len {
                scratch.resize(max_len, 0);
            }
            let n = d.decompress_to_buffer(frame, &mut scratch[..max_len]);
            let r = n.map(|n| f(&scratch[..n]));
            if scratch.len() > SCRATCH_KEEP {
                *scratch = Vec::new();
            }
            r
        })
    })
}

/// The associated data (format-spec §7): 44 bytes, then `extra`.
pub fn aad(ty: ObjType, epoch: u32, id: &Id, extra: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(44 + extra.len());
    a.extend_from_slice(b"snapfs");
    a.push(FORMAT_VERSION);
    a.push(ty as u8);
    a.extend_from_slice(&epoch.to_le_bytes());
    a.extend_from_slice(&id.0);
    a.extend_from_slice(extra);
    a
}

pub(crate) fn seal_raw(cipher: &XChaCha20Poly1305, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let ct = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| Error::Invalid("encryption failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

pub(crate) fn open_raw(cipher: &XChaCha20Poly1305, aad: &[u8], envelope: &[u8]) -> Option<Vec<u8>> {
    if envelope.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ct) = envelope.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    cipher.decrypt(&XNonce::from(nonce), Payload { msg: ct, aad }).ok()
}

pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Invalid(format!("no randomness from the OS: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_into_appends_an_envelope_that_opens() {
        let keys = Keys::from_master([7; 32]);
        keys.add_epoch(0, EpochKey([9; 32]));
        let text = b"the same line again and again\n".repeat(4000);
        let mut noise = vec![0u8; 100_000];
        random_bytes(&mut noise).unwrap();
        let mut out = b"earlier blob".to_vec();
        for (payload, compressed) in [(&text[..], true), (&noise[..], false)] {
            let id = keys.id(ObjType::Data, payload);
            let start = out.len();
            keys.seal_into(ObjType::Data, &id, payload, 3, &[], &mut out).unwrap();
            let env = &out[start..];
            assert_eq!(env.len() < payload.len(), compressed);
            assert_eq!(keys.open_verified(ObjType::Data, &id, env, payload.len()).unwrap(), payload);
            assert!(keys.open_verified(ObjType::Tree, &id, env, payload.len()).is_err());
            assert_eq!(
                keys.open_in_place(ObjType::Data, &id, &mut env.to_vec(), payload.len(), &[], |p| p.to_vec()).unwrap(),
                payload
            );
            let mut flipped = env.to_vec();
            flipped[30] ^= 1;
            assert!(keys.open_in_place(ObjType::Data, &id, &mut flipped, payload.len(), &[], |_| ()).is_err());
            assert!(keys.open_in_place(ObjType::Data, &id, &mut env.to_vec(), payload.len() - 1, &[], |_| ()).is_err());
        }
        assert!(out.starts_with(b"earlier blob"));
    }

    #[test]
    fn reseal_moves_an_envelope_to_the_sealing_epoch_without_changing_its_body() {
        let keys = Keys::from_master([7; 32]);
        keys.add_epoch(0, EpochKey([9; 32]));
        let text = b"compressible compressible compressible ".repeat(100);
        let id = keys.id(ObjType::Data, &text);
        let old = keys.seal(ObjType::Data, &id, &text, 3, &[]).unwrap();
        assert!(keys.reseal(ObjType::Data, &id, &old, text.len(), &[]).unwrap().is_none(), "already current");
        keys.add_epoch(1, EpochKey([10; 32]));
        let new = keys.reseal(ObjType::Data, &id, &old, text.len(), &[]).unwrap().expect("re-sealed");
        assert_eq!((envelope_epoch(&new), new.len()), (Some(1), old.len()), "same body, new epoch");
        assert_eq!(keys.open_verified(ObjType::Data, &id, &new, text.len()).unwrap(), text);
        // The old key does not open it, whatever epoch number it is filed under.
        let only_old = Keys::from_master([7; 32]);
        only_old.add_epoch(1, EpochKey([9; 32]));
        assert!(only_old.open_verified(ObjType::Data, &id, &new, text.len()).is_err());
        let mut bad = old.clone();
        bad[40] ^= 1;
        assert!(keys.reseal(ObjType::Data, &id, &bad, text.len(), &[]).is_err(), "damage is not carried over");
        // The size bound holds without decompressing, compressed (from the frame's header) or not.
        let mut noise = vec![0u8; 5000];
        random_bytes(&mut noise).unwrap();
        keys.add_epoch(2, EpochKey([11; 32]));
        for payload in [&text[..], &noise[..]] {
            let env = keys.seal(ObjType::Tree, &id, payload, 3, &[]).unwrap();
            keys.add_epoch(keys.current_epoch().unwrap() + 1, EpochKey::random().unwrap());
            let err = keys.reseal(ObjType::Tree, &id, &env, payload.len() - 1, &[]).unwrap_err();
            assert!(err.to_string().contains("exceeds its bound"), "{err}");
            assert!(keys.reseal(ObjType::Tree, &id, &env, payload.len(), &[]).unwrap().is_some());
        }
    }
}
