//! Packs as files: listing them, reading their self-describing headers, and rebuilding the
//! index from those headers (`repair index`).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::Repository;
use super::storage::{random_name, sync_dir};
use crate::crypto::{ENVELOPE_OVERHEAD, Keys, ObjType};
use crate::error::{Error, IoContext, Result};
use crate::format::pack::{self, PackEntry, TRAILER_LEN};
use crate::id::Id;
use crate::index::{Index, PackInfo};

/// Bound on a header envelope, checked before allocating: a forged trailer length must not make
/// us allocate gigabytes (the length is also bounded by the file's own size). 256 MiB is over
/// 5 million entries, far beyond what a pack of the 4 GiB maximum holds at real chunk sizes.
const MAX_HEADER: u64 = 256 << 20;

/// A pack's header entries and the pack file's size.
pub type Header = (Vec<PackEntry>, u64);

/// A file under `packs/`.
#[derive(Clone, Debug)]
pub struct PackFile {
    pub id: Id,
    pub size: u64,
    pub path: PathBuf,
}

/// Every pack file, sorted by id, and the paths of files under `packs/` that are not packs.
pub fn list_packs(root: &Path) -> Result<(Vec<PackFile>, Vec<PathBuf>)> {
    let dir = root.join("packs");
    let mut packs = Vec::new();
    let mut strays = Vec::new();
    for sub in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
        let sub = sub.ctx(|| format!("read {}", dir.display()))?.path();
        if !sub.is_dir() {
            strays.push(sub);
            continue;
        }
        let prefix = sub.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for e in fs::read_dir(&sub).ctx(|| format!("read {}", sub.display()))? {
            let e = e.ctx(|| format!("read {}", sub.display()))?;
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata().ctx(|| format!("stat {}", path.display()))?;
            match Id::from_hex(&name) {
                Ok(id) if meta.is_file() && name.starts_with(&prefix) && name == id.hex() => {
                    packs.push(PackFile { id, size: meta.len(), path })
                }
                _ => strays.push(path),
            }
        }
    }
    packs.sort_by_key(|p| p.id);
    strays.sort();
    Ok((packs, strays))
}

/// Reads and authenticates a pack's header; every entry is checked to lie inside the blob area.
pub fn read_header(keys: &Keys, path: &Path) -> Result<Header> {
    let f = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let size = f.metadata().ctx(|| format!("stat {}", path.display()))?.len();
    let what = || format!("pack {}", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    if size < TRAILER_LEN as u64 {
        return Err(Error::corrupt(what(), "shorter than its trailer"));
    }
    let mut trailer = [0u8; TRAILER_LEN];
    f.read_exact_at(&mut trailer, size - TRAILER_LEN as u64).ctx(|| format!("read {}", path.display()))?;
    let (start, hlen) = pack::decode_trailer(&trailer, size).map_err(|e| Error::corrupt(what(), e.to_string()))?;
    if hlen as u64 > MAX_HEADER || (hlen as usize) < ENVELOPE_OVERHEAD {
        return Err(Error::corrupt(what(), format!("implausible header length {hlen}")));
    }
    let mut env = vec![0u8; hlen as usize];
    f.read_exact_at(&mut env, start).ctx(|| format!("read {}", path.display()))?;
    let plain = keys
        .open(ObjType::PackHeader, &Id::ZERO, &env, MAX_HEADER as usize, &[])
        .map_err(|e| Error::corrupt(what(), e.to_string()))?;
    let entries = pack::decode_header(&plain, start).map_err(|e| Error::corrupt(what(), e.to_string()))?;
    Ok((entries, size))
}

/// What `repair index` did.
#[derive(Debug, Default)]
pub struct Rebuilt {
    pub packs: u64,
    pub blobs: u64,
    /// Packs whose header could not be read; their blobs are kept from the old index when it had them.
    pub bad_headers: Vec<(Id, Error)>,
    /// Blobs carried over from the old index for packs with unreadable headers.
    pub kept_from_old: u64,
    /// Why the old index could not be used at all, when it could not.
    pub old_index: Option<Error>,
}

/// Rebuilds `index.redb` from the pack headers: written to a new file under `tmp/`, then renamed
/// over the old one, so a crash leaves the old index or the new one, never half of each. The
/// caller holds an exclusive lock. Verification times survive from the old index when it opens.
pub fn rebuild_index(repo: &Repository) -> Result<Rebuilt> {
    let root = repo.root();
    let path = root.join("index.redb");
    let mut out = Rebuilt::default();
    let old = match Index::open_existing(&path) {
        Ok(i) => Some(i),
        Err(e) => {
            out.old_index = Some(e);
            None
        }
    };
    let old_packs: std::collections::HashMap<Id, PackInfo> =
        old.as_ref().and_then(|i| i.packs().ok()).unwrap_or_default().into_iter().collect();
    let old_blobs = old.as_ref().and_then(|i| i.blobs().ok()).unwrap_or_default();

    let (files, _) = list_packs(root)?;
    let headers: Vec<(PackFile, Result<Header>)> =
        files.into_par_iter().map(|p| (p.clone(), read_header(repo.keys(), &p.path))).collect();

    let mut rows: Vec<(Id, PackInfo, Vec<PackEntry>)> = Vec::with_capacity(headers.len());
    for (p, h) in headers {
        let last_verified = old_packs.get(&p.id).map_or(0, |i| i.last_verified);
        match h {
            Ok((entries, size)) => {
                let info = PackInfo { size, blobs: entries.len() as u32, last_verified };
                rows.push((p.id, info, entries));
            }
            Err(e) => {
                // Without a header the blob boundaries are unknown; the old index may still know
                // them. Keep only entries that read back authentic, so nothing unverified enters.
                let kept: Vec<PackEntry> = old_blobs
                    .iter()
                    .filter_map(|(id, loc)| loc.as_ref().ok().filter(|l| l.pack == p.id).map(|l| (id, l)))
                    .filter(|(id, l)| l.offset as u64 + l.length as u64 <= p.size && repo.read_blob_at(id, l).is_ok())
                    .map(|(id, l)| PackEntry {
                        ty: l.ty,
                        id: *id,
                        offset: l.offset,
                        length: l.length,
                        raw_len: l.raw_len,
                    })
                    .collect();
                out.kept_from_old += kept.len() as u64;
                if !kept.is_empty() {
                    // Verification time 0: this pack is damaged and must be looked at first.
                    rows.push((p.id, PackInfo { size: p.size, blobs: kept.len() as u32, last_verified: 0 }, kept));
                }
                out.bad_headers.push((p.id, e));
            }
        }
    }
    drop(old);

    let tmp = root.join("tmp").join(format!("index-{}.redb", random_name(8)?));
    let result = (|| {
        let index = Index::open(&tmp)?;
        let refs: Vec<(Id, PackInfo, &[PackEntry])> = rows.iter().map(|(id, i, e)| (*id, *i, e.as_slice())).collect();
        index.add_packs(&refs)?;
        drop(index);
        File::open(&tmp).and_then(|f| f.sync_all()).ctx(|| format!("fsync {}", tmp.display()))?;
        fs::rename(&tmp, &path).ctx(|| format!("rename into {}", path.display()))?;
        sync_dir(root)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    out.packs = rows.len() as u64;
    out.blobs = rows.iter().map(|(_, _, e)| e.len() as u64).sum();
    Ok(out)
}
