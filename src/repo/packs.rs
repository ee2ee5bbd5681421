//! Packs as objects: listing them and reading their self-describing headers.

use crate::backend::{Backend, Kind};
use crate::crypto::{ENVELOPE_OVERHEAD, Keys, ObjType};
use crate::error::{Error, Result};
use crate::format::pack::{self, PackEntry, TRAILER_LEN};
use crate::id::Id;

/// Bound on a header envelope, checked before allocating: a forged trailer length must not make
/// us allocate gigabytes (the length is also bounded by the pack's own size). 256 MiB is over
/// 5 million entries, far beyond what a pack of the 4 GiB maximum holds at real chunk sizes.
pub const MAX_HEADER: u64 = 256 << 20;
/// The tail read first: the trailer and, for every pack a writer closes at 16,384 blobs or
/// fewer, most headers, so one request usually does.
const TAIL: u64 = 64 << 10;

/// A pack's header entries and how many bytes reading it took.
pub type Header = (Vec<PackEntry>, u64);

/// A pack object.
#[derive(Clone, Copy, Debug)]
pub struct PackFile {
    pub id: Id,
    pub size: u64,
}

/// Every pack, sorted by id, and the names under the pack kind that are not pack ids.
pub fn list_packs(backend: &dyn Backend) -> Result<(Vec<PackFile>, Vec<String>)> {
    let mut packs = Vec::new();
    let mut strays = Vec::new();
    for (name, size) in backend.list(Kind::Pack)? {
        match Id::from_hex(&name) {
            Ok(id) if id.hex() == name => packs.push(PackFile { id, size }),
            _ => strays.push(name),
        }
    }
    packs.sort_by_key(|p| p.id);
    strays.sort();
    Ok((packs, strays))
}

/// Reads and authenticates a pack's header; every entry is checked to lie inside the blob area.
/// Returns the entries and how many bytes were read.
pub fn read_header(backend: &dyn Backend, keys: &Keys, pack: &PackFile) -> Result<Header> {
    let what = || format!("pack {}", pack.id);
    let size = pack.size;
    if size < TRAILER_LEN as u64 {
        return Err(Error::corrupt(what(), "shorter than its trailer"));
    }
    let name = pack.id.hex();
    let tail_len = size.min(TAIL);
    let mut tail = vec![0u8; tail_len as usize];
    backend.read_at(Kind::Pack, &name, size - tail_len, &mut tail)?;
    let (start, hlen) = pack::decode_trailer(&tail[tail.len() - TRAILER_LEN..], size)
        .map_err(|e| Error::corrupt(what(), e.to_string()))?;
    if hlen as u64 > MAX_HEADER || (hlen as usize) < ENVELOPE_OVERHEAD {
        return Err(Error::corrupt(what(), format!("implausible header length {hlen}")));
    }
    let mut read = tail_len;
    let env = if start >= size - tail_len {
        let from = (start - (size - tail_len)) as usize;
        tail[from..from + hlen as usize].to_vec()
    } else {
        let mut env = vec![0u8; hlen as usize];
        backend.read_at(Kind::Pack, &name, start, &mut env)?;
        read += u64::from(hlen);
        env
    };
    let plain = keys
        .open(ObjType::PackHeader, &Id::ZERO, &env, MAX_HEADER as usize, &[])
        .map_err(|e| Error::corrupt(what(), e.to_string()))?;
    let entries = pack::decode_header(&plain, start).map_err(|e| Error::corrupt(what(), e.to_string()))?;
    Ok((entries, read))
}
