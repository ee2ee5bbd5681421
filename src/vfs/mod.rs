//! The snapshot filesystem a mount shows, without any FUSE types, so it can be tested
//! without the kernel. Layout:
//!
//! ```text
//! snapshots/<time>/…   one directory per snapshot, UTC time (suffix on collision); latest -> newest
//! ids/<short id>/…
//! tags/<tag>/<time>/…  and latest in each
//! hosts/<host>/<time>/… and latest in each
//! at/<T>/…             newest snapshot at or before T (any `restore --timestamp` format), not listed
//! history/<path>/…     one file per distinct version of the file at <path> (see `history.rs`)
//! ```
//!
//! Everything inside a snapshot never changes, so it is served with long cache lifetimes; the
//! directories above snapshots change when snapshots are added, so they use short ones and the
//! snapshot list is re-read when one of them is used and the list is older than [`REFRESH`].

mod attr;
mod catalog;
mod file;
mod history;
mod inode;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use attr::{Attr, FileKind};
pub use catalog::time_name;
use catalog::{Catalog, SnapInfo};
use inode::{AT, HISTORY, HOSTS, IDS, Inode, NodeRef, ROOT, SNAPSHOTS, TAGS, TOP, What};

use crate::error::Error;
use crate::format::tree::{Kind, Node, Time};
use crate::id::Id;
use crate::reader::ChunkReader;
use crate::repo::Repository;
use crate::select::Filter;
use crate::trees::Trees;

/// How long the kernel may cache what never changes: entries and attributes inside snapshots.
pub const LONG_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long it may cache names and attributes of the directories above snapshots.
pub const SHORT_TTL: Duration = Duration::from_secs(1);
/// The snapshot list is re-read when older than this and a directory above snapshots is used.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Why an operation failed; the FUSE adapter turns each into an errno.
#[derive(Debug)]
pub enum VfsError {
    NotFound,
    NotDir,
    NotLink,
    IsDir,
    NoXattr,
    BadHandle,
    /// The repository could not give us the data: damaged, missing or unreadable.
    Io(Error),
}

impl From<Error> for VfsError {
    fn from(e: Error) -> Self {
        VfsError::Io(e)
    }
}

pub type VfsResult<T> = Result<T, VfsError>;

/// A name resolved in a directory: what the kernel gets from lookup and readdirplus.
pub struct Entry {
    pub attr: Attr,
    /// How long the name may be cached.
    pub entry_ttl: Duration,
    /// How long the attributes may be cached.
    pub attr_ttl: Duration,
}

/// One directory entry as readdir reports it; `entry` is set for readdirplus.
pub struct DirEntry<'a> {
    pub ino: u64,
    pub kind: FileKind,
    pub name: &'a [u8],
    pub entry: Option<&'a Entry>,
}

pub struct Options {
    pub filter: Filter,
    /// Bytes of decompressed chunks kept.
    pub chunk_cache: usize,
    /// Estimated bytes of directory listings kept beyond those in use.
    pub tree_cache: usize,
    /// Where warnings go (damaged snapshots and the like).
    pub warn: Box<dyn Fn(&str) + Send + Sync>,
}

pub struct Vfs {
    repo: Arc<Repository>,
    reader: Arc<ChunkReader>,
    opts: Options,
    catalog: RwLock<Arc<Catalog>>,
    refreshing: Mutex<()>,
    trees: Trees<Arc<Repository>>,
    inodes: inode::Table,
    files: file::Files,
    walk: Mutex<file::Walk>,
    uid: u32,
    gid: u32,
}

/// A resolved child: its number, what it is (absent for the fixed top directories), and entry.
struct Resolved {
    ino: u64,
    inode: Option<Arc<Inode>>,
    entry: Entry,
}

/// The path of a directory under `history/`, if `ino` is one.
fn history_path(ino: u64, inode: Option<&Inode>) -> Option<Vec<Vec<u8>>> {
    match (ino, inode.map(|i| &i.what)) {
        (HISTORY, _) => Some(Vec::new()),
        (_, Some(What::HistoryDir { path })) => Some(path.to_vec()),
        _ => None,
    }
}

