//! Pack header entries and trailer (format-spec §6).

use super::codec::{Dec, Enc};
use crate::crypto::ObjType;
use crate::error::{Error, Result};
use crate::id::Id;

pub const TRAILER_MAGIC: &[u8; 4] = b"SFPK";
pub const TRAILER_LEN: usize = 8;
const ENTRY_LEN: usize = 45;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub ty: ObjType,
    pub id: Id,
    pub offset: u32,
    pub length: u32,
    pub raw_len: u32,
}

pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u32(entries.len() as u32);
    for x in entries {
        e.u8(x.ty as u8).raw(&x.id.0).u32(x.offset).u32(x.length).u32(x.raw_len);
    }
    e.0
}

/// Decodes a header and checks every entry lies inside the blob area of a pack of that size.
pub fn decode_header(buf: &[u8], blob_area: u64) -> Result<Vec<PackEntry>> {
    let mut d = Dec::new(buf, "pack header");
    let n = d.u32()? as usize;
    let n = d.count(n, ENTRY_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let ty = ObjType::from_u8(d.u8()?).filter(|t| matches!(t, ObjType::Data | ObjType::Tree));
        let ty = ty.ok_or_else(|| d.err("bad blob type"))?;
        let entry = PackEntry { ty, id: Id(d.arr()?), offset: d.u32()?, length: d.u32()?, raw_len: d.u32()? };
        if entry.offset as u64 + entry.length as u64 > blob_area {
            return Err(d.err("entry beyond the blob area"));
        }
        out.push(entry);
    }
    d.finish()?;
    Ok(out)
}

pub fn encode_trailer(header_len: u32) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[..4].copy_from_slice(&header_len.to_le_bytes());
    t[4..].copy_from_slice(TRAILER_MAGIC);
    t
}

/// Returns the header envelope's offset and length from a pack's last bytes.
pub fn decode_trailer(trailer: &[u8], pack_len: u64) -> Result<(u64, u32)> {
    let bad = |d: &str| Error::corrupt("pack trailer", d.to_string());
    if trailer.len() != TRAILER_LEN || &trailer[4..] != TRAILER_MAGIC {
        return Err(bad("bad magic"));
    }
    let hlen = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    let start =
        pack_len.checked_sub(TRAILER_LEN as u64 + hlen as u64).ok_or_else(|| bad("header length beyond the file"))?;
    Ok((start, hlen))
}
