//! The one tree layer: directory listings loaded through a bounded cache, a path resolved
//! inside a snapshot, and every tree reachable from some roots visited once, in parallel.
//! Restore, mount and check read trees through it, and so will every command that walks
//! snapshots (ls, find, diff, prune's mark phase).

use std::collections::HashMap;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::cache::LoadingLru;
use crate::error::{Error, Result};
use crate::format::tree::Node;
use crate::id::{BlobIdSet, Id};
use crate::index::BlobLoc;
use crate::repo::{Repository, open_blob_with};
use crate::spans::SpanReader;

/// A decoded directory listing, shared between the cache and its users.
pub type Listing = Arc<Vec<Node>>;

/// Listings decoded at once by a walk.
const WALK_BATCH: usize = 256;

/// Subdirectories fetched ahead per listing: enough to keep a walk fed, few enough that listing
/// one huge directory does not flush the cache.
const AHEAD: usize = 32;

/// Where listings come from: the repository through its index, or (for check) any copy that
/// authenticates.
pub trait TreeSource: Send + Sync {
    fn load_listing(&self, id: &Id) -> Result<Vec<Node>>;
}

/// `&Repository` for one command's walk, `Arc<Repository>` for a mount's lifetime.
impl<R: std::ops::Deref<Target = Repository> + Send + Sync> TreeSource for R {
    fn load_listing(&self, id: &Id) -> Result<Vec<Node>> {
        load(self, id)
    }
}

/// A source that counts the listings it loads: what browsing commands report as "trees read",
/// so a test can see that unchanged subtrees were skipped by id (a count, never a timing).
pub struct Counting<S> {
    inner: S,
    loads: AtomicU64,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Counting<S> {
        Counting { inner, loads: AtomicU64::new(0) }
    }

    /// Listings loaded from the source so far (cache hits are not loads).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}

impl<S: TreeSource> TreeSource for Counting<S> {
    fn load_listing(&self, id: &Id) -> Result<Vec<Node>> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.inner.load_listing(id)
    }
}

/// A listing from the repository (or the tree cache, verified); errors name the blob and its pack.
pub fn load(repo: &Repository, id: &Id) -> Result<Vec<Node>> {
    if let Some(nodes) = repo.preloaded().take(id) {
        return Ok(nodes);
    }
    let loc = repo.index().lookup(id)?.ok_or_else(|| Error::MissingBlob(format!("tree blob {}", id.hex())))?;
    if !repo.tree_cache().is_on() {
        return decode_at(id, &loc, |f| repo.with_blob_at(id, &loc, f));
    }
    if let Some(nodes) = cached(repo, id, &loc) {
        return Ok(nodes);
    }
    let sealed = repo.read_sealed(id, &loc).map_err(|e| wrap(id, &loc, e))?;
    open_and_keep(repo, id, &loc, &sealed)
}

/// A listing from the tree cache, when it holds one that opens: authenticated and re-hashed as
/// a blob from a pack is, and dropped from the cache when it does not.
fn cached(repo: &Repository, id: &Id, loc: &BlobLoc) -> Option<Vec<Node>> {
    let sealed = repo.tree_cache().get(id)?;
    match decode_at(id, loc, |f| open_blob_with(repo.keys(), id, loc, &sealed, f)) {
        Ok(nodes) => Some(nodes),
        Err(_) => {
            repo.tree_cache().forget(id);
            None
        }
    }
}

/// Opens a tree blob read from the repository, and keeps it in the tree cache when it opens.
fn open_and_keep(repo: &Repository, id: &Id, loc: &BlobLoc, sealed: &[u8]) -> Result<Vec<Node>> {
    let nodes = decode_at(id, loc, |f| open_blob_with(repo.keys(), id, loc, sealed, f))?;
    repo.tree_cache().remember(id, sealed);
    Ok(nodes)
}