impl Vfs {
    pub fn new(repo: Arc<Repository>, opts: Options) -> crate::Result<Vfs> {
        let catalog = Catalog::load(&repo, &opts.filter, None, &mut |m| (opts.warn)(&m))?;
        Ok(Vfs {
            reader: Arc::new(ChunkReader::new(repo.clone(), opts.chunk_cache)),
            trees: Trees::new(repo.clone(), opts.tree_cache),
            repo,
            opts,
            catalog: RwLock::new(Arc::new(catalog)),
            refreshing: Mutex::new(()),
            inodes: inode::Table::default(),
            files: file::new_cache(),
            walk: Mutex::default(),
            uid: crate::sys::uid(),
            gid: crate::sys::gid(),
        })
    }

    /// The snapshot list, re-read first when `fresh` is asked for and it is old.
    fn catalog(&self, fresh: bool) -> Arc<Catalog> {
        let cur = self.catalog.read().unwrap_or_else(|e| e.into_inner()).clone();
        if !fresh || cur.loaded.elapsed() < REFRESH {
            return cur;
        }
        // One refresh at a time; everyone else goes on with the current list meanwhile.
        let Ok(_guard) = self.refreshing.try_lock() else { return cur };
        match Catalog::load(&self.repo, &self.opts.filter, Some(&cur), &mut |m| (self.opts.warn)(&m)) {
            Ok(c) => {
                let c = Arc::new(c);
                *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = c.clone();
                c
            }
            Err(e) => {
                (self.opts.warn)(&format!("cannot re-read the snapshot list: {e}"));
                cur
            }
        }
    }

    /// How many snapshots are shown now.
    pub fn snapshot_count(&self) -> usize {
        self.catalog(false).snaps.len()
    }

    /// Inodes the kernel holds (for tests and statistics).
    pub fn inode_count(&self) -> usize {
        self.inodes.count()
    }

    /// A directory listing, through the tree cache. Errors name the blob and its pack.
    fn tree(&self, id: &Id) -> VfsResult<Arc<Vec<Node>>> {
        Ok(self.trees.get(id)?)
    }

    fn newest_time(&self, cat: &Catalog) -> Time {
        cat.snaps.last().map_or(Time::default(), |s| attr::time_of_ns(s.snap.time_ns))
    }

    fn top_dir(&self, ino: u64) -> Resolved {
        let t = self.newest_time(&self.catalog(false));
        let entry =
            Entry { attr: Attr::virtual_dir(ino, self.uid, self.gid, t), entry_ttl: SHORT_TTL, attr_ttl: SHORT_TTL };
        Resolved { ino, inode: None, entry }
    }

    fn snap_root(&self, parent: u64, name: &str, snap: &Arc<SnapInfo>) -> Resolved {
        let ino = inode::snapshot_root(parent, name.as_bytes(), &snap.id.0);
        let t = attr::time_of_ns(snap.snap.time_ns);
        let attr = Attr { perm: 0o755, ..Attr::virtual_dir(ino, snap.snap.uid, snap.snap.gid, t) };
        let inode = Inode { what: What::SnapRoot { snap: snap.clone() }, parent };
        Resolved { ino, inode: Some(Arc::new(inode)), entry: Entry { attr, entry_ttl: SHORT_TTL, attr_ttl: LONG_TTL } }
    }

    fn link(&self, parent: u64, target: &str, cat: &Catalog) -> Resolved {
        let ino = inode::link(parent, b"latest", target.as_bytes());
        let attr = Attr::virtual_link(ino, self.uid, self.gid, self.newest_time(cat), target);
        let inode = Inode { what: What::Link { target: target.to_string() }, parent };
        Resolved { ino, inode: Some(Arc::new(inode)), entry: Entry { attr, entry_ttl: SHORT_TTL, attr_ttl: SHORT_TTL } }
    }

