//! Reading one blob: its sealed bytes from a pack, opened (authenticated, decompressed within
//! the index's raw length, re-hashed) through a per-thread buffer.

use crate::backend::{Backend, Kind};
use crate::crypto::{Keys, MAX_PAYLOAD};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::BlobLoc;

/// Per-thread read buffer kept between blobs: room for the largest stored chunk.
const KEEP_READ_BUF: usize = 9 << 20;

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads one blob through this thread's buffer, authenticates it and re-checks its id.
/// For readers that have keys and a backend but no index (check, repair).
pub fn read_blob_with<R>(
    backend: &dyn Backend,
    keys: &Keys,
    id: &Id,
    loc: &BlobLoc,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    READ_BUF.with_borrow_mut(|buf| {
        buf.resize(loc.length as usize, 0);
        read_sealed_into(backend, id, loc, buf)?;
        open_in(keys, id, loc, buf, f)
    })
}

pub(super) fn read_sealed_into(backend: &dyn Backend, id: &Id, loc: &BlobLoc, buf: &mut [u8]) -> Result<()> {
    let mut name = [0u8; 64];
    backend.read_at(Kind::Pack, loc.pack.hex_into(&mut name), u64::from(loc.offset), buf).map_err(|e| match e {
        Error::Io { cause, .. } => {
            Error::io(format!("read {} {} from pack {}", loc.ty.name(), id.short(), loc.pack.short()), cause)
        }
        e => e,
    })
}

/// Opens a blob whose sealed bytes were read already (within a larger read of its pack),
/// through this thread's buffer as [`read_blob_with`] does.
pub fn open_blob_with<R>(keys: &Keys, id: &Id, loc: &BlobLoc, sealed: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    READ_BUF.with_borrow_mut(|buf| {
        buf.clear();
        buf.extend_from_slice(sealed);
        open_in(keys, id, loc, buf, f)
    })
}

fn open_in<R>(keys: &Keys, id: &Id, loc: &BlobLoc, buf: &mut Vec<u8>, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    let r = keys.open_in_place(loc.ty, id, buf, (loc.raw_len as usize).min(MAX_PAYLOAD), &[], f);
    if buf.capacity() > KEEP_READ_BUF {
        *buf = Vec::new();
    }
    r.map_err(|e| match e {
        Error::Corrupt { what, detail } => Error::corrupt(format!("{what} in pack {}", loc.pack), detail),
        e => e,
    })
}
