//! `export` and `import`: snapshots, their trees and only the blobs they need, in one file that
//! any repository can take in whatever its password (format-spec §16).
//!
//! A bundle has its own random key. Blobs are re-sealed under a data key derived from it (keeping
//! their ids and stored bytes), the key is wrapped by a key slot under the bundle password, and
//! a manifest sealed with it carries the snapshots and the two blob id keys that let an importer
//! re-hash every blob. A bundle is a file of the user's, not a repository object: it is read and
//! written here with `std::fs`, and bounded and authenticated like repository bytes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use super::copy::{CopyOutcome, RepoSource, copy_snapshots};
use super::{BlobSink, BlobSource, Moved, bounded, transfer_into};
use crate::crypto::keyfile::{self, KdfParams, KeySlot};
use crate::crypto::{EpochKey, Keys, ObjType, random_bytes};
use crate::error::{Error, IoContext, Result};
use crate::format::bundle::{self as fmt, Header};
use crate::format::snapshot::{self, Snapshot};
use crate::id::Id;
use crate::repo::Repository;

/// Derives the bundle's data key from its key, so one random key is all the slot wraps.
const DATA_KEY_CONTEXT: &str = "snapfs 2026-12 bundle v1 data";

/// The key set of a bundle: its own key's config key (the manifest), data key in epoch 0 (the
/// blobs), and the exporting repository's data and tree id keys.
fn bundle_keys(bundle_key: &[u8; 32], id_keys: &[u8; 64]) -> Keys {
    let mut keys = Keys::from_master(*bundle_key);
    keys.add_epoch(0, EpochKey(blake3::derive_key(DATA_KEY_CONTEXT, bundle_key)));
    keys.set_blob_ids(id_keys[..32].try_into().expect("32"), id_keys[32..].try_into().expect("32"));
    keys
}

/// What an export wrote.
#[derive(Debug, Default)]
pub struct Exported {
    pub snapshots: Vec<Id>,
    pub blobs: u64,
    pub bytes: u64,
    pub moved: Moved,
}

/// Writes blob records after the space the header will take.
struct Writer {
    keys: Keys,
    out: Mutex<BufWriter<File>>,
    seen: Mutex<crate::id::BlobIdSet>,
    blobs: AtomicU64,
    bytes: AtomicU64,
}

impl BlobSink for Writer {
    fn keys(&self) -> &Keys {
        &self.keys
    }
    fn has(&self, id: &Id) -> bool {
        self.seen.lock().expect("poisoned").contains(id)
    }
    fn add_sealed(&self, ty: ObjType, id: &Id, raw_len: u32, envelope: &[u8]) -> Result<bool> {
        if !self.seen.lock().expect("poisoned").insert(*id) {
            return Ok(false);
        }
        let len =
            u32::try_from(envelope.len()).map_err(|_| Error::Invalid(format!("blob {} too large", id.short())))?;
        let mut out = self.out.lock().expect("poisoned");
        out.write_all(&fmt::encode_record_header(ty as u8, id, raw_len, len))
            .and_then(|_| out.write_all(envelope))
            .ctx(|| "write bundle".into())?;
        self.blobs.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add((fmt::RECORD_HEADER_LEN + envelope.len()) as u64, Ordering::Relaxed);
        Ok(true)
    }
    fn add(&self, _: ObjType, _: &[u8]) -> Result<Id> {
        // The bundle carries the source's id keys, so nothing it takes needs a new id.
        Err(Error::Invalid("a bundle stores blobs under their ids only".into()))
    }
}