    fn group(&self, top: u64, name: &str, cat: &Catalog) -> Resolved {
        let ino = inode::child(top, name.as_bytes());
        let attr = Attr::virtual_dir(ino, self.uid, self.gid, self.newest_time(cat));
        let inode = Inode { what: What::Group { top, name: name.to_string() }, parent: top };
        Resolved { ino, inode: Some(Arc::new(inode)), entry: Entry { attr, entry_ttl: SHORT_TTL, attr_ttl: SHORT_TTL } }
    }

    fn node_entry(&self, parent: u64, root: u64, tree_id: &Id, tree: &[Node], idx: usize) -> Resolved {
        let n = &tree[idx];
        let ino = if n.kind != Kind::Dir && n.nlink > 1 {
            inode::hardlink(root, n.dev, n.ino)
        } else {
            inode::child(parent, &n.name)
        };
        let inode = Inode { what: What::Node { tree: *tree_id, idx: idx as u32, root }, parent };
        let entry = Entry { attr: Attr::of_node(ino, n), entry_ttl: LONG_TTL, attr_ttl: LONG_TTL };
        Resolved { ino, inode: Some(Arc::new(inode)), entry }
    }

    /// The inode behind a number the kernel gave us; `None` for the fixed top directories.
    fn inode(&self, ino: u64) -> VfsResult<Option<Arc<Inode>>> {
        if (ROOT..=HISTORY).contains(&ino) {
            return Ok(None);
        }
        self.inodes.get(ino).map(Some).ok_or(VfsError::NotFound)
    }

    /// The tree entry behind an inode inside a snapshot; `None` for the directories above.
    fn node(&self, inode: &Inode) -> VfsResult<Option<NodeRef>> {
        let What::Node { tree, idx, .. } = &inode.what else { return Ok(None) };
        let tree = self.tree(tree)?;
        let idx = *idx as usize;
        if idx >= tree.len() {
            return Err(VfsError::NotFound);
        }
        Ok(Some(NodeRef { tree, idx }))
    }

    /// The listing of a directory inside a snapshot, with its id and the snapshot root's inode
    /// number.
    fn snapshot_dir(&self, ino: u64, inode: &Inode) -> VfsResult<(Id, Arc<Vec<Node>>, u64)> {
        let (id, root) = match &inode.what {
            What::SnapRoot { snap } => (snap.snap.tree, ino),
            What::Node { root, .. } => {
                let n = self.node(inode)?.ok_or(VfsError::NotFound)?;
                (n.subtree().ok_or(VfsError::NotDir)?, *root)
            }
            _ => return Err(VfsError::NotDir),
        };
        Ok((id, self.tree(&id)?, root))
    }

    fn resolve(&self, parent: u64, name: &[u8]) -> VfsResult<Resolved> {
        let inode = self.inode(parent)?;
        if let Some(i) = &inode
            && matches!(i.what, What::SnapRoot { .. } | What::Node { .. })
        {
            let (id, tree, root) = self.snapshot_dir(parent, i)?;
            let idx = tree.binary_search_by(|n| n.name.as_slice().cmp(name)).map_err(|_| VfsError::NotFound)?;
            return Ok(self.node_entry(parent, root, &id, &tree, idx));
        }
        if let Some(path) = history_path(parent, inode.as_deref()) {
            let children = self.history_children(parent, &path)?;
            return children.into_iter().find(|(n, _)| n == name).map(|(_, r)| r).ok_or(VfsError::NotFound);
        }
        let name = std::str::from_utf8(name).map_err(|_| VfsError::NotFound)?;
        let cat = self.catalog(true);
        let found = match (parent, inode.as_deref().map(|i| &i.what)) {
            (ROOT, _) => TOP.iter().find(|(n, _)| *n == name).map(|&(_, ino)| self.top_dir(ino)),
            (SNAPSHOTS, _) if name == "latest" => cat.snaps.last().map(|s| self.link(parent, &s.name, &cat)),
            (SNAPSHOTS, _) => cat.by_name(name).map(|s| self.snap_root(parent, name, s)),
            (IDS, _) => cat.by_id(name).map(|s| self.snap_root(parent, name, s)),
            (TAGS | HOSTS, _) => cat.groups(parent == TAGS).contains(name).then(|| self.group(parent, name, &cat)),
            (AT, _) => {
                let t = crate::timespec::parse_until(name).map_err(|_| VfsError::NotFound)?;
                crate::select::newest_at_or_before(cat.snaps.iter().map(|s| s.snap.time_ns), t)
                    .map(|i| self.snap_root(parent, name, &cat.snaps[i]))
            }
            (_, Some(What::Group { top, name: group })) => {
                let mut members = cat.members(*top == TAGS, group);
                if name == "latest" {
                    members.last().map(|s| self.link(parent, &s.name, &cat))
                } else {
                    members.find(|s| s.name == name).map(|s| self.snap_root(parent, name, s))
                }
            }
            _ => return Err(VfsError::NotDir),
        };
        found.ok_or(VfsError::NotFound)
    }

