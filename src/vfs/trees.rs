//! Directory listings, decoded once and kept in a bounded cache; when a directory is listed,
//! its subdirectories' listings are fetched in the background, so a walk that goes on into them
//! (find, tar, du, rsync) does not wait for each one's read, decryption and decoding in turn.

use std::sync::Arc;

use crate::cache::LoadingLru;
use crate::crypto::ObjType;
use crate::error::{Error, Result};
use crate::format::tree::{self, Node};
use crate::id::Id;
use crate::index::IndexReader;
use crate::repo::Repository;

/// Subdirectories fetched ahead per listing: enough to keep a walk fed, few enough that listing
/// one huge directory does not flush the cache.
const AHEAD: usize = 32;

type Listing = Arc<Vec<Node>>;

pub(super) struct Trees {
    repo: Arc<Repository>,
    cache: Arc<LoadingLru<Id, Listing>>,
}

impl Trees {
    /// A cache holding about `capacity` bytes of listings beyond those in use.
    pub fn new(repo: Arc<Repository>, capacity: usize) -> Trees {
        Trees { repo, cache: Arc::new(LoadingLru::new(capacity, weight)) }
    }

    /// A listing, through the cache. Errors name the blob and its pack.
    pub fn get(&self, index: &IndexReader, id: &Id) -> Result<Listing> {
        self.cache.get_or_load(id, || load(&self.repo, index, id))
    }

    /// Starts loading the listings of the first subdirectories of `listing` that are not cached.
    /// Failures are left for the real use to report.
    pub fn prefetch_children(&self, index: &Arc<IndexReader>, listing: &[Node]) {
        for id in listing.iter().filter_map(Node::subtree).filter(|id| !self.cache.contains(id)).take(AHEAD) {
            let (repo, cache, index) = (self.repo.clone(), self.cache.clone(), index.clone());
            rayon::spawn(move || {
                let _ = cache.get_or_load(&id, || load(&repo, &index, &id));
            });
        }
    }
}

fn load(repo: &Repository, index: &IndexReader, id: &Id) -> Result<Listing> {
    let loc = index.get(id)?.ok_or_else(|| Error::MissingBlob(format!("tree blob {}", id.hex())))?;
    let wrap = |e: Error| Error::Blob { kind: "tree blob", blob: id.hex(), pack: loc.pack.hex(), source: Box::new(e) };
    if loc.ty != ObjType::Tree {
        return Err(wrap(Error::corrupt("index entry", format!("is a {}", loc.ty.name()))));
    }
    let plain = repo.read_blob_at(id, &loc).map_err(wrap)?;
    Ok(Arc::new(tree::decode(&plain).map_err(wrap)?))
}

/// The memory a listing takes, so the cache's bound is in real bytes: the nodes, their strings
/// and lists, and an allocator's header for each of those.
fn weight(t: &Listing) -> usize {
    const ALLOC: usize = 16;
    t.iter()
        .map(|n| {
            let xattrs: usize = n.xattrs.iter().map(|(k, v)| k.len() + v.len() + 2 * ALLOC).sum();
            std::mem::size_of::<Node>()
                + n.name.len()
                + n.user.len()
                + n.group.len()
                + n.link_target.len()
                + std::mem::size_of::<Id>() * n.content.len()
                + xattrs
                + 4 * ALLOC
        })
        .sum()
}
