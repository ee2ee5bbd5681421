//! The export bundle's header, manifest and record layouts (format-spec §16). Pure codecs.

use super::codec::{Dec, Enc};
use crate::error::{Error, Result};
use crate::id::Id;

pub const MAGIC: &[u8; 8] = b"SNAPBNDL";
pub const VERSION: u8 = 1;
/// Magic, version, repository id, snapshot count, blob count, blob bytes.
pub const FIXED_LEN: usize = 45;
/// Type, id, raw length, envelope length.
pub const RECORD_HEADER_LEN: usize = 41;
/// Readers' bounds, checked before anything of that size is allocated.
pub const MAX_SNAPSHOTS: u32 = 65_536;
pub const MAX_KEY_SLOT: u32 = 4096;
pub const MAX_MANIFEST: u32 = 64 << 20;

/// What a bundle says it holds: its first [`FIXED_LEN`] bytes, then the snapshot ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub repo_id: [u8; 16],
    pub snapshots: Vec<Id>,
    pub blobs: u64,
    pub blob_bytes: u64,
}

fn corrupt(detail: impl Into<String>) -> Error {
    Error::corrupt("bundle header", detail)
}

impl Header {
    /// Everything before the manifest envelope: the fixed part, the ids, the key slot and the
    /// manifest's length. All of it is the manifest's associated data.
    pub fn encode(&self, key_slot: &[u8], manifest_len: u32) -> Vec<u8> {
        let mut e = Enc::default();
        e.raw(MAGIC).u8(VERSION).raw(&self.repo_id).u32(self.snapshots.len() as u32);
        e.u64(self.blobs).u64(self.blob_bytes);
        for id in &self.snapshots {
            e.raw(&id.0);
        }
        e.u32(key_slot.len() as u32).raw(key_slot).u32(manifest_len);
        e.0
    }

    /// The fixed part: the header without its ids, and how many ids follow.
    pub fn decode_fixed(buf: &[u8]) -> Result<(Header, u32)> {
        let mut d = Dec::new(buf, "bundle header");
        if d.take(8)? != MAGIC {
            return Err(corrupt("not a snapfs bundle (bad magic)"));
        }
        let version = d.u8()?;
        if version != VERSION {
            return Err(Error::Invalid(format!(
                "bundle format version {version}; this snapfs reads bundle version {VERSION} only"
            )));
        }
        let repo_id = d.arr()?;
        let count = d.u32()?;
        if count == 0 || count > MAX_SNAPSHOTS {
            return Err(corrupt(format!("{count} snapshots (1 to {MAX_SNAPSHOTS} allowed)")));
        }
        let (blobs, blob_bytes) = (d.u64()?, d.u64()?);
        d.finish()?;
        Ok((Header { repo_id, snapshots: Vec::new(), blobs, blob_bytes }, count))
    }

    /// The `count` ids that follow the fixed part.
    pub fn decode_ids(&mut self, buf: &[u8], count: u32) -> Result<()> {
        let mut d = Dec::new(buf, "bundle header");
        self.snapshots = (0..count).map(|_| d.arr().map(Id)).collect::<Result<_>>()?;
        d.finish()
    }
}

/// A `u32` length field of the header, bounded.
pub fn decode_len(buf: &[u8], what: &str, max: u32) -> Result<u32> {
    let n = u32::from_le_bytes(buf.try_into().map_err(|_| corrupt(format!("{what} length cut short")))?);
    if n == 0 || n > max {
        return Err(corrupt(format!("{what} of {n} bytes (1 to {max} allowed)")));
    }
    Ok(n)
}

/// The manifest's plaintext: the exporting repository's data and tree id keys (so blobs can be
/// re-hashed), and each snapshot's id and plaintext (format-spec §8).
pub fn encode_manifest(id_keys: &[u8; 64], snapshots: &[(Id, Vec<u8>)]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u8(VERSION).raw(id_keys).u32(snapshots.len() as u32);
    for (id, plain) in snapshots {
        e.raw(&id.0).bytes32(plain);
    }
    e.0
}

/// A manifest's contents.
pub struct Manifest {
    /// The exporting repository's data and tree id keys.
    pub id_keys: zeroize::Zeroizing<[u8; 64]>,
    /// Each snapshot's id and plaintext.
    pub snapshots: Vec<(Id, Vec<u8>)>,
}

pub fn decode_manifest(buf: &[u8]) -> Result<Manifest> {
    let mut d = Dec::new(buf, "bundle manifest");
    if d.u8()? != VERSION {
        return Err(d.err("unknown manifest version"));
    }
    let id_keys = zeroize::Zeroizing::new(d.arr()?);
    let count = d.u32()?;
    if count > MAX_SNAPSHOTS {
        return Err(d.err("too many snapshots"));
    }
    let snaps = (0..count).map(|_| Ok((Id(d.arr()?), d.bytes32()?.to_vec()))).collect::<Result<_>>()?;
    d.finish()?;
    Ok(Manifest { id_keys, snapshots: snaps })
}

/// A blob record's first bytes; its envelope follows.
pub fn encode_record_header(ty: u8, id: &Id, raw_len: u32, length: u32) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0] = ty;
    h[1..33].copy_from_slice(&id.0);
    h[33..37].copy_from_slice(&raw_len.to_le_bytes());
    h[37..41].copy_from_slice(&length.to_le_bytes());
    h
}

/// Type, id, raw length, envelope length.
pub fn decode_record_header(h: &[u8; RECORD_HEADER_LEN]) -> (u8, Id, u32, u32) {
    let u = |r: std::ops::Range<usize>| u32::from_le_bytes(h[r].try_into().expect("4 bytes"));
    (h[0], Id(h[1..33].try_into().expect("32 bytes")), u(33..37), u(37..41))
}
