//! `diff`: what changed between two snapshots, or between a snapshot and a live directory.
//!
//! Two directories with the same tree id are the same tree (the Merkle property), so the walk
//! never enters a subtree both sides share: the cost follows the change, not the tree, and
//! [`DiffStats::trees_read`] says so. Against a live directory there are no ids to compare, so
//! everything is walked, and a file of the same size is read and cut with the repository's
//! chunker to compare its keyed chunk ids.

use std::cmp::Ordering;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{MAX_DEPTH, child};
use crate::archiver::meta::node_from;
use crate::crypto::ObjType;
use crate::error::{Error, IoContext, Result};
use crate::format::tree::{Kind, Node};
use crate::id::{BlobIdSet, Id};
use crate::repo::Repository;
use crate::trees::{Counting, Listing, Trees};

/// One side of a comparison.
pub enum Side {
    /// The directory at `path` (absolute, `/` for the whole snapshot) in the tree `root`.
    Snapshot { root: Id, path: PathBuf },
    /// A directory on this machine.
    Live(PathBuf),
}

/// restic's change codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    /// The content differs.
    Modified,
    /// Only metadata differs (reported with [`DiffOptions::metadata`]).
    Metadata,
    /// The kind of entry differs (a file became a directory, …).
    TypeChanged,
}

impl Change {
    pub fn code(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'U',
            Change::TypeChanged => 'T',
        }
    }
}

#[derive(Default, Clone, Copy)]
pub struct DiffOptions {
    /// Also report entries whose metadata (mode, owner, mtime, xattrs) alone changed.
    pub metadata: bool,
}

#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Data and tree blobs on one side only, and their bytes (before compression). Against a
    /// live directory no blobs exist on that side: `bytes` counts its files' sizes instead.
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub bytes: u64,
}

#[derive(Default, Debug)]
pub struct DiffStats {
    pub changed_files: u64,
    pub added: Counts,
    pub removed: Counts,
    /// Tree blobs loaded from the repository.
    pub trees_read: u64,
    /// Live files that could not be read (reported as modified).
    pub warnings: Vec<String>,
}

/// A directory being compared: a tree, or a live path.
#[derive(Clone)]
enum Dir {
    Tree(Id),
    Live(PathBuf),
}

/// Blobs and trees one side holds in the parts of the walk that differ.
#[derive(Default)]
struct Held {
    data: BlobIdSet,
    trees: BlobIdSet,
    /// Bytes of files, when one side is live: it has no blobs to compare.
    live_bytes: u64,
}

struct Engine<'a, F> {
    repo: &'a Repository,
    trees: Trees<Counting<&'a Repository>>,
    opts: DiffOptions,
    emit: F,
    stats: DiffStats,
    before: Held,
    after: Held,
    /// The right side is a live directory: count file bytes instead of blobs.
    live: bool,
}

/// Compares `left` (the old side) with `right`, calling `emit` for each change in path order
/// (paths are shown under `left`'s path, or `right`'s when `left` is live).
pub fn diff(
    repo: &Repository,
    left: &Side,
    right: &Side,
    opts: DiffOptions,
    emit: impl FnMut(Change, &Path, Kind),
) -> Result<DiffStats> {
    let mut e = Engine {
        repo,
        trees: Trees::new(Counting::new(repo), 8 << 20),
        opts,
        emit,
        stats: DiffStats::default(),
        before: Held::default(),
        after: Held::default(),
        live: matches!(right, Side::Live(_)),
    };
    let (l, r) = (e.start(left)?, e.start(right)?);
    let (Side::Snapshot { path: base, .. } | Side::Live(base)) = left;
    let same = matches!((&l, &r), (Dir::Tree(x), Dir::Tree(y)) if x == y);
    if !same {
        e.walk(base.clone(), l, r, 0)?;
    }
    e.finish()
}