fn wrap(id: &Id, loc: &BlobLoc, e: Error) -> Error {
    Error::Blob { kind: "tree blob", blob: id.hex(), pack: loc.pack.hex(), cause: Box::new(e) }
}

/// A listing from its blob, read by `read` (which hands the plaintext to its argument).
fn decode_at(
    id: &Id,
    loc: &BlobLoc,
    read: impl FnOnce(&dyn Fn(&[u8]) -> Result<Vec<Node>>) -> Result<Result<Vec<Node>>>,
) -> Result<Vec<Node>> {
    if loc.ty != crate::crypto::ObjType::Tree {
        return Err(wrap(id, loc, Error::corrupt("index entry", format!("is a {}", loc.ty.name()))));
    }
    read(&|plain| crate::format::tree::decode(plain)).and_then(|r| r).map_err(|e| wrap(id, loc, e))
}

pub struct Trees<S> {
    source: S,
    cache: Arc<LoadingLru<Id, Listing>>,
}

impl<S: TreeSource> Trees<S> {
    /// A cache holding about `capacity` bytes of listings beyond those in use.
    pub fn new(source: S, capacity: usize) -> Trees<S> {
        Trees { source, cache: Arc::new(LoadingLru::new(capacity, weight)) }
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    /// A listing, through the cache.
    pub fn get(&self, id: &Id) -> Result<Listing> {
        self.cache.get_or_load(id, || self.source.load_listing(id).map(Arc::new))
    }

    /// Starts loading the listings of the first subdirectories of `listing` that are not cached.
    /// Failures are left for the real use to report.
    pub fn prefetch_children(&self, listing: &[Node])
    where
        S: Clone + 'static,
    {
        for id in listing.iter().filter_map(Node::subtree).filter(|id| !self.cache.contains(id)).take(AHEAD) {
            let (source, cache) = (self.source.clone(), self.cache.clone());
            rayon::spawn(move || {
                let _ = cache.get_or_load(&id, || source.load_listing(&id).map(Arc::new));
            });
        }
    }

    /// The entry at an absolute `path` below the tree `root`; `None` for `/` itself.
    pub fn resolve(&self, root: Id, path: &Path) -> Result<Option<Node>> {
        let mut node: Option<Node> = None;
        for c in path.components() {
            let Component::Normal(name) = c else { continue };
            let tree = match &node {
                None => root,
                Some(n) => n
                    .subtree()
                    .ok_or_else(|| Error::Invalid(format!("{}: not a directory in the snapshot", path.display())))?,
            };
            let listing = self.get(&tree)?;
            let name = name.as_encoded_bytes();
            let i = listing
                .binary_search_by(|n| n.name.as_slice().cmp(name))
                .map_err(|_| Error::NotFound(path.display().to_string()))?;
            node = Some(listing[i].clone());
        }
        Ok(node)
    }
}

/// Visits every distinct tree reachable from `roots` once, a level at a time, loading each
/// level in parallel. `visit` sees each tree's listing or why it could not be loaded; the
/// subtrees of a listing that failed are not reached.
pub fn walk_unique(
    roots: impl IntoIterator<Item = Id>,
    load: impl Fn(&Id) -> Result<Listing> + Sync,
    visit: impl FnMut(Id, Result<Listing>),
) {
    walk_unique_from(BlobIdSet::default(), roots, load, visit)
}

/// [`walk_unique`] that does not enter the trees in `seen` (known from an earlier walk).
pub fn walk_unique_from(
    seen: BlobIdSet,
    roots: impl IntoIterator<Item = Id>,
    load: impl Fn(&Id) -> Result<Listing> + Sync,
    visit: impl FnMut(Id, Result<Listing>),
) {
    let load_batch = |batch: &[Id]| batch.par_iter().map(&load).collect();
    walk_unique_batched(seen, roots, WALK_BATCH, load_batch, visit)
}

/// [`walk_unique_from`] loading `batch` listings at a time with `load_batch` (a result per id,
/// in order): a loader that sees a batch can plan one set of merged reads for it.
pub fn walk_unique_batched(
    mut seen: BlobIdSet,
    roots: impl IntoIterator<Item = Id>,
    batch: usize,
    load_batch: impl Fn(&[Id]) -> Vec<Result<Listing>>,
    mut visit: impl FnMut(Id, Result<Listing>),
) {
    let mut frontier: Vec<Id> = roots.into_iter().filter(|t| seen.insert(*t)).collect();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        // A level of a big tree holds thousands of listings: decoded a batch at a time, so
        // memory stays bounded by the batch, not by the widest level.
        for ids in frontier.chunks(batch) {
            for (id, listing) in ids.iter().copied().zip(load_batch(ids)) {
                if let Ok(l) = &listing {
                    next.extend(l.iter().filter_map(Node::subtree).filter(|sub| seen.insert(*sub)));
                }
                visit(id, listing);
            }
        }
        frontier = next;
    }
}