    /// Looks up `name` in `parent`; the kernel now holds one more reference to the result.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> VfsResult<Entry> {
        let r = self.resolve(parent, name)?;
        if let Some(inode) = r.inode {
            self.inodes.remember(r.ino, inode);
        }
        Ok(r.entry)
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    pub fn getattr(&self, ino: u64) -> VfsResult<(Attr, Duration)> {
        let Some(inode) = self.inode(ino)? else {
            return Ok((self.top_dir(ino).entry.attr, SHORT_TTL));
        };
        let cat = self.catalog(false);
        let r = match &inode.what {
            What::Group { top, name } => self.group(*top, name, &cat),
            What::HistoryDir { .. } => self.top_dir(ino),
            What::Link { target } => self.link(inode.parent, target, &cat),
            What::SnapRoot { snap } => {
                let mut r = self.snap_root(inode.parent, "", snap);
                r.entry.attr.ino = ino;
                r
            }
            What::Node { .. } => {
                let n = self.node(&inode)?.ok_or(VfsError::NotFound)?;
                return Ok((Attr::of_node(ino, &n), LONG_TTL));
            }
        };
        Ok((Attr { ino, ..r.entry.attr }, r.entry.attr_ttl))
    }

    /// Whether `ino` is a directory inside a snapshot, whose listing never changes.
    pub fn is_snapshot_dir(&self, ino: u64) -> bool {
        match self.inode(ino) {
            Ok(Some(i)) => match &i.what {
                What::SnapRoot { .. } => true,
                What::Node { .. } => self.node(&i).is_ok_and(|n| n.is_some_and(|n| n.kind == Kind::Dir)),
                _ => false,
            },
            _ => false,
        }
    }

    pub fn readlink(&self, ino: u64) -> VfsResult<Vec<u8>> {
        let inode = self.inode(ino)?.ok_or(VfsError::NotLink)?;
        match &inode.what {
            What::Link { target } => Ok(target.clone().into_bytes()),
            What::Node { .. } => match self.node(&inode)? {
                Some(n) if n.kind == Kind::Symlink => Ok(n.link_target.clone()),
                _ => Err(VfsError::NotLink),
            },
            _ => Err(VfsError::NotLink),
        }
    }

    /// The children of a directory above the snapshots, in listing order.
    fn virtual_children(&self, ino: u64, inode: Option<&Inode>) -> VfsResult<Vec<(String, Resolved)>> {
        let cat = self.catalog(true);
        let mut out = Vec::new();
        match (ino, inode.map(|i| &i.what)) {
            (ROOT, _) => out.extend(TOP.iter().map(|&(n, i)| (n.to_string(), self.top_dir(i)))),
            (SNAPSHOTS, _) => {
                out.extend(cat.snaps.iter().map(|s| (s.name.clone(), self.snap_root(ino, &s.name, s))));
                out.extend(cat.snaps.last().map(|s| ("latest".to_string(), self.link(ino, &s.name, &cat))));
            }
            (IDS, _) => out.extend(cat.snaps.iter().map(|s| (s.short.clone(), self.snap_root(ino, &s.short, s)))),
            (TAGS | HOSTS, _) => {
                out.extend(cat.groups(ino == TAGS).into_iter().map(|g| (g.to_string(), self.group(ino, g, &cat))))
            }
            (AT, _) => {}
            (_, Some(What::Group { top, name })) => {
                let members: Vec<_> = cat.members(*top == TAGS, name).collect();
                out.extend(members.iter().map(|s| (s.name.clone(), self.snap_root(ino, &s.name, s))));
                out.extend(members.last().map(|s| ("latest".to_string(), self.link(ino, &s.name, &cat))));
            }
            _ => return Err(VfsError::NotDir),
        }
        Ok(out)
    }

