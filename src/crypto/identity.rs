//! Content identity (format-spec §2): the four keys that give blobs and snapshots their ids
//! and cut chunks, how a repository takes another's, and moving a blob between key sets that
//! share them.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{Keys, ObjType};
use crate::error::Result;
use crate::id::Id;

/// The four keys that define content identity (format-spec §2): blob and snapshot ids and
/// chunk boundaries. Two repositories holding the same ones store the same blobs under the
/// same ids, which is what lets `copy` move blobs without rewriting trees.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Identity {
    pub data_id: [u8; 32],
    pub tree_id: [u8; 32],
    pub snapshot_id: [u8; 32],
    pub chunker: [u8; 32],
}

impl Identity {
    /// Encoded length: the four keys in the order above.
    pub const LEN: usize = 128;

    pub fn encode(&self) -> Zeroizing<[u8; Identity::LEN]> {
        let mut out = Zeroizing::new([0u8; Identity::LEN]);
        for (i, k) in [&self.data_id, &self.tree_id, &self.snapshot_id, &self.chunker].into_iter().enumerate() {
            out[32 * i..32 * (i + 1)].copy_from_slice(k);
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Option<Identity> {
        if buf.len() != Identity::LEN {
            return None;
        }
        let k = |i: usize| buf[32 * i..32 * (i + 1)].try_into().expect("32 bytes");
        Some(Identity { data_id: k(0), tree_id: k(1), snapshot_id: k(2), chunker: k(3) })
    }
}

impl Keys {
    /// The content-identity keys in use (derived from the master key, or carried by the config).
    pub fn identity(&self) -> Identity {
        Identity { data_id: self.data_id, tree_id: self.tree_id, snapshot_id: self.snapshot_id, chunker: self.chunker }
    }

    /// Uses identity keys other than the master key's own (a repository made to share them).
    pub fn set_identity(&mut self, id: &Identity) {
        self.data_id = id.data_id;
        self.tree_id = id.tree_id;
        self.snapshot_id = id.snapshot_id;
        self.chunker = id.chunker;
    }

    /// Whether both give every blob the same id and cut contents at the same places.
    pub fn same_identity(&self, other: &Keys) -> bool {
        self.data_id == other.data_id
            && self.tree_id == other.tree_id
            && self.snapshot_id == other.snapshot_id
            && self.chunker == other.chunker
    }

    /// Whether both give every data and tree blob the same id: blobs can then move between
    /// them without trees being rewritten (a bundle carries only these two keys).
    pub fn same_ids(&self, other: &Keys) -> bool {
        self.data_id == other.data_id && self.tree_id == other.tree_id
    }

    /// Takes another key set's data and tree id keys (a bundle's, from the repository it
    /// was exported from).
    pub fn set_blob_ids(&mut self, data_id: [u8; 32], tree_id: [u8; 32]) {
        self.data_id = data_id;
        self.tree_id = tree_id;
    }

    /// The data and tree id keys, for a bundle to carry.
    pub fn blob_id_keys(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(&self.data_id);
        out[32..].copy_from_slice(&self.tree_id);
        out
    }

    /// Re-encrypts a blob envelope of `src` under this key set's current epoch after opening it
    /// (authenticated, decompressed within `max_len`, re-hashed to `id`), keeping its stored
    /// bytes: moving a blob between repositories that share identity costs no recompression.
    /// The caller has checked [`Keys::same_ids`], so the id stays valid here.
    pub fn reseal_from(
        &self,
        src: &Keys,
        ty: ObjType,
        id: &Id,
        envelope: &mut [u8],
        max_len: usize,
    ) -> Result<Vec<u8>> {
        src.open_in_place(ty, id, envelope, max_len, &[], |_| ())?;
        self.seal_opened_in_place(ty, id, envelope, &[])?;
        Ok(envelope.to_vec())
    }
}