/// Writes `chosen` (snapshots of `src`) with everything they reach into a new file `path`
/// (staged beside it and renamed, so a failed export leaves no half bundle under that name).
pub fn export(
    src: &Repository,
    chosen: &[(Id, Snapshot)],
    path: &Path,
    password: &[u8],
    kdf: KdfParams,
) -> Result<Exported> {
    if password.is_empty() {
        return Err(Error::Invalid("an empty bundle password is not allowed".into()));
    }
    let mut bundle_key = Zeroizing::new([0u8; 32]);
    random_bytes(bundle_key.as_mut())?;
    let keys = bundle_keys(&bundle_key, &src.keys().blob_id_keys());
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let slot =
        keyfile::wrap(&keys, password, kdf, now, &crate::sys::hostname(), &crate::sys::user_name(crate::sys::uid()))?;
    let snaps: Vec<(Id, Vec<u8>)> = chosen.iter().map(|(id, s)| (*id, snapshot::encode(s))).collect();
    let manifest = Zeroizing::new(fmt::encode_manifest(&src.keys().blob_id_keys(), &snaps));
    let sealed_len = manifest.len() + crate::crypto::ENVELOPE_OVERHEAD;
    let mut header = Header {
        repo_id: *src.repo_id(),
        snapshots: chosen.iter().map(|(id, _)| *id).collect(),
        blobs: 0,
        blob_bytes: 0,
    };
    let prefix_len = header.encode(&slot, sealed_len as u32).len() + sealed_len;

    let staged = staging_name(path);
    let file =
        File::options().write(true).create_new(true).open(&staged).ctx(|| format!("create {}", staged.display()))?;
    let result = (|| {
        let mut out = BufWriter::new(file);
        out.write_all(&vec![0u8; prefix_len]).ctx(|| format!("write {}", staged.display()))?;
        let w = Writer {
            keys,
            out: Mutex::new(out),
            seen: Mutex::default(),
            blobs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        let roots: Vec<Id> = chosen.iter().map(|(_, s)| s.tree).collect();
        let (_, moved) = transfer_into(&w, &RepoSource(src), &roots)?;
        header.blobs = w.blobs.load(Ordering::Relaxed);
        header.blob_bytes = w.bytes.load(Ordering::Relaxed);
        let head = header.encode(&slot, sealed_len as u32);
        let mut sealed = Vec::with_capacity(sealed_len);
        w.keys.seal_into(ObjType::Config, &Id::ZERO, &manifest, 0, &head, &mut sealed)?;
        let mut file = w
            .out
            .into_inner()
            .expect("poisoned")
            .into_inner()
            .map_err(|e| Error::io("write bundle", e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&head))
            .and_then(|_| file.write_all(&sealed))
            .and_then(|_| file.sync_all())
            .ctx(|| format!("write {}", staged.display()))?;
        Ok(Exported { snapshots: header.snapshots.clone(), blobs: header.blobs, bytes: header.blob_bytes, moved })
    })();
    match result {
        Ok(done) => {
            std::fs::rename(&staged, path).ctx(|| format!("rename {} to {}", staged.display(), path.display()))?;
            Ok(done)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            Err(e)
        }
    }
}

fn staging_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// An opened, fully scanned bundle: every record located and bounded, none yet verified.
pub struct Bundle {
    name: String,
    file: File,
    keys: Keys,
    header: Header,
    snapshots: Vec<(Id, Snapshot)>,
    records: HashMap<Id, (ObjType, u64, u32, u32)>,
}

impl Bundle {
    /// Reads the header and manifest (authenticated with the key `password` unwraps) and the
    /// layout of every record, so a truncated or padded file fails here, before any write.
    pub fn open(path: &Path, password: &[u8]) -> Result<Bundle> {
        let name = path.display().to_string();
        let mut file = File::open(path).ctx(|| format!("open bundle {name}"))?;
        let size = file.metadata().ctx(|| format!("stat bundle {name}"))?.len();
        let short = |what: &str| Error::corrupt(format!("bundle {name}"), format!("truncated: it ends inside {what}"));
        let mut read = |n: usize, what: &str| -> Result<Vec<u8>> {
            let mut b = vec![0u8; n];
            file.read_exact(&mut b).map_err(|_| short(what))?;
            Ok(b)
        };
        let mut head = read(fmt::FIXED_LEN, "the header")?;
        let (mut header, count) = Header::decode_fixed(&head)?;
        let ids = read(32 * count as usize + 4, "the header")?;
        header.decode_ids(&ids[..32 * count as usize], count)?;
        let slot_len = fmt::decode_len(&ids[32 * count as usize..], "key slot", fmt::MAX_KEY_SLOT)?;
        let slot = read(slot_len as usize + 4, "the key slot")?;
        let manifest_len = fmt::decode_len(&slot[slot_len as usize..], "manifest", fmt::MAX_MANIFEST)?;
        head.extend_from_slice(&ids);
        head.extend_from_slice(&slot);
        let sealed = read(manifest_len as usize, "the manifest")?;
        let unwrapped = KeySlot::parse(&slot[..slot_len as usize])?
            .unwrap(password)?
            .ok_or_else(|| Error::WrongBundlePassword(name.clone()))?;
        let opened = unwrapped
            .open(ObjType::Config, &Id::ZERO, &sealed, fmt::MAX_MANIFEST as usize, &head)
            .map_err(|_| Error::corrupt(format!("bundle {name}"), "header or manifest fails authentication"))?;
        let fmt::Manifest { id_keys, snapshots: snaps } = fmt::decode_manifest(&Zeroizing::new(opened))?;
        let keys = bundle_keys(unwrapped.master(), &id_keys);
        if snaps.iter().map(|(id, _)| *id).ne(header.snapshots.iter().copied()) {
            return Err(Error::corrupt(format!("bundle {name}"), "manifest and header name different snapshots"));
        }
        let snapshots = snaps.into_iter().map(|(id, p)| Ok((id, snapshot::decode(&p)?))).collect::<Result<_>>()?;
        let mut records = HashMap::new();
        let mut pos = file.stream_position().ctx(|| format!("read bundle {name}"))?;
        let mut total = 0u64;
        for i in 0..header.blobs {
            let mut rh = [0u8; fmt::RECORD_HEADER_LEN];
            file.read_exact_at(&mut rh, pos)
                .map_err(|_| short(&format!("blob record {} of {}", i + 1, header.blobs)))?;
            let (ty, id, raw_len, len) = fmt::decode_record_header(&rh);
            let ty = match ObjType::from_u8(ty) {
                Some(t @ (ObjType::Data | ObjType::Tree)) => t,
                _ => {
                    return Err(Error::corrupt(
                        format!("bundle {name}"),
                        format!("blob record {} has type {ty}", i + 1),
                    ));
                }
            };
            bounded(ty, &id, len, raw_len)?;
            let start = pos + fmt::RECORD_HEADER_LEN as u64;
            pos = start + u64::from(len);
            if pos > size {
                return Err(short(&format!("blob record {} of {}", i + 1, header.blobs)));
            }
            total += fmt::RECORD_HEADER_LEN as u64 + u64::from(len);
            if records.insert(id, (ty, start, len, raw_len)).is_some() {
                return Err(Error::corrupt(format!("bundle {name}"), format!("blob {} appears twice", id.short())));
            }
        }
        if pos != size || total != header.blob_bytes {
            return Err(Error::corrupt(format!("bundle {name}"), "bytes after its last blob record"));
        }
        Ok(Bundle { name, file, keys, header, snapshots, records })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn snapshots(&self) -> &[(Id, Snapshot)] {
        &self.snapshots
    }
}

impl BlobSource for Bundle {
    fn keys(&self) -> &Keys {
        &self.keys
    }

    fn envelope(&self, ty: ObjType, id: &Id) -> Result<(Vec<u8>, u32)> {
        let what = || format!("{} {} of the bundle", ty.name(), id.hex());
        let &(rty, start, len, raw_len) = self.records.get(id).ok_or_else(|| Error::MissingBlob(what()))?;
        if rty != ty {
            return Err(Error::corrupt(what(), format!("the bundle holds it as a {}", rty.name())));
        }
        let mut env = vec![0u8; len as usize];
        self.file.read_exact_at(&mut env, start).ctx(|| format!("read {}", what()))?;
        Ok((env, raw_len))
    }

    fn name(&self) -> String {
        format!("bundle {}", self.name)
    }
}

/// Adds a bundle's snapshots to `dst`: every blob verified on the way in, those `dst` has
/// skipped, the snapshots written last (so a bundle that fails leaves no snapshot), and
/// snapshots already imported skipped (a second import adds nothing).
pub fn import(dst: &Repository, bundle: &Bundle) -> Result<CopyOutcome> {
    copy_snapshots(dst, bundle, &bundle.snapshots, &bundle.snapshots)
}