/// The memory a listing takes, so the cache's bound is in real bytes: the nodes, their strings
/// and lists, and an allocator's header for each of those.
fn weight(t: &Listing) -> usize {
    weight_of(t)
}

fn weight_of(t: &[Node]) -> usize {
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

/// What [`preload`] may hold: listings of a few hundred thousand entries.
pub const PRELOAD_BYTES: usize = 64 << 20;
/// Listings a preload plans its reads over at once: the more, the more share a span.
const PRELOAD_BATCH: usize = 4096;
/// Spans a preload batch keeps read: its listings are read in any order by the pool.
const SPAN_CACHE: usize = 32 << 20;

/// Listings loaded ahead for a walk that reads each once in its own order (restore's plan, a
/// backup's parent). One after another, each listing is a round trip: on a 3-node Garage an
/// unchanged re-backup of 4,762 directories spent 190 s on them. Taken, not copied, by [`load`].
#[derive(Default)]
pub struct Preloaded {
    map: Mutex<HashMap<Id, Vec<Node>>>,
}

impl Preloaded {
    fn take(&self, id: &Id) -> Option<Vec<Node>> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_empty() { None } else { m.remove(id) }
    }
}

/// Loads the listings below `root`, a level at a time with the backend's parallel reads, until
/// they take `budget` bytes; the rest load on demand. Only where reads wait on a network
/// (`Backend::parallel_reads`): locally a listing costs microseconds and this would only add
/// memory. Failures are left for the real load to report.
pub fn preload(repo: &Repository, root: Id, budget: usize) {
    let Some(pool) = crate::spans::read_pool(repo) else { return };
    let mut seen = BlobIdSet::default();
    seen.insert(root);
    let mut frontier = vec![root];
    let mut used = 0;
    pool.install(|| {
        while !frontier.is_empty() && used < budget {
            let mut next = Vec::new();
            for batch in frontier.chunks(PRELOAD_BATCH) {
                let loaded = load_batch(repo, batch);
                let mut map = repo.preloaded().map.lock().unwrap_or_else(|e| e.into_inner());
                for (id, nodes) in loaded {
                    let Ok(nodes) = nodes else { continue };
                    next.extend(nodes.iter().filter_map(Node::subtree).filter(|sub| seen.insert(*sub)));
                    used += weight_of(&nodes);
                    map.insert(id, nodes);
                }
                if used >= budget {
                    break;
                }
            }
            frontier = next;
        }
    });
}