impl<F: FnMut(Change, &Path, Kind)> Engine<'_, F> {
    fn start(&self, side: &Side) -> Result<Dir> {
        match side {
            Side::Live(p) => Ok(Dir::Live(p.clone())),
            Side::Snapshot { root, path } => match self.trees.resolve(*root, path)? {
                None => Ok(Dir::Tree(*root)),
                Some(n) => n
                    .subtree()
                    .map(Dir::Tree)
                    .ok_or_else(|| Error::Invalid(format!("{}: not a directory in the snapshot", path.display()))),
            },
        }
    }

    fn listing(&self, dir: &Dir) -> Result<Listing> {
        match dir {
            Dir::Tree(id) => self.trees.get(id),
            Dir::Live(p) => live_listing(p),
        }
    }

    fn held(&mut self, after: bool) -> &mut Held {
        if after { &mut self.after } else { &mut self.before }
    }

    /// Compares two directories, depth first in name order, so changes come out sorted by path.
    fn walk(&mut self, path: PathBuf, l: Dir, r: Dir, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(path.display().to_string(), "nested deeper than any real tree"));
        }
        for (d, after) in [(&l, false), (&r, true)] {
            if let Dir::Tree(id) = d {
                self.hold_tree(after, *id);
            }
        }
        let (a, b) = (self.listing(&l)?, self.listing(&r)?);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let order = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    self.whole(Change::Removed, &path, &l, &a[i], depth)?;
                    i += 1;
                }
                Ordering::Greater => {
                    self.whole(Change::Added, &path, &r, &b[j], depth)?;
                    j += 1;
                }
                Ordering::Equal => {
                    if let Some((p, ld, rd)) = self.pair(&path, &l, &r, &a[i], &b[j], depth)? {
                        self.walk(p, ld, rd, depth + 1)?;
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// The subdirectory of `node` in `dir`, when it is one.
    fn sub(dir: &Dir, node: &Node) -> Option<Dir> {
        match dir {
            Dir::Tree(_) => node.subtree().map(Dir::Tree),
            Dir::Live(p) => (node.kind == Kind::Dir).then(|| Dir::Live(child(p, &node.name))),
        }
    }

    /// An entry on both sides; returns the pair of directories to descend into, if any.
    fn pair(
        &mut self,
        path: &Path,
        l: &Dir,
        r: &Dir,
        a: &Node,
        b: &Node,
        depth: usize,
    ) -> Result<Option<(PathBuf, Dir, Dir)>> {
        let p = child(path, &a.name);
        if a.kind != b.kind {
            (self.emit)(Change::TypeChanged, &p, b.kind);
            self.count(false, a);
            self.count(true, b);
            if let Some(d) = Self::sub(l, a) {
                self.contents(Change::Removed, &p, d, depth + 1)?;
            }
            if let Some(d) = Self::sub(r, b) {
                self.contents(Change::Added, &p, d, depth + 1)?;
            }
            return Ok(None);
        }
        if a.kind == Kind::Dir {
            if self.opts.metadata && meta_differs(a, b) {
                (self.emit)(Change::Metadata, &p, a.kind);
            }
            let (Some(ld), Some(rd)) = (Self::sub(l, a), Self::sub(r, b)) else { return Ok(None) };
            if let (Dir::Tree(x), Dir::Tree(y)) = (&ld, &rd)
                && x == y
            {
                return Ok(None);
            }
            return Ok(Some((p, ld, rd)));
        }
        let live = match r {
            Dir::Live(dir) => Some(child(dir, &b.name)),
            Dir::Tree(_) => None,
        };
        let (same, b_content) = self.same_content(a, b, live.as_deref());
        if !same {
            (self.emit)(Change::Modified, &p, a.kind);
            if a.kind == Kind::File {
                self.stats.changed_files += 1;
                self.hold_file(false, a, &a.content);
                self.hold_file(true, b, &b_content);
            }
        } else if self.opts.metadata && meta_differs(a, b) {
            (self.emit)(Change::Metadata, &p, a.kind);
        }
        Ok(None)
    }

    /// Whether two entries of one kind hold the same bytes, and the right one's chunk ids.
    fn same_content(&mut self, a: &Node, b: &Node, live: Option<&Path>) -> (bool, Vec<Id>) {
        match a.kind {
            Kind::File if a.size != b.size => (false, b.content.clone()),
            Kind::File => match live {
                None => (a.content == b.content, b.content.clone()),
                Some(p) => match chunk_ids(self.repo, p) {
                    Ok(ids) => (ids == a.content, ids),
                    Err(e) => {
                        self.stats.warnings.push(e.to_string());
                        (false, Vec::new())
                    }
                },
            },
            Kind::Symlink => (a.link_target == b.link_target, Vec::new()),
            Kind::CharDev | Kind::BlockDev => (a.rdev == b.rdev, Vec::new()),
            Kind::Dir | Kind::Fifo | Kind::Socket => (true, Vec::new()),
        }
    }

    fn count(&mut self, after: bool, n: &Node) {
        let c = if after { &mut self.stats.added } else { &mut self.stats.removed };
        match n.kind {
            Kind::File => c.files += 1,
            Kind::Dir => c.dirs += 1,
            _ => c.others += 1,
        }
        if n.kind == Kind::File {
            self.hold_file(after, n, &n.content);
        }
    }

    /// A file's bytes on one side of a change: its blobs, or with a live side its size.
    fn hold_file(&mut self, after: bool, n: &Node, ids: &[Id]) {
        let live = self.live;
        let held = self.held(after);
        if live {
            held.live_bytes += n.size;
        } else {
            held.data.extend(ids.iter().copied());
        }
    }

    fn hold_tree(&mut self, after: bool, id: Id) {
        if !self.live {
            self.held(after).trees.insert(id);
        }
    }

    /// An entry on one side only: it and, for a directory, everything below it.
    fn whole(&mut self, change: Change, path: &Path, dir: &Dir, n: &Node, depth: usize) -> Result<()> {
        let p = child(path, &n.name);
        (self.emit)(change, &p, n.kind);
        self.count(change == Change::Added, n);
        match Self::sub(dir, n) {
            Some(d) => self.contents(change, &p, d, depth + 1),
            None => Ok(()),
        }
    }

    /// Everything below a directory that is on one side only.
    fn contents(&mut self, change: Change, path: &Path, dir: Dir, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(path.display().to_string(), "nested deeper than any real tree"));
        }
        if let Dir::Tree(id) = &dir {
            self.hold_tree(change == Change::Added, *id);
        }
        let listing = self.listing(&dir)?;
        for n in listing.iter() {
            self.whole(change, path, &dir, n, depth)?;
        }
        Ok(())
    }

    /// The blob counts: what one side holds that the other does not, among the parts that
    /// differ (shared subtrees hold the same blobs on both sides).
    fn finish(mut self) -> Result<DiffStats> {
        let index = self.repo.index().reader()?;
        for (after, mine, theirs) in [(false, &self.before, &self.after), (true, &self.after, &self.before)] {
            let c = if after { &mut self.stats.added } else { &mut self.stats.removed };
            c.bytes = mine.live_bytes;
            for (set, other, data) in [(&mine.data, &theirs.data, true), (&mine.trees, &theirs.trees, false)] {
                for id in set.iter().filter(|id| !other.contains(id)) {
                    if data {
                        c.data_blobs += 1;
                    } else {
                        c.tree_blobs += 1;
                    }
                    c.bytes += index.get(id)?.map_or(0, |loc| u64::from(loc.raw_len));
                }
            }
        }
        self.stats.trees_read = self.trees.source().loads();
        Ok(self.stats)
    }
}

