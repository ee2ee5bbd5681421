//! What `snapfs cat` and `snapfs list` show, for debugging a repository as restic's commands
//! of the same names do: its objects by kind, and single objects decrypted.

use crate::backend::Kind;
use crate::crypto::ObjType;
use crate::crypto::keyfile::KeySlot;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;

/// The object names of one kind, sorted; `Kind::Lock`, `Kind::Key`, ... as stored.
pub fn names<S>(repo: &Repository<S>, kind: Kind) -> Result<Vec<String>> {
    let mut names: Vec<String> = repo.backend().list(kind)?.into_iter().map(|(n, _)| n).collect();
    names.sort();
    Ok(names)
}

/// Every blob in the index with its type, sorted by id.
pub fn blobs(repo: &Repository) -> Result<Vec<(Id, ObjType)>> {
    let mut out = Vec::new();
    for (id, loc) in repo.index().blobs()? {
        out.push((id, loc?.ty));
    }
    out.sort_by_key(|(id, _)| id.0);
    Ok(out)
}

/// A blob's plaintext, found through the index; its type too.
pub fn blob(repo: &Repository, id: &Id) -> Result<(ObjType, Vec<u8>)> {
    let loc = repo.index().reader()?.get(id)?.ok_or_else(|| Error::MissingBlob(id.hex()))?;
    Ok((loc.ty, repo.read_blob_at(id, &loc)?))
}

/// The key slot whose id starts with `prefix`, parsed (its wrapped master key stays sealed).
pub fn key_slot<S>(repo: &Repository<S>, prefix: &str) -> Result<(String, KeySlot)> {
    let name = repo.find_key(prefix)?;
    let slot = KeySlot::parse(&repo.backend().read(Kind::Key, &name)?)?;
    Ok((name, slot))
}