/// Listings of `batch` through the tree cache, and the rest through one plan of merged reads:
/// listings written together lie together in their packs, so one ranged read serves many.
/// A listing the index lacks is left out.
fn load_batch(repo: &Repository, batch: &[Id]) -> Vec<(Id, Result<Vec<Node>>)> {
    let locs: Vec<Option<BlobLoc>> = batch.iter().map(|id| repo.index().lookup(id).ok().flatten()).collect();
    let hits: Vec<Option<Vec<Node>>> = batch
        .par_iter()
        .zip(&locs)
        .map(|(id, loc)| loc.as_ref().filter(|_| repo.tree_cache().is_on()).and_then(|l| cached(repo, id, l)))
        .collect();
    let misses = locs.iter().zip(&hits).filter(|(_, h)| h.is_none()).filter_map(|(l, _)| *l).collect();
    let spans = SpanReader::plan(repo, misses, SPAN_CACHE);
    batch
        .par_iter()
        .zip(&locs)
        .zip(hits)
        .filter_map(|((id, loc), hit)| {
            let loc = loc.as_ref()?;
            let nodes = match hit {
                Some(nodes) => Ok(nodes),
                None if repo.tree_cache().is_on() => {
                    spans.with_sealed(id, loc, |sealed| open_and_keep(repo, id, loc, sealed)).and_then(|r| r)
                }
                None => decode_at(id, loc, |f| spans.with_blob(id, loc, f)),
            };
            Some((*id, nodes))
        })
        .collect()
}

/// Paths a tree may expand to whatever its size: far more than a walk can hold in memory
/// is refused only when it is also out of proportion to the entries stored (below).
const EXPANSION_FLOOR: u64 = 1 << 24;
/// How many times over a tree's distinct entries its expansion may reach: copies of one
/// directory inside a backup stay far below it; a chain of trees each naming its child twice
/// (30 trees, 2^30 paths) is far above.
const EXPANSION_RATIO: u64 = 64;

/// Refuses a tree whose full expansion (every path a restore or dump would visit) is out of
/// proportion to what is stored, before anything walks it: a tree referencing one subtree
/// over and over expands to 2^depth paths, and a walk of it would run for ever. Counts each
/// distinct listing once (memoised), without recursion (trees nest 100,000 deep).
pub fn check_expansion<S: TreeSource>(trees: &Trees<S>, root: Id) -> Result<u64> {
    // A listing that does not load counts as empty here: the walk that follows reports it for
    // the paths below it and restores everything else.
    bound_expansion(root, |id| match trees.get(id) {
        Ok(listing) => Ok((listing.len() as u64, listing.iter().filter_map(Node::subtree).collect())),
        Err(_) => Ok((0, Vec::new())),
    })
}

/// [`check_expansion`] over any description of the trees: `shape` gives a listing's number of
/// entries and its subtrees (check has them from its own walk, and reads nothing twice).
pub fn bound_expansion(root: Id, mut shape: impl FnMut(&Id) -> Result<(u64, Vec<Id>)>) -> Result<u64> {
    let mut paths: HashMap<Id, u64> = HashMap::new();
    let mut distinct: u64 = 0;
    // (tree, children pushed): a tree is summed once all its subtrees are.
    let mut stack = vec![(root, false)];
    // Trees entered and not yet summed: meeting one again is a cycle, which content addressing
    // rules out unless the repository lies.
    let mut open: std::collections::HashSet<Id> = std::collections::HashSet::new();
    while let Some((id, expanded)) = stack.pop() {
        if paths.contains_key(&id) {
            continue;
        }
        let (entries, subtrees) = shape(&id)?;
        if !expanded {
            if !open.insert(id) {
                return Err(Error::corrupt(format!("tree {}", id.hex()), "it contains itself"));
            }
            stack.push((id, true));
            stack.extend(subtrees.into_iter().filter(|s| !paths.contains_key(s)).map(|s| (s, false)));
            continue;
        }
        distinct += entries;
        let below = subtrees.iter().fold(0u64, |acc, s| acc.saturating_add(paths.get(s).copied().unwrap_or(0)));
        paths.insert(id, entries.saturating_add(below));
        open.remove(&id);
    }
    let total = paths.get(&root).copied().unwrap_or(0);
    let limit = EXPANSION_FLOOR.max(distinct.saturating_mul(EXPANSION_RATIO));
    if total > limit {
        return Err(Error::TreeBomb { tree: root.hex(), limit, distinct });
    }
    Ok(total)
}