    /// Lists `ino` from `offset` (0 = the start; each entry's offset is the one to resume after
    /// it). `add` returns true when its buffer is full; with `plus`, each entry it accepted
    /// (other than `.` and `..`) counts as a lookup, as the kernel expects of readdirplus.
    pub fn readdir(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(u64, DirEntry) -> bool,
    ) -> VfsResult<()> {
        let inode = self.inode(ino)?;
        let (self_attr, _) = self.getattr(ino)?;
        let dot = Entry { attr: self_attr, entry_ttl: SHORT_TTL, attr_ttl: SHORT_TTL };
        let parent = inode.as_ref().map_or(ROOT, |i| i.parent);
        for (i, (name, n)) in [(&b"."[..], ino), (&b".."[..], parent)].into_iter().enumerate().skip(offset as usize) {
            let e = DirEntry { ino: n, kind: FileKind::Dir, name, entry: plus.then_some(&dot) };
            if add(i as u64 + 1, e) {
                return Ok(());
            }
        }
        let skip = (offset as usize).saturating_sub(2);
        let mut emit = |i: usize, name: &[u8], r: Resolved| -> bool {
            let e = DirEntry { ino: r.ino, kind: r.entry.attr.kind, name, entry: plus.then_some(&r.entry) };
            if add(i as u64 + 3, e) {
                return true;
            }
            if plus && let Some(inode) = r.inode {
                self.inodes.remember(r.ino, inode);
            }
            false
        };
        let hist = history_path(ino, inode.as_deref());
        match &inode {
            Some(i) if matches!(i.what, What::SnapRoot { .. } | What::Node { .. }) => {
                let (id, tree, root) = self.snapshot_dir(ino, i)?;
                if offset == 0 {
                    self.trees.prefetch_children(&tree);
                }
                for idx in skip..tree.len() {
                    if emit(idx, &tree[idx].name, self.node_entry(ino, root, &id, &tree, idx)) {
                        break;
                    }
                }
            }
            _ if hist.is_some() => {
                let path = hist.unwrap_or_default();
                for (idx, (name, r)) in self.history_children(ino, &path)?.into_iter().enumerate().skip(skip) {
                    if emit(idx, &name, r) {
                        break;
                    }
                }
            }
            _ => {
                for (idx, (name, r)) in self.virtual_children(ino, inode.as_deref())?.into_iter().enumerate().skip(skip)
                {
                    if emit(idx, name.as_bytes(), r) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn xattrs(&self, ino: u64) -> VfsResult<Vec<(Vec<u8>, Vec<u8>)>> {
        match self.inode(ino)? {
            Some(i) => Ok(self.node(&i)?.map(|n| n.xattrs.clone()).unwrap_or_default()),
            None => Ok(Vec::new()),
        }
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> VfsResult<Vec<u8>> {
        self.xattrs(ino)?.into_iter().find(|(k, _)| k == name).map(|(_, v)| v).ok_or(VfsError::NoXattr)
    }

    /// Attribute names, each followed by a NUL, as listxattr(2) returns them.
    pub fn listxattr(&self, ino: u64) -> VfsResult<Vec<u8>> {
        let mut out = Vec::new();
        for (k, _) in self.xattrs(ino)? {
            out.extend_from_slice(&k);
            out.push(0);
        }
        Ok(out)
    }
}