/// A live directory as a listing: its entries' metadata as a backup would record it, sorted
/// by name (subdirectories carry no tree id; files no chunk ids).
fn live_listing(dir: &Path) -> Result<Listing> {
    let mut nodes = Vec::new();
    for e in std::fs::read_dir(dir).ctx(|| format!("read directory {}", dir.display()))? {
        let e = e.ctx(|| format!("read directory {}", dir.display()))?;
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).ctx(|| format!("stat {}", p.display()))?;
        nodes.push(node_from(&p, e.file_name().as_bytes(), &md, false).0);
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(std::sync::Arc::new(nodes))
}

/// The keyed chunk ids a backup would give the file at `path` now.
fn chunk_ids(repo: &Repository, path: &Path) -> Result<Vec<Id>> {
    let chunker = repo.chunker();
    let want = 2 * chunker.max_size();
    let mut f = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut buf = Vec::with_capacity(want);
    let mut ids = Vec::new();
    let mut eof = false;
    while !eof {
        let need = want - buf.len();
        let n = (&mut f).take(need as u64).read_to_end(&mut buf).ctx(|| format!("read {}", path.display()))?;
        eof = n < need;
        let mut off = 0;
        while off < buf.len() && (eof || buf.len() - off >= chunker.max_size()) {
            let n = chunker.next_len(&buf[off..], eof);
            ids.push(repo.keys().id(ObjType::Data, &buf[off..off + n]));
            off += n;
        }
        buf.drain(..off);
    }
    Ok(ids)
}

/// The metadata a restore sets and a user would call a change (not ctime, inode or device,
/// which differ on every copy).
fn meta_differs(a: &Node, b: &Node) -> bool {
    (a.mode, a.uid, a.gid, a.mtime, &a.xattrs) != (b.mode, b.uid, b.gid, b.mtime, &b.xattrs)
}
